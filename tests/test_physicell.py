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
        sim = bs.Simulation(bs.Box.cube(300.0), dt=6.0, seed=2, device=dev)
        vol = models.Volume()
        pop = sim.add_agents("c", bs.init.ball(40, 30.0, center=(150.0, 150.0, 150.0), seed=2),
                             diameter=np.linspace(12.0, 16.0, 40))
        pop.behaviours += [vol, models.CellCycle(("G1", "M"), (40.0, 30.0), fixed=(False, True),
                                                 placement="physicell")]
        return sim

    ref, sim = make("cpu"), make(device)
    ref.run(20)
    sim.run(20)
    o0, o1 = np.argsort(ref.agents.uid), np.argsort(sim.agents.uid)
    assert len(o0) > 40 and np.array_equal(ref.agents.uid[o0], sim.agents.uid[o1])
    for c in ("volume", "nuclear_solid", "cytoplasmic_fluid", "diameter"):
        np.testing.assert_allclose(sim.agents[c][o1], ref.agents[c][o0], rtol=1e-13, err_msg=c)
    np.testing.assert_allclose(sim.agents.position[o1], ref.agents.position[o0], rtol=0, atol=1e-9)
