"""PhysiCell's rules grammar (issue 17): CSV v3 parsing and its errors, the
multivariate Hill combination against a line-by-line reference, signals
and driven behaviours end to end."""
import math

import numpy as np
import pytest

import biosim as bs
from biosim import models
from biosim.kernels.cpu.behaviours import hill_rules


def _reference_rule(signals, dead, base, bmax, bmin, rules, old):
    """PhysiCell's Hypothesis_Rule::evaluate for one cell and behaviour:
    rules are (signal index, increases, half, hill, applies_to_dead)."""
    up, down, apply = [], [], False
    for k, inc, half, hill, for_dead in rules:
        if dead and not for_dead:
            continue
        apply = True
        (up if inc else down).append((signals[k], half, hill))

    def hill_sum(terms):
        total = 0.0
        for s, half, hill in terms:
            total += (s / half) ** hill if s > 0 else 0.0
        return total / (1.0 + total)

    if not apply:
        return old
    u = base + (bmax - base) * hill_sum(up)
    return u + (bmin - u) * hill_sum(down)


def test_the_hill_pass_is_physicell_s_rule_evaluation():
    rng = np.random.default_rng(3)
    m, ns = 400, 4
    signals = rng.uniform(0, 3, (m, ns))
    signals[rng.random((m, ns)) < 0.1] = 0.0
    dead = rng.random(m) < 0.3
    base = np.array([1e-3, 0.5, 2.0])
    bmax = np.array([0.1, 0.5, 5.0])
    bmin = np.array([1e-3, 0.0, 0.1])
    rules = [(0, 0, True, 1.0, 2.0, False), (0, 1, False, 0.5, 4.0, True), (1, 2, False, 1.5, 8.0, False),
             (2, 3, True, 0.7, 1.0, True), (2, 0, False, 2.0, 3.0, False)]
    r_beh, r_sig, r_up, r_half, r_hill, r_dead = (np.array(c) for c in zip(*rules))
    old = rng.uniform(0, 1, (m, 3))
    out = old.copy()
    hill_rules(signals, dead, base, bmax, bmin, r_beh.astype(np.int64), r_sig.astype(np.int64), r_up.astype(bool),
               r_half.astype(float), r_hill.astype(float), r_dead.astype(bool), out)
    for q in range(m):
        for b in range(3):
            mine = [(k, inc, h, n, d) for bb, k, inc, h, n, d in rules if bb == b]
            want = _reference_rule(signals[q], dead[q], base[b], bmax[b], bmin[b], mine, old[q, b])
            assert out[q, b] == pytest.approx(want, rel=1e-14, abs=1e-300), (q, b)
    assert np.array_equal(out[dead, 1], old[dead, 1])  # behaviour 1's only rule skips dead cells: unchanged


def _tissue(device="cpu", rows=None, seed=1):
    sim = bs.Simulation(bs.Box.cube(100.0), dt=1.0, seed=seed, mechanics=None, device=device)
    sim.add_substance("oxygen", diffusion=100.0, decay=0.1, spacing=10.0, initial=5.0)
    tum = sim.add_agents("tumour", bs.init.uniform(120, sim.box, seed=1), diameter=12.0)
    imm = sim.add_agents("immune", bs.init.uniform(40, sim.box, seed=2), diameter=9.0)
    tum.behaviours += [models.Apoptosis(rate=1e-4, phases=True), models.Damage(repair_rate=0.01)]
    imm.behaviours += [models.Interactions(attack={"tumour": 0.01}), models.RandomWalk(diffusion=1.0)]
    rows = rows or [["tumour", "oxygen", "decreases", "apoptosis", "0", "3.75", "8", "0"],
                    ["tumour", "pressure", "increases", "apoptosis", "0.01", "0.5", "2", "0"],
                    ["tumour", "damage", "increases", "apoptosis", "0.05", "2", "1", "0"],
                    ["immune", "contact with tumour", "increases", "attack tumour", "0.5", "1", "1", "0"]]
    tum.behaviours += [models.Rules(rows)]
    imm.behaviours += [models.Rules(rows)]
    return sim


def test_rules_drive_death_and_attack_from_their_signals():
    sim = _tissue()
    sim.run(5)
    t = sim.agents
    tum = (t.type == 0) & (t["death"] == 0)
    # the step's signals: oxygen at the cells, pressure and contacts as the pass computes them
    o2 = sim.substances["oxygen"].sample(t.position[tum])
    assert 1.0 < o2.min() and o2.max() < 5.0
    rules = sim.populations["tumour"].behaviours[-1]
    rows, signals = rules.signals(sim, sim.populations["tumour"])
    t = sim.agents
    live = t["death"][rows] == 0
    su_p = (signals[:, 1] / 0.5) ** 2
    su_d = signals[:, 2] / 2.0
    su = su_p + su_d
    u = 1e-4 + (0.05 - 1e-4) * (su / (1 + su))  # one maximum per behaviour: the largest (and the base)
    sd = (signals[:, 0] / 3.75) ** 8
    # recompute with this step's signals and compare with what the pass writes now
    rules.run(sim, sim.populations["tumour"], sim.dt)
    got = sim.agents["rule_apoptosis"][rows]
    np.testing.assert_allclose(got[live], (u + (0.0 - u) * (sd / (1 + sd)))[live], rtol=1e-13)
    assert signals[:, 1].max() > 0 and np.ptp(got[live]) > 0
    # the immune cells' attack rate from their contacts with tumour cells (counted against all pairs)
    imm = sim.populations["immune"]
    rules = imm.behaviours[-1]
    rows, signals = rules.signals(sim, imm)
    rules.run(sim, imm, sim.dt)
    t = sim.agents
    tumour = np.flatnonzero(t.type == 0)
    d = np.linalg.norm(t.position[rows][:, None, :] - t.position[tumour][None, :, :], axis=2)
    contacts = np.count_nonzero(d < 1.25 * 0.5 * (t.diameter[rows][:, None] + t.diameter[tumour][None, :]), axis=1)
    np.testing.assert_array_equal(signals[:, 0], contacts)
    assert contacts.max() > 0
    np.testing.assert_allclose(t["rule_attack_tumour"][rows], 0.01 + 0.49 * contacts / (1.0 + contacts), rtol=1e-14)


def test_the_driven_rate_decides_who_dies():
    sim = bs.Simulation(bs.Box.cube(100.0), dt=1.0, seed=4, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(400, sim.box, seed=3), diameter=8.0)
    sim.agents.add_column("stress", np.float64, 0.0)
    sim.agents["stress"][:200] = 10.0  # the first 200 cells are stressed
    pop.behaviours += [models.Apoptosis(rate=0.0), models.Rules([["c", "custom:stress", "increases", "apoptosis",
                                                                   "1000", "1", "4", "0"]])]
    sim.run(1)
    left = sim.agents.uid
    assert np.count_nonzero(left < 200) == 0 and np.count_nonzero(left >= 200) == 200


def test_custom_behaviours_time_and_dead_cells():
    sim = bs.Simulation(bs.Box.cube(100.0), dt=2.0, seed=4, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(60, sim.box, seed=3), diameter=8.0)
    sim.agents.add_column("marker", np.float64, 1.0)
    sim.agents.add_column("alarm", np.float64, 0.0)
    pop.behaviours += [models.Apoptosis(rate=0.05, phases=True),
                       models.Rules([["c", "time", "increases", "custom:marker", "3", "10", "2", "0"],
                                     ["c", "dead", "increases", "custom:alarm", "4", "1", "1", "1"]])]
    sim.run(6)  # rules at t = 0 .. 10 min, each before the step's deaths
    pop.behaviours[0].rate = 0.0
    sim.run(1)  # t = 12: no new deaths
    t = sim.agents
    live, dead = t["death"] == 0, t["death"] != 0
    assert dead.any() and live.any()
    assert np.all(t["marker"][live] == 1.0 + (3.0 - 1.0) * (1.44 / 2.44))  # H(12; 10, 2)
    # frozen when they died (the rule skips dead cells; rules run before the step's deaths)
    assert np.all(t["marker"][dead] <= 2.0) and np.any(t["marker"][dead] < 2.0)
    assert np.all(t["alarm"][dead] == 2.0) and np.all(t["alarm"][live] == 0.0)  # dead: s = 1, H = 1/2


def test_a_rules_csv_file_with_comments(tmp_path):
    path = tmp_path / "cell_rules.csv"
    path.write_text("// PhysiCell rules, v3\n\n"
                    "malignant epithelial cell,oxygen,decreases,necrosis,0,3.75,8,0\n"
                    "// immune\n"
                    "malignant epithelial cell, pressure , increases , apoptosis , 0.001 , 0.5 , 4 , false\n")
    sim = bs.Simulation(bs.Box.cube(60.0), dt=1.0, mechanics=None)
    sim.add_substance("oxygen", diffusion=100.0, decay=0.1, spacing=10.0, initial=1.0)
    pop = sim.add_agents("malignant epithelial cell", bs.init.uniform(30, sim.box, seed=1), diameter=10.0)
    pop.behaviours += [models.Necrosis(rate=0.001), models.Apoptosis(rate=1e-5), models.Rules(path)]
    sim.run(1)
    t = sim.agents
    np.testing.assert_allclose(t["rule_necrosis"], 0.001 / (1 + (1.0 / 3.75) ** 8), rtol=1e-14)  # before diffusing
    assert set(t.columns) >= {"rule_necrosis", "rule_apoptosis"}
    assert pop.behaviours[-1].source[0] == ["malignant epithelial cell", "oxygen", "decreases", "necrosis", "0",
                                            "3.75", "8", "0"]


def test_rules_continue_bit_for_bit_from_a_checkpoint(tmp_path):
    a = _tissue()
    a.run(4)
    a.save_checkpoint(tmp_path / "ck.h5")
    a.run(4)
    b = bs.Simulation.load_checkpoint(tmp_path / "ck.h5")
    b.run(4)
    assert np.any(a.agents["rule_attack_tumour"] > 0.01)
    for c in a.agents.columns:
        np.testing.assert_array_equal(b.agents[c], a.agents[c], err_msg=c)


def test_rules_are_the_cpu_s_on_every_backend(device):
    ref, sim = _tissue("cpu"), _tissue(device)
    ref.run(6)
    sim.run(6)
    o0, o1 = np.argsort(ref.agents.uid), np.argsort(sim.agents.uid)
    np.testing.assert_array_equal(sim.agents.uid[o1], ref.agents.uid[o0])
    for c in ("rule_apoptosis", "rule_attack_tumour", "death", "attack_target"):
        np.testing.assert_allclose(sim.agents[c][o1], ref.agents[c][o0], rtol=1e-12, err_msg=c)


GOOD = ["c", "oxygen", "decreases", "apoptosis", "0", "3.75", "8", "0"]


@pytest.mark.parametrize("row, message", [
    (GOOD[:7], r"rules row 0: 7 fields; a CSV v3 rule has 8: cell type, signal"),
    (GOOD[:4] + ["1e-5"] + GOOD[4:], r"9 fields is PhysiCell's v2 format"),
    (GOOD[:3] + [""] + GOOD[4:], r"rules row 0: field 'behavior' is empty"),
    (GOOD[:2] + ["raises"] + GOOD[3:], r"field 'direction' is 'raises'; allowed: increases, decreases"),
    (GOOD[:5] + ["half"] + GOOD[6:], r"field 'half_max' is 'half', not a number"),
    (GOOD[:5] + ["0"] + GOOD[6:], r"field 'half_max' is '0'; it must be finite and > 0"),
    (GOOD[:6] + ["nan"] + GOOD[7:], r"field 'hill_power' is 'nan'; it must be finite and > 0"),
    (GOOD[:7] + ["yes"], r"field 'applies_to_dead' is 'yes'; allowed: 0, 1, true, false"),
])
def test_malformed_rows_are_refused_with_the_field(row, message):
    with pytest.raises(ValueError, match=message):
        models.Rules([row])


def test_duplicate_and_inconsistent_rows_are_refused(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(",".join(GOOD) + "\n" + ",".join(GOOD) + "\n")
    with pytest.raises(ValueError, match=r"r.csv, line 2: 'oxygen' already drives 'apoptosis' of 'c' \(.*line 1\)"):
        models.Rules(path)
    with pytest.raises(FileNotFoundError, match=r"the rules file '.*nowhere.csv' does not exist"):
        models.Rules(tmp_path / "nowhere.csv")
    with pytest.raises(TypeError, match=r"source must be a rules CSV path or a sequence of rows"):
        models.Rules(3)


@pytest.mark.parametrize("row, message", [
    (["ghost"] + GOOD[1:], r"rules row 0: cell type 'ghost' is not a population; populations are c"),
    (GOOD[:1] + ["glucose"] + GOOD[2:], r"unknown signal 'glucose'; signals are <substance>.*substances: oxygen"),
    (GOOD[:1] + ["intracellular oxygen"] + GOOD[2:], r"is PhysiCell's, but biosim does not model it yet"),
    (GOOD[:1] + ["damage"] + GOOD[2:], r"signal 'damage' reads the column 'damage', which models.Damage"),
    (GOOD[:3] + ["dance"] + GOOD[4:], r"unknown behaviour 'dance'; biosim's rules drive apoptosis, necrosis"),
    (GOOD[:3] + ["attack duration"] + GOOD[4:], r"behaviour 'attack duration' is PhysiCell's, "
                                                r"but biosim's rules do not drive it yet"),
    (GOOD[:3] + ["oxygen uptake"] + GOOD[4:], r"drives models.Uptake\('oxygen', rate\)'s rate, which population 'c' "
                                              r"does not have"),
    (GOOD[:3] + ["cycle entry"] + GOOD[4:], r"drives models.CellCycle's exit rate of phase 0, which population 'c' "
                                            r"does not have"),
    (GOOD[:3] + ["necrosis"] + GOOD[4:], r"drives models.Necrosis's rate, which population 'c' does not have"),
    (GOOD[:3] + ["attack c"] + GOOD[4:], r"drives models.Interactions' attack of 'c'; give population 'c' "
                                         r"models.Interactions\(attack=\{'c': base rate\}\)"),
    (GOOD[:3] + ["custom:nothing"] + GOOD[4:], r"sets a float column 'nothing'.*does not exist"),
    (GOOD[:3] + ["apoptosis", "-1"] + GOOD[5:], r"max_response -1.0 for 'apoptosis', a rate, must be >= 0"),
])
def test_rules_that_do_not_fit_the_simulation_are_refused(row, message):
    sim = bs.Simulation(bs.Box.cube(60.0), dt=1.0, mechanics=None)
    sim.add_substance("oxygen", diffusion=100.0, decay=0.1, spacing=10.0)
    pop = sim.add_agents("c", [[30.0, 30.0, 30.0]])
    pop.behaviours += [models.Apoptosis(rate=0.0)]
    with pytest.raises(ValueError, match=message):
        pop.behaviours += [models.Rules([row])]


def test_rules_drive_cycle_entry_per_cell(device):
    sim = bs.Simulation(bs.Box.cube(200.0), dt=1.0, seed=2, mechanics=None, device=device)
    pop = sim.add_agents("c", bs.init.uniform(200, sim.box, seed=1), diameter=8.0)
    sim.agents.add_column("go", np.float64, 0.0)
    sim.agents["go"][:100] = 1.0
    pop.behaviours += [models.CellCycle(("G",), (100.0,), fixed=True),
                       models.Rules([["c", "custom:go", "increases", "cycle entry", "10", "0.5", "8", "0"]])]
    sim.run(1)  # go = 1: a duration of ~0.1 min, left in the first step; go = 0: 100 min
    t = sim.agents
    assert len(t) == 300
    mothers, others = t.uid < 100, (t.uid >= 100) & (t.uid < 200)
    assert np.all(t["phase_age"][mothers] == 0.0) and np.all(t["phase_age"][others] == 1.0)  # who left the phase
    np.testing.assert_allclose(t["rule_cycle_entry"][t.uid < 100], 0.01 + 9.99 * (2 ** 8 / (1 + 2 ** 8)),
                               rtol=1e-14)


@pytest.mark.parametrize("kind", ["uptake", "secretion", "export"])
def test_rules_drive_secretion_and_uptake_per_cell(kind):
    def make(rate, ruled):
        sim = bs.Simulation(bs.Box.cube(100.0), dt=1.0, seed=2, mechanics=None)
        sim.add_substance("oxygen", diffusion=100.0, decay=0.0, spacing=10.0, initial=5.0)
        pop = sim.add_agents("c", bs.init.uniform(50, sim.box, seed=1), diameter=10.0)
        sim.agents.add_column("x", np.float64, 1.0)
        b = {"uptake": models.Uptake("oxygen", rate), "secretion": models.Secretion("oxygen", rate, target=20.0),
             "export": models.Secretion("oxygen", rate)}[kind]
        pop.behaviours += [b]
        if ruled:
            pop.behaviours += [models.Rules([["c", "custom:x", "increases", f"oxygen {kind}", "10", "1", "1", "0"]])]
        return sim

    a, b = make(2.0, True), make(2.0 + 8.0 * 0.5, False)  # x = 1 = half-max: halfway from 2 to 10
    a.run(3)
    b.run(3)
    c = a.substances["oxygen"].concentration
    assert np.abs(c - 5.0).max() > 1e-3
    np.testing.assert_allclose(c, b.substances["oxygen"].concentration, rtol=1e-12)


def test_rules_drive_the_secretion_target_per_cell(device):
    def make(target, ruled):
        sim = bs.Simulation(bs.Box.cube(100.0), dt=1.0, seed=2, mechanics=None, device=device)
        sim.add_substance("oxygen", diffusion=100.0, decay=0.0, spacing=10.0, initial=5.0)
        pop = sim.add_agents("c", bs.init.uniform(50, sim.box, seed=1), diameter=10.0)
        sim.agents.add_column("x", np.float64, 1.0)
        pop.behaviours += [models.Secretion("oxygen", 2.0, target=target)]
        if ruled:
            pop.behaviours += [models.Rules([["c", "custom:x", "increases", "oxygen secretion target", "40", "1",
                                              "1", "0"]])]
        return sim

    a, b = make(20.0, True), make(20.0 + 20.0 * 0.5, False)  # x = 1 = half-max: halfway from 20 to 40
    a.run(3)
    b.run(3)
    c = a.substances["oxygen"].concentration
    c = c.copy_to_host() if hasattr(c, "copy_to_host") else np.asarray(c)
    d = b.substances["oxygen"].concentration
    d = d.copy_to_host() if hasattr(d, "copy_to_host") else np.asarray(d)
    assert c.max() > 6.0
    np.testing.assert_allclose(c, d, rtol=1e-12)
    with pytest.raises(ValueError, match=r"drives models.Secretion\('oxygen', rate, target\)'s target"):
        sim = bs.Simulation(bs.Box.cube(100.0), mechanics=None)
        sim.add_substance("oxygen", diffusion=100.0, spacing=10.0)
        pop = sim.add_agents("c", [[50.0, 50.0, 50.0]])
        pop.behaviours += [models.Secretion("oxygen", 2.0), models.Rules([["c", "oxygen", "increases",
                                                                           "oxygen secretion target", "4", "1", "1",
                                                                           "0"]])]
