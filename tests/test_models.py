"""Built-in behaviours against analytic expectations."""
import numpy as np
import pytest

import biosim as bs
from biosim import models


def volume(d):
    return np.pi / 6 * d ** 3


def test_growth_adds_volume_at_the_given_rate():
    sim = bs.Simulation(bs.Box.cube(200.0), dt=0.5, mechanics=None)
    pop = sim.add_agents("c", bs.init.grid(3, 30.0, origin=(50, 50, 50)), diameter=8.0)
    pop.behaviours += [models.GrowthDivision(growth_rate=20.0, division_diameter=100.0)]
    sim.run(10)
    np.testing.assert_allclose(volume(sim.agents.diameter), volume(8.0) + 20.0 * 0.5 * 10, rtol=1e-12)


def test_every_k_applies_growth_over_its_interval():
    sim = bs.Simulation(bs.Box.cube(200.0), dt=0.5, mechanics=None)
    pop = sim.add_agents("c", [[100.0, 100.0, 100.0]], diameter=8.0)
    pop.behaviours.append(models.GrowthDivision(growth_rate=20.0, division_diameter=100.0, every=4))
    sim.run(9)  # runs on steps 0, 4, 8
    assert volume(sim.agents.diameter[0]) == pytest.approx(volume(8.0) + 3 * 20.0 * 2.0, rel=1e-12)


@pytest.mark.parametrize("ratio", [1.0, (0.9, 1.1)])
def test_division_conserves_volume_and_centre_and_records_parent(ratio):
    sim = bs.Simulation(bs.Box.cube(400.0), dt=1.0, seed=5, mechanics=None)
    pos = bs.init.grid(4, 40.0, origin=(100, 100, 100))
    pop = sim.add_agents("c", pos, diameter=np.linspace(10.0, 11.9, 64))
    pop.behaviours += [models.GrowthDivision(growth_rate=200.0, division_diameter=12.0, volume_ratio=ratio)]
    v_before = volume(sim.agents.diameter).sum()
    sim.run(1)
    t = sim.agents
    added = 200.0 * 1.0 * 64
    assert volume(t.diameter).sum() == pytest.approx(v_before + added, rel=1e-12)
    daughters = t["parent"] >= 0
    assert daughters.sum() > 0 and len(t) == 64 + daughters.sum()
    mothers = t.rows_of(t["parent"][daughters])
    dm, dd = t.diameter[mothers], t.diameter[daughters]
    vm, vd = volume(dm), volume(dd)
    if ratio == 1.0:
        np.testing.assert_allclose(vd, vm, rtol=1e-12)
    else:
        q = vd / vm
        assert np.all((q >= 0.9 - 1e-12) & (q <= 1.1 + 1e-12)) and q.std() > 0
    # centre of mass (volume-weighted) at the mother's old position, separation = old radius
    com = (vm[:, None] * t.position[mothers] + vd[:, None] * t.position[daughters]) / (vm + vd)[:, None]
    np.testing.assert_allclose(com, pos[t.uid[mothers]], atol=1e-9)
    sep = np.linalg.norm(t.position[mothers] - t.position[daughters], axis=1)
    np.testing.assert_allclose(sep, 0.5 * np.cbrt(6 / np.pi * (vm + vd)), rtol=1e-12)
    assert np.all(t.uid[daughters] >= 64)
    np.testing.assert_array_equal(t["parent"][~daughters], -1)


def test_division_axes_are_isotropic():
    sim = bs.Simulation(bs.Box.cube(2000.0), seed=11, mechanics=None)
    pop = sim.add_agents("c", bs.init.grid(12, 100.0, origin=(100, 100, 100)), diameter=12.0)
    pop.behaviours += [models.GrowthDivision(growth_rate=10.0, division_diameter=12.0)]
    sim.run(1)
    t = sim.agents
    d = t["parent"] >= 0
    axis = t.position[d] - t.position[t.rows_of(t["parent"][d])]
    axis /= np.linalg.norm(axis, axis=1)[:, None]
    assert np.abs(axis.mean(axis=0)).max() < 0.1
    np.testing.assert_allclose((axis ** 2).mean(axis=0), 1 / 3, atol=0.06)


def test_apoptosis_rate():
    sim = bs.Simulation(bs.Box.cube(1000.0), dt=0.5, seed=3, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(20000, sim.box, seed=1), diameter=5.0)
    pop.behaviours += [models.Apoptosis(rate=0.02)]
    sim.run(20)
    expected = 20000 * np.exp(-0.02 * 0.5 * 20)
    assert len(sim.agents) == pytest.approx(expected, abs=4 * np.sqrt(expected))


def test_apoptosis_only_touches_its_population():
    sim = bs.Simulation(bs.Box.cube(100.0), seed=3, mechanics=None)
    a = sim.add_agents("a", bs.init.uniform(200, sim.box, seed=1), diameter=1.0)
    sim.add_agents("b", bs.init.uniform(200, sim.box, seed=2), diameter=1.0)
    a.behaviours += [models.Apoptosis(rate=100.0)]
    sim.run(1)
    assert len(sim.populations["a"]) == 0 and len(sim.populations["b"]) == 200


def test_brownian_motion_msd():
    D, dt, steps = 3.0, 0.2, 50
    sim = bs.Simulation(bs.Box.cube(1e4), boundary="periodic", dt=dt, seed=2, mechanics=None)
    pop = sim.add_agents("c", np.full((5000, 3), 5000.0), diameter=1.0)
    pop.behaviours += [models.RandomWalk(diffusion=D)]
    sim.run(steps)
    msd = ((sim.agents.position - 5000.0) ** 2).sum(axis=1).mean()
    expected = 6 * D * dt * steps
    assert msd == pytest.approx(expected, rel=0.05)


def test_fixed_speed_walk_moves_speed_dt_each_step():
    sim = bs.Simulation(bs.Box.cube(1000.0), dt=0.5, seed=2, mechanics=None)
    pop = sim.add_agents("c", np.full((1000, 3), 500.0), diameter=1.0)
    pop.behaviours += [models.RandomWalk(speed=4.0)]
    sim.run(1)
    step = np.linalg.norm(sim.agents.position - 500.0, axis=1)
    np.testing.assert_allclose(step, 2.0, rtol=1e-12)
    assert np.abs((sim.agents.position - 500.0).mean(axis=0)).max() < 0.15


@pytest.mark.parametrize("make,match", [
    (lambda: models.GrowthDivision(growth_rate=-1.0, division_diameter=10.0), "growth_rate"),
    (lambda: models.GrowthDivision(growth_rate=1.0, division_diameter=0.0), "division_diameter"),
    (lambda: models.GrowthDivision(1.0, 10.0, volume_ratio=(1.2, 0.8)), "volume_ratio"),
    (lambda: models.GrowthDivision(1.0, 10.0, every=0), "every"),
    (lambda: models.Apoptosis(rate=-0.1), "rate"),
    (lambda: models.RandomWalk(), "diffusion"),
    (lambda: models.RandomWalk(diffusion=1.0, speed=1.0), "speed"),
    (lambda: models.RandomWalk(speed=float("inf")), "speed"),
])
def test_bad_behaviour_parameters(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_behaviour_list_checks_items():
    sim = bs.Simulation(bs.Box.cube(100.0), mechanics=None)
    pop = sim.add_agents("c", [[1.0, 1.0, 1.0]])
    with pytest.raises(TypeError, match="Behaviour"):
        pop.behaviours += ["grow"]
    b = models.Apoptosis(0.1)
    pop.behaviours.append(b)
    other = sim.add_agents("d", [[2.0, 2.0, 2.0]])
    with pytest.raises(ValueError, match="already attached"):
        other.behaviours.append(b)


def test_state_switch_into_another_population_at_its_rate():
    sim = bs.Simulation(bs.Box.cube(1000.0), dt=0.5, seed=4, mechanics=None)
    stem = sim.add_agents("stem", bs.init.uniform(20000, sim.box, seed=1), diameter=5.0)
    diff = sim.add_agents("differentiated", np.zeros((0, 3)))
    stem.behaviours += [models.StateSwitch("differentiated", rate=0.01)]
    diff.behaviours += [models.RandomWalk(speed=1.0)]
    sim.run(20)  # 10 min
    expected = 20000 * (1 - np.exp(-0.01 * 10.0))
    assert len(diff) == pytest.approx(expected, abs=4 * np.sqrt(expected))
    assert len(stem) + len(diff) == 20000


def test_state_switch_of_a_column_gated_by_a_substance():
    sim = bs.Simulation(bs.Box.cube(100.0), dt=1.0, seed=4, mechanics=None)
    s = sim.add_substance("signal", diffusion=0.0, spacing=10.0, initial=lambda x, y, z: x / 100.0)
    pop = sim.add_agents("c", bs.init.uniform(2000, sim.box, seed=2), diameter=2.0, state=np.int8(0))
    pop.behaviours += [models.StateSwitch(1, rate=100.0, column="state", substance=s, above=0.5)]
    sim.run(1)
    x, state = sim.agents.position[:, 0], sim.agents["state"]
    assert np.all(state[x < 45.0] == 0) and np.all(state[x > 55.0] == 1)


def test_state_switch_bad_input():
    sim = bs.Simulation(bs.Box.cube(100.0), mechanics=None)
    pop = sim.add_agents("c", [[1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="unknown population 'neuron'; populations are c"):
        pop.behaviours += [models.StateSwitch("neuron", rate=0.1)]
    with pytest.raises(ValueError, match="rate"):
        models.StateSwitch("c", rate=-1.0)
    with pytest.raises(ValueError, match="need a substance"):
        models.StateSwitch("c", rate=1.0, below=0.3)
    with pytest.raises(ValueError, match="column 'mood' does not exist"):
        pop.behaviours += [models.StateSwitch(1, rate=0.1, column="mood")]
