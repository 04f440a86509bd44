"""Neighbour search against brute force and scipy's cKDTree."""
import numpy as np
import pytest
from scipy.spatial import cKDTree

import biosim as bs
from reference import brute_pairs


def kdtree_pairs(pos, radius, box, periodic):
    if periodic:
        tree = cKDTree(pos - box.lower, boxsize=box.length)
    else:
        tree = cKDTree(pos)
    pairs = tree.query_pairs(radius, output_type="ndarray").astype(np.int64)
    # query_pairs counts distance <= r, the engine < r: identical for random floats
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


@pytest.mark.parametrize("boundary", ["closed", "periodic", "open"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [0, 1, 7, 300, 3000])
def test_pairs_match_kdtree(boundary, seed, n):
    rng = np.random.default_rng(seed)
    box = bs.Box([-5.0, 0.0, 10.0], [15.0, 12.0, 19.0])
    pos = box.lower + rng.random((n, 3)) * box.length
    radius = [1.3, 2.0, 3.7][seed]
    got = bs.neighbour_pairs(pos, radius, box, boundary)
    want = kdtree_pairs(pos, radius, box, boundary == "periodic")
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("boundary", ["closed", "periodic"])
def test_pairs_match_brute_force_in_tiny_boxes(boundary):
    # one or two cells per axis: the periodic stencil must not visit a cell twice
    rng = np.random.default_rng(5)
    for edge, radius in [(2.1, 1.0), (3.0, 1.4), (5.0, 2.4), (4.0, 1.3)]:
        box = bs.Box.cube(edge)
        pos = rng.random((60, 3)) * edge
        got = bs.neighbour_pairs(pos, radius, box, boundary)
        want = brute_pairs(pos, radius, box, boundary == "periodic")
        np.testing.assert_array_equal(got, want)


def test_points_outside_a_closed_box_still_found():
    # clamped cell indices keep close pairs in adjacent cells
    box = bs.Box.cube(10.0)
    rng = np.random.default_rng(3)
    pos = rng.normal(5.0, 6.0, (400, 3))
    got = bs.neighbour_pairs(pos, 1.5, box, "closed")
    want = brute_pairs(pos, 1.5, box, False)
    np.testing.assert_array_equal(got, want)


def test_simulation_neighbours_are_symmetric_and_complete():
    sim = bs.Simulation(bs.Box.cube(30.0), boundary="periodic", seed=1, mechanics=None)
    sim.add_agents("a", bs.init.uniform(500, sim.box, seed=2), diameter=1.0)
    offsets, rows = sim.neighbours(2.5)
    pos, uid = sim.agents.position, sim.agents.uid
    pairs = {(uid[i], uid[j]) for i in range(len(pos)) for j in rows[offsets[i]:offsets[i + 1]]}
    assert all((b, a) in pairs for a, b in pairs)
    want = {(uid[a], uid[b]) for a, b in brute_pairs(pos, 2.5, sim.box, True)}
    assert {(a, b) for a, b in pairs if a < b} == {(min(a, b), max(a, b)) for a, b in want}


def test_grid_sorts_rows_by_cell_and_keeps_uids():
    sim = bs.Simulation(bs.Box.cube(50.0), seed=1, mechanics=None)
    pos = bs.init.uniform(2000, sim.box, seed=4)
    sim.add_agents("a", pos, diameter=1.0, tag=np.arange(2000))
    g = sim._neighbour_grid(2.0)
    t = sim.agents
    cells = (np.floor((t.position - g.box.lower) * g.inv_h).astype(int).clip(0, g.dims - 1)
             @ np.array([1, g.dims[0], g.dims[0] * g.dims[1]]))
    assert np.all(np.diff(cells) >= 0)
    np.testing.assert_array_equal(np.diff(g.cell_start)[cells[np.r_[True, np.diff(cells) > 0]]] > 0, True)
    # rows moved together: uid still matches its position and its column
    np.testing.assert_array_equal(t.position, pos[t.uid])
    np.testing.assert_array_equal(t["tag"], t.uid)


def test_neighbour_radius_is_validated():
    sim = bs.Simulation(bs.Box.cube(10.0), boundary="periodic", mechanics=None)
    sim.add_agents("a", [[1.0, 1.0, 1.0]], diameter=1.0)
    with pytest.raises(ValueError, match="radius"):
        sim.neighbours(6.0)
    with pytest.raises(ValueError, match="radius"):
        sim.neighbours(-1.0)


@pytest.mark.parametrize("radius", [200.0, 4.611686018427388e20, 1e300])
def test_a_radius_far_beyond_the_box_finds_every_pair(radius):
    # the cell window is clipped before it becomes an integer (4.6e20 µm x 0.02 cells/µm overflowed int64)
    sim = bs.Simulation(bs.Box.cube(100.0), mechanics=bs.SoftSphere())
    sim.add_agents("c", bs.init.uniform(50, sim.box, seed=2), diameter=5.0)
    offsets, rows = sim.neighbours(radius)
    assert sim._grid.dims[0] == 2  # x-cells split: the window spans more than one cell
    np.testing.assert_array_equal(np.diff(offsets), 49)


@pytest.mark.parametrize("periodic", [False, True])
def test_in_box_is_the_box_test_on_the_cut_axes_with_periodic_images(periodic):
    """The MPI aura's selection (``in_box``): [lo, hi) on each axis with lo
    < hi, the others not tested, a periodic box's images at +-length; the
    rows past ``n`` untouched."""
    from biosim.kernels.cpu.grid import in_box

    rng = np.random.default_rng(4)
    pos = rng.uniform(-5.0, 105.0, (5000, 3))
    pos[:50, 0] = 30.0  # on the lower face: inside; on the upper face: outside
    pos[50:100, 0] = 70.0
    length = np.array([100.0, 100.0, 100.0])
    for lo, hi in (([30.0, 0.0, 0.0], [70.0, 0.0, 0.0]), ([-10.0, 20.0, 0.0], [25.0, 60.0, 0.0]),
                   ([80.0, -15.0, 5.0], [115.0, 50.0, 40.0])):
        lo, hi = np.array(lo), np.array(hi)
        ref = np.ones(len(pos), bool)
        for a in range(3):
            if lo[a] < hi[a]:
                x = pos[:, a]
                ok = (x >= lo[a]) & (x < hi[a])
                if periodic:
                    ok |= ((x + 100.0 >= lo[a]) & (x + 100.0 < hi[a])) | ((x - 100.0 >= lo[a]) & (x - 100.0 < hi[a]))
                ref &= ok
        out = np.full(len(pos), 7, np.uint8)
        in_box(pos, 4000, lo, hi, length, periodic, out)
        assert np.array_equal(out[:4000].astype(bool), ref[:4000]) and (out[4000:] == 7).all()
        assert 0 < ref[:4000].sum() < 4000


def test_owns_rows_by_a_table_over_the_uids_span_or_by_sorting():
    """Which parents (uids) are a rank's own agents (the first ``n_own``
    rows): the same answer from the one-pass table over the parents' span
    and from the sorted fallback for a span too wide for a table."""
    from types import SimpleNamespace

    from biosim.kernels.cpu.grid import mark_members
    from biosim.parallel import Decomposition

    rng = np.random.default_rng(5)
    for span in (3000, 10**12):  # the table; the fallback
        uids = rng.choice(span, 2000, replace=False).astype(np.int64)
        rng.shuffle(uids)
        own = 1500  # the rest: aura rows, not own
        fake = SimpleNamespace(sim=SimpleNamespace(agents=SimpleNamespace(uid=uids)), n_own=own)
        parents = np.sort(np.concatenate([uids[:40], uids[1600:1620], rng.choice(span, 30).astype(np.int64)]))
        got = Decomposition.owns_rows(fake, parents)
        assert got.dtype == bool and np.array_equal(got, np.isin(parents, uids[:own]))
        assert got.sum() >= 40
        assert Decomposition.owns_rows(fake, parents[:0]).size == 0
    hits = np.zeros(10, np.uint8)
    mark_members(np.array([3, 12, -1, 5, 9], np.int64), 2, hits)  # 12 and -1 outside [2, 12)
    assert hits.tolist() == [0, 1, 0, 1, 0, 0, 0, 1, 0, 0]
