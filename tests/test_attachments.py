"""PhysiCell's spring attachments (issue 17): attach at rate x affinity,
detach at rate, at most N per cell, mutual, zero-rest-length springs, and
the spring of an attack."""
import math
import textwrap

import numpy as np
import pytest

import biosim as bs
from biosim import models
from biosim.models.attachments import spring_forces, stiffness

from test_physicell_project import SETTINGS, _project
from threads import assert_bit_identical, runs_with_1_and_2_threads


def _pairs(n_pairs, gap=14.0, spacing=60.0, **kw):
    """n_pairs isolated a-b pairs, centres ``gap`` µm apart (diameter 15:
    within 1.25 x the summed radii), populations a (with Attachments(**kw))
    and b (without)."""
    side = spacing * math.ceil(n_pairs ** (1 / 3)) + spacing
    g = np.arange(math.ceil(n_pairs ** (1 / 3))) * spacing + spacing / 2
    centres = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)[:n_pairs]
    sim = bs.Simulation(bs.Box.cube(side), dt=0.1, seed=5,
                        mechanics=bs.PhysiCellForce(repulsion=0.0, adhesion=0.0, max_displacement=math.inf))
    a = sim.add_agents("a", centres, diameter=15.0)
    sim.add_agents("b", centres + [gap, 0.0, 0.0], diameter=15.0)
    a.behaviours += [models.Attachments(**kw)]
    return sim


def _attached_count(sim):
    t = sim.agents
    return (t["attached"][: len(t)] >= 0).sum(axis=1)


def test_isolated_pairs_attach_at_rate_times_affinity():
    n, rate, aff, dt = 3000, 2.0, 0.5, 0.1
    sim = _pairs(n, attachment_rate=rate, affinity={"b": aff})
    sim.run(1)
    c = _attached_count(sim)
    p = -math.expm1(-rate * aff * dt)
    got = c[sim.agents.type[: len(sim.agents)] == 0].mean()
    assert abs(got - p) < 4 * math.sqrt(p * (1 - p) / n)
    # mutual: every a attached to its b, and that b to it
    assert np.array_equal(c[sim.agents.type[: len(sim.agents)] == 1].sum(), c.sum() / 2)


def test_attachments_end_at_the_detachment_rate():
    n, off, steps = 3000, 0.5, 10
    sim = _pairs(n, attachment_rate=0.0, detachment_rate=off)
    t = sim.agents
    rows_a = np.flatnonzero(t.type[: len(t)] == 0)
    rows_b = np.flatnonzero(t.type[: len(t)] == 1)
    t["attached"][rows_a, 0] = t.uid[rows_b]
    t["attached"][rows_b, 0] = t.uid[rows_a]
    sim.run(steps)
    left = (_attached_count(sim) > 0)[sim.agents.type[: len(sim.agents)] == 0].mean()
    p = math.exp(-off * sim.dt * steps)
    assert abs(left - p) < 4 * math.sqrt(p * (1 - p) / n)
    c = _attached_count(sim)
    assert c[sim.agents.type[: len(sim.agents)] == 1].sum() == c[sim.agents.type[: len(sim.agents)] == 0].sum()


def test_springs_pull_with_physicell_s_stiffness():
    sim = _pairs(8, gap=40.0, attachment_rate=0.0, elastic_constant=0.04, affinity={"b": 0.25})
    t = sim.agents
    rows_a = np.flatnonzero(t.type[: len(t)] == 0)
    rows_b = np.flatnonzero(t.type[: len(t)] == 1)
    t["attached"][rows_a, 0] = t.uid[rows_b]
    t["attached"][rows_b, 0] = t.uid[rows_a]
    f = np.zeros((len(t), 3))
    spring_forces(sim, f)
    k = math.sqrt(0.04 * 0.25 * 0.01 * 1.0)  # b: PhysiCell's default constant 0.01 and affinity 1
    np.testing.assert_allclose(stiffness(sim), [[0.04, k], [k, 0.01]], rtol=1e-15)
    np.testing.assert_allclose(f[rows_a], k * (t.position[rows_b] - t.position[rows_a]), rtol=1e-14)
    np.testing.assert_allclose(f[rows_b], -f[rows_a], rtol=1e-14)
    # the mechanics step moves them: Adams-Bashforth from rest, dt 1.5 v
    before = t.position[rows_a].copy()
    uid_a = t.uid[rows_a].copy()
    sim.run(1)
    after = sim.agents.position[sim.agents.rows_of(uid_a)]
    np.testing.assert_allclose(after - before, 1.5 * sim.dt * f[rows_a], rtol=1e-12)


def test_no_cell_holds_more_than_its_maximum_and_attachments_are_mutual():
    rng = np.random.default_rng(1)
    sim = bs.Simulation(bs.Box.cube(80.0), dt=0.1, seed=2, mechanics=bs.PhysiCellForce(max_displacement=math.inf))
    a = sim.add_agents("a", rng.uniform(10, 70, (300, 3)), diameter=15.0)
    b = sim.add_agents("b", rng.uniform(10, 70, (300, 3)), diameter=15.0)
    a.behaviours += [models.Attachments(attachment_rate=5.0, max_attachments=6)]
    b.behaviours += [models.Attachments(attachment_rate=5.0, max_attachments=2)]
    sim.run(5)
    t = sim.agents
    n = len(t)
    c = _attached_count(sim)
    assert c[t.type[:n] == 0].max() == 6 and c[t.type[:n] == 1].max() == 2
    row = dict(zip(t.uid[:n].tolist(), range(n)))
    att = t["attached"][:n]
    for i in range(n):
        for u in att[i][att[i] >= 0]:
            assert t.uid[i] in att[row[int(u)]]


def test_dead_and_removed_cells_lose_their_attachments():
    sim = _pairs(50, attachment_rate=100.0)
    sim.populations["b"].behaviours += [models.Apoptosis(rate=1e9, phases=True)]
    sim.run(2)
    t = sim.agents
    n = len(t)
    assert np.all(_attached_count(sim) == 0)  # every b cell died: the springs went with it
    assert np.all(t["death"][:n][t.type[:n] == 1] == 1)


def test_an_attack_holds_the_target_by_a_spring():
    sim = _pairs(1, gap=16.0, attachment_rate=0.0)
    t = sim.agents
    sim.populations["a"].behaviours += [models.Interactions(attack={"b": 0.0}, attack_duration=math.inf)]
    ra, rb = (int(np.flatnonzero(t.type[:2] == k)[0]) for k in (0, 1))
    t["attack_target"][ra] = t.uid[rb]
    f = np.zeros((2, 3))
    spring_forces(sim, f)
    k = 0.01  # both at PhysiCell's default constant
    np.testing.assert_allclose(f[ra], k * (t.position[rb] - t.position[ra]), rtol=1e-14)
    np.testing.assert_allclose(f[rb], -f[ra], rtol=1e-14)


SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import biosim as bs
    from biosim import models

    rng = np.random.default_rng(4)
    sim = bs.Simulation(bs.Box.cube(100.0), dt=0.1, seed=9, mechanics=bs.PhysiCellForce(max_displacement=np.inf))
    a = sim.add_agents("a", rng.uniform(5, 95, (700, 3)), diameter=14.0)
    b = sim.add_agents("b", rng.uniform(5, 95, (700, 3)), diameter=14.0)
    a.behaviours += [models.Attachments(attachment_rate=3.0, detachment_rate=0.5, max_attachments=3,
                                        elastic_constant=0.05, affinity={"b": 0.5}),
                     models.Interactions(attack={"b": 0.5})]
    b.behaviours += [models.Attachments(attachment_rate=1.0, max_attachments=2)]
    sim.writers.append(bs.io.HDF5Writer(sys.argv[1], every=4))
    sim.run(12)
""")


def test_attachments_are_bit_identical_for_1_and_2_threads(tmp_path):
    one, two = runs_with_1_and_2_threads(tmp_path, SCRIPT)
    assert_bit_identical(one, two)


def test_attachments_survive_a_checkpoint(tmp_path):
    def make():
        rng = np.random.default_rng(2)
        sim = bs.Simulation(bs.Box.cube(70.0), dt=0.1, seed=4, mechanics=bs.PhysiCellForce())
        a = sim.add_agents("a", rng.uniform(5, 65, (200, 3)), diameter=14.0)
        a.behaviours += [models.Attachments(attachment_rate=2.0, detachment_rate=0.3, max_attachments=4)]
        return sim

    ref = make()
    ref.run(6)
    sim = make()
    sim.run(3)
    sim.save_checkpoint(tmp_path / "c.h5")
    back = bs.Simulation.load_checkpoint(tmp_path / "c.h5")
    assert "springs" in back.force_terms
    back.run(3)
    o, p = np.argsort(ref.agents.uid), np.argsort(back.agents.uid)
    assert np.array_equal(ref.agents["attached"][o], back.agents["attached"][p])
    assert np.array_equal(ref.agents.position[o], back.agents.position[p])
    assert _attached_count(ref).sum() > 0


@pytest.mark.parametrize("kw, match", [
    ({"attachment_rate": -1.0}, r"attachment_rate"),
    ({"detachment_rate": float("nan")}, r"detachment_rate"),
    ({"max_attachments": 0}, r"max_attachments must be an integer >= 1, got 0"),
    ({"max_attachments": 2.5}, r"max_attachments must be an integer >= 1, got 2.5"),
    ({"elastic_constant": -0.1}, r"elastic_constant"),
    ({"affinity": {"b": -1.0}}, r"affinity\['b'\]"),
])
def test_bad_attachment_parameters_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        models.Attachments(**kw)


def test_attachments_that_do_not_fit_the_tissue_are_refused():
    sim = bs.Simulation(bs.Box.cube(50.0))
    a = sim.add_agents("a", [[10.0, 10.0, 10.0]])
    b = sim.add_agents("b", [[20.0, 10.0, 10.0]])
    with pytest.raises(ValueError, match=r"affinity names 'c', not a population"):
        a.behaviours += [models.Attachments(affinity={"c": 1.0})]
    a.behaviours += [models.Attachments(max_attachments=3)]
    with pytest.raises(ValueError, match=r"max_attachments 5 of population 'b' exceeds the 3 slots"):
        b.behaviours += [models.Attachments(max_attachments=5)]


def test_a_project_with_spring_attachments_loads_them(tmp_path):
    settings = SETTINGS.replace("<attachment_rate>0.0</attachment_rate>", "<attachment_rate>0.5</attachment_rate>")
    settings = settings.replace("<detachment_rate>0.0</detachment_rate>", "<detachment_rate>0.1</detachment_rate>")
    assert settings.count("<attachment_rate>0.5") == 1
    with pytest.warns(UserWarning) as w:
        sim = bs.physicell.load(_project(tmp_path, settings=settings))
    assert not any("<attachment_rate>" in str(x.message) for x in w)
    got = {p.name: [b for b in p.behaviours if isinstance(b, models.Attachments)] for p in sim.populations.values()}
    tum, mac = got["tumor"][0], got["macrophage"][0]  # the macrophage inherits the tumour's mechanics
    assert (tum.attachment_rate, tum.detachment_rate, tum.max_attachments, tum.elastic_constant) == (0.5, 0.1, 12,
                                                                                                      0.01)
    assert tum.affinity == {"tumor": 1.0, "macrophage": 0.5} and tum.probability == "linear"
    assert mac.attachment_rate == 0.5
    sim.run(5)
    off = SETTINGS.replace("<attachment_rate>0.0</attachment_rate>", "<attachment_rate>0.5</attachment_rate>")
    off = off.replace("<options>", "<options><disable_automated_spring_adhesions>true"
                                   "</disable_automated_spring_adhesions>")
    with pytest.warns(UserWarning):
        sim = bs.physicell.load(_project(tmp_path, settings=off))
    assert not any(isinstance(b, models.Attachments) for p in sim.populations.values() for b in p.behaviours)


def _small(device):
    rng = np.random.default_rng(6)
    sim = bs.Simulation(bs.Box.cube(60.0), dt=0.1, seed=3, device=device,
                        mechanics=bs.PhysiCellForce(max_displacement=math.inf))
    a = sim.add_agents("a", rng.uniform(5, 55, (80, 3)), diameter=14.0)
    b = sim.add_agents("b", rng.uniform(5, 55, (80, 3)), diameter=14.0)
    a.behaviours += [models.Attachments(attachment_rate=3.0, detachment_rate=0.3, max_attachments=3),
                     models.Interactions(attack={"b": 0.5})]
    b.behaviours += [models.Attachments(attachment_rate=1.0, max_attachments=2)]
    return sim


def test_attachments_are_the_cpu_s_on_every_backend(device):
    ref = _small("cpu")
    ref.run(4)
    sim = _small(device)
    sim.run(4)
    o, p = np.argsort(ref.agents.uid), np.argsort(sim.agents.uid)
    assert np.array_equal(ref.agents["attached"][o], sim.agents["attached"][p])
    assert (ref.agents["attached"] >= 0).any()
    np.testing.assert_allclose(sim.agents.position[p], ref.agents.position[o], rtol=0, atol=1e-10)
