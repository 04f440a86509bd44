"""PhysiCell's motility (issue 17): persistent random walk statistics,
the 2-D circle, chemotactic bias, backends."""
import numpy as np
import pytest

import biosim as bs
from biosim import models


def _walkers(n=2000, dt=1.0, device="cpu", plane=None, **kw):
    sim = bs.Simulation(bs.Box.cube(4000.0, lower=-2000.0), dt=dt, seed=9, mechanics=None, device=device)
    if plane is not None:
        sim.plane = plane
    pts = np.zeros((n, 3))
    if plane is not None:
        pts[:, 2] = plane
    pop = sim.add_agents("c", pts, diameter=5.0)
    pop.behaviours += [models.Motility(**kw)]
    return sim


def test_a_persistent_walk_has_the_persistent_walk_s_mean_squared_displacement():
    v, T, dt = 2.0, 10.0, 1.0
    sim = _walkers(speed=v, persistence_time=T, dt=dt)
    sim.run(60)  # every cell has turned at least once (and forgot its start)
    vec = sim.agents["motility_vector"]
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), v, rtol=1e-12)
    start = sim.agents.position.copy()
    order = np.argsort(sim.agents.uid)
    start = start[order]
    n = 40
    sim.run(n)
    d = sim.agents.position[np.argsort(sim.agents.uid)] - start
    msd = np.mean(np.sum(d * d, axis=1))
    a = 1.0 - dt / T  # the direction's correlation after one step
    want = (v * dt) ** 2 * (n + 2 * sum((n - j) * a ** j for j in range(1, n)))
    assert msd == pytest.approx(want, rel=0.1)
    assert want > 5 * n * (v * dt) ** 2  # far from a walk without persistence


def test_a_2d_walk_stays_in_its_plane():
    sim = _walkers(n=200, speed=1.5, persistence_time=2.0, plane=0.0)
    sim.run(20)
    t = sim.agents
    assert np.all(t.position[:, 2] == 0.0) and np.all(t["motility_vector"][:, 2] == 0.0)
    moved = np.linalg.norm(t["motility_vector"], axis=1) > 0
    np.testing.assert_allclose(np.linalg.norm(t["motility_vector"][moved], axis=1), 1.5, rtol=1e-12)


@pytest.mark.parametrize("direction", [1, -1])
def test_full_bias_moves_every_cell_along_the_gradient(direction):
    sim = bs.Simulation(bs.Box.cube(200.0), dt=0.5, seed=1, mechanics=None)
    sim.add_substance("attractant", diffusion=0.0, spacing=10.0, initial=lambda x, y, z: 0.01 * x)
    pop = sim.add_agents("c", bs.init.uniform(100, bs.Box([50, 50, 50], [150, 150, 150]), seed=2), diameter=5.0)
    pop.behaviours += [models.Motility(speed=2.0, persistence_time=0.1, bias=1.0, substance="attractant",
                                       direction=direction)]
    x0 = sim.agents.position.copy()
    sim.run(4)
    np.testing.assert_allclose(sim.agents["motility_vector"], np.tile([2.0 * direction, 0, 0], (100, 1)),
                               atol=1e-12)
    np.testing.assert_allclose(sim.agents.position - x0, np.tile([4.0 * direction, 0, 0], (100, 1)), atol=1e-12)


def test_motility_is_the_cpu_s_on_every_backend(device):
    ref = _walkers(n=300, speed=1.0, persistence_time=3.0, bias=0.3)
    sim = _walkers(n=300, speed=1.0, persistence_time=3.0, bias=0.3, device=device)
    ref.run(10)
    sim.run(10)
    o0, o1 = np.argsort(ref.agents.uid), np.argsort(sim.agents.uid)
    np.testing.assert_allclose(sim.agents.position[o1], ref.agents.position[o0], rtol=0, atol=1e-12)


def test_bad_motility_parameters_are_refused():
    with pytest.raises(ValueError, match=r"bias must be in \[0, 1\]"):
        models.Motility(1.0, 1.0, bias=1.5)
    with pytest.raises(ValueError, match=r"direction must be 1"):
        models.Motility(1.0, 1.0, direction=0)
    with pytest.raises(ValueError, match=r"persistence_time"):
        models.Motility(1.0, 0.0)
    with pytest.raises(ValueError, match=r"speed"):
        models.Motility(-1.0, 1.0)


def test_rules_drive_the_migration_speed_per_cell():
    sim = bs.Simulation(bs.Box.cube(400.0), dt=1.0, seed=3, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(200, sim.box, seed=1), diameter=5.0)
    sim.agents.add_column("drive", np.float64, 0.0)
    sim.agents["drive"][:] = np.linspace(0.0, 4.0, 200)
    pop.behaviours += [models.Motility(speed=0.5, persistence_time=0.5),
                       models.Rules([["c", "custom:drive", "increases", "migration speed", "3", "1", "2", "0"]])]
    sim.run(2)
    t = sim.agents
    s = t["drive"] ** 2
    np.testing.assert_allclose(np.linalg.norm(t["motility_vector"], axis=1), 0.5 + 2.5 * s / (1 + s), rtol=1e-12)
    with pytest.raises(ValueError, match=r"max_response 2.0 for 'migration bias' must be in \[0, 1\]"):
        pop.behaviours += [models.Rules([["c", "custom:drive", "increases", "migration bias", "2", "1", "2", "0"]])]


def _two_gradients(**kw):
    sim = bs.Simulation(bs.Box.cube(200.0), dt=0.5, seed=1, mechanics=None)
    sim.add_substance("s1", diffusion=0.0, spacing=10.0, initial=lambda x, y, z: 0.1 * x)
    sim.add_substance("s2", diffusion=0.0, spacing=10.0, initial=lambda x, y, z: 0.01 * y)
    pop = sim.add_agents("c", bs.init.uniform(100, bs.Box([50, 50, 50], [150, 150, 150]), seed=2), diameter=5.0)
    pop.behaviours += [models.Motility(speed=2.0, persistence_time=0.1, bias=1.0, **kw)]
    return sim


@pytest.mark.parametrize("normalize_each, want", [(False, [0.1, -0.02, 0.0]), (True, [1.0, -2.0, 0.0])])
def test_advanced_chemotaxis_follows_the_weighted_sum_of_gradients(normalize_each, want):
    sim = _two_gradients(sensitivities={"s1": 1.0, "s2": -2.0}, normalize_each=normalize_each)
    sim.run(2)
    d = np.array(want) / np.linalg.norm(want)
    np.testing.assert_allclose(sim.agents["motility_vector"], np.tile(2.0 * d, (100, 1)), atol=1e-12)


def test_rules_set_the_chemotactic_response_per_cell():
    sim = _two_gradients(sensitivities={"s1": 0.0, "s2": 1.0})
    rules = [["c", "s1", "increases", "chemotactic response to s1", "50", "5", "4", "0"]]
    sim.populations["c"].behaviours += [models.Rules(rules)]
    sim.run(2)
    t = sim.agents
    s1 = t["rule_chemotactic_response_to_s1"]
    x = t.position[:, 0]
    h = (0.1 * x / 5) ** 4
    # the rules ran on the positions before the move: recompute from the sampled values
    assert s1.min() < 50 and s1.max() > 40 and np.all(np.diff(s1[np.argsort(x)]) >= -1e-9)
    vec = t["motility_vector"]
    want = np.stack([0.1 * s1, 0.01 * np.ones_like(s1), 0 * s1], axis=1)
    want = 2.0 * want / np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(vec, want, atol=1e-12)
    assert h.max() > 0


def test_bad_advanced_chemotaxis_is_refused():
    with pytest.raises(ValueError, match="not both"):
        models.Motility(1.0, 1.0, substance="s1", sensitivities={"s1": 1.0})
    with pytest.raises(ValueError, match=r"sensitivities\['s1'\] must be a finite number"):
        models.Motility(1.0, 1.0, sensitivities={"s1": float("nan")})
    with pytest.raises(TypeError, match="non-empty dict"):
        models.Motility(1.0, 1.0, sensitivities={})
    sim = _two_gradients(sensitivities={"s1": 1.0})
    with pytest.raises(ValueError, match=r"nope"):
        sim.populations["c"].behaviours += [models.Motility(1.0, 1.0, sensitivities={"nope": 1.0})]
    rules = [["c", "s2", "increases", "chemotactic response to s2", "5", "5", "4", "0"]]
    with pytest.raises(ValueError, match=r"sensitivity to 's2'.*sensitivities=\{'s2': base value\}"):
        sim.populations["c"].behaviours += [models.Rules(rules)]
