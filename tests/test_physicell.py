"""PhysiCell's phenotype in biosim (issue 17): the standard volume model and
PhysiCell's division placement, against a slow reference of PhysiCell's
update and the model's closed forms."""
import math

import numpy as np
import pytest

import biosim as bs
from biosim import models


def physicell_volume_reference(c, dt, steps, p):
    """PhysiCell 1.14's standard_volume_update_function, line by line, in
    plain Python: ``c`` a dict of the four compartments and the calcified
    fraction; ``p`` the targets and rates (as Volume.targets())."""
    ns_t, ratio, ff, rf, rn, rc, rcalc = p
    c = dict(c)
    for _ in range(steps):
        total = c["ns"] + c["nf"] + c["cs"] + c["cf"]
        nuclear = c["ns"] + c["nf"]
        fluid = c["nf"] + c["cf"]
        fluid += dt * rf * (ff * total - fluid)
        fluid = max(fluid, 0.0)
        c["nf"] = (nuclear / (total + 1e-16)) * fluid
        c["cf"] = fluid - c["nf"]
        c["ns"] = max(c["ns"] + dt * rn * (ns_t - c["ns"]), 0.0)
        c["cs"] = max(c["cs"] + dt * rc * (ratio * ns_t - c["cs"]), 0.0)
        c["calc"] += dt * rcalc * (1.0 - c["calc"])
    return c


def _one_cell(volume, diameter, dt=6.0, device="cpu"):
    sim = bs.Simulation(bs.Box.cube(400.0), dt=dt, seed=1, mechanics=None, device=device)
    pop = sim.add_agents("c", [[200.0, 200.0, 200.0]], diameter=diameter)
    pop.behaviours += [volume]
    return sim


def test_the_volume_model_is_physicell_s_update():
    vol = models.Volume(calcification_rate=0.001)
    d0 = vol.diameter / 2 ** (1 / 3)  # a daughter: half the target volume
    sim = _one_cell(vol, d0)
    sim.run(1)
    t = sim.agents
    v0 = math.pi / 6 * d0 ** 3
    share = vol.nuclear / vol.total
    start = {"ns": v0 * share * 0.25, "nf": v0 * share * 0.75, "cs": v0 * (1 - share) * 0.25,
             "cf": v0 * (1 - share) * 0.75, "calc": 0.0}
    for steps in (1, 60):
        if steps > 1:
            sim.run(steps - 1)
        ref = physicell_volume_reference(start, 6.0, steps, vol.targets())
        for col, key in (("nuclear_solid", "ns"), ("nuclear_fluid", "nf"), ("cytoplasmic_solid", "cs"),
                         ("cytoplasmic_fluid", "cf"), ("calcified_fraction", "calc")):
            np.testing.assert_allclose(t[col][0], ref[key], rtol=1e-13, err_msg=col)
        total = ref["ns"] + ref["nf"] + ref["cs"] + ref["cf"]
        np.testing.assert_allclose(t["volume"][0], total, rtol=1e-13)
        np.testing.assert_allclose(t.diameter[0], (6 * total / math.pi) ** (1 / 3), rtol=1e-13)
    # the solids relax geometrically to their targets: N_s(k) = N* + (N_s(0) - N*)(1 - dt r_N)^k
    ns_t = vol.targets()[0]
    expected = ns_t + (start["ns"] - ns_t) * (1 - 6.0 * vol.nuclear_biomass_change_rate) ** 60
    np.testing.assert_allclose(t["nuclear_solid"][0], expected, rtol=1e-12)


def test_a_halved_cell_grows_back_to_the_target_volume():
    vol = models.Volume()
    sim = _one_cell(vol, vol.diameter / 2 ** (1 / 3))
    sim.run(480)  # 48 h
    t = sim.agents
    assert t["volume"][0] == pytest.approx(2494.0, rel=1e-4)
    assert t.diameter[0] == pytest.approx(16.825, rel=1e-4)
    assert t["nuclear_fluid"][0] + t["nuclear_solid"][0] == pytest.approx(540.0, rel=1e-4)
    fluid = t["nuclear_fluid"][0] + t["cytoplasmic_fluid"][0]
    assert fluid / t["volume"][0] == pytest.approx(0.75, rel=1e-6)


def test_dividing_cells_with_volumes_keep_their_size():
    """PhysiCell's template in miniature: a Ki67 cycle without growth plus the
    volume model keeps the mean diameter near the target over 48 h (without
    volumes cells halve each generation: 7.3 µm in the full template)."""
    def make(with_volume):
        sim = bs.Simulation(bs.Box.cube(600.0), dt=6.0, seed=3)
        vol = models.Volume()
        pop = sim.add_agents("tumour", bs.init.ball(12, 40.0, center=(300.0, 300.0, 300.0), seed=1),
                             diameter=vol.diameter)
        pop.behaviours += [models.CellCycle.ki67_basic(placement="physicell")]
        if with_volume:
            pop.behaviours += [vol]
        return sim

    sim, bare = make(True), make(False)
    sim.run(480)  # 48 h
    bare.run(480)
    t = sim.agents
    assert len(t) >= 30
    assert t.diameter.mean() > 15.0 and bare.agents.diameter.mean() < 12.0
    parts = sum(t[c] for c in ("nuclear_solid", "nuclear_fluid", "cytoplasmic_solid", "cytoplasmic_fluid"))
    np.testing.assert_allclose(parts, t["volume"], rtol=1e-14)


def test_division_splits_every_compartment_and_places_cells_as_physicell(tmp_path):
    vol = models.Volume()
    sim = bs.Simulation(bs.Box.cube(400.0), dt=1.0, seed=5, mechanics=None)
    pop = sim.add_agents("c", [[200.0, 200.0, 200.0]], diameter=vol.diameter)
    pop.behaviours += [vol, models.CellCycle(("G1",), (0.5,), fixed=True, placement="physicell")]
    sim.run(1)  # the volume step, then division at the end of the 0.5-min phase
    t = sim.agents
    assert len(t) == 2
    mother, daughter = np.argsort(t.uid)
    r = 0.5 * (6 * 2 * t["volume"][mother] / math.pi) ** (1 / 3)  # the mother's radius before dividing
    start = np.array([200.0, 200.0, 200.0])
    dm, dd = t.position[mother] - start, t.position[daughter] - start
    np.testing.assert_allclose(np.linalg.norm(dd), r, rtol=1e-12)
    np.testing.assert_allclose(dm, -0.5 * dd, rtol=1e-12)
    for c in ("nuclear_solid", "nuclear_fluid", "cytoplasmic_solid", "cytoplasmic_fluid", "volume"):
        assert t[c][mother] == t[c][daughter] > 0
    np.testing.assert_allclose(t.diameter, (6 * t["volume"] / math.pi) ** (1 / 3), rtol=1e-13)


def test_default_placement_keeps_the_centre_of_mass():
    sim = bs.Simulation(bs.Box.cube(400.0), dt=1.0, seed=5, mechanics=None)
    pop = sim.add_agents("c", [[200.0, 200.0, 200.0]], diameter=10.0)
    pop.behaviours += [models.CellCycle(("G1",), (0.5,), fixed=True)]
    sim.run(1)
    np.testing.assert_allclose(sim.agents.position.mean(axis=0), [200.0, 200.0, 200.0], atol=1e-12)
    assert np.linalg.norm(np.diff(sim.agents.position, axis=0)) == pytest.approx(5.0, rel=1e-12)


@pytest.mark.parametrize("kw, match", [
    (dict(nuclear=3000.0), r"nuclear must be below total"),
    (dict(total=-1.0), r"total"),
    (dict(fluid_fraction=1.5), r"fluid_fraction must be in \[0, 1\], got 1\.5"),
    (dict(fluid_change_rate=float("nan")), r"fluid_change_rate"),
    (dict(nuclear_biomass_change_rate=-0.1), r"nuclear_biomass_change_rate"),
])
def test_bad_volume_parameters_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        models.Volume(**kw)


def test_a_bad_placement_is_refused():
    with pytest.raises(ValueError, match=r"placement must be one of 'centre', 'physicell'; got 'left'"):
        models.CellCycle.live(placement="left")
    with pytest.raises(ValueError, match=r"placement must be one of"):
        models.GrowthDivision(10.0, 12.0, placement=None)


def test_the_volume_model_is_the_cpu_s_on_every_backend(device):
    def make(dev):
        sim = bs.Simulation(bs.Box.cube(300.0), dt=6.0, seed=2, device=dev, mechanics=None)
        vol = models.Volume()
        pop = sim.add_agents("c", bs.init.ball(40, 30.0, center=(150.0, 150.0, 150.0), seed=2),
                             diameter=np.linspace(12.0, 16.0, 40))
        pop.behaviours += [vol, models.CellCycle(("G1", "M"), (40.0, 30.0), fixed=(False, True),
                                                 placement="physicell")]
        return sim

    ref, sim = make("cpu"), make(device)
    ref.run(15)
    sim.run(15)
    o0, o1 = np.argsort(ref.agents.uid), np.argsort(sim.agents.uid)
    assert len(o0) > 40 and np.array_equal(ref.agents.uid[o0], sim.agents.uid[o1])
    for c in ("volume", "nuclear_solid", "cytoplasmic_fluid", "diameter"):
        np.testing.assert_allclose(sim.agents[c][o1], ref.agents[c][o0], rtol=1e-13, err_msg=c)
    np.testing.assert_allclose(sim.agents.position[o1], ref.agents.position[o0], rtol=0, atol=1e-9)


# -- PhysiCell's conventions, as options ------------------------------------------------
def biofvm_reference(c, D, lam, h, dt, layers):
    """BioFVM's LOD step (diffusion_decay_solver__constant_coefficients_LOD_3D)
    in plain numpy: Dirichlet nodes set before each sweep and after the last;
    each sweep solves (1 + dt λ/3 - r d2) x = c along its lines with no-flux
    ends, by a dense solve.  ``layers``: {face index: value}."""
    c = c.copy()
    r, k = D * dt / h ** 2, lam * dt / 3.0

    def dirichlet(c):
        for f, v in layers.items():
            axis, side = divmod(f, 2)
            index = [slice(None)] * 3
            index[axis] = 0 if side == 0 else c.shape[axis] - 1
            c[tuple(index)] = v

    dirichlet(c)
    for axis in range(3):
        n = c.shape[axis]
        A = np.diag(np.full(n, 1.0 + 2.0 * r + k)) - r * np.eye(n, k=1) - r * np.eye(n, k=-1)
        A[0, 0] = A[-1, -1] = 1.0 + r + k
        if n == 1:
            A[0, 0] = 1.0 + k
        c = np.apply_along_axis(lambda line: np.linalg.solve(A, line), axis, c)
        dirichlet(c)
    return c


def test_physicell_s_diffusion_conventions_are_biofvm_s_solver(device):
    """decay_split and dirichlet_layer give BioFVM's LOD step: decay inside
    the three sweeps, the Dirichlet value held on the outer voxel layer."""
    sim = bs.Simulation(bs.Box(np.zeros(3), [100.0, 60.0, 40.0]), dt=0.5, device=device, mechanics=None)
    init = lambda x, y, z: 1.0 + np.sin(x / 17.0) * np.cos(y / 11.0) + 0.02 * z
    s = sim.add_substance("o2", diffusion=500.0, decay=0.4, spacing=10.0, initial=init, decay_split=True,
                          dirichlet_layer=True, boundary={"x-": bs.Dirichlet(3.0), "z+": bs.Dirichlet(0.5)})
    c = s.concentration.copy()
    sim.run(3)
    for _ in range(3):
        c = biofvm_reference(c, 500.0, 0.4, 10.0, 0.5, {0: 3.0, 5: 0.5})
    np.testing.assert_allclose(s.concentration, c, rtol=1e-12)
    assert np.all(s.concentration[0, :, :-1] == 3.0) and np.all(s.concentration[:, :, -1] == 0.5)  # z+ set last
    # biosim's own conventions differ: exact decay, the value on the face
    other = bs.Simulation(bs.Box(np.zeros(3), [100.0, 60.0, 40.0]), dt=0.5, device=device, mechanics=None)
    o = other.add_substance("o2", diffusion=500.0, decay=0.4, spacing=10.0, initial=init,
                            boundary={"x-": bs.Dirichlet(3.0), "z+": bs.Dirichlet(0.5)})
    other.run(3)
    assert np.abs(o.concentration - c).max() > 0.05


def test_split_decay_without_diffusion_is_three_implicit_thirds():
    sim = bs.Simulation(bs.Box.cube(40.0), dt=2.0, mechanics=None)
    s = sim.add_substance("s", diffusion=0.0, decay=0.3, spacing=10.0, initial=2.0, decay_split=True)
    sim.run(4)
    np.testing.assert_allclose(s.concentration, 2.0 / (1.0 + 0.3 * 2.0 / 3.0) ** 12, rtol=1e-14)


def test_physicell_s_exit_probability_is_rate_times_dt():
    """At dt = 6 min and a 5-min phase, PhysiCell's probability dt / T
    saturates at 1: every cell leaves; biosim's exact 1 - exp(-dt/T) lets
    about 30% stay.  The same for a death rate."""
    def leave(probability):
        sim = bs.Simulation(bs.Box.cube(400.0), dt=6.0, seed=2, mechanics=None)
        pop = sim.add_agents("c", bs.init.uniform(500, sim.box, seed=1))
        pop.behaviours += [models.CellCycle(("A", "B"), (5.0, 1e9), divide_after=None, probability=probability)]
        sim.run(1)
        return np.count_nonzero(sim.agents["phase"] == 1)

    assert leave("linear") == 500 and 300 < leave("exact") < 400

    def survivors(probability):
        sim = bs.Simulation(bs.Box.cube(400.0), dt=6.0, seed=2, mechanics=None)
        sim.add_agents("c", bs.init.uniform(500, sim.box, seed=1)).behaviours += [
            models.Apoptosis(rate=0.2, probability=probability)]
        sim.run(1)
        return len(sim.agents)

    assert survivors("linear") == 0 and 100 < survivors("exact") < 200


def test_conventions_survive_a_checkpoint(tmp_path):
    sim = bs.Simulation(bs.Box.cube(40.0), dt=1.0, mechanics=None)
    sim.add_substance("s", diffusion=10.0, decay=0.1, spacing=10.0, initial=1.0, decay_split=True,
                      dirichlet_layer=True, boundary=bs.Dirichlet(2.0))
    sim.add_agents("c", [[20.0, 20.0, 20.0]]).behaviours += [
        models.CellCycle.live(probability="linear", placement="physicell")]
    sim.run(2)
    sim.save_checkpoint(tmp_path / "c.h5")
    back = bs.Simulation.load_checkpoint(tmp_path / "c.h5")
    s = back.substances["s"]
    assert s.decay_split and s.dirichlet_layer
    cycle = back.populations["c"].behaviours[0]
    assert cycle.probability == "linear" and cycle.placement == "physicell"
    sim.run(2)
    back.run(2)
    assert np.array_equal(back.substances["s"].concentration, sim.substances["s"].concentration)


def test_bad_convention_options_are_refused():
    sim = bs.Simulation(bs.Box.cube(40.0), mechanics=None)
    with pytest.raises(ValueError, match=r"decay_split=True .* needs solver='implicit', got 'explicit'"):
        sim.add_substance("a", diffusion=1.0, decay=0.1, decay_split=True, solver="explicit")
    with pytest.raises(TypeError, match=r"dirichlet_layer must be True or False, got 'yes'"):
        sim.add_substance("b", diffusion=1.0, dirichlet_layer="yes")
    with pytest.raises(ValueError, match=r"probability must be one of 'exact', 'linear'; got 'often'"):
        models.CellCycle.live(probability="often")
    with pytest.raises(ValueError, match=r"probability must be one of"):
        models.Apoptosis(0.1, probability=None)


# -- death with phases ---------------------------------------------------------------------
APOPTOTIC_P = (0.0, 0.0, 0.0, 3.0 / 60, 0.35 / 60, 1.0 / 60, 0.0)  # Volume.targets() order
SWELLING_P = (0.0, 0.0, 1.0, 0.67 / 60, 0.013 / 60, 0.0032 / 60, 0.0042 / 60)
LYSED_P = (0.0, 0.0, 0.0, 0.05 / 60, 0.013 / 60, 0.0032 / 60, 0.0042 / 60)


def _compartments(t, i):
    return {"ns": t["nuclear_solid"][i], "nf": t["nuclear_fluid"][i], "cs": t["cytoplasmic_solid"][i],
            "cf": t["cytoplasmic_fluid"][i], "calc": t["calcified_fraction"][i]}


def _total(c):
    return c["ns"] + c["nf"] + c["cs"] + c["cf"]


def test_apoptotic_cells_shrink_as_physicell_s_and_are_removed_after_8_6_hours():
    vol = models.Volume()
    sim = bs.Simulation(bs.Box.cube(400.0), dt=6.0, seed=1, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(20, sim.box, seed=2), diameter=vol.diameter)
    apo = models.Apoptosis(rate=1.0, probability="linear", phases=True)  # all die in the first step
    pop.behaviours += [vol, apo]
    sim.record_counts()
    sim.run(1)
    t = sim.agents
    assert len(t) == 20 and np.all(t["death"] == 1) and np.all(t["death_age"] == 6.0)
    start = _compartments(t, 0)
    sim.run(40)
    ref = physicell_volume_reference(start, 6.0, 40, APOPTOTIC_P)
    for col, key in (("nuclear_solid", "ns"), ("nuclear_fluid", "nf"), ("cytoplasmic_solid", "cs"),
                     ("cytoplasmic_fluid", "cf")):
        np.testing.assert_allclose(t[col][0], ref[key], rtol=1e-12, err_msg=col)
    assert t["volume"][0] < 0.25 * 2494.0  # the fluid leaves within hours, the solids follow
    assert sim.records["count_c_apoptotic"].values[-1] == 20
    sim.run(44)  # 85 steps in the state: 510 min
    assert len(sim.agents) == 20
    sim.run(1)  # 516 min: removed
    assert len(sim.agents) == 0


def test_necrotic_cells_swell_lyse_at_twice_their_volume_then_shrink():
    vol = models.Volume()
    sim = bs.Simulation(bs.Box.cube(400.0), dt=6.0, seed=1, mechanics=None)
    pop = sim.add_agents("c", [[200.0, 200.0, 200.0]], diameter=vol.diameter)
    nec = models.Necrosis(rate=1.0, probability="linear", phases=True, lysed_duration=600.0)
    pop.behaviours += [nec, vol]  # necrosis first: the cell dies, then the volume step swells it
    sim.record_counts()
    sim.run(1)
    t = sim.agents
    assert t["death"][0] == 2 and t["rupture_volume"][0] == pytest.approx(2 * 2494.0, rel=1e-12)
    start = _compartments(t, 0)
    # the reference: swell until the volume reaches the rupture volume, checked before each volume step
    c, steps = dict(start), 0
    while _total(c) < t["rupture_volume"][0]:
        c = physicell_volume_reference(c, 6.0, 1, SWELLING_P)
        steps += 1
    assert 30 < steps < 200  # hours of swelling at 0.67/h (6 h here)
    sim.run(steps)
    assert t["death"][0] == 2 and t["volume"][0] == pytest.approx(_total(c), rel=1e-12)
    sim.run(1)  # lyses (age 0), and the volume step already follows the lysed parameters
    assert t["death"][0] == 3 and t["death_age"][0] == 0.0 and t["rupture_volume"][0] == np.inf
    c = physicell_volume_reference(c, 6.0, 1, LYSED_P)
    assert t["volume"][0] == pytest.approx(_total(c), rel=1e-12)
    sim.run(20)
    c = physicell_volume_reference(c, 6.0, 20, LYSED_P)
    assert t["volume"][0] == pytest.approx(_total(c), rel=1e-12) and t["calcified_fraction"][0] > 0.0
    assert sim.records["count_c_necrotic_lysed"].values[-1] == 1
    sim.run(80)  # 100 intervals lysed: 600 min, removed
    assert len(sim.agents) == 0


def test_dead_cells_do_nothing_but_die():
    """Dead cells neither cycle, grow, move, chemotax nor switch state; the
    same cells die at the same steps whether they are kept or removed at
    once."""
    def make(phases):
        sim = bs.Simulation(bs.Box.cube(100.0), dt=1.0, seed=4, mechanics=None)
        s = sim.add_substance("s", diffusion=0.0, spacing=100.0, initial=1.0)
        pop = sim.add_agents("c", bs.init.uniform(60, sim.box, seed=3), diameter=10.0, mark=np.zeros(60, np.int8))
        pop.behaviours += [models.Apoptosis(rate=0.05, phases=phases), models.Uptake(s, rate=0.01),
                           models.CellCycle(("A", "B"), (30.0, 30.0), divide_after=None),
                           models.RandomWalk(diffusion=1.0), models.Secretion(s, rate=0.5),
                           models.Chemotaxis(s, speed=1.0), models.GrowthDivision(10.0, 1e9),
                           models.StateSwitch(rate=0.1, column="mark", to=1)]
        return sim, s

    kept, _ = make(True)
    gone, _ = make(False)
    kept.run(1)
    gone.run(1)
    snap = {c: kept.agents[c].copy() for c in ("position", "phase", "phase_age", "diameter", "mark", "uid")}
    for _ in range(10):
        kept.run(1)
        gone.run(1)
        dead = kept.agents["death"] > 0
        assert np.array_equal(np.sort(kept.agents.uid[~dead]), np.sort(gone.agents.uid))
    t = kept.agents
    first = np.isin(t.uid, snap["uid"][kept.agents["death"][:len(snap["uid"])] > 0]) & (t["death_age"] == 11.0)
    assert first.any()  # cells dead since the first step: frozen since
    rows = np.searchsorted(snap["uid"], t.uid[first])
    for c in ("position", "phase", "phase_age", "diameter", "mark"):
        assert np.array_equal(t[c][first], snap[c][rows]), c


def test_dead_cells_take_up_a_tenth_of_their_uptake():
    def run(phases, rate):
        sim = bs.Simulation(bs.Box.cube(100.0), dt=1.0, seed=4, mechanics=None)
        s = sim.add_substance("s", diffusion=0.0, spacing=50.0, initial=1.0)
        pop = sim.add_agents("c", bs.init.uniform(40, sim.box, seed=3), diameter=12.0)
        if phases:
            pop.behaviours += [models.Apoptosis(rate=1.0, probability="linear", phases=True)]
        pop.behaviours += [models.Uptake(s, rate=rate)]
        sim.run(5)
        return s.concentration

    dead = run(True, 2.0)
    np.testing.assert_allclose(dead, run(False, 0.2), rtol=1e-13)
    assert np.all(dead < 0.99) and np.all(run(False, 2.0) < dead)


def test_death_phases_parameters_are_checked():
    with pytest.raises(TypeError, match=r"phases must be True or False, got 1"):
        models.Apoptosis(0.1, phases=1)
    with pytest.raises(ValueError, match=r"duration"):
        models.Apoptosis(0.1, phases=True, duration=0.0)
    with pytest.raises(ValueError, match=r"a threshold .* is required with a substance"):
        models.Necrosis("o2", rate=0.1)
    with pytest.raises(ValueError, match=r"relative_rupture_volume"):
        models.Necrosis(rate=0.1, phases=True, relative_rupture_volume=-2.0)


def test_death_phases_are_the_cpu_s_on_every_backend(device):
    def make(dev):
        sim = bs.Simulation(bs.Box.cube(200.0), dt=6.0, seed=3, device=dev, mechanics=None)
        o2 = sim.add_substance("o2", diffusion=0.0, spacing=20.0, initial=lambda x, y, z: x / 200.0)
        vol = models.Volume()
        pop = sim.add_agents("c", bs.init.uniform(60, sim.box, seed=5), diameter=vol.diameter)
        pop.behaviours += [models.Apoptosis(rate=0.01, phases=True, duration=60.0),
                           models.Necrosis(o2, threshold=0.4, rate=0.05, phases=True, lysed_duration=30.0,
                                           relative_rupture_volume=1.3),
                           vol, models.Uptake(o2, rate=0.1), models.CellCycle.live()]
        return sim

    ref, sim = make("cpu"), make(device)
    ref.run(25)
    sim.run(25)
    o0, o1 = np.argsort(ref.agents.uid), np.argsort(sim.agents.uid)
    assert np.array_equal(ref.agents.uid[o0], sim.agents.uid[o1])
    d = ref.agents["death"][o0]
    assert set(np.unique(d)) == {0, 1, 2, 3} and len(o0) < 60  # every state, and removals
    assert np.array_equal(sim.agents["death"][o1], d)
    for c in ("death_age", "rupture_volume", "volume", "diameter"):
        np.testing.assert_allclose(sim.agents[c][o1], ref.agents[c][o0], rtol=1e-13, err_msg=c)
    np.testing.assert_allclose(sim.substances["o2"].concentration, ref.substances["o2"].concentration, rtol=1e-13)


def test_death_phases_survive_a_checkpoint(tmp_path):
    sim = bs.Simulation(bs.Box.cube(200.0), dt=6.0, seed=3, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(50, sim.box, seed=5), diameter=models.Volume().diameter)
    pop.behaviours += [models.Apoptosis(rate=0.005, phases=True, duration=60.0),
                       models.Necrosis(rate=0.005, phases=True, relative_rupture_volume=1.2), models.Volume()]
    sim.run(5)
    sim.save_checkpoint(tmp_path / "c.h5")
    back = bs.Simulation.load_checkpoint(tmp_path / "c.h5")
    nec = back.populations["c"].behaviours[1]
    assert nec.phases and nec.relative_rupture_volume == 1.2 and "substance" not in nec.parameters()
    sim.run(10)
    back.run(10)
    for c in ("uid", "death", "death_age", "volume"):
        assert np.array_equal(back.agents[c], sim.agents[c]), c
    states = set(np.unique(sim.agents["death"]))
    assert {0, 1} <= states and states & {2, 3}
