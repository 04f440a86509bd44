"""PhysiCell's cell-cell interactions (issue 17): phagocytosis, fusion,
attack and transformation, with volumes conserved and contested targets
resolved by uid."""
import math

import numpy as np
import pytest

import biosim as bs
from biosim import models

V6 = math.pi / 6.0


def _sim(**kw):
    return bs.Simulation(bs.Box.cube(200.0), dt=1.0, seed=2, mechanics=None, **kw)


def test_an_eater_takes_one_dead_neighbour_per_interval_and_its_volume():
    sim = _sim()
    prey = sim.add_agents("tumour", [[100.0, 100.0, 110.0], [100.0, 110.0, 100.0], [110.0, 100.0, 100.0]],
                          diameter=10.0)
    prey.behaviours += [models.Apoptosis(rate=1.0, probability="linear", phases=True, duration=1e9)]
    far = sim.add_agents("far", [[30.0, 30.0, 30.0]], diameter=10.0)
    far.behaviours += [models.Apoptosis(rate=1.0, probability="linear", phases=True, duration=1e9)]
    mac = sim.add_agents("macrophage", [[100.0, 100.0, 100.0]], diameter=12.0)
    mac.behaviours += [models.Interactions(phagocytosis={"apoptotic": 1.0}, probability="linear")]
    total = V6 * np.sum(sim.agents.diameter ** 3)
    for k in range(3):  # the prey die in the first step (before the macrophage acts: population order)
        sim.run(1)
        assert len(sim.agents) == 4 - k  # one eaten per interval
        assert V6 * np.sum(sim.agents.diameter ** 3) == pytest.approx(total, rel=1e-13)
    sim.run(3)
    assert len(sim.agents) == 2  # the far one is out of reach
    t = sim.agents
    eater = np.flatnonzero(t.type == mac.code)[0]
    assert V6 * t.diameter[eater] ** 3 == pytest.approx(V6 * (12.0 ** 3 + 3 * 10.0 ** 3), rel=1e-13)


def test_eating_moves_the_prey_s_compartments_into_the_eater_s_cytoplasm():
    sim = _sim()
    vol = models.Volume()
    prey = sim.add_agents("prey", [[100.0, 100.0, 115.0]], diameter=vol.diameter)
    mac = sim.add_agents("mac", [[100.0, 100.0, 100.0]], diameter=vol.diameter)
    prey.behaviours += [vol]
    mac.behaviours += [models.Volume(), models.Interactions(phagocytosis={"prey": 1.0}, probability="linear")]
    sim.run(1)  # volumes first, then the live prey is eaten at once (p = 1)
    t = sim.agents
    assert len(t) == 1
    cells = {c: t[c][0] for c in ("nuclear_solid", "nuclear_fluid", "cytoplasmic_solid", "cytoplasmic_fluid")}
    # the eater's own compartments after one volume step (at the targets) plus the prey's (the same)
    assert cells["nuclear_solid"] == pytest.approx(540.0 * 0.25, rel=1e-12)
    assert cells["nuclear_fluid"] == pytest.approx(540.0 * 0.75, rel=1e-12)
    assert cells["cytoplasmic_solid"] == pytest.approx(1954.0 * 0.25 + 2494.0 * 0.25, rel=1e-12)
    assert cells["cytoplasmic_fluid"] == pytest.approx(1954.0 * 0.75 + 2494.0 * 0.75, rel=1e-12)
    assert t["volume"][0] == pytest.approx(2 * 2494.0, rel=1e-12)
    assert t.diameter[0] == pytest.approx((2 * 2494.0 / V6) ** (1 / 3), rel=1e-12)
    sim.run(2400)  # digested (cytoplasmic solids at 0.27/h): back to the target volume
    assert sim.agents["volume"][0] == pytest.approx(2494.0, rel=1e-3)


def test_a_contested_target_goes_to_the_smaller_uid_whatever_the_row_order():
    for reorder in (1, 1000):
        sim = bs.Simulation(bs.Box.cube(200.0), dt=1.0, seed=2, mechanics=bs.SoftSphere(), reorder_every=reorder)
        prey = sim.add_agents("prey", [[100.0, 100.0, 100.0]], diameter=10.0)
        eaters = sim.add_agents("eater", [[111.0, 100.0, 100.0], [89.0, 100.0, 100.0], [100.0, 89.0, 100.0]],
                                diameter=10.0)
        eaters.behaviours += [models.Interactions(phagocytosis={"prey": 1.0}, probability="linear")]
        assert prey.code == 0
        sim.run(1)
        t = sim.agents
        assert len(t) == 3 and not np.any(t.type == prey.code)
        big = t.uid[t.diameter > 10.5]
        assert big.tolist() == [1]  # the eater with the smallest uid


def test_eaters_take_only_the_populations_named():
    sim = _sim()
    sim.add_agents("a", [[100.0, 100.0, 111.0]], diameter=10.0)
    sim.add_agents("b", [[100.0, 111.0, 100.0]], diameter=10.0)
    mac = sim.add_agents("mac", [[100.0, 100.0, 100.0]], diameter=10.0)
    mac.behaviours += [models.Interactions(phagocytosis={"b": 1.0}, probability="linear")]
    sim.run(3)
    assert sorted(sim.agents.type.tolist()) == [0, 2]


def test_fusion_adds_volumes_and_nuclei_at_the_volume_weighted_centre():
    sim = _sim()
    a = sim.add_agents("a", [[100.0, 100.0, 100.0]], diameter=10.0)
    b = sim.add_agents("b", [[112.0, 100.0, 100.0]], diameter=20.0)
    a.behaviours += [models.Interactions(fusion={"b": 1.0}, probability="linear")]
    sim.run(1)
    t = sim.agents
    assert len(t) == 1 and t.type[0] == a.code and t["nuclei"][0] == 2
    va, vb = V6 * 1000.0, V6 * 8000.0
    np.testing.assert_allclose(t.position[0], [100.0 + 12.0 * vb / (va + vb), 100.0, 100.0], rtol=1e-13)
    assert V6 * t.diameter[0] ** 3 == pytest.approx(va + vb, rel=1e-13)


def test_fusion_across_a_periodic_face_uses_the_minimum_image():
    sim = bs.Simulation(bs.Box.cube(100.0), boundary="periodic", dt=1.0, seed=2, mechanics=None)
    a = sim.add_agents("a", [[2.0, 50.0, 50.0]], diameter=10.0)
    sim.add_agents("b", [[96.0, 50.0, 50.0]], diameter=10.0)
    a.behaviours += [models.Interactions(fusion={"b": 1.0}, probability="linear")]
    sim.run(1)
    np.testing.assert_allclose(sim.agents.position[0], [99.0, 50.0, 50.0], rtol=1e-13)


def test_an_attacker_holds_its_target_and_damages_it_until_it_dies():
    sim = _sim()
    tumour = sim.add_agents("tumour", [[100.0, 100.0, 100.0], [100.0, 112.0, 100.0]], diameter=10.0)
    tc = sim.add_agents("tcell", [[100.0, 100.0, 111.0]], diameter=8.0)
    tc.behaviours += [models.Interactions(attack={"tumour": 1.0}, attack_damage_rate=0.5,
                                          attack_duration=math.inf, probability="linear")]
    sim.run(1)
    t = sim.agents
    target = t["attack_target"][t.type == tc.code][0]
    assert target == 0  # in reach: the first tumour cell only
    sim.run(4)
    t = sim.agents
    assert t["damage"][t.uid == 0][0] == pytest.approx(4 * 0.5) and t["damage"][t.uid == 1][0] == 0.0
    me = t.type == tc.code
    assert t["damage_delivered"][me][0] == pytest.approx(2.0) and t["attack_time"][me][0] == 4.0
    # the target dies (kept as apoptotic; before the attacker acts): the attack ends, the damage stays
    tumour.behaviours += [models.Apoptosis(rate=1.0, probability="linear", phases=True)]
    sim.run(2)
    t = sim.agents
    assert t["attack_target"][t.type == tc.code][0] == -1
    assert t["damage"][t.uid == 0][0] == pytest.approx(4 * 0.5)


def test_attacks_end_at_the_rate_of_their_duration():
    sim = _sim()
    sim.add_agents("tumour", bs.init.grid(5, 20.0, origin=(40.0, 40.0, 40.0)), diameter=10.0)
    tc = sim.add_agents("tcell", bs.init.grid(5, 20.0, origin=(50.0, 40.0, 40.0)), diameter=10.0)
    tc.behaviours += [models.Interactions(attack={"tumour": 1.0}, attack_duration=4.0, probability="linear")]
    sim.run(1)
    assert np.all(sim.agents["attack_target"][sim.agents.type == tc.code] >= 0)
    tc.behaviours[0].attack["tumour"] = 0.0  # no new attacks: the held ones end with probability dt / 4
    held = []
    for _ in range(8):
        sim.run(1)
        held.append(np.count_nonzero(sim.agents["attack_target"] >= 0))
    assert np.all(np.diff(held) <= 0)
    expected = 125 * 0.75 ** np.arange(1, 9)
    assert np.all(np.abs(np.array(held) - expected) < 4 * np.sqrt(expected))
    assert held[3] == pytest.approx(125 * 0.75 ** 4, abs=16)


def test_transformation_moves_cells_to_the_other_population():
    sim = _sim()
    a = sim.add_agents("a", bs.init.uniform(200, sim.box, seed=1))
    sim.add_agents("b", [])
    a.behaviours += [models.Interactions(transformation={"b": 0.1})]
    sim.run(5)
    n_b = np.count_nonzero(sim.agents.type == 1)
    assert n_b == pytest.approx(200 * -np.expm1(-0.5), abs=25)
    assert len(sim.agents) == 200


def test_interactions_are_the_cpu_s_on_every_backend(device):
    def make(dev):
        sim = bs.Simulation(bs.Box.cube(120.0), dt=1.0, seed=8, device=dev, mechanics=None)
        tum = sim.add_agents("tumour", bs.init.uniform(80, sim.box, seed=1), diameter=11.0)
        tum.behaviours += [models.Apoptosis(rate=0.02, phases=True)]
        imm = sim.add_agents("immune", bs.init.uniform(30, sim.box, seed=2), diameter=9.0)
        imm.behaviours += [models.Interactions(phagocytosis={"apoptotic": 0.3, "tumour": 0.01},
                                               attack={"tumour": 0.2}, fusion={"immune": 0.01},
                                               transformation={"tumour": 0.002}),
                           models.RandomWalk(diffusion=2.0)]
        return sim

    ref, sim = make("cpu"), make(device)
    ref.run(20)
    sim.run(20)
    o0, o1 = np.argsort(ref.agents.uid), np.argsort(sim.agents.uid)
    assert len(o0) < 110 and np.array_equal(ref.agents.uid[o0], sim.agents.uid[o1])
    for c in ("type", "attack_target", "death", "nuclei", "damage", "diameter"):
        np.testing.assert_array_equal(sim.agents[c][o1], ref.agents[c][o0], err_msg=c)
    np.testing.assert_allclose(sim.agents.position[o1], ref.agents.position[o0], rtol=0, atol=1e-9)


def test_bad_interactions_are_refused():
    sim = _sim()
    pop = sim.add_agents("a", [[1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match=r"phagocytosis names 'ghost', not a population; populations are a, or "
                                         r"'apoptotic', 'necrotic'"):
        pop.behaviours += [models.Interactions(phagocytosis={"ghost": 0.1})]
    with pytest.raises(ValueError, match=r"attack names 'apoptotic', a death state"):
        models.Interactions(attack={"apoptotic": 0.1})
    with pytest.raises(ValueError, match=r"fusion\['a'\]"):
        models.Interactions(fusion={"a": -1.0})
    with pytest.raises(TypeError, match=r"phagocytosis must be a dict"):
        models.Interactions(phagocytosis=[("a", 1.0)])
    with pytest.raises(ValueError, match=r"cannot transform into itself"):
        pop.behaviours += [models.Interactions(transformation={"a": 0.1})]
    with pytest.raises(ValueError, match=r"conserved column 'drug' does not exist"):
        pop.behaviours += [models.Interactions(conserved=["drug"])]


def test_damage_accumulates_and_is_repaired_as_physicell_s(device):
    sim = bs.Simulation(bs.Box.cube(100.0), dt=6.0, mechanics=None, device=device)
    pop = sim.add_agents("c", [[50.0, 50.0, 50.0]])
    pop.behaviours += [models.Damage(damage_rate=0.5, repair_rate=0.1)]
    sim.run(10)
    d = 0.0
    for _ in range(10):
        d = (d + 6.0 * 0.5) / (1.0 + 6.0 * 0.1)
    assert sim.agents["damage"][0] == d
    assert d == pytest.approx(5.0, rel=0.01)  # the steady state rate / repair


def test_a_checkpoint_continues_interactions_bit_for_bit(tmp_path):
    def make():
        sim = bs.Simulation(bs.Box.cube(120.0), dt=1.0, seed=8, mechanics=None)
        tum = sim.add_agents("tumour", bs.init.uniform(80, sim.box, seed=1), diameter=11.0)
        tum.behaviours += [models.Apoptosis(rate=0.02, phases=True), models.Damage(0.1, 0.01)]
        imm = sim.add_agents("immune", bs.init.uniform(30, sim.box, seed=2), diameter=9.0)
        imm.behaviours += [models.Interactions(phagocytosis={"apoptotic": 0.3, "tumour": 0.01}, attack={"tumour": 0.2},
                                               fusion={"immune": 0.01}, transformation={"tumour": 0.002}),
                           models.RandomWalk(diffusion=2.0)]
        return sim

    a = make()
    a.run(10)
    a.save_checkpoint(tmp_path / "ck.h5")
    a.run(10)
    b = bs.Simulation.load_checkpoint(tmp_path / "ck.h5")
    b.run(10)
    assert b.populations["immune"].behaviours[0].attack == {"tumour": 0.2}
    assert len(a.agents) < 110
    for c in a.agents.columns:
        np.testing.assert_array_equal(b.agents[c], a.agents[c], err_msg=c)


@pytest.mark.parametrize("probability", ["exact", "linear"])
def test_attacks_start_at_the_rate_times_the_target_s_immunogenicity(probability):
    """PhysiCell: attack probability attack_rate x immunogenicity of the
    target to the attacker's type x dt; a rule "immunogenicity to tcell"
    sets it per cell (column immunogenicity_to_tcell)."""
    n = 2000
    sim = bs.Simulation(bs.Box.cube(40.0 * 13), dt=0.5, seed=5, mechanics=None)
    g = bs.init.grid(13, 40.0, origin=(20.0, 20.0, 20.0))[:n]
    tumour = sim.add_agents("tumour", g, diameter=10.0)
    tc = sim.add_agents("tcell", g + [11.0, 0.0, 0.0], diameter=10.0)
    sim.agents.add_column("marker", np.float64, 0.0)
    sim.agents["marker"][: n // 2] = 1.0  # the first half of the tumour cells
    tumour.behaviours += [models.Rules([["tumour", "custom:marker", "increases", "immunogenicity to tcell", "3",
                                         "1", "20", "0"]])]
    tc.behaviours += [models.Interactions(attack={"tumour": 0.4}, attack_duration=math.inf, probability=probability)]
    sim.run(1)
    t = sim.agents
    order = np.argsort(t.uid)  # tumour cells: uids 0..n-1 (marked: the first half), then the T cells
    imm = t["immunogenicity_to_tcell"][order]
    np.testing.assert_allclose(imm[: n // 2], 1 + 2 * (1 / 2), rtol=1e-12)  # Hill at the half-max: halfway to 3
    np.testing.assert_array_equal(imm[n // 2:], 1.0)
    attacked = np.isin(np.arange(n), t["attack_target"][t.type == tc.code])
    for part, x in ((slice(0, n // 2), 0.4 * 0.5 * 2.0), (slice(n // 2, n), 0.4 * 0.5)):
        p = min(x, 1.0) if probability == "linear" else -math.expm1(-x)
        got = attacked[part].mean()
        assert abs(got - p) < 4 * math.sqrt(p * (1 - p) / (n // 2)), (got, p)
