"""Forces against an O(N^2) reference, equilibria, Newton's third law."""
import numpy as np
import pytest

import biosim as bs
from reference import LAWS, naive_forces

LAW_CASES = [
    bs.SoftSphere(repulsion=2.0, adhesion=0.4, adhesion_range=1.25),
    bs.SoftSphere(repulsion=3.0, adhesion=0.0),
    bs.PhysiCellForce(repulsion=10.0, adhesion=0.4),
    bs.BioDynaMoForce(repulsion=2.0, attraction=1.0, radius_inflation=1.5),
]


def writes_images(sim):
    """Whether the force kernels gather periodic images for this grid (else
    they round each pair to the minimum image, or the box is closed)."""
    from biosim.kernels.cpu.forces import images_apply, x_chunks

    g = sim._grid
    whole = x_chunks(g.dims[0], g.cutoff, g.inv_h, g.periodic[0])[2]
    return images_apply(g.periodic, g.dims, whole)


def cluster(n, edge, seed, dmin=6.0, dmax=14.0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3)) * edge, rng.uniform(dmin, dmax, n)


@pytest.mark.parametrize("mech", LAW_CASES, ids=repr)
@pytest.mark.parametrize("boundary", ["closed", "periodic"])
@pytest.mark.parametrize("seed", [0, 1])
def test_forces_match_naive_reference(mech, boundary, seed):
    edge = 70.0
    pos, diam = cluster(250, edge, seed)
    sim = bs.Simulation(bs.Box.cube(edge), boundary=boundary, seed=seed, mechanics=mech)
    sim.add_agents("c", pos, diameter=diam)
    force = mech.forces(sim).copy()
    # periodic: the gather writes the images across the faces (the loop takes plain differences)
    assert writes_images(sim) == (boundary == "periodic")
    t = sim.agents
    ref, scale = naive_forces(t.position, t.diameter, LAWS[type(mech).__name__], mech._params(),
                              sim.box, boundary == "periodic")
    assert scale.max() > 0
    err = np.abs(force - ref).max(axis=1)
    assert np.all(err <= 1e-12 * np.maximum(scale, 1e-300)), err.max()


@pytest.mark.parametrize("boundary", ["closed", "periodic"])
@pytest.mark.parametrize("length", [150.0, 400.0, 1000.0])
@pytest.mark.parametrize("section", [30.0, 40.0])
def test_forces_in_long_boxes_match_the_reference(boundary, length, section):
    # rows of 12-80 cells along x: the neighbour loops gather chunks of X_CHUNK = 32 cells, whose blocks wrap
    # around a periodic x axis (repeating cells when the axis is shorter than a chunk); a section of 2 x 2
    # cells rounds each pair to the minimum image, one of 3 x 3 has the gather write shifted images
    rng = np.random.default_rng(5)
    box = bs.Box([0.0, 0.0, 0.0], [length, section, section])
    n = int(length * 1.5)
    pos, diam = box.lower + rng.random((n, 3)) * box.length, rng.uniform(6.0, 10.0, n)
    mech = bs.SoftSphere(adhesion=0.4, adhesion_range=1.25)
    sim = bs.Simulation(box, boundary=boundary, seed=3, mechanics=mech)
    sim.add_agents("c", pos, diameter=diam)
    force = mech.forces(sim).copy()
    assert sim._grid.dims[0] >= 12
    assert writes_images(sim) == (boundary == "periodic" and section == 40.0)
    t = sim.agents
    ref, scale = naive_forces(t.position, t.diameter, LAWS["SoftSphere"], mech._params(), sim.box,
                              boundary == "periodic")
    err = np.abs(force - ref).max(axis=1)
    # an image x - length rounds differently from the reference's minimum image x_i - x_j - length rint(.):
    # both are within ulp(length) (1e-13 µm at 1000 µm), which the tiny force of a pair at the edge of its
    # reach (scale 3e-5) turns into 1e-12 of itself; hence a floor of 1e-3 of the largest scale
    assert np.all(err <= 1e-12 * np.maximum(scale, 1e-3 * scale.max())), err.max()


@pytest.mark.parametrize("mech", LAW_CASES, ids=repr)
@pytest.mark.parametrize("boundary", ["closed", "periodic"])
def test_forces_on_a_split_grid_match_the_reference(mech, boundary):
    # dense enough (>= 6 agents per cutoff-wide cell) that the grid halves its x-cells: the
    # neighbour loops then reach 2 cells either side along x
    rng = np.random.default_rng(11)
    edge = 40.0
    pos, diam = rng.random((1500, 3)) * edge, rng.uniform(3.0, 9.0, 1500)
    sim = bs.Simulation(bs.Box.cube(edge), boundary=boundary, seed=2, mechanics=mech)
    sim.add_agents("c", pos, diameter=diam)
    force = mech.forces(sim).copy()
    g = sim._grid
    assert g.dims[0] == 2 * g.dims[1]
    t = sim.agents
    ref, scale = naive_forces(t.position, t.diameter, LAWS[type(mech).__name__], mech._params(),
                              sim.box, boundary == "periodic")
    err = np.abs(force - ref).max(axis=1)
    assert np.all(err <= 1e-12 * np.maximum(scale, 1e-300)), err.max()


def test_sorted_columns_are_contiguous_with_spare_capacity():
    # a non-contiguous view would be a second signature: every neighbour kernel compiled again
    sim = bs.Simulation(bs.Box.cube(40.0), seed=1)
    sim.add_agents("c", np.random.default_rng(0).random((500, 3)) * 40.0, diameter=5.0)
    t = sim.agents
    t.reserve(2000)
    grid = sim._neighbour_grid(6.0)
    for rows in (3, 4, 3):
        cols = grid.sorted_columns(t, rows)
        assert cols.flags.c_contiguous and cols.shape[0] == rows and cols.shape[1] >= 500 + 16
        np.testing.assert_array_equal(cols[:3, :500].T, t.position[grid.kernel_args()[1][:500]])
        assert np.all(cols[:, 500:516] == 0.0)


def test_grid_splits_x_cells_only_where_they_are_crowded():
    from biosim.space import UniformGrid

    g = UniformGrid(bs.Box.cube(30.0), [False] * 3)
    assert list(g._layout(3.0, 5999)) == [10, 10, 10]  # 6 per cell: 6000 agents
    assert list(g._layout(3.0, 6000)) == [20, 10, 10]
    g.X_SPLIT = 1
    assert list(g._layout(3.0, 60000)) == [10, 10, 10]
    g.X_SPLIT = 4
    assert list(g._layout(3.0, 10)) == [40, 10, 10]


@pytest.mark.parametrize("mech,occupancy", [(bs.SoftSphere(), 5.0), (bs.PhysiCellForce(), 4.75),
                                            (bs.BioDynaMoForce(), 4.0), (None, 6.0)])
def test_the_mechanics_law_sets_where_the_grid_splits(mech, occupancy):
    # the costlier a pair, the fewer agents per cell it takes for halved x-cells to pay
    edge = 60.0
    for per_cell, split in ((occupancy - 0.2, False), (occupancy + 0.2, True)):
        sim = bs.Simulation(bs.Box.cube(edge), seed=1, mechanics=mech)
        cutoff = 10.0 if mech is None else mech.cutoff(8.0)
        n = int(round(per_cell * np.floor(edge / cutoff) ** 3))
        sim.add_agents("c", np.random.default_rng(1).random((n, 3)) * edge, diameter=8.0)
        g = sim._neighbour_grid(cutoff)
        assert (g.dims[0] == 2 * g.dims[1]) == split, (per_cell, g.dims)
    assert "split_occupancy" not in repr(mech)  # a property of the law's cost, not a parameter


@pytest.mark.parametrize("mech", LAW_CASES, ids=repr)
def test_newtons_third_law(mech):
    pos, diam = cluster(300, 60.0, 7)
    sim = bs.Simulation(bs.Box.cube(60.0), seed=1, mechanics=mech)
    sim.add_agents("c", pos, diameter=diam)
    force = mech.forces(sim)
    total = force.sum(axis=0)
    magnitude = np.linalg.norm(force, axis=1)
    assert np.count_nonzero(magnitude > 1e-3) > 0.9 * len(force)  # a crowded cluster: nearly all are pushed
    assert np.abs(total).max() <= 1e-10 * np.abs(force).sum()


@pytest.mark.parametrize("mech", LAW_CASES, ids=repr)
@pytest.mark.parametrize("d1,d2", [(10.0, 10.0), (8.0, 12.0)])
def test_two_cells_relax_to_equilibrium(mech, d1, d2):
    sim = bs.Simulation(bs.Box.cube(100.0), dt=0.05, seed=3, mechanics=mech)
    # start overlapping along a skew axis
    axis = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    c = np.array([50.0, 50.0, 50.0])
    start = 0.6 * 0.5 * (d1 + d2)
    sim.add_agents("c", [c - axis * start / 2, c + axis * start / 2], diameter=[d1, d2])
    if isinstance(mech, bs.BioDynaMoForce):
        mech.density = 0.002  # light cells: relaxes within the test's steps
    sim.run(4000)
    p = sim.agents.position
    r = np.linalg.norm(p[1] - p[0])
    want = mech.equilibrium_distance(d1, d2)
    assert r == pytest.approx(want, rel=1e-6)
    # the pair stays on its axis and its centre (equal-and-opposite forces, for the
    # damped laws the centre of mass when masses are equal)
    np.testing.assert_allclose(np.cross(p[1] - p[0], axis), 0, atol=1e-9)


def test_equilibrium_formulas():
    m = bs.SoftSphere(repulsion=2.0, adhesion=0.4, adhesion_range=1.25)
    s = 10.0
    r = m.equilibrium_distance(10.0, 10.0)
    assert LAWS["SoftSphere"](r, 10.0, 10.0, *m._params()) == pytest.approx(0, abs=1e-14)
    assert r == pytest.approx(s * 1.6 / (2 - 0.32))
    p = bs.PhysiCellForce()
    r = p.equilibrium_distance(16.82, 16.82)
    assert LAWS["PhysiCellForce"](r, 16.82, 16.82, *p._params()) == pytest.approx(0, abs=1e-12)


def test_displacement_is_capped():
    mech = bs.SoftSphere(repulsion=1000.0, adhesion=0.0, max_displacement=0.25)
    sim = bs.Simulation(bs.Box.cube(100.0), dt=1.0, mechanics=mech)
    sim.add_agents("c", [[50.0, 50.0, 50.0], [51.0, 50.0, 50.0]], diameter=10.0)
    before = sim.agents.position.copy()
    sim.run(1)
    moved = np.linalg.norm(sim.agents.position - before[sim.agents.uid], axis=1)  # uid = initial row
    np.testing.assert_allclose(moved, 0.25, rtol=1e-12)


@pytest.mark.parametrize("mech", LAW_CASES, ids=repr)
@pytest.mark.parametrize("across", [False, True], ids=["same cell", "across a cell face"])
def test_coincident_centres_are_pushed_apart_equally(mech, across):
    sim = bs.Simulation(bs.Box.cube(100.0), seed=9, mechanics=mech)
    h = 100.0 / np.floor(100.0 / mech.cutoff(10.0))  # the grid's cell edge
    face = h * np.floor(50.0 / h)
    x = [face - 1e-9, face + 1e-9] if across else [face + 0.5 * h] * 2
    sim.add_agents("c", [[x[0], 50.0, 50.0], [x[1], 50.0, 50.0], [face + 0.5 * h + 25.0, 50.0, 50.0]],
                   diameter=10.0)
    grid = sim._neighbour_grid(mech.cutoff(10.0))
    cells = np.floor((sim.agents.position[:, 0] - 0.0) * grid.inv_h[0])[np.argsort(sim.agents.uid)]
    assert (cells[0] != cells[1]) == across
    f = mech.forces(sim)
    order = np.argsort(sim.agents.uid)
    f = f[order]
    assert np.linalg.norm(f[0]) > 0.5
    np.testing.assert_array_equal(f[0], -f[1])
    np.testing.assert_array_equal(f[2], 0)


@pytest.mark.parametrize("mech", [bs.SoftSphere(repulsion=2.0, adhesion=0.0), bs.PhysiCellForce(adhesion=0.0),
                                  bs.BioDynaMoForce()], ids=repr)
def test_coincident_pushes_are_the_generators_draws(mech):
    # 64 coincident pairs, each across an x face of the grid: the push is the
    # law at r = 0 (one term, so fast-math cannot regroup it) along
    # biosim.rng's unit vector for the pair's key (BioDynaMo: U(-3, 3)^3),
    # bit for bit, although it is drawn inside a fast-math kernel
    from biosim.kernels.cpu.forces import _COINCIDENT_STREAM

    sim = bs.Simulation(bs.Box.cube(200.0), seed=11, mechanics=mech)
    h = 200.0 / np.floor(200.0 / mech.cutoff(10.0))
    face = h * np.floor(100.0 / h)
    yz = (np.arange(8) + 0.5) * 25.0
    pos = [[face + s, y, z] for y in yz for z in yz for s in (-1e-9, 1e-9)]
    sim.add_agents("c", pos, diameter=10.0)
    f = mech.forces(sim)[np.argsort(sim.agents.uid)]
    p0, p1, _ = mech._params()
    for a in range(0, len(pos), 2):
        stream = int(_COINCIDENT_STREAM ^ (a + 1))
        if isinstance(mech, bs.BioDynaMoForce):
            want = np.array([6.0 * bs.rng.uniform(11, a, 0, stream, k)[0] - 3.0 for k in range(3)])
        else:
            want = (p0 - p1) * bs.rng.unit_vectors(11, a, 0, stream)[0]
        np.testing.assert_array_equal(f[a], want)
        np.testing.assert_array_equal(f[a + 1], -want)


def test_no_mechanics_means_no_motion():
    sim = bs.Simulation(bs.Box.cube(100.0), mechanics=None)
    sim.add_agents("c", [[50.0, 50.0, 50.0], [52.0, 50.0, 50.0]], diameter=10.0)
    before = sim.agents.position.copy()
    sim.run(10)
    np.testing.assert_array_equal(sim.agents.position, before)


def test_physicell_uses_adams_bashforth():
    mech = bs.PhysiCellForce(adhesion=0.0, max_displacement=np.inf)
    sim = bs.Simulation(bs.Box.cube(100.0), dt=0.1, mechanics=mech)
    sim.add_agents("c", [[50.0, 50.0, 50.0], [58.0, 50.0, 50.0]], diameter=10.0)
    v1 = 10.0 * (1 - 8.0 / 10.0) ** 2
    sim.run(1)
    x = np.sort(sim.agents.position[:, 0])
    assert x[0] == pytest.approx(50.0 - 0.1 * 1.5 * v1, rel=1e-12)
    # second step: x += dt (1.5 v2 - 0.5 v1)
    d = x[1] - x[0]
    v2 = 10.0 * (1 - d / 10.0) ** 2
    sim.run(1)
    x2 = np.sort(sim.agents.position[:, 0])
    assert x2[0] == pytest.approx(x[0] - 0.1 * (1.5 * v2 - 0.5 * v1), rel=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(repulsion=-1.0), "repulsion"),
    (dict(adhesion=float("nan")), "adhesion"),
    (dict(adhesion_range=0.5), "adhesion_range"),
    (dict(damping=0.0), "damping"),
    (dict(max_displacement=0.0), "max_displacement"),
    (dict(repulsion="strong"), "repulsion"),
])
def test_bad_parameters_are_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bs.SoftSphere(**kwargs)


def test_mechanics_type_is_checked():
    with pytest.raises(TypeError, match="mechanics"):
        bs.Simulation(bs.Box.cube(10.0), mechanics="soft")


@pytest.mark.parametrize("boundary", ["closed", "periodic"])
@pytest.mark.parametrize("edge", [25.0, 40.0])
def test_forces_in_boxes_of_one_or_two_cells(boundary, edge):
    # the periodic stencil must visit each cell once when an axis has < 3 cells
    pos, diam = cluster(120, edge, 4, dmin=6.0, dmax=10.0)
    mech = bs.SoftSphere(adhesion=0.4, adhesion_range=1.2)
    sim = bs.Simulation(bs.Box.cube(edge), boundary=boundary, seed=2, mechanics=mech)
    sim.add_agents("c", pos, diameter=diam)
    force = mech.forces(sim).copy()
    t = sim.agents
    dims = sim._grid.dims
    assert np.all(dims[1:] <= 3) and dims[0] <= 6  # x-cells halved: 120 agents crowd into so few cells
    if np.any(dims[1:] < 3):  # a periodic axis of under 3 cells: the minimum image per pair
        assert not writes_images(sim)
    ref, scale = naive_forces(t.position, t.diameter, LAWS["SoftSphere"], mech._params(), sim.box,
                              boundary == "periodic")
    err = np.abs(force - ref).max(axis=1)
    assert np.all(err <= 1e-12 * np.maximum(scale, 1e-300)), err.max()


def test_forces_and_neighbours_through_the_sort_order_between_reorderings():
    # rows are reordered only every few grid builds; in between the kernels read
    # the table through the sort order, and must still see every pair
    from biosim import models
    from reference import brute_pairs

    mech = bs.SoftSphere()
    pos, diam = cluster(300, 60.0, 11)
    sim = bs.Simulation(bs.Box.cube(60.0), seed=5, mechanics=mech)
    pop = sim.add_agents("c", pos, diameter=diam)
    pop.behaviours += [models.RandomWalk(speed=3.0)]
    sim.run(3)
    grid = sim._neighbour_grid(mech.cutoff(sim.agents.diameter.max()))
    n = len(sim.agents)
    assert not np.array_equal(grid._order[:n], np.arange(n))  # reading through the order
    force = mech.forces(sim).copy()
    t = sim.agents
    ref, scale = naive_forces(t.position, t.diameter, LAWS["SoftSphere"], mech._params(), sim.box, False)
    assert np.all(np.abs(force - ref).max(axis=1) <= 1e-12 * np.maximum(scale, 1e-300))
    offsets, rows = grid.neighbour_lists(t.position, 9.0)
    got = {(min(i, j), max(i, j)) for i in range(n) for j in rows[offsets[i]:offsets[i + 1]]}
    assert got == {tuple(p) for p in brute_pairs(t.position, 9.0, sim.box, False)}


@pytest.mark.parametrize("law", ["SoftSphere", "PhysiCellForce"])
@pytest.mark.parametrize("boundary", ["closed", "periodic"])
def test_type_dependent_adhesion_matches_naive_reference(law, boundary):
    table = np.array([[0.9, 0.05, 0.3], [0.05, 0.6, 0.0], [0.3, 0.0, 0.2]])
    mech = getattr(bs, law)(adhesion=table, adhesion_range=1.4)
    edge = 70.0
    sim = bs.Simulation(bs.Box.cube(edge), boundary=boundary, seed=2, mechanics=mech)
    for k, name in enumerate(("a", "b", "c")):
        pos, diam = cluster(90, edge, 10 + k)
        sim.add_agents(name, pos, diameter=diam)
    force = mech.forces(sim).copy()
    t = sim.agents
    ref, scale = naive_forces(t.position, t.diameter, LAWS[law], mech._params(), sim.box,
                              boundary == "periodic", types=t.type, table=table)
    err = np.abs(force - ref).max(axis=1)
    assert np.all(err <= 1e-12 * np.maximum(scale, 1e-300)), err.max()
    # the same forces when the table is given by population names
    named = getattr(bs, law)(adhesion={("a", "a"): 0.9, ("a", "b"): 0.05, ("c", "a"): 0.3, ("b", "b"): 0.6,
                                       ("b", "c"): 0.0, ("c", "c"): 0.2}, adhesion_range=1.4)
    sim.mechanics = named
    np.testing.assert_array_equal(named.forces(sim), force)
    assert mech.equilibrium_distance(10.0, 10.0, 0, 0) < mech.equilibrium_distance(10.0, 10.0, 0, 1)


def test_adhesion_matrix_bad_input():
    with pytest.raises(ValueError, match="symmetric"):
        bs.SoftSphere(adhesion=[[0.5, 0.1], [0.2, 0.5]])
    with pytest.raises(ValueError, match="square"):
        bs.SoftSphere(adhesion=[[0.5, 0.1, 0.0]])
    with pytest.raises(ValueError, match=">= 0"):
        bs.SoftSphere(adhesion=[[0.5, -0.1], [-0.1, 0.5]])
    with pytest.raises(ValueError, match=r"adhesion\[\('a', 'b'\)\] must be >= 0"):
        bs.SoftSphere(adhesion={("a", "b"): -1.0})
    sim = bs.Simulation(bs.Box.cube(50.0), mechanics=bs.SoftSphere(adhesion=[[0.5]]))
    sim.add_agents("a", [[10.0, 10.0, 10.0]])
    sim.add_agents("b", [[20.0, 10.0, 10.0]])
    with pytest.raises(ValueError, match="matrix is 1 x 1 but there are 2 populations"):
        sim.run(1)
    sim.mechanics = bs.SoftSphere(adhesion={("a", "a"): 0.5, ("a", "b"): 0.1})
    with pytest.raises(ValueError, match=r"no value for the pair \('b', 'b'\)"):
        sim.run(1)


def test_physicell_s_virtual_wall_pushes_cells_off_the_nearest_face(device):
    sim = bs.Simulation(bs.Box.cube(100.0), dt=0.1, device=device,
                        mechanics=bs.PhysiCellForce(max_displacement=float("inf"), wall=100.0))
    # 2 µm from x-, 3 µm from z+ (nearest: x-); one far from every face; one 1 µm from z- only
    sim.add_agents("c", [[2.0, 50.0, 50.0], [50.0, 50.0, 50.0], [50.0, 30.0, 1.0]], diameter=16.0)
    sim.run(1)
    p = sim.agents.position[np.argsort(sim.agents.uid)]
    v = 100.0 * (1.0 - 2.0 / 8.0) ** 2  # PhysiCell: strength (1 - d/r)^2 inwards
    np.testing.assert_allclose(p[0], [2.0 + 0.1 * 1.5 * v, 50.0, 50.0], rtol=1e-14)  # Adams-Bashforth's first step
    np.testing.assert_array_equal(p[1], [50.0, 50.0, 50.0])
    np.testing.assert_allclose(p[2], [50.0, 30.0, 1.0 + 0.1 * 1.5 * 100.0 * (1 - 1 / 8) ** 2], rtol=1e-14)


def test_the_virtual_wall_ignores_z_faces_in_a_plane():
    sim = bs.Simulation(bs.Box([0, 0, -10], [100, 100, 10]), dt=0.1,
                        mechanics=bs.PhysiCellForce(max_displacement=float("inf"), wall=100.0))
    sim.plane = 0.0
    sim.add_agents("c", [[50.0, 50.0, 0.0], [4.0, 50.0, 0.0]], diameter=16.0)  # 10 µm from the z faces
    sim.run(1)
    p = sim.agents.position[np.argsort(sim.agents.uid)]
    np.testing.assert_array_equal(p[0], [50.0, 50.0, 0.0])
    np.testing.assert_allclose(p[1], [4.0 + 0.1 * 1.5 * 100.0 * 0.5 ** 2, 50.0, 0.0], rtol=1e-14)
    with pytest.raises(ValueError, match=r"wall"):
        bs.PhysiCellForce(wall=-1.0)
