"""The step loop: triggers, boundaries, actions, timings, determinism."""
import textwrap

import numpy as np
import pytest

import biosim as bs
from biosim import models
from threads import assert_bit_identical, runs_with_1_and_2_threads


def test_time_is_step_times_dt_and_triggers_fire_from_step_zero():
    sim = bs.Simulation(bs.Box.cube(10.0), dt=0.3, mechanics=None)
    sim.add_agents("a", [[5.0, 5.0, 5.0]], diameter=1.0)
    seen = []
    sim.add_action(lambda s: seen.append(s.step), every=4)
    sim.run(10)
    assert seen == [0, 4, 8]
    assert sim.step == 10 and sim.time == 10 * 0.3
    sim.run(3)
    assert seen == [0, 4, 8, 12]


def test_closed_box_keeps_agents_inside():
    sim = bs.Simulation(bs.Box.cube(20.0), boundary="closed", seed=1, dt=1.0, mechanics=None)
    pop = sim.add_agents("a", bs.init.uniform(500, sim.box, seed=1), diameter=1.0)
    pop.behaviours += [models.RandomWalk(speed=3.0)]
    sim.run(20)
    assert len(sim.agents) == 500
    assert sim.box.contains(sim.agents.position).all()


def test_periodic_box_wraps_and_open_box_removes():
    sim = bs.Simulation(bs.Box.cube(20.0), boundary="periodic", seed=1, dt=1.0, mechanics=None)
    pop = sim.add_agents("a", bs.init.uniform(500, sim.box, seed=1), diameter=1.0)
    pop.behaviours += [models.RandomWalk(speed=3.0)]
    sim.run(20)
    p = sim.agents.position
    assert len(p) == 500 and np.all((p >= 0) & (p < 20.0))
    sim = bs.Simulation(bs.Box.cube(20.0), boundary="open", seed=1, dt=1.0, mechanics=None)
    pop = sim.add_agents("a", bs.init.uniform(500, sim.box, seed=1), diameter=1.0)
    pop.behaviours += [models.RandomWalk(speed=3.0)]
    sim.run(20)
    assert 0 < len(sim.agents) < 400
    assert sim.box.contains(sim.agents.position).all()


def test_periodic_mechanics_across_the_boundary():
    sim = bs.Simulation(bs.Box.cube(50.0), boundary="periodic", dt=0.1,
                        mechanics=bs.SoftSphere(adhesion=0.0))
    sim.add_agents("a", [[1.0, 25.0, 25.0], [48.0, 25.0, 25.0]], diameter=10.0)
    sim.run(600)
    p = sim.agents.position[np.argsort(sim.agents.uid)]
    gap = (p[0, 0] - p[1, 0]) % 50.0  # pushed apart through the x faces
    assert gap == pytest.approx(10.0, abs=1e-4)


def test_actions_can_edit_columns_and_add_and_remove_agents():
    sim = bs.Simulation(bs.Box.cube(100.0), mechanics=None)
    sim.add_agents("a", bs.init.uniform(10, sim.box, seed=1), diameter=1.0, dose=0.0)

    def dosing(s):
        s.agents["dose"][:] += 1.0
        if s.step == 2:
            s.add_agents("a", [[50.0, 50.0, 50.0]], diameter=2.0, dose=-5.0)
            s.agents.remove(s.agents.uid[:3])
    sim.add_action(dosing, every=1)
    sim.run(4)
    t = sim.agents
    assert len(t) == 8
    assert sorted(t["dose"].tolist()) == [-4.0] + [4.0] * 7


def test_timings_cover_the_phases():
    sim = bs.Simulation(bs.Box.cube(100.0), seed=2)
    pop = sim.add_agents("a", bs.init.ball(200, 20.0, (50, 50, 50), seed=1), diameter=5.0)
    pop.behaviours += [models.RandomWalk(diffusion=0.1)]
    sim.run(5)
    assert set(sim.timings) >= {"neighbours", "behaviours", "mechanics", "boundary", "commit", "output"}
    assert sim.timings["mechanics"] > 0 and sim.timings["neighbours"] > 0


def test_run_refuses_bad_steps_and_writers():
    sim = bs.Simulation(bs.Box.cube(10.0), mechanics=None)
    with pytest.raises(ValueError, match="steps"):
        sim.run(-1)
    with pytest.raises(TypeError, match="steps"):
        sim.run(2.5)
    sim.writers.append("out.h5")
    with pytest.raises(TypeError, match="writers"):
        sim.run(1)


def test_periodic_box_must_hold_twice_the_range():
    sim = bs.Simulation(bs.Box.cube(15.0), boundary="periodic")
    sim.add_agents("a", [[1.0, 1.0, 1.0]], diameter=10.0)
    with pytest.raises(ValueError, match="twice the interaction range"):
        sim.run(1)


def test_grid_covers_the_whole_force_range_while_cells_grow():
    # BioDynaMo's force reaches (d1 + d2)/2 + 3 µm: every such pair must be seen
    mech = bs.BioDynaMoForce()
    sim = bs.Simulation(bs.Box.cube(100.0), seed=1, mechanics=mech)
    sim.add_agents("a", [[40.0, 50.0, 50.0], [52.5, 50.0, 50.0]], diameter=10.0)
    f = mech.forces(sim)
    assert np.abs(f[:, 0]).min() > 0  # gap of 2.5 µm < 3 µm inflation: they interact


DET_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, biosim as bs
    from biosim import models
    sim = bs.Simulation(bs.Box.cube(160.0), boundary=sys.argv[2], dt=0.2, seed=7,
                        mechanics=bs.SoftSphere(repulsion=2.0, adhesion=0.4))
    pop = sim.add_agents("t", bs.init.ball(400, 40.0, (80, 80, 80), seed=3), diameter=9.0)
    pop.behaviours += [models.GrowthDivision(growth_rate=80.0, division_diameter=11.0, volume_ratio=(0.9, 1.1)),
                       models.Apoptosis(rate=0.002), models.RandomWalk(diffusion=0.3)]
    other = sim.add_agents("s", bs.init.uniform(300, sim.box, seed=4), diameter=6.0)
    other.behaviours += [models.RandomWalk(speed=0.5)]
    sim.writers.append(bs.io.HDF5Writer(sys.argv[1], every=10))
    sim.run(60)
""")


@pytest.mark.slow
@pytest.mark.parametrize("boundary", ["closed", "periodic"])
def test_one_and_two_threads_give_bit_identical_runs(tmp_path, boundary):
    a, b = runs_with_1_and_2_threads(tmp_path, DET_SCRIPT, boundary)
    assert len(a) == 7
    assert_bit_identical(a, b)
    assert len(a.agents(-1)["uid"]) > 700  # division happened


def test_a_failing_action_stops_the_run_with_its_name_and_step(tmp_path):
    from biosim.simulation import ActionError

    sim = bs.Simulation(bs.Box.cube(50.0), mechanics=None)
    sim.add_agents("a", [[5.0, 5.0, 5.0]], diameter=1.0)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "a.h5", every=2))

    def dosing(s):
        if s.step == 7:
            raise ZeroDivisionError("dose / 0")
    sim.add_action(dosing)
    with pytest.raises(ActionError, match=r"action .*dosing failed at step 7 .*ZeroDivisionError: dose / 0"):
        sim.run(20)
    run = bs.io.open_run(tmp_path / "a.h5")
    np.testing.assert_array_equal(run.steps, [0, 2, 4, 6])


def growing(seed=2):
    sim = bs.Simulation(bs.Box.cube(200.0), seed=seed, mechanics=bs.BioDynaMoForce())
    cells = sim.add_agents("cells", bs.init.uniform(4, bs.Box((80,) * 3, (120,) * 3), seed=1),
                           diameter=np.array([8.0, 8.5, 9.0, 9.5]))
    cells.behaviours += [models.GrowthDivision(growth_rate=20.0, division_diameter=10.0)]
    return sim


def test_run_until_stops_at_the_first_step_where_the_condition_holds_and_says_why(tmp_path):
    sim = growing()
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "g.h5", every=1))
    seen = []

    def enough(s):
        seen.append((s.step, len(s.agents)))
        return len(s.agents) >= 40

    sim.run(until=enough, max_steps=5000)
    counts = [c for _, c in seen]
    assert counts[-1] >= 40 and max(counts[:-1]) < 40  # the first step where it held, not later
    assert [s for s, _ in seen] == list(range(1, sim.step + 1))  # checked after every step
    assert sim.stop_reason == f"until: the condition held after step {sim.step} (t = {sim.time:g} min)"
    assert bs.io.open_run(tmp_path / "g.h5").steps[-1] == sim.step  # the stopping step was written
    # the same state as a run of that many steps
    other = growing()
    other.run(sim.step)
    np.testing.assert_array_equal(np.sort(other.agents.uid), np.sort(sim.agents.uid))
    assert other.stop_reason.startswith("steps: the")
    # a condition that never holds: max_steps, with a warning naming it
    step = sim.step
    with pytest.warns(RuntimeWarning, match="max_steps: 7 steps ran .* never held; raise max_steps"):
        sim.run(until=lambda s: False, max_steps=7)
    assert sim.step == step + 7 and sim.stop_reason.startswith("max_steps: 7 steps ran")


def test_run_until_refuses_bad_conditions_and_step_counts():
    from biosim.simulation import ActionError

    sim = growing()
    with pytest.raises(TypeError, match="until must be a function of the simulation.*got 3"):
        sim.run(until=3, max_steps=10)
    with pytest.raises(TypeError, match="max_steps is required with until"):
        sim.run(until=lambda s: True)
    with pytest.raises(ValueError, match="max_steps must be an integer >= 1, got 0"):
        sim.run(until=lambda s: True, max_steps=0)
    with pytest.raises(TypeError, match="max_steps"):
        sim.run(until=lambda s: True, max_steps=2.5)
    with pytest.raises(TypeError, match="max_steps goes with until"):
        sim.run(max_steps=3)
    with pytest.raises(TypeError, match="not both"):
        sim.run(3, until=lambda s: True, max_steps=3)
    with pytest.raises(TypeError, match="run needs steps"):
        sim.run()
    assert sim.step == 0
    with pytest.raises(ActionError, match=r"condition .*<lambda> failed after step 1 .*ZeroDivisionError"):
        sim.run(until=lambda s: 1 / 0, max_steps=3)


def test_values_that_look_like_unit_mistakes_warn_naming_the_parameter_value_and_unit(recwarn):
    import warnings

    with pytest.warns(bs.UnitWarning, match=r"box edges of 0.002 x 0.002 x 0.002 µm.*metres"):
        bs.Simulation(bs.Box.cube(0.002))
    sim = bs.Simulation(bs.Box.cube(200.0), dt=0.5, mechanics=None)
    with pytest.warns(bs.UnitWarning, match=r"add_agents\('tiny'\): diameter 1e-05 µm.*metres"):
        sim.add_agents("tiny", [[10.0, 10.0, 10.0]], diameter=1e-5)
    with pytest.warns(bs.UnitWarning, match=r"diameter 20000 µm, over a centimetre.*nanometres"):
        sim.add_agents("huge", [[10.0, 10.0, 10.0]], diameter=2e4)
    cells = sim.add_agents("cells", bs.init.uniform(5, sim.box, seed=1), diameter=10.0)
    cells.behaviours += [models.Apoptosis(rate=3.0, every=2), models.GrowthDivision(10.0, division_diameter=9.0),
                         models.CellCycle(["G1", "M"], [60.0, 0.25]), models.Apoptosis(rate=0.01)]
    recwarn.clear()
    sim.run(1)
    said = [str(w.message) for w in recwarn if w.category is bs.UnitWarning]
    assert len(said) == 3, said  # the sensible rate (0.01 x 0.5) says nothing
    assert any("cells.Apoptosis: rate = 3 per min over its interval of 1 min expects 3 events" in m for m in said)
    assert any("cells.CellCycle: 1 / durations[1] (M) = 4 per min over its interval of 0.5 min expects 2" in m
               for m in said)
    assert any("cells.GrowthDivision: division_diameter = 9 µm is at or below the diameter of every cells agent "
               "(the smallest is 10 µm)" in m for m in said)
    assert all("silence with warnings.filterwarnings" in m for m in said)
    recwarn.clear()
    sim.run(1)  # once per behaviour and parameter
    assert not [w for w in recwarn if w.category is bs.UnitWarning]
    with warnings.catch_warnings():  # silenced as the message says
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=bs.UnitWarning)
        other = bs.Simulation(bs.Box.cube(200.0), dt=0.5, mechanics=None)
        other.add_agents("cells", [[5.0, 5.0, 5.0]], diameter=1e-5).behaviours += [models.Apoptosis(rate=9.0)]
        other.run(1)
