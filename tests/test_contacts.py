"""PhysiCell's mechanical signals (issue 17): simple pressure and contact
counts, against a brute-force reference over all pairs."""
import itertools

import numpy as np
import pytest

import biosim as bs
from biosim import models
from models.pressure import contact_signals

SCALE = 0.027288820670331


def _reference(t, code, reach, ntypes):
    """Pressure and contacts over all pairs, in uid order of the neighbours
    (closed box: plain differences)."""
    n = len(t)
    order = np.argsort(t.uid)
    pressure = np.zeros(n)
    counts = np.zeros((n, ntypes + 2))
    dead = t["death"] != 0 if "death" in t else np.zeros(n, bool)
    for i in np.flatnonzero(t.type == code):
        for j in order:
            if j == i:
                continue
            d = np.linalg.norm(t.position[j] - t.position[i])
            R = 0.5 * (t.diameter[i] + t.diameter[j])
            if d < R:
                pressure[i] += (1.0 - d / R) ** 2 / SCALE
            if d < reach * R:
                counts[i, t.type[j]] += 1
                counts[i, ntypes + (1 if dead[j] else 0)] += 1
    return pressure, counts


def test_pressure_of_a_cell_packed_among_twelve():
    sim = bs.Simulation(bs.Box.cube(100.0), dt=1.0, mechanics=None)
    d, s = 10.0, 0.95
    shell = [v for v in itertools.product([-1, 0, 1], repeat=3) if sum(map(abs, v)) == 2]  # FCC neighbours
    pts = [[50.0, 50.0, 50.0]] + [[50.0 + x * d * s / np.sqrt(2) for x in v] for v in shell]
    pop = sim.add_agents("c", pts, diameter=d)
    pop.behaviours += [models.Pressure()]
    sim.run(1)
    t = sim.agents
    assert t["pressure"][t.uid == 0][0] == pytest.approx(12 * (1 - s) ** 2 / SCALE, rel=1e-13)
    assert np.all(t["pressure"][t.uid != 0] < t["pressure"][t.uid == 0])


def test_pressure_and_contacts_match_all_pairs(device):
    sim = bs.Simulation(bs.Box.cube(80.0), dt=1.0, seed=3, device=device, mechanics=None)
    rng = np.random.default_rng(2)
    a = sim.add_agents("a", bs.init.uniform(150, sim.box, seed=1), diameter=rng.uniform(8, 14, 150))
    sim.add_agents("b", bs.init.uniform(60, sim.box, seed=2), diameter=9.0)
    a.behaviours += [models.Apoptosis(rate=0.3, phases=True), models.Pressure()]
    sim.run(2)  # some dead cells
    t = sim.agents
    n = len(t)
    counts = sim.backend.zeros((n, 4), np.float64)
    pressure, counts = contact_signals(sim, a.code, 1.25, counts=counts)
    pressure, counts = sim.backend.to_host(pressure)[:n], sim.backend.to_host(counts)
    ref_p, ref_c = _reference(t, a.code, 1.25, 2)
    rows = t.type == a.code
    assert np.any(t["death"] != 0) and ref_c[rows, 3].sum() > 0 and ref_p.max() > 0.5
    np.testing.assert_allclose(pressure[rows], ref_p[rows], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(counts[rows], ref_c[rows])
    # the behaviour's column is the same pass, run before this step's end
    sim.run(1)
    t = sim.agents
    ref_p, _ = _reference(t, a.code, 1.25, 2)  # no mechanics: positions unchanged since
    col = t["pressure"]
    rows = t.type == a.code
    np.testing.assert_allclose(col[rows], ref_p[rows], rtol=1e-12, atol=1e-15)
