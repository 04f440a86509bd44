"""Agent rules: compiled per-agent functions, checked when attached."""
import textwrap

import numpy as np
import pytest

import biosim as bs
from biosim import models
from threads import assert_bit_identical, runs_with_1_and_2_threads


@bs.agent_rule(reads=("diameter",), writes=("age", "draw"),
               columns={"age": ("float64", 0.0), "draw": ("float64", -1.0)})
def ageing(a, ctx):
    a.age += ctx.dt * a.diameter
    a.draw = ctx.uniform(3)


def test_rule_updates_its_population_like_a_reference():
    sim = bs.Simulation(bs.Box.cube(100.0), dt=0.25, seed=9, mechanics=None)
    p = sim.add_agents("p", bs.init.uniform(300, sim.box, seed=1), diameter=np.linspace(1, 3, 300))
    q = sim.add_agents("q", bs.init.uniform(100, sim.box, seed=2), diameter=2.0)
    p.behaviours += [ageing]
    sim.run(4)
    t = sim.agents
    inp = t.type == p.code
    np.testing.assert_allclose(t["age"][inp], 4 * 0.25 * t.diameter[inp], rtol=1e-12)
    np.testing.assert_array_equal(t["age"][~inp], 0.0)
    # the last draw is the counter-based uniform of (seed, uid, step 3, the rule's stream, k=3)
    stream = p.behaviours[0].stream
    np.testing.assert_array_equal(t["draw"][inp], bs.rng.uniform(9, t.uid[inp], 3, stream, 3))
    np.testing.assert_array_equal(t["draw"][~inp], -1.0)
    assert len(q) == 100


@bs.agent_rule(reads=("diameter",))
def split_big(a, ctx):
    if a.diameter > 9.0:
        a.divide()
    if a.uid % 10 == 0:
        a.die()


def test_rules_request_division_and_death():
    sim = bs.Simulation(bs.Box.cube(200.0), seed=2, mechanics=None)
    pop = sim.add_agents("c", bs.init.grid((10, 2, 1), 15.0, origin=(20, 20, 20)),
                         diameter=np.r_[np.full(10, 10.0), np.full(10, 8.0)])
    pop.behaviours += [models.GrowthDivision(growth_rate=0.0, division_diameter=100.0), split_big]
    sim.run(1)
    t = sim.agents
    # uids 0 and 10 die (0 would also have divided: death wins); 1..9 divide
    assert len(t) == 20 - 2 + 9
    assert 0 not in t.uid and 10 not in t.uid
    assert sorted(t["parent"][t["parent"] >= 0].tolist()) == list(range(1, 10))
    np.testing.assert_allclose(np.pi / 6 * (t.diameter ** 3).sum(),
                               np.pi / 6 * (9 * 1000.0 + 9 * 512.0 + 1 * 0), rtol=1e-12)


def test_rules_are_checked_before_they_run():
    # the source is checked when the rule is defined; columns when it is added
    with pytest.raises(ValueError, match="sneaky.*writes a.diameter.*not in writes"):
        @bs.agent_rule(reads=("diameter",))
        def sneaky(a, ctx):
            a.diameter = 3.0
    with pytest.raises(ValueError, match="nosy.*a.energy is not a declared column"):
        @bs.agent_rule(writes=("diameter",))
        def nosy(a, ctx):
            a.diameter = a.energy

    @bs.agent_rule(writes=("mass",))
    def missing(a, ctx):
        a.mass = 1.0

    sim = bs.Simulation(bs.Box.cube(50.0), mechanics=None)
    pop = sim.add_agents("c", [[1.0, 1.0, 1.0]], diameter=2.0, energy=1.0)
    with pytest.raises(ValueError, match="'mass', which does not exist"):
        pop.behaviours += [missing]
    with pytest.raises(ValueError, match="uid.*cannot be written"):
        bs.agent_rule(writes=("uid",))(lambda a, ctx: None)


def test_rule_source_errors():
    with pytest.raises(ValueError, match="leaky.*'a' may only be used"):
        @bs.agent_rule(reads=("diameter",))
        def leaky(a, ctx):
            other = a
            other.diameter = 1.0
    with pytest.raises(ValueError, match="two arguments"):
        @bs.agent_rule(reads=("diameter",))
        def lonely(a):
            pass
    with pytest.raises(ValueError, match="ctx.velocity is not available"):
        @bs.agent_rule()
        def fast(a, ctx):
            if ctx.velocity > 0:
                pass
    with pytest.raises(TypeError, match="tuple of column names"):
        bs.agent_rule(reads="diameter")


def test_numba_failures_name_the_rule():
    @bs.agent_rule(writes=("diameter",))
    def stringy(a, ctx):
        a.diameter = len(str(ctx.step)) + "x"

    sim = bs.Simulation(bs.Box.cube(50.0), mechanics=None)
    pop = sim.add_agents("c", [[1.0, 1.0, 1.0]], diameter=2.0)
    pop.behaviours += [stringy]
    with pytest.raises(TypeError, match="agent rule 'stringy' could not be compiled by numba"):
        sim.run(1)


DET = textwrap.dedent("""
    import sys, biosim as bs

    @bs.agent_rule(reads=("diameter",), writes=("position", "diameter", "age"), columns={"age": ("float64", 0.0)})
    def wander(a, ctx):
        a.position[0] += ctx.normal(0) * ctx.dt
        a.position[1] += ctx.normal(1) * ctx.dt
        a.diameter += 0.05 * ctx.uniform(2)
        a.age += ctx.dt
        if a.diameter > 10.5:
            a.divide()
        if ctx.uniform(3) < 0.002:
            a.die()

    sim = bs.Simulation(bs.Box.cube(150.0), dt=0.2, seed=11)
    pop = sim.add_agents("c", bs.init.ball(400, 40.0, (75, 75, 75), seed=1), diameter=10.2)
    pop.behaviours += [wander]
    sim.writers.append(bs.io.HDF5Writer(sys.argv[1], every=10))
    sim.run(40)
""")


@pytest.mark.slow
def test_rules_are_bit_identical_for_one_and_two_threads(tmp_path):
    a, b = runs_with_1_and_2_threads(tmp_path, DET)
    assert_bit_identical(a, b)
    last = a.agents(-1)["uid"]
    assert last.max() >= 400 and np.setdiff1d(np.arange(400), last).size > 0  # births and deaths


RADIUS = 6.0


@bs.agent_rule(reads=("diameter",), writes=("crowd", "dsum", "pull_x"),
               columns={"crowd": ("int64", 0), "dsum": ("float64", 0.0), "pull_x": ("float64", 0.0)})
def crowding(a, ctx):
    c = 0
    s = 0.0
    px = 0.0
    for n in ctx.neighbours(RADIUS):
        c += 1
        s += n.distance * n.diameter
        px += n.dx / n.distance
    a.crowd = c
    a.dsum = s
    a.pull_x = px


@pytest.mark.parametrize("boundary", ["closed", "periodic"])
def test_neighbour_loops_match_a_brute_force_reference(boundary):
    from reference import min_image

    sim = bs.Simulation(bs.Box.cube(40.0), boundary=boundary, seed=1, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(300, sim.box, seed=3), diameter=np.linspace(1, 2, 300))
    sim.add_agents("other", bs.init.uniform(100, sim.box, seed=4), diameter=1.5)  # seen as neighbours
    pop.behaviours += [crowding]
    sim.run(1)
    t = sim.agents
    pos, diam = t.position, t.diameter
    for i in np.flatnonzero(t.type == pop.code)[:120]:
        d = min_image(pos - pos[i], sim.box, boundary == "periodic")
        r = np.linalg.norm(d, axis=1)
        near = (r < RADIUS) & (np.arange(len(pos)) != i)
        assert t["crowd"][i] == near.sum()
        assert t["dsum"][i] == pytest.approx((r[near] * diam[near]).sum(), rel=1e-12)
        assert t["pull_x"][i] == pytest.approx((d[near, 0] / r[near]).sum(), rel=1e-9, abs=1e-12)
    np.testing.assert_array_equal(t["crowd"][t.type != pop.code], 0)


def test_neighbour_loop_errors():
    with pytest.raises(ValueError, match="may not write another agent"):
        @bs.agent_rule(writes=("diameter",))
        def bully(a, ctx):
            for n in ctx.neighbours(5.0):
                n.diameter = 0.0
    with pytest.raises(ValueError, match="radius.*constant"):
        @bs.agent_rule(reads=("diameter",))
        def vague(a, ctx):
            for n in ctx.neighbours(a.diameter):
                pass
    with pytest.raises(ValueError, match="nested"):
        @bs.agent_rule()
        def deep(a, ctx):
            for n in ctx.neighbours(5.0):
                for m in ctx.neighbours(5.0):
                    pass


@bs.agent_rule(writes=("c", "gx", "gy"), columns={"c": ("float64", 0.0), "gx": ("float64", 0.0),
                                                  "gy": ("float64", 0.0)})
def sense_and_signal(a, ctx):
    a.c = ctx.concentration("o2")
    g = ctx.gradient("o2")
    a.gx = g[0]
    a.gy = g[1]
    if a.c > 10.0:
        ctx.secrete("signal", 2.0)


def test_rules_sample_and_secrete_substances():
    sim = bs.Simulation(bs.Box.cube(100.0), dt=0.5, seed=1, mechanics=None)
    sim.add_substance("o2", diffusion=0.0, spacing=10.0, initial=lambda x, y, z: 0.3 * x - 0.1 * y + 1.0)
    signal = sim.add_substance("signal", diffusion=25.0, spacing=10.0)
    pop = sim.add_agents("c", bs.init.uniform(80, bs.Box([6, 6, 6], [94, 94, 94]), seed=1), diameter=5.0)
    pop.behaviours += [sense_and_signal]
    sim.run(4)
    t = sim.agents
    np.testing.assert_allclose(t["c"], 0.3 * t.position[:, 0] - 0.1 * t.position[:, 1] + 1.0, rtol=1e-12)
    np.testing.assert_allclose(t["gx"], 0.3, rtol=1e-12)
    np.testing.assert_allclose(t["gy"], -0.1, rtol=1e-12)
    secreting = np.count_nonzero(t["c"] > 10.0)
    assert 0 < secreting < 80
    assert signal.total() == pytest.approx(2.0 * 0.5 * 4 * secreting, rel=1e-12)


def test_rule_substance_errors():
    with pytest.raises(ValueError, match="string literal"):
        @bs.agent_rule()
        def indirect(a, ctx):
            name = "o2"
            if ctx.concentration(name) > 1.0:
                a.die()
    sim = bs.Simulation(bs.Box.cube(100.0), mechanics=None)
    sim.add_substance("o2", diffusion=1.0, spacing=10.0)
    pop = sim.add_agents("c", [[5.0, 5.0, 5.0]])

    @bs.agent_rule()
    def wrong(a, ctx):
        if ctx.concentration("oxygen") > 1.0:
            a.die()

    with pytest.raises(ValueError, match="unknown substance 'oxygen'; substances are o2"):
        pop.behaviours += [wrong]


@bs.agent_rule(writes=("sick",), columns={"sick": ("int8", 0)})
def contagion(a, ctx):
    if a.sick == 0:
        for n in ctx.neighbours(RADIUS):
            if n.sick == 1:
                a.sick = 1
                break


@pytest.mark.parametrize("boundary", ["closed", "periodic"])
def test_neighbours_are_seen_as_they_were_at_the_start_of_the_interval(boundary):
    """A rule that writes a column it reads from neighbours sees the values of
    the interval's start (synchronous update), whatever the visiting order."""
    from reference import min_image

    sim = bs.Simulation(bs.Box.cube(60.0), boundary=boundary, seed=1, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(600, sim.box, seed=5), diameter=1.0)
    pop.behaviours += [contagion]
    t = sim.agents
    t["sick"][:10] = 1
    for _ in range(3):
        before = t["sick"].copy()
        pos = t.position.copy()
        uid = t.uid.copy()
        sim.run(1)
        expect = before.copy()
        for i in np.flatnonzero(before == 0):
            r = np.linalg.norm(min_image(pos[before == 1] - pos[i], sim.box, boundary == "periodic"), axis=1)
            expect[i] = 1 if np.any(r < RADIUS) else 0
        got = t["sick"][t.rows_of(uid)]
        np.testing.assert_array_equal(got, expect)
    assert 10 < t["sick"].sum() < 600


@bs.agent_rule(writes=("first", "count"), columns={"first": ("int64", -1), "count": ("int64", 0)})
def first_neighbour(a, ctx):
    c = 0
    for n in ctx.neighbours(RADIUS):
        c += 1
        k = 0
        while k < 3:  # a break in an inner loop stays there
            k += 1
            if k == 2:
                break
        if k == 2:
            a.first = n.uid
            break
    a.count = c


def test_break_leaves_the_neighbour_loop():
    sim = bs.Simulation(bs.Box.cube(40.0), seed=1, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(300, sim.box, seed=3), diameter=1.0)
    pop.behaviours += [first_neighbour, crowding]
    sim.run(1)
    t = sim.agents
    has = t["crowd"] > 0
    assert has.any() and (~has).any()
    np.testing.assert_array_equal(t["count"], np.minimum(t["crowd"], 1))
    np.testing.assert_array_equal(t["first"][~has], -1)
    rows = np.flatnonzero(has)
    other = t.rows_of(t["first"][rows])
    assert np.all(np.linalg.norm(t.position[other] - t.position[rows], axis=1) < RADIUS)


def test_a_rule_that_returns_a_value_is_refused():
    with pytest.raises(ValueError, match=r"agent rule 'grade', line \d+: a rule returns nothing.*'return a.size \* 2'"):
        @bs.agent_rule(reads=("size",))
        def grade(a, ctx):
            if a.size > 1.0:
                return
            return a.size * 2

    @bs.agent_rule(writes=("diameter",))
    def early_exit(a, ctx):
        if a.diameter > 5.0:
            return
        a.diameter = 5.0

    sim = bs.Simulation(bs.Box.cube(50.0), mechanics=None)
    pop = sim.add_agents("c", [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], diameter=[2.0, 8.0])
    pop.behaviours += [early_exit]
    sim.run(1)
    np.testing.assert_array_equal(sim.agents.diameter, [5.0, 8.0])
