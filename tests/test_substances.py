"""Substances against analytic solutions; coupling with agents; bad input."""
import textwrap

import numpy as np
import pytest

import biosim as bs
from biosim import models
from threads import assert_bit_identical, runs_with_1_and_2_threads

SOLVERS = ["implicit", "explicit"]


def make(box=None, **kw):
    sim = bs.Simulation(box or bs.Box.cube(100.0), dt=kw.pop("dt", 0.1), seed=1,
                        mechanics=None, boundary=kw.pop("boundary_kind", "closed"))
    return sim, sim.add_substance("s", **kw)


@pytest.mark.parametrize("solver", SOLVERS)
def test_decay_is_exact(solver):
    sim, s = make(diffusion=50.0, decay=0.01, spacing=10.0, initial=3.0, solver=solver)
    sim.run(1000)
    np.testing.assert_allclose(s.concentration, 3.0 * np.exp(-0.01 * 100.0), rtol=1e-4 * 1e-2)


def gaussian(x, y, z, c, D, t, M=1.0):
    r2 = (x - c) ** 2 + (y - c) ** 2 + (z - c) ** 2
    return M / (4 * np.pi * D * t) ** 1.5 * np.exp(-r2 / (4 * D * t))


@pytest.mark.parametrize("solver", SOLVERS)
def test_point_source_matches_gaussian_and_converges(solver):
    D, t0, t1, edge = 100.0, 4.0, 8.0, 400.0
    errors = []
    for spacing in (20.0, 10.0, 5.0):
        sim, s = make(bs.Box.cube(edge), diffusion=D, spacing=spacing, solver=solver, dt=0.02,
                      initial=lambda x, y, z: gaussian(x, y, z, edge / 2, D, t0))
        sim.run(int(round((t1 - t0) / 0.02)))
        x, y, z = np.meshgrid(*(s.voxel_centres(a) for a in range(3)), indexing="ij")
        exact = gaussian(x, y, z, edge / 2, D, t1)
        errors.append(np.abs(s.concentration - exact).max() / exact.max())
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.01, errors


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", ["closed", "periodic"])
def test_mass_is_conserved_without_decay(solver, kind):
    rng = np.random.default_rng(0)
    sim, s = make(bs.Box([0, 0, 0], [60.0, 40.0, 30.0]), diffusion=200.0, spacing=5.0, solver=solver,
                  initial=rng.random((12, 8, 6)), boundary_kind=kind, dt=0.5)
    m0 = s.total()
    sim.run(40)
    assert abs(s.total() - m0) <= 1e-10 * m0
    assert s.concentration.std() < 0.05  # it did diffuse


@pytest.mark.parametrize("solver", SOLVERS)
def test_steady_state_with_dirichlet_ends_is_a_cosh(solver):
    D, mu, L = 100.0, 0.1, 200.0
    sim, s = make(bs.Box([0, 0, 0], [L, 10.0, 10.0]), diffusion=D, decay=mu, spacing=5.0, solver=solver,
                  initial=0.0, boundary={"x": bs.Dirichlet(1.0)}, dt=0.05)
    sim.run(20000)
    lam = np.sqrt(D / mu)
    x = s.voxel_centres(0)
    exact = np.cosh((x - L / 2) / lam) / np.cosh(L / (2 * lam))
    got = s.concentration[:, 0, 0]
    np.testing.assert_allclose(s.concentration, got[:, None, None] * np.ones((1, 2, 2)), rtol=1e-12)
    np.testing.assert_allclose(got, exact, rtol=5e-3)


def test_explicit_and_implicit_agree():
    D, edge = 100.0, 200.0
    out = []
    for solver in SOLVERS:
        sim, s = make(bs.Box.cube(edge), diffusion=D, spacing=10.0, solver=solver, dt=0.01,
                      initial=lambda x, y, z: gaussian(x, y, z, edge / 2, D, 5.0))
        sim.run(300)
        out.append(s.concentration.copy())
    assert np.abs(out[0] - out[1]).max() < 5e-3 * out[0].max()


def test_one_sided_oxygen_supply():
    # D c'' = lambda c, c(0) = 1 on the x- face, no flux at x = L:
    # c(x) = cosh((L - x) / l) / cosh(L / l), l = sqrt(D / lambda)
    D, lam, L = 100.0, 0.05, 100.0
    sim, s = make(bs.Box([0, 0, 0], [L, 20.0, 20.0]), diffusion=D, decay=lam, spacing=10.0,
                  boundary={"x-": bs.Dirichlet(1.0)}, dt=0.5)
    sim.run(2000)
    x = s.voxel_centres(0)
    ell = np.sqrt(D / lam)
    exact = np.cosh((L - x) / ell) / np.cosh(L / ell)
    profile = s.concentration[:, 0, 0]
    np.testing.assert_allclose(s.concentration, np.broadcast_to(profile[:, None, None], s.shape), rtol=1e-12)
    np.testing.assert_allclose(profile, exact, rtol=0.015)  # 10 µm voxels, l = 44.7 µm


def test_dirichlet_function_of_position_and_time():
    sim, s = make(bs.Box([0, 0, 0], [50.0, 50.0, 50.0]), diffusion=100.0, spacing=10.0,
                  boundary={"z+": bs.Dirichlet(lambda x, y, z, t: np.where(t > 1000.0, x / 50.0, 0.0 * x))},
                  dt=1.0)
    sim.run(900)
    np.testing.assert_array_equal(s.concentration, 0.0)  # the face is 0 until t = 1000 min
    sim.run(2100)
    top = s.concentration[:, :, -1]
    assert np.all(np.diff(top[:, 2]) > 0)  # follows x on the top face
    assert top[-1, 2] > 0.5


def test_dirichlet_function_is_taken_at_the_time_the_solve_lands_on():
    # one voxel, every face at f(t) = t, diffusion so fast that the voxel
    # takes the face value: backward Euler lands on t + dt
    sim, s = make(bs.Box.cube(10.0), diffusion=1e7, spacing=10.0, dt=0.5,
                  boundary=bs.Dirichlet(lambda x, y, z, t: t + 0.0 * x))
    for _ in range(4):
        sim.run(1)
        assert s.concentration[0, 0, 0] == pytest.approx(sim.time, rel=1e-5)


def test_sampling_is_exact_for_linear_fields():
    sim, s = make(diffusion=0.0, spacing=10.0,
                  initial=lambda x, y, z: 2.0 + 0.5 * x - 0.25 * y + 0.125 * z)
    rng = np.random.default_rng(3)
    p = 5.0 + rng.random((200, 3)) * 90.0  # between the outer voxel centres
    v, g = s.sample(p, gradient=True)
    np.testing.assert_allclose(v, 2.0 + p @ [0.5, -0.25, 0.125], rtol=1e-12)
    np.testing.assert_allclose(g, np.tile([0.5, -0.25, 0.125], (200, 1)), rtol=1e-12)
    # the gradient is exact up to the walls too, where the value is held constant
    p = rng.random((200, 3)) * 100.0
    p[:50, 0] = rng.random(50) * 5.0  # within half a voxel of x-
    p[50:100, 2] = 100.0 - rng.random(50) * 5.0  # and of z+
    _, g = s.sample(p, gradient=True)
    np.testing.assert_allclose(g, np.tile([0.5, -0.25, 0.125], (200, 1)), rtol=1e-12)


def test_gradient_matches_biodynamo_gradient_computation():
    # BioDynaMo's diffusion_test.cc GradientComputation: [0, 250]^3 at resolution
    # 200, f = 2x/L + 4 (y/L)^2 + sin(2 pi z / L); errors below 1e-5, 1e-4, 1e-4 at
    # every voxel centre (here: every outermost centre and 100,000 interior ones)
    L = 250.0
    sim = bs.Simulation(bs.Box.cube(L), mechanics=None)
    s = sim.add_substance("s", diffusion=0.0, spacing=L / 200,
                          initial=lambda x, y, z: 2 * x / L + 4 * (y / L) ** 2 + np.sin(2 * np.pi * z / L))
    c = [s.voxel_centres(a) for a in range(3)]
    rng = np.random.default_rng(1)
    idx = [rng.integers(1, 199, (100000, 3))]
    for axis in range(3):
        for side in (0, 199):
            face = rng.integers(0, 200, (20000, 3))
            face[:, axis] = side
            idx.append(face)
    idx = np.concatenate(idx)
    p = np.stack([c[a][idx[:, a]] for a in range(3)], axis=1)
    _, g = s.sample(p, gradient=True)
    want = np.stack([np.full(len(p), 2 / L), 8 * p[:, 1] / L ** 2,
                     2 * np.pi / L * np.cos(2 * np.pi * p[:, 2] / L)], axis=1)
    err = np.abs(g - want).max(axis=0)
    assert err[0] < 1e-5 and err[1] < 1e-4 and err[2] < 1e-4, err


def test_chemotaxis_pulls_next_to_a_wall():
    # a linear field: cells within half a voxel of the wall move up it too
    sim = bs.Simulation(bs.Box.cube(100.0), mechanics=None, dt=1.0)
    s = sim.add_substance("s", diffusion=0.0, spacing=10.0, initial=lambda x, y, z: x)
    pop = sim.add_agents("c", [[1.0, 50.0, 50.0], [99.0, 30.0, 30.0], [50.0, 2.0, 50.0]], diameter=4.0)
    pop.behaviours += [models.Chemotaxis(s, speed=0.5)]
    before = sim.agents.position.copy()
    sim.run(1)
    moved = sim.agents.position - before[sim.agents.uid]
    np.testing.assert_allclose(moved, np.tile([0.5, 0.0, 0.0], (3, 1)), atol=1e-12)


def test_periodic_grid_samples_across_the_face():
    sim = bs.Simulation(bs.Box.cube(100.0), boundary="periodic", mechanics=None)
    s = sim.add_substance("s", diffusion=0.0, spacing=10.0,
                          initial=lambda x, y, z: np.cos(2 * np.pi * x / 100.0))
    v, g = s.sample([[0.0, 50.0, 50.0], [99.9, 50.0, 50.0]], gradient=True)
    # halfway between the centres at 95 and 5 µm: the mean of the two, a zero slope
    np.testing.assert_allclose(v[0], np.cos(2 * np.pi * 0.05), rtol=1e-12)
    assert abs(g[0, 0]) < 1e-12 and v[1] > v[0] - 1e-3


def test_secretion_adds_rate_times_time_times_cells():
    sim, s = make(diffusion=30.0, spacing=10.0, solver="implicit")
    pop = sim.add_agents("c", bs.init.uniform(137, sim.box, seed=2), diameter=8.0)
    pop.behaviours += [models.Secretion(s, rate=0.7), models.RandomWalk(diffusion=2.0)]
    sim.run(250)
    assert s.total() == pytest.approx(0.7 * 25.0 * 137, rel=1e-12)


def test_secretion_towards_a_target_and_uptake():
    sim, s = make(diffusion=0.0, spacing=10.0, initial=0.0)
    pop = sim.add_agents("c", [[55.0, 55.0, 55.0]], diameter=10.0)
    pop.behaviours += [models.Secretion(s, rate=0.5, target=2.0)]
    sim.run(2000)
    assert s.concentration[5, 5, 5] == pytest.approx(2.0, rel=1e-6)
    assert s.concentration.sum() == pytest.approx(2.0, rel=1e-6)
    sim2, s2 = make(diffusion=0.0, spacing=10.0, initial=1.0)
    pop = sim2.add_agents("c", [[55.0, 55.0, 55.0]], diameter=10.0)
    pop.behaviours += [models.Uptake(s2, rate=4.0)]
    sim2.run(50)
    U = 4.0 * 0.1 * (np.pi / 6 * 1000.0) / 1000.0
    assert s2.concentration[5, 5, 5] == pytest.approx((1 + U) ** -50, rel=1e-12)
    assert s2.concentration.min() >= 0


def test_chemotaxis_moves_up_the_gradient_at_speed():
    sim, s = make(bs.Box.cube(200.0), diffusion=0.0, spacing=10.0,
                  initial=lambda x, y, z: 0.01 * x + 0.02 * y)
    pop = sim.add_agents("c", bs.init.uniform(50, bs.Box([20, 20, 20], [150, 150, 150]), seed=1), diameter=5.0)
    start = pop.sim.agents.position.copy()
    pop.behaviours += [models.Chemotaxis(s, speed=2.0)]
    sim.run(10)
    moved = sim.agents.position - start[sim.agents.uid]
    np.testing.assert_allclose(moved, np.tile([1, 2, 0] / np.sqrt(5) * 2.0 * 0.1 * 10, (50, 1)), atol=1e-9)


def test_substance_grids_are_written(tmp_path):
    sim, s = make(diffusion=30.0, spacing=20.0, initial=lambda x, y, z: x)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "r.h5", every=5))
    sim.run(5)
    later = sim.add_substance("late", diffusion=1.0, decay=0.0, spacing=50.0, initial=7.0)
    sim.run(5)
    run = bs.io.open_run(tmp_path / "r.h5")
    assert run.substances == ("late", "s")
    np.testing.assert_array_equal(run.substance("s", -1), s.concentration)
    assert np.isnan(run.substance("late", 0)).all()
    np.testing.assert_array_equal(run.substance("late", 2), later.concentration)
    assert run.metadata["substances"]["s"]["spacing"] == 20.0
    with pytest.raises(KeyError, match="oxygen"):
        run.substance("oxygen")


def test_bad_substance_input():
    sim = bs.Simulation(bs.Box([0, 0, 0], [100.0, 60.0, 40.0]), mechanics=None)
    with pytest.raises(ValueError, match="diffusion"):
        sim.add_substance("a", diffusion=-1.0)
    with pytest.raises(ValueError, match="decay"):
        sim.add_substance("a", diffusion=1.0, decay=-0.1)
    with pytest.raises(ValueError, match=r"spacing 7.*nearest.*6\.66667, 10"):
        sim.add_substance("a", diffusion=1.0, spacing=7.0)
    with pytest.raises(ValueError, match=r"shape \(10, 6, 4\)"):
        sim.add_substance("a", diffusion=1.0, spacing=10.0, initial=np.zeros((10, 6)))
    with pytest.raises(ValueError, match="NaN"):
        sim.add_substance("a", diffusion=1.0, spacing=10.0, initial=np.full((10, 6, 4), np.nan))
    with pytest.raises(ValueError, match="diffusion"):
        sim.add_substance("a", diffusion=float("nan"))
    with pytest.raises(ValueError, match="face"):
        sim.add_substance("a", diffusion=1.0, spacing=10.0, boundary={"top": bs.Dirichlet(1.0)})
    with pytest.raises(ValueError, match="solver"):
        sim.add_substance("a", diffusion=1.0, spacing=10.0, solver="magic")
    sim.add_substance("a", diffusion=1.0, spacing=10.0)
    with pytest.raises(ValueError, match="exists already"):
        sim.add_substance("a", diffusion=1.0, spacing=10.0)
    pop = sim.add_agents("c", [[1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="unknown substance 'oxygen'.*substances are a"):
        pop.behaviours += [models.Uptake("oxygen", rate=1.0)]
    with pytest.raises(ValueError, match="rate"):
        models.Secretion("a", rate=-1.0)
    per = bs.Simulation(bs.Box.cube(100.0), boundary="periodic", mechanics=None)
    with pytest.raises(ValueError, match="periodic"):
        per.add_substance("a", diffusion=1.0, spacing=10.0, boundary=bs.Dirichlet(1.0))


def test_explicit_solver_says_once_that_it_substeps():
    sim, s = make(diffusion=1000.0, spacing=10.0, solver="explicit", dt=1.0)
    with pytest.warns(UserWarning, match="sub-steps"):
        sim.run(2)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim.run(2)


DET_SCRIPT = textwrap.dedent("""
    import sys, biosim as bs
    from biosim import models
    sim = bs.Simulation(bs.Box.cube(120.0), dt=0.2, seed=7)
    a = sim.add_substance("a", diffusion=200.0, decay=0.01, spacing=10.0, solver=sys.argv[2])
    b = sim.add_substance("b", diffusion=50.0, decay=0.0, spacing=20.0, initial=1.0,
                          boundary={"x-": bs.Dirichlet(2.0)})
    p = sim.add_agents("p", bs.init.uniform(600, sim.box, seed=3), diameter=8.0)
    p.behaviours += [models.Secretion(a, rate=3.0), models.Uptake(b, rate=0.5),
                     models.Chemotaxis(a, speed=1.0), models.RandomWalk(diffusion=0.5),
                     models.GrowthDivision(growth_rate=100.0, division_diameter=9.0)]
    sim.writers.append(bs.io.HDF5Writer(sys.argv[1], every=10))
    sim.run(40)
""")


@pytest.mark.slow
@pytest.mark.parametrize("solver", SOLVERS)
def test_one_and_two_threads_bit_identical_with_substances(tmp_path, solver):
    a, b = runs_with_1_and_2_threads(tmp_path, DET_SCRIPT, solver)
    assert_bit_identical(a, b)
    assert a.substance("a", -1).sum() > 0 and len(a.agents(-1)["uid"]) > 600


def test_growth_slows_below_the_threshold():
    sim, s = make(bs.Box([0, 0, 0], [100.0, 20.0, 20.0]), diffusion=0.0, spacing=10.0,
                  initial=lambda x, y, z: x / 100.0)
    pop = sim.add_agents("c", [[15.0, 10.0, 10.0], [45.0, 10.0, 10.0], [85.0, 10.0, 10.0]], diameter=8.0)
    pop.behaviours += [models.GrowthDivision(growth_rate=10.0, division_diameter=50.0, substance=s,
                                             threshold=0.5)]
    sim.run(10)
    v = np.pi / 6 * sim.agents.diameter[np.argsort(sim.agents.uid)] ** 3
    grown = v - np.pi / 6 * 8.0 ** 3
    np.testing.assert_allclose(grown, 10.0 * 1.0 * np.array([0.3, 0.9, 1.0]), rtol=1e-9)


def test_necrosis_kills_only_below_the_threshold():
    sim, s = make(bs.Box([0, 0, 0], [100.0, 100.0, 100.0]), diffusion=0.0, spacing=10.0,
                  initial=lambda x, y, z: x / 100.0)
    pop = sim.add_agents("c", bs.init.uniform(3000, sim.box, seed=5), diameter=2.0)
    pop.behaviours += [models.Necrosis(s, threshold=0.3, rate=0.5)]
    sim.run(10)  # 1 min: survival exp(-0.5) below the threshold
    x = sim.agents.position[:, 0]
    assert np.sum(x >= 35.0) == np.sum(bs.init.uniform(3000, sim.box, seed=5)[:, 0] >= 35.0)
    low = np.sum(bs.init.uniform(3000, sim.box, seed=5)[:, 0] < 25.0)
    assert np.sum(x < 25.0) == pytest.approx(low * np.exp(-0.5), abs=4 * np.sqrt(low * 0.25))
    with pytest.raises(ValueError, match="substance and threshold"):
        models.GrowthDivision(1.0, 10.0, substance=s)


def test_sources_are_applied_in_every_diffusion_substep():
    # fast uptake against fast diffusion: with sources shared out over the
    # diffusion sub-steps the result converges (first order) as they shrink
    finals = []
    for sub_dt in (0.1, 0.01, 0.001):
        sim = bs.Simulation(bs.Box.cube(100.0), dt=1.0, mechanics=None)
        s = sim.add_substance("s", diffusion=1e4, spacing=10.0, initial=1.0, boundary=bs.Dirichlet(1.0),
                              dt=sub_dt)
        pop = sim.add_agents("c", bs.init.grid(5, 10.0, origin=(30.0, 30.0, 30.0)), diameter=10.0)
        pop.behaviours += [models.Uptake(s, rate=20.0)]
        sim.run(30)
        finals.append(s.concentration[5, 5, 5])
    assert finals[0] > finals[1] > finals[2] > 0
    assert finals[1] - finals[2] < 0.5 * (finals[0] - finals[1])


def test_changing_the_diffusion_coefficient_mid_run_takes_effect():
    # the implicit solver caches its line factors; they must follow a new coefficient
    def make(d):
        sim = bs.Simulation(bs.Box.cube(100.0), dt=0.1, mechanics=None)
        s = sim.add_substance("s", diffusion=d, decay=0.0, spacing=10.0)
        s.concentration[5, 5, 5] = 1000.0
        return sim, s

    sim, s = make(100.0)
    sim.run(3)
    s.diffusion = 1000.0
    sim.run(3)
    ref_sim, ref = make(100.0)
    ref_sim.run(3)
    fresh_sim, fresh = make(1000.0)
    fresh.concentration[...] = ref.concentration
    fresh_sim.run(3)
    np.testing.assert_array_equal(s.concentration, fresh.concentration)


@pytest.mark.parametrize("blo,bhi", [(0, 0), (1, 0), (2, 2)])
@pytest.mark.parametrize("n", [1, 2, 23])
def test_contiguous_lines_have_the_bits_of_the_same_lines_side_by_side(blo, bhi, n):
    """lod_sweep's two paths: lines along the last axis (z lines, solved in
    place a tile of lanes at a time) against the same lines along the
    middle axis with the lines side by side (the vectorised blocks), 37
    lines (two full tiles and a partial one), and both against a dense
    solve of the line system."""
    from biosim.kernels.cpu import diffusion as K

    A, r, k = 37, 0.8, 0.01
    cp, inv, zz = np.empty(n), np.empty(n), np.empty(n)
    vr, zden = K.thomas_coefficients(n, r, blo, bhi, cp, inv, zz, k)
    rng = np.random.default_rng(2)
    c = rng.random((A, n))
    lo = rng.random(A) if blo != 2 else np.zeros(A)
    hi = rng.random(A) if bhi != 2 else np.zeros(A)
    lanes = c.reshape(A, n, 1).copy()
    K.lod_sweep(lanes, r, cp, inv, zz, vr, zden, blo == 2, lo.reshape(A, 1), hi.reshape(A, 1))
    side = c.T.copy().reshape(1, n, A)
    K.lod_sweep(side, r, cp, inv, zz, vr, zden, blo == 2, lo.reshape(1, A), hi.reshape(1, A))
    np.testing.assert_array_equal(lanes[:, :, 0], side[0].T)
    # the system: 1 + k + 2r on the diagonal, -r off it; at a Neumann face (ghost = c) the end's diagonal
    # loses r, at a Dirichlet face (ghost = 2 v - c, 2 r v in lo/hi) it gains r; a periodic line wraps
    m = np.diag(np.full(n, 1.0 + k + 2 * r)) - r * (np.eye(n, k=1) + np.eye(n, k=-1))
    if blo == 2:
        m[0, -1] -= r
        m[-1, 0] -= r
    else:
        m[0, 0] += r if blo == 1 else -r
        m[-1, -1] += r if bhi == 1 else -r
    rhs = c.copy()
    rhs[:, 0] += lo
    rhs[:, -1] += hi
    np.testing.assert_allclose(lanes[:, :, 0], np.linalg.solve(m, rhs.T).T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("blo,bhi", [(0, 0), (1, 0), (2, 2)])
def test_a_line_solved_in_pieces_has_the_bits_of_the_whole_line(blo, bhi):
    """The Thomas recurrences split into consecutive pieces (an MPI rank's
    blocks, BlockGrid.solve) against lod_sweep on the whole lines:
    Neumann, Dirichlet and periodic faces with decay in the sweep."""
    from biosim.kernels.cpu import diffusion as K

    n, A, B, r, k = 23, 3, 70, 0.8, 0.01
    cp, inv, zz = np.empty(n), np.empty(n), np.empty(n)
    vr, zden = K.thomas_coefficients(n, r, blo, bhi, cp, inv, zz, k)
    rng = np.random.default_rng(1)
    c = rng.random((A, n, B))
    lo = rng.random((A, B)) if blo != 2 else np.zeros((A, B))
    hi = rng.random((A, B)) if bhi != 2 else np.zeros((A, B))
    whole = c.copy()
    K.lod_sweep(whole, r, cp, inv, zz, vr, zden, blo == 2, lo, hi)
    pieces = c.copy()
    cuts = [0, 5, 6, 17, n]  # pieces of 5, 1, 11 and 6 entries
    chunks = [(0, A, 0, B // 2), (0, A, B // 2, B)]  # each piece's lines in two chunks, as the ranks go
    for a, b in zip(cuts[:-1], cuts[1:]):  # forward, up the pieces
        for chunk in chunks:
            K.thomas_forward_piece(pieces[:, a:b], *chunk, a, n, r, inv, pieces[:, a - 1] if a else np.empty((A, B)),
                                   lo, hi)
    for a, b in reversed(list(zip(cuts[:-1], cuts[1:]))):  # backward, down
        for chunk in chunks:
            K.thomas_backward_piece(pieces[:, a:b], *chunk, a, n, cp, pieces[:, b] if b < n else np.empty((A, B)))
    if blo == 2:
        first, last = pieces[:, 0].copy(), pieces[:, -1].copy()
        for a, b in zip(cuts[:-1], cuts[1:]):
            K.periodic_piece(pieces[:, a:b], a, n, zz, vr, zden, first, last)
    assert np.ptp(whole) > 0.1
    np.testing.assert_array_equal(pieces, whole)


def test_canonical_source_sums_add_each_voxels_entries_in_key_order():
    """The per-voxel sums against a slow reference: each voxel's entries
    sorted by key and added one by one from 0, bit for bit, over ranges of
    voxels summed by different tasks (crowded voxels past the insertion
    sort's 48 entries included); unused terms untouched."""
    from biosim.kernels.cpu import diffusion as KD

    rng = np.random.default_rng(3)
    nvox = 20 * (1 << KD.SOURCE_RANGE_BITS) + 123  # several tasks of SOURCE_GROUP ranges
    m = 40000
    vox = rng.integers(0, nvox, m)
    vox[:300] = 7  # one crowded voxel
    vox[-1] = nvox - 1
    key = rng.permutation(10 * m)[:m].astype(np.int64)
    values = rng.normal(size=(4, m))
    used = np.array([True, False, True, True])
    voxels = np.empty(m, np.int64)
    sums = [np.empty(m), np.full(1, -9.0), np.empty(m), np.empty(m)]
    k = KD.canonical_source_sums(vox, key, values, used, nvox, voxels, *sums)
    got = voxels[:k]
    assert np.unique(got).size == k and set(got.tolist()) == set(vox.tolist())
    for t in (0, 2, 3):
        ref = {}
        for q in np.lexsort((key, vox)):
            ref[vox[q]] = ref.get(vox[q], 0.0) + values[t, q]
        np.testing.assert_array_equal(sums[t][:k], np.array([ref[v] for v in got.tolist()]))
    assert sums[1][0] == -9.0
    # an MPI rank's span [lo, hi): the same sums of its voxels only, the other entries skipped
    lo, hi = 5, 7 * (1 << KD.SOURCE_RANGE_BITS) + 99
    got = got.copy()
    part = [np.empty(m), np.full(1, -9.0), np.empty(m), np.empty(m)]
    j = KD.canonical_source_sums(vox, key, values, used, nvox, voxels, *part, lo, hi)
    inside = (got >= lo) & (got < hi)
    assert j == np.count_nonzero(inside) > 0 and 7 in voxels[:j].tolist()
    order = np.argsort(voxels[:j])
    for t in (0, 2, 3):
        np.testing.assert_array_equal(part[t][:j][order], sums[t][:k][inside][np.argsort(got[inside])])
