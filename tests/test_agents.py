"""AgentTable and add_agents: columns, capacity, births and deaths, bad input."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import biosim as bs


def make_sim(**kw):
    kw.setdefault("mechanics", None)
    return bs.Simulation(bs.Box.cube(100.0), **kw)


def test_add_agents_scalars_and_arrays():
    sim = make_sim()
    pop = sim.add_agents("tumour", bs.init.uniform(5, sim.box, seed=1), diameter=[1, 2, 3, 4, 5],
                         age=0.0, clone=np.arange(5, dtype=np.int16), alive=True)
    t = sim.agents
    assert len(t) == 5 and len(pop) == 5
    np.testing.assert_array_equal(t.diameter, [1, 2, 3, 4, 5])
    assert t["age"].dtype == np.float64 and t["clone"].dtype == np.int16 and t["alive"].dtype == bool
    np.testing.assert_array_equal(t.uid, np.arange(5))
    np.testing.assert_array_equal(t.type, 0)
    other = sim.add_agents("stroma", [[1.0, 2.0, 3.0]], diameter=2.0)
    assert other.code == 1 and len(sim.agents) == 6
    assert sim.agents["age"][-1] == 0.0  # default for a population that did not give it
    again = sim.add_agents("tumour", [[5.0, 5.0, 5.0]], diameter=2.0, age=3.5)
    assert again is pop and len(pop) == 6


def test_capacity_grows_geometrically_and_uids_are_never_reused():
    sim = make_sim()
    caps = set()
    for k in range(40):
        sim.add_agents("a", bs.init.uniform(7, sim.box, seed=k), diameter=1.0)
        caps.add(sim.agents.capacity)
    assert len(caps) < 15  # geometric, not one allocation per call
    uids = sim.agents.uid.copy()
    sim.agents.remove(uids[::2])
    assert len(sim.agents) == 140
    sim.add_agents("a", bs.init.uniform(3, sim.box, seed=99), diameter=1.0)
    new = sim.agents.uid[-3:]
    assert new.min() > uids.max()


def test_user_column_add_and_clash():
    sim = make_sim()
    sim.add_agents("a", bs.init.uniform(4, sim.box), diameter=1.0)
    sim.agents.add_column("energy", np.float32, 2.5)
    assert sim.agents["energy"].dtype == np.float32
    np.testing.assert_array_equal(sim.agents["energy"], 2.5)
    sim.agents.add_column("energy", np.float32, 2.5)  # idempotent
    with pytest.raises(ValueError, match="energy"):
        sim.agents.add_column("energy", np.int64)
    with pytest.raises(ValueError, match="core column"):
        sim.agents.add_column("position", np.float64)
    with pytest.raises(ValueError, match="column name"):
        sim.agents.add_column("two words", np.float64)
    with pytest.raises(KeyError, match="energy"):
        sim.agents["nope"]
    sim.agents["energy"][:] = 7
    sim.add_agents("a", bs.init.uniform(2, sim.box), diameter=1.0)
    np.testing.assert_array_equal(sim.agents["energy"], [7, 7, 7, 7, 2.5, 2.5])


def test_births_commit_in_parent_uid_order():
    sim = make_sim()
    sim.add_agents("a", bs.init.uniform(5, sim.box, seed=2), diameter=1.0, tag=np.arange(5) * 10)
    t = sim.agents
    t._in_step = True
    rows = t.rows_of([4, 1])
    t.request_births(t.uid[rows], t.take(rows))
    t.request_births([1], t.take(t.rows_of([1])))
    t.request_deaths([2])
    t.commit()
    t._in_step = False
    assert len(t) == 7
    # daughters: parent 1 (first request), parent 1 (second request), parent 4
    np.testing.assert_array_equal(t.uid[-3:], [5, 6, 7])
    np.testing.assert_array_equal(t["tag"][-3:], [10, 10, 40])
    assert 2 not in t.uid


def test_remove_unknown_uid_is_an_error():
    sim = make_sim()
    sim.add_agents("a", bs.init.uniform(3, sim.box), diameter=1.0)
    with pytest.raises(KeyError, match="17"):
        sim.agents.remove([17])


@pytest.mark.parametrize("position,match", [
    (np.full((2, 3), np.nan), "finite"),
    ([[1.0, 2.0, np.inf]], "finite"),
    (np.zeros((3, 2)), r"shape \(n, 3\)"),
    (np.zeros((2, 3, 1)), r"shape \(n, 3\)"),
    ([[50.0, 50.0, 150.0]], "outside"),
    ([[-0.1, 50.0, 50.0]], "outside"),
    ("here", "position"),
])
def test_bad_positions_are_refused(position, match):
    sim = make_sim()
    with pytest.raises((ValueError, TypeError), match=match):
        sim.add_agents("a", position, diameter=1.0)
    assert len(sim.agents) == 0 and not sim.populations


@pytest.mark.parametrize("diameter,match", [
    (0.0, "diameter"), (-1.0, "diameter"), (np.nan, "diameter"), ([1.0, 2.0, 3.0], "diameter"),
])
def test_bad_diameters_are_refused(diameter, match):
    sim = make_sim()
    with pytest.raises(ValueError, match=match):
        sim.add_agents("a", [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], diameter=diameter)


def test_bad_columns_are_refused():
    sim = make_sim()
    pos = [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
    with pytest.raises(ValueError, match="uid"):
        sim.add_agents("a", pos, uid=[5, 6])
    with pytest.raises(ValueError, match="type"):
        sim.add_agents("a", pos, type=1)
    with pytest.raises(ValueError, match="'age'.*shape"):
        sim.add_agents("a", pos, age=[1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="'label'"):
        sim.add_agents("a", pos, label=["x", "y"])
    sim.add_agents("a", pos, count=np.array([1, 2], dtype=np.int32))
    with pytest.raises(TypeError, match="'count'.*int32"):
        sim.add_agents("a", pos, count=[1.5, 2.5])
    with pytest.raises(TypeError, match="name"):
        sim.add_agents("", pos)


def test_periodic_box_wraps_new_agents():
    sim = make_sim(boundary="periodic")
    sim.add_agents("a", [[105.0, -5.0, 50.0]], diameter=1.0)
    np.testing.assert_allclose(sim.agents.position, [[5.0, 95.0, 50.0]])


@given(n=st.integers(0, 50), seed=st.integers(0, 2**32 - 1))
def test_placements_stay_where_they_should(n, seed):
    b = bs.init.ball(n, 10.0, (1.0, 2.0, 3.0), seed=seed)
    assert b.shape == (n, 3) and np.all(np.linalg.norm(b - (1, 2, 3), axis=1) <= 10.0 + 1e-12)
    s = bs.init.sphere_surface(n, 4.0, seed=seed)
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), 4.0)
    u = bs.init.uniform(n, bs.Box([0, 0, 0], [1, 2, 3]), seed=seed)
    assert np.all((u >= 0) & (u <= [1, 2, 3]))


def test_grid_placement():
    g = bs.init.grid((2, 3, 4), 5.0, origin=(1.0, 1.0, 1.0))
    assert g.shape == (24, 3)
    np.testing.assert_array_equal(g[:3], [[1, 1, 1], [6, 1, 1], [1, 6, 1]])
    np.testing.assert_array_equal(g.max(axis=0), [6, 11, 16])
    with pytest.raises(ValueError, match="spacing"):
        bs.init.grid(3, 0.0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(dt=0.0), "dt"), (dict(dt=-1.0), "dt"), (dict(dt=float("nan")), "dt"),
    (dict(boundary="reflecting"), "boundary"), (dict(seed=-3), "seed"), (dict(seed=1.5), "seed"),
])
def test_bad_simulation_parameters(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bs.Simulation(bs.Box.cube(10.0), **kwargs)


def test_bad_boxes():
    with pytest.raises(ValueError, match="upper"):
        bs.Box([0, 0, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="edge"):
        bs.Box.cube(-1.0)
    with pytest.raises(TypeError, match="box"):
        bs.Simulation(400.0)


def test_population_agents_read_and_write_their_own_rows():
    sim = make_sim()
    a = sim.add_agents("a", bs.init.uniform(5, sim.box, seed=1), diameter=1.0, age=0.0)
    b = sim.add_agents("b", bs.init.uniform(3, sim.box, seed=2), diameter=2.0, age=0.0)
    a.agents["age"] += 1.5
    b.agents.diameter = [3.0, 4.0, 5.0]
    assert len(a.agents) == 5 and len(b.agents) == 3
    np.testing.assert_array_equal(a.agents["age"], 1.5)
    np.testing.assert_array_equal(b.agents["age"], 0.0)
    np.testing.assert_array_equal(b.agents.diameter, [3.0, 4.0, 5.0])
    np.testing.assert_array_equal(a.agents.diameter, 1.0)
    assert set(a.agents.uid.tolist()) == {0, 1, 2, 3, 4}
    with pytest.raises(ValueError):
        b.agents["age"] = [1.0, 2.0]  # wrong length
    with pytest.raises(KeyError, match="nope"):
        a.agents["nope"]


def test_a_typo_is_not_a_new_column():
    sim = bs.Simulation(bs.Box.cube(100.0), mechanics=None)
    with pytest.raises(TypeError, match="diamter=.*did you mean 'diameter'"):
        sim.add_agents("t", [[1.0, 2.0, 3.0]], diamter=12.0)
    assert len(sim.agents) == 0 and "diamter" not in sim.agents
    sim.add_agents("t", [[1.0, 2.0, 3.0]], energy=2.0)  # a new column, far from every name
    with pytest.raises(TypeError, match="'energy'"):
        sim.add_agents("t", [[1.0, 2.0, 3.0]], enrgy=1.0)
    with pytest.raises(TypeError, match="'position'"):
        sim.add_agents("t", [[1.0, 2.0, 3.0]], positon=1.0)
    sim.agents.add_column("energies", np.float64, 0.0)  # deliberately close: declared first, then accepted
    sim.add_agents("t", [[1.0, 2.0, 3.0]], energies=3.0)
    assert sorted(sim.agents["energies"]) == [0.0, 3.0] and len(sim.agents) == 2


def _ten_tagged_agents():
    """A table of 10 agents (uids 0-9), each with its own position, diameter
    and a "tag" column of 100 + its row."""
    sim = bs.Simulation(bs.Box.cube(100.0), seed=1)
    sim.add_agents("a", np.arange(30.0).reshape(10, 3) + 1.0, diameter=np.arange(1.0, 11.0))
    t = sim.agents
    t.add_column("tag", np.int32, 0)
    t["tag"][:] = 100 + np.arange(10)
    return t


@pytest.mark.parametrize("head,tail", [(0, 0), (0, 3), (4, 0), (2, 3), (3, 6), (5, 5), (9, 1)])
def test_keep_ends_is_keep_of_a_prefix_and_a_suffix(head, tail):
    """``keep_ends`` (an MPI rank's step end: own rows, then newborns, the
    aura between dropped) leaves what ``keep`` of those rows leaves, also
    when the kept suffix overlaps the place it moves to."""
    tables = []
    for method in ("keep", "keep_ends"):
        t = _ten_tagged_agents()
        layout = t.layout
        if method == "keep":
            t.keep(np.concatenate([np.arange(head), np.arange(10 - tail, 10)]))
        else:
            t.keep_ends(head, tail)
        assert len(t) == head + tail and (t.layout > layout or head + tail == 10)
        tables.append({c: t[c].copy() for c in ("uid", "position", "diameter", "tag")})
    for c in tables[0]:
        assert np.array_equal(tables[0][c], tables[1][c]), c
    assert list(tables[1]["uid"]) == list(range(head)) + list(range(10 - tail, 10))


@pytest.mark.parametrize("gone", [[], [0], [9], [2, 5, 6], [0, 1, 8, 9], list(range(10)), [3, 7, 8, 9]])
def test_keep_and_drop_leave_exactly_the_other_rows_whole(gone):
    """``keep`` compacts in order, ``drop`` fills the holes from the end
    (an MPI rank's emigrants): both leave every other row with all its
    columns, and nothing of the dropped ones."""
    for method in ("keep", "drop"):
        t = _ten_tagged_agents()
        before = {int(u): (tuple(p), d, g) for u, p, d, g in zip(t.uid, t.position, t.diameter, t["tag"])}
        stay = np.setdiff1d(np.arange(10), gone)
        layout = t.layout
        if method == "keep":
            t.keep(stay)
            assert list(t.uid) == [list(before)[i] for i in stay]  # in order
        else:
            t.drop(np.array(gone, np.int64))
        assert len(t) == stay.size and sorted(t.uid) == [list(before)[i] for i in stay]
        for u, p, d, g in zip(t.uid, t.position, t.diameter, t["tag"]):
            assert before[int(u)] == (tuple(p), d, g)
        assert t.layout > layout or len(gone) == 0


def test_a_derived_column_is_computed_on_read_and_refused_on_write(tmp_path):
    """AgentTable.derive: no memory, a fresh read-only array from the stored
    columns on each read, clear errors on writes and redeclarations,
    snapshots store it, and restoring from a snapshot ignores it."""
    sim = make_sim()
    sim.add_agents("a", [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], diameter=[2.0, 3.0])
    t = sim.agents
    t.derive("twice", lambda table: 2.0 * table.diameter, np.float64, (), "diameter: 2 diameter")
    assert "twice" in t and "twice" not in t.columns and t.derived == ("twice",)
    np.testing.assert_array_equal(t["twice"], [4.0, 6.0])
    t.diameter[0] = 5.0
    np.testing.assert_array_equal(t["twice"], [10.0, 6.0])  # follows the stored column
    with pytest.raises(ValueError, match="read-only"):
        t["twice"][0] = 1.0
    with pytest.raises(ValueError, match="'twice' is derived from diameter"):
        t["twice"] = 1.0
    with pytest.raises(ValueError, match="'twice' is derived"):
        t.add_column("twice", np.float64)
    with pytest.raises(ValueError, match="'twice' is derived"):
        sim.add_agents("a", [[1.0, 1.0, 1.0]], twice=3.0)
    with pytest.raises(ValueError, match="'diameter' is stored"):
        t.derive("diameter", lambda table: table.diameter, np.float64)
    with pytest.raises(KeyError, match="twice"):
        t["nope"]
    path = tmp_path / "run.h5"
    sim.writers.append(bs.io.HDF5Writer(str(path), every=1))
    sim.run(1)
    run = bs.io.open_run(str(path))
    np.testing.assert_array_equal(run.agents(-1)["twice"], t["twice"])
    t.restore({"uid": np.array([7]), "type": np.array([0], np.int32), "position": np.zeros((1, 3)),
               "diameter": np.array([1.5]), "twice": np.array([99.0])}, 8)
    np.testing.assert_array_equal(t["twice"], [3.0])
