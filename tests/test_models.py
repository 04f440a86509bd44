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


@pytest.mark.parametrize("placement, ratio", [("centre", (0.9, 1.1)), ("centre", 1.0), ("physicell", 1.0)])
def test_growth_declares_the_largest_diameter_and_move_of_its_step(placement, ratio):
    """What an MPI aura is sized by (``max_diameter``, ``max_move``) holds
    for a real step, and is close: cells from 20 to 40 µm, dividing at 32
    (some already past it, which divide without growing)."""
    sim = bs.Simulation(bs.Box.cube(2000.0), dt=1.0, seed=3, mechanics=None)
    pos = bs.init.grid(8, 150.0, origin=(100, 100, 100))
    pop = sim.add_agents("c", pos, diameter=np.linspace(20.0, 40.0, 512))
    b = models.GrowthDivision(growth_rate=3000.0, division_diameter=32.0, volume_ratio=ratio, placement=placement)
    pop.behaviours += [b]
    big, move = b.max_diameter(sim, 1.0), b.max_move(sim, 1.0)
    grown = np.cbrt(32.0 ** 3 + 6 / np.pi * 3000.0)  # the largest a cell below 32 µm can reach
    assert big == pytest.approx(40.0, rel=1e-8) and 32.0 < grown < 40.0
    sim.run(1)
    t = sim.agents
    assert t.diameter.max() <= big
    old = t.uid < 512
    moved = np.linalg.norm(t.position[old] - pos[t.uid[old]], axis=1)
    assert moved.max() <= move and moved.max() > 0.85 * move

    class Swell(bs.Behaviour):
        writes = ("diameter",)

    assert models.RandomWalk(1.0).max_diameter(sim, 1.0) == 0.0  # writes no diameter
    assert Swell().max_diameter(sim, 1.0) is None  # writes them and does not say how large


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


# -- infection (SIR / SIRS) -----------------------------------------------------
def _sir_sim(n, edge, seed, search, rate, recovery=0.0, boundary="periodic", infected=0.2):
    sim = bs.Simulation(bs.Box.cube(edge), boundary=boundary, dt=1.0, seed=seed, mechanics=None)
    pos = bs.init.uniform(n, sim.box, seed=seed)
    pop = sim.add_agents("people", pos, diameter=1.0)
    pop.behaviours += [models.Infection(rate=rate, radius=4.0, recovery=recovery, search=search)]
    rng = np.random.default_rng(seed)
    sim.agents["state"][rng.random(n) < infected] = models.INFECTED
    sim.add_agents("bystanders", bs.init.uniform(50, sim.box, seed=seed + 1), diameter=1.0)  # no behaviour
    return sim, pop


@pytest.mark.parametrize("search", ["pull", "push", "auto"])
@pytest.mark.parametrize("boundary", ["periodic", "closed"])
def test_infection_matches_a_brute_force_reference(search, boundary):
    from reference import min_image

    sim, pop = _sir_sim(800, 50.0, 4, search, rate=0.3, recovery=0.05, boundary=boundary)
    t = sim.agents
    t["state"][t.type == 1] = models.INFECTED  # bystanders infect but are never infected
    inf = pop.behaviours[0]
    for _ in range(3):
        old = t["state"].copy()
        pos, uid, typ, step = t.position.copy(), t.uid.copy(), t.type.copy(), sim.step
        sim.run(1)
        u = bs.rng.uniform(sim.seed, uid, step, inf.stream, 0)
        expect = old.copy()
        sources = pos[old == models.INFECTED]
        for i in np.flatnonzero(typ == pop.code):
            if old[i] == models.SUSCEPTIBLE:
                r = np.linalg.norm(min_image(sources - pos[i], sim.box, boundary == "periodic"), axis=1)
                k = np.count_nonzero(r < 4.0)
                if k and u[i] < 1.0 - np.exp(-0.3) ** k:
                    expect[i] = models.INFECTED
            elif old[i] == models.INFECTED and u[i] < -np.expm1(-0.05):
                expect[i] = models.RECOVERED
        np.testing.assert_array_equal(t["state"][t.rows_of(uid)], expect)
    counts = np.bincount(t["state"][t.type == pop.code], minlength=3)
    assert counts.min() > 0


def test_infection_search_strategies_agree_bit_for_bit():
    states = []
    for search in ("pull", "push", "auto"):
        sim, pop = _sir_sim(3000, 60.0, 7, search, rate=0.05, recovery=0.02, infected=0.02)
        pop.behaviours += [models.RandomWalk(speed=2.0)]
        sim.run(40)
        o = np.argsort(sim.agents.uid)
        states.append(sim.agents["state"][o])
    np.testing.assert_array_equal(states[0], states[1])
    np.testing.assert_array_equal(states[0], states[2])
    assert 0.05 < np.mean(states[0] == models.RECOVERED) < 0.95


def test_recovery_and_immunity_loss_rates():
    sim = bs.Simulation(bs.Box.cube(1000.0), dt=0.5, seed=2, mechanics=None)
    pop = sim.add_agents("p", bs.init.uniform(20000, sim.box, seed=1), diameter=1.0, state=np.int8(1))
    pop.behaviours += [models.Infection(rate=0.0, radius=1.0, recovery=0.01, immunity_loss=0.004)]
    sim.run(40)  # 20 min: I' = -0.01 I + 0 (no reinfection: rate 0); R' = 0.01 I - 0.004 R
    s = np.bincount(sim.agents["state"], minlength=3)
    a, b, t = 0.01, 0.004, 20.0
    # discrete steps: I_k = I_0 q^k exactly in expectation; compare with the continuous solution
    i_exp = 20000 * np.exp(-a * t)
    r_exp = 20000 * a / (a - b) * (np.exp(-b * t) - np.exp(-a * t))
    assert s[1] == pytest.approx(i_exp, abs=4 * np.sqrt(i_exp))
    assert s[2] == pytest.approx(r_exp, abs=4 * np.sqrt(r_exp))


def test_sir_agents_follow_the_sir_equations_when_well_mixed():
    """The mean over 6 seeds of agents that move far between steps (speed
    ~ box / 5 per step, so contacts are re-drawn every step) follows the SIR
    equations with beta = contacts x (1 - exp(-rate dt)) / dt.  Tolerance: 4%
    of N at any time.  The mean of 6 runs has a binomial spread of about
    sqrt(N/4)/sqrt(6) / N = 0.5% of N, and the time step (dt = 1 min against
    an epidemic over ~60 min) biases the discrete map by about 1-2% of N;
    a spatial model that is not well mixed misses by 10% or more
    (examples/epidemiology_sir.py)."""
    from scipy.integrate import solve_ivp

    n, edge, radius, rate, gamma, steps = 2000, 100.0, 5.0, 0.08, 0.02, 150
    runs = []
    for seed in range(1, 7):
        sim = bs.Simulation(bs.Box.cube(edge), boundary="periodic", dt=1.0, seed=seed, mechanics=None)
        pos = bs.init.uniform(n, sim.box, seed=seed)
        pop = sim.add_agents("p", pos[40:], diameter=1.0)
        pop.behaviours += [models.RandomWalk(speed=20.0),
                           models.Infection(rate=rate, radius=radius, recovery=gamma)]
        sim.add_agents("p", pos[:40], diameter=1.0, state=models.INFECTED)
        sim.record_counts(every=5)
        sim.run(steps)
        runs.append([sim.records[f"count_p_{k}"].values for k in ("susceptible", "infected", "recovered")])
    times = sim.records["count_p_infected"].times
    mean = np.mean(runs, axis=0)
    contacts = (n - 1) / edge ** 3 * 4 / 3 * np.pi * radius ** 3
    beta = contacts * -np.expm1(-rate * 1.0) / 1.0

    def f(t, y):
        return [-beta * y[0] * y[1] / n, beta * y[0] * y[1] / n - gamma * y[1], gamma * y[1]]

    ode = solve_ivp(f, (0, times[-1]), [n - 40, 40, 0], t_eval=times, rtol=1e-10).y
    gap = np.abs(mean - ode).max(axis=1) / n
    assert np.all(gap < 0.04), gap
    assert mean[1].max() > 0.3 * n  # a real epidemic


def test_infection_bad_input():
    with pytest.raises(ValueError, match="rate must be >= 0"):
        models.Infection(rate=-0.1, radius=2.0)
    with pytest.raises(ValueError, match="radius must be > 0"):
        models.Infection(rate=0.1, radius=0.0)
    with pytest.raises(ValueError, match="recovery must be >= 0"):
        models.Infection(rate=0.1, radius=1.0, recovery=-1.0)
    with pytest.raises(ValueError, match="search must be one of"):
        models.Infection(rate=0.1, radius=1.0, search="sideways")
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\).*1.5"):
        models.rate_from_probability(1.5, 60.0)
    with pytest.raises(ValueError, match="core column"):
        models.Infection(rate=0.1, radius=1.0, column="diameter")
    sim = bs.Simulation(bs.Box.cube(10.0), boundary="periodic", mechanics=None)
    pop = sim.add_agents("p", [[1.0, 1.0, 1.0]], flag=np.float64(0.0))
    with pytest.raises(ValueError, match="at most half the periodic box"):
        pop.behaviours += [models.Infection(rate=0.1, radius=6.0)]
    with pytest.raises(ValueError, match="column 'flag' exists with dtype float64"):
        pop.behaviours += [models.Infection(rate=0.1, radius=2.0, column="flag")]
    assert models.rate_from_probability(0.285, 60.0) == pytest.approx(-np.log(0.715) / 60.0)


# -- cell cycle -------------------------------------------------------------------
def test_fixed_cell_cycle_divides_on_time_and_daughters_start_the_next_phase():
    sim = bs.Simulation(bs.Box.cube(2000.0), dt=1.0, seed=1, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(100, sim.box, seed=1), diameter=10.0)
    pop.behaviours += [models.CellCycle(("A", "B"), (30.0, 50.0), fixed=True, growth_rate=0.0)]
    sim.record_counts()
    sim.run(170)
    r = sim.records
    n, a = r["count_c"].values, r["count_c_A"].values
    np.testing.assert_array_equal(n[:80], 100)       # one cycle is 30 + 50 = 80 min
    np.testing.assert_array_equal(n[80:160], 200)
    np.testing.assert_array_equal(n[160:], 400)
    np.testing.assert_array_equal(a[1:30], 100)       # in A for exactly 30 min
    np.testing.assert_array_equal(a[30:80], 0)
    np.testing.assert_array_equal(a[80:110], 200)      # both daughters start A, age 0
    t = sim.agents
    assert np.all(t["phase"] == 0) and np.all(t["phase_age"] == 10.0)
    np.testing.assert_allclose(t.diameter, 10.0 / 4 ** (1 / 3), rtol=1e-12)  # no growth: halves twice


def test_stochastic_phase_times_are_exponential():
    sim = bs.Simulation(bs.Box.cube(2000.0), dt=2.0, seed=3, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(20000, sim.box, seed=1), diameter=10.0)
    pop.behaviours += [models.CellCycle(("A", "B"), (50.0, np.inf))]
    sim.record_counts(every=10)
    sim.run(60)
    a = sim.records["count_c_A"]
    expect = 20000 * np.exp(-a.times / 50.0)  # 1 - exp(-dt/50) per interval: exact in expectation
    np.testing.assert_allclose(a.values, expect, atol=4 * np.sqrt(20000 * 0.25))
    assert len(sim.agents) == 20000  # B is an arrest: no division


def test_live_cycle_grows_exponentially_and_ki67_advanced_divides_into_postmitotic():
    sim = bs.Simulation(bs.Box.cube(2000.0), dt=6.0, seed=2, mechanics=None)
    live = sim.add_agents("live", bs.init.uniform(3000, sim.box, seed=1), diameter=10.0)
    live.behaviours += [models.CellCycle.live(growth_rate=0.0)]
    ki = sim.add_agents("ki67", bs.init.uniform(2000, sim.box, seed=2), diameter=10.0)
    ki.behaviours += [models.CellCycle.ki67_advanced()]
    sim.run(200)  # 20 h
    p = -np.expm1(-6.0 * 0.0432 / 60)
    expect = 3000 * (1 + p) ** 200
    assert len(live) == pytest.approx(expect, rel=4 / np.sqrt(3000))
    t = sim.agents
    rows = t.type == ki.code
    assert len(ki) > 2000  # divisions after the 13 h premitotic phase
    phase, age = t["phase"][rows], t["phase_age"][rows]
    counts = np.bincount(phase, minlength=3)
    assert counts.min() > 0
    # fixed phases never outlast their durations; the postmitotic cells are daughters
    assert age[phase == 1].max() < 13 * 60 and age[phase == 2].max() < 2.5 * 60


def test_cell_cycle_presets_and_bad_input():
    fc = models.CellCycle.flow_cytometry()
    assert fc.phases == ["G0G1", "S", "G2M"] and fc.divide_after == "G2M"
    assert fc.mean_cycle_time() == pytest.approx(1 / 0.00324 + 1 / 0.00208 + 1 / 0.00333)
    assert models.CellCycle.ki67_basic().fixed == [False, True]
    assert len(models.CellCycle.flow_cytometry_separated().phases) == 4
    with pytest.raises(ValueError, match=r"durations\[1\] \(S\) must be > 0"):
        models.CellCycle(("G1", "S"), (10.0, -1.0))
    with pytest.raises(ValueError, match="one duration"):
        models.CellCycle(("G1", "S"), (10.0,))
    with pytest.raises(ValueError, match="unique"):
        models.CellCycle(("G1", "G1"), (10.0, 5.0))
    with pytest.raises(ValueError, match="divide_after must be one of the phases G1, S"):
        models.CellCycle(("G1", "S"), (10.0, 5.0), divide_after="M")
    with pytest.raises(ValueError, match="fixed must be"):
        models.CellCycle(("G1", "S"), (10.0, 5.0), fixed=(True,))
    with pytest.raises(ValueError, match="growth_rate must be >= 0"):
        models.CellCycle(("G1",), (10.0,), growth_rate=-1.0)
    sim = bs.Simulation(bs.Box.cube(100.0), mechanics=None)
    pop = sim.add_agents("c", [[5.0, 5.0, 5.0]])
    pop.behaviours += [models.CellCycle(("G1", "S"), (10.0, 5.0))]
    sim.agents["phase"][:] = 7
    with pytest.raises(ValueError, match="holds 7, not a phase index 0..1"):
        sim.run(1)


# -- inheritance at division --------------------------------------------------------
def test_columns_are_copied_reset_or_split_at_division():
    sim = bs.Simulation(bs.Box.cube(400.0), dt=1.0, seed=5, mechanics=None)
    t = sim.agents
    t.add_column("marker", np.float64, -1.0, inherit="default")
    pop = sim.add_agents("c", bs.init.grid(3, 40.0, origin=(100, 100, 100)), diameter=11.9,
                         label=np.int32(7), marker=2.0, content=10.0)
    t.add_column("content", np.float64, 0.0, inherit="split")  # an existing column: sets its policy
    pop.behaviours += [models.GrowthDivision(growth_rate=100.0, division_diameter=12.0)]
    sim.run(1)
    d = t["parent"] >= 0
    assert d.sum() == 27
    np.testing.assert_array_equal(t["label"], 7)                 # copied
    np.testing.assert_array_equal(t["marker"][d], -1.0)          # reset to the default
    np.testing.assert_array_equal(t["marker"][~d], 2.0)
    np.testing.assert_array_equal(t["content"], 5.0)             # split: half each
    assert t["content"].sum() == 27 * 10.0
    with pytest.raises(ValueError, match="inherit of column 'x' must be one of 'copy', 'default', 'split'"):
        t.add_column("x", np.float64, 0.0, inherit="clone")
    with pytest.raises(ValueError, match="must be a float column"):
        t.add_column("y", np.int32, 0, inherit="split")


def test_infection_state_inheritance():
    for inherit, expect in (("copy", models.INFECTED), ("default", models.SUSCEPTIBLE)):
        sim = bs.Simulation(bs.Box.cube(400.0), dt=1.0, seed=5, mechanics=None)
        pop = sim.add_agents("c", bs.init.grid(2, 60.0, origin=(100, 100, 100)), diameter=11.9)
        pop.behaviours += [models.Infection(rate=0.0, radius=5.0, inherit=inherit),
                           models.GrowthDivision(growth_rate=100.0, division_diameter=12.0)]
        sim.agents["state"][:] = models.INFECTED
        sim.run(1)
        t = sim.agents
        d = t["parent"] >= 0
        assert d.sum() == 8
        np.testing.assert_array_equal(t["state"][d], expect)
        np.testing.assert_array_equal(t["state"][~d], models.INFECTED)


DET_NEW_MODELS = '''
import sys
import numpy as np
import biosim as bs
from biosim import models

@bs.agent_rule(writes=("alarm",), columns={"alarm": ("int8", 0)})
def alarm(a, ctx):
    if a.alarm == 0:
        for n in ctx.neighbours(6.0):
            if n.alarm == 1 and ctx.uniform(0) < 0.5:
                a.alarm = 1
                break

def cull(sim):  # an action removing and adding agents
    t = sim.agents
    sim.agents.remove(t.uid[t.type == 1][:3])
    sim.add_agents("cells", [[60.0 + sim.step, 60.0, 60.0]], diameter=8.0)

sim = bs.Simulation(bs.Box.cube(120.0), boundary="periodic", dt=1.0, seed=21,
                    mechanics=bs.SoftSphere(adhesion={("people", "people"): 0.3, ("people", "cells"): 0.05,
                                                      ("cells", "cells"): 0.8}))
people = sim.add_agents("people", bs.init.uniform(3000, sim.box, seed=2), diameter=3.0)
people.behaviours += [models.RandomWalk(speed=2.0),
                      models.Infection(rate=0.05, radius=5.0, recovery=0.02, immunity_loss=0.01),
                      alarm]
sim.agents["state"][:30] = models.INFECTED
sim.agents["alarm"][:30] = 1
cells = sim.add_agents("cells", bs.init.ball(400, 25.0, (60, 60, 60), seed=3), diameter=8.0)
sim.agents.add_column("marker", np.int8, 0)
cells.behaviours += [models.CellCycle.flow_cytometry(growth_rate=40.0),
                     models.StateSwitch(to=1, rate=0.01, column="marker")]
sim.add_action(cull, every=7)
sim.writers.append(bs.io.HDF5Writer(sys.argv[1], every=10))
sim.run(60)
'''


@pytest.mark.slow
def test_new_models_are_bit_identical_for_one_and_two_threads(tmp_path):
    from threads import assert_bit_identical, runs_with_1_and_2_threads

    a, b = runs_with_1_and_2_threads(tmp_path, DET_NEW_MODELS)
    assert_bit_identical(a, b)
    for name in a.records:
        np.testing.assert_array_equal(a.series(name)["value"], b.series(name)["value"])
    last = a.agents(-1)
    people = last["type"] == 0
    assert np.bincount(last["state"][people], minlength=3).min() > 0      # S, I and R all present
    assert 30 < last["alarm"][people].sum() < people.sum()
    cells = last["type"] == 1
    assert cells.sum() > 350 and last["marker"][cells].sum() > 0 and last["phase"][cells].max() > 0
    assert "count_people_infected" in a.records and "count_cells_G2M" in a.records
