"""The backend seam and the CUDA backend (issue 16).

Every test with the ``device`` fixture runs on the CPU and on the CUDA
backend: a real GPU where there is one, else numba-cuda's simulator (set
by conftest.py), at a few hundred agents.  The PTX gate compiles every CUDA
kernel for sm_90 in a subprocess without the simulator."""
import os
import warnings
import subprocess
import sys

import numpy as np
import pytest

import biosim as bs
from biosim import backends

from conftest import CUDA
from reference import brute_pairs, naive_forces, soft_sphere

needs_cuda = pytest.mark.skipif(not CUDA, reason="numba-cuda not installed")


# -- choosing a device ----------------------------------------------------------------
@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cuda:-1", "tpu:0", ""])
def test_a_bad_device_name_lists_what_is_allowed(bad):
    with pytest.raises(ValueError, match=r'device must be one of "cpu", "cuda", "cuda:N"') as e:
        bs.Simulation(bs.Box.cube(10.0), device=bad)
    assert repr(bad) in str(e.value)


def test_a_device_that_is_not_a_string_is_refused():
    with pytest.raises(TypeError, match="device must be a string"):
        bs.Simulation(bs.Box.cube(10.0), device=0)


def test_cuda_without_a_gpu_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(backends, "cuda_devices", lambda: [])
    with pytest.raises(ValueError, match=r"device='cuda': no CUDA GPU is available.*numba-cuda.*device=\"cpu\""):
        bs.Simulation(bs.Box.cube(10.0), device="cuda")


@needs_cuda
def test_a_gpu_index_beyond_those_found_lists_them():
    n = len(backends.cuda_devices())
    with pytest.raises(ValueError, match=rf"there is no GPU {n}\. GPUs found: cuda:0"):
        bs.Simulation(bs.Box.cube(10.0), device=f"cuda:{n}")


def test_the_default_device_is_the_cpu_or_biosim_device(monkeypatch):
    monkeypatch.delenv("BIOSIM_DEVICE", raising=False)
    sim = bs.Simulation(bs.Box.cube(10.0))
    assert sim.device == "cpu" and not sim.backend.on_device
    assert sim.metadata()["device"] == "cpu"
    if CUDA:
        monkeypatch.setenv("BIOSIM_DEVICE", "cuda")
        assert bs.Simulation(bs.Box.cube(10.0)).device == "cuda:0"


def test_the_command_line_refuses_a_bad_device():
    out = subprocess.run([sys.executable, "-m", "biosim.cli", "--device", "npu", "info"], capture_output=True,
                         text=True)
    assert out.returncode != 0 and "--device" in out.stderr and "'npu'" in out.stderr


# -- kernels against the CPU's ---------------------------------------------------------------
def _cloud(n, edge, seed):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0.0, edge, (n, 3))
    pos[7] = pos[8]  # coincident centres
    uid = rng.permutation(n).astype(np.int64) * 5 + 3
    return pos, uid


@needs_cuda
@pytest.mark.parametrize("block", [32, 128])
@pytest.mark.parametrize("periodic", [False, True])
def test_the_gpu_sort_is_the_canonical_order_bit_for_bit(block, periodic, monkeypatch):
    from numba import cuda

    from biosim.kernels.cpu import grid as G
    from biosim.kernels.cuda import _launch
    from biosim.kernels.cuda import grid as CG

    monkeypatch.setattr(_launch, "BLOCK", block)
    n = 400
    pos, uid = _cloud(n, 50.0, 1)
    pos[:5] -= 3.0  # outside the box: clamped (closed) or wrapped (periodic) by the binning
    lower, dims = np.zeros(3), np.array([5, 4, 6])
    inv_h, per = dims / 50.0, np.array([periodic] * 3)
    cell = np.empty(n, np.int32)
    G.assign_cells(pos, n, lower, inv_h, dims, per, cell)
    ncells = int(dims.prod())
    cs, order = np.empty(ncells + 1, np.int64), np.empty(n, np.int32)
    G.canonical_sort(cell, uid, uid.max() + 1, n, np.empty((1, ncells), np.int32), np.empty((1, 1), np.int64), cs,
                     order, np.empty(n, np.int64))
    dcell = cuda.device_array(n, np.int64)
    CG.assign_cells(cuda.to_device(pos), n, lower, inv_h, dims, per, dcell)
    dcs, dorder = cuda.device_array(ncells + 1, np.int64), cuda.device_array(n, np.int64)
    moved = CG.canonical_sort(dcell, cuda.to_device(uid), 0, n, cuda.device_array(ncells + 1, np.int64), None, dcs,
                              dorder, cuda.device_array(n, np.int64))
    assert np.array_equal(dcell.copy_to_host(), cell)
    assert np.array_equal(dcs.copy_to_host(), cs)
    assert np.array_equal(dorder.copy_to_host(), order)
    assert moved == np.count_nonzero(order != np.arange(n))


@needs_cuda
def test_gpu_random_numbers_match_the_cpu():
    from numba import cuda

    from biosim.kernels.cpu import rng as R
    from biosim.kernels.cuda import rng as CR

    uids = np.arange(0, 3000, 7, dtype=np.int64) * 1_000_003
    duids = cuda.to_device(uids)
    for name, shape, exact in (("uniform_array", (uids.size,), True), ("normal_array", (uids.size,), False),
                               ("unit_vector_array", (uids.size, 3), False)):
        a, b = np.empty(shape), cuda.device_array(shape)
        getattr(R, name)(42, uids, 9, 3, 1, a)
        getattr(CR, name)(42, duids, 9, 3, 1, b)
        if exact:
            assert np.array_equal(a, b.copy_to_host()), name
        else:  # polynomials NVVM may fuse: within 1e-14 (docs/guide/determinism.md)
            np.testing.assert_allclose(b.copy_to_host(), a, rtol=0, atol=1e-14, err_msg=name)


# -- whole simulations on every backend -------------------------------------------------------
MECHANICS = {
    "soft": lambda: bs.SoftSphere(),
    "typed": lambda: bs.SoftSphere(adhesion=[[0.4, 0.1], [0.1, 0.3]]),
    "physicell": lambda: bs.PhysiCellForce(adhesion=0.3),
    "physicell per cell": lambda: bs.PhysiCellForce(repulsion={"a": 10.0, "b": 4.0}, adhesion={"a": 0.4, "b": 1.0},
                                                    adhesion_range={"a": 1.25, "b": 1.6},
                                                    affinity=[[1.0, 0.3], [0.3, 2.0]]),
    "biodynamo": lambda: bs.BioDynaMoForce(),
}


def _two_types(device, mechanics, boundary, reorder_every=2, n=180):
    sim = bs.Simulation(bs.Box.cube(50.0), boundary=boundary, dt=0.1, seed=3, mechanics=mechanics,
                        reorder_every=reorder_every, device=device)
    pos, _ = _cloud(n, 50.0, 5)
    sim.add_agents("a", pos[: 2 * n // 3], diameter=10.0)
    sim.add_agents("b", pos[2 * n // 3:], diameter=8.0)
    return sim


def _by_uid(sim, column="position"):
    t = sim.agents
    return t.uid[np.argsort(t.uid)], t[column][np.argsort(t.uid)]


@pytest.mark.parametrize("law", list(MECHANICS))
@pytest.mark.parametrize("boundary", ["closed", "periodic", "open"])
def test_mechanics_agree_with_the_cpu(device, law, boundary):
    """The same script on each backend; the CPU's positions are the reference
    (forces within ~1e-13 relative: see docs/guide/determinism.md)."""
    ref = _two_types("cpu", MECHANICS[law](), boundary)
    ref.run(3)
    sim = _two_types(device, MECHANICS[law](), boundary)
    sim.run(3)
    u0, p0 = _by_uid(ref)
    u1, p1 = _by_uid(sim)
    assert np.array_equal(u0, u1)
    if device == "cpu":
        assert np.array_equal(p0, p1)
    else:
        np.testing.assert_allclose(p1, p0, rtol=0, atol=1e-10)
        assert not np.array_equal(p1, _by_uid(_two_types("cpu", MECHANICS[law](), boundary))[1])  # they moved


def test_gpu_forces_match_the_brute_force_reference(device):
    sim = _two_types(device, bs.SoftSphere(adhesion=0.4), "periodic", n=120)
    force = sim.mechanics.forces(sim)
    force = sim.backend.to_host(force)[: len(sim.agents)]
    t = sim.agents
    with np.errstate(invalid="ignore", divide="ignore"):  # the coincident pair, left out below
        ref, scale = naive_forces(t.position, t.diameter, soft_sphere, (2.0, 0.4, 1.25), sim.box, True)
    mask = ~np.isin(t.uid, [7, 8])  # the coincident pair: pushed along a random direction
    err = np.abs(force[mask] - ref[mask]).max(axis=1) / np.maximum(scale[mask], 1e-300)
    assert err.max() < 1e-12 and np.abs(ref[mask]).max() > 0.1


@needs_cuda
@pytest.mark.parametrize("reorder_every", [1, 1000])
def test_two_gpu_runs_are_bit_identical_whatever_the_block_size(reorder_every, monkeypatch):
    from biosim.kernels.cuda import _launch

    runs = []
    for block in (32, 256):
        monkeypatch.setattr(_launch, "BLOCK", block)
        sim = _two_types("cuda", bs.PhysiCellForce(adhesion=0.3), "periodic", reorder_every)
        sim.run(3)
        runs.append(_by_uid(sim))
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])


@needs_cuda
def test_reordering_changes_no_bit_on_the_gpu():
    a = _two_types("cuda", bs.SoftSphere(), "closed", reorder_every=1)
    b = _two_types("cuda", bs.SoftSphere(), "closed", reorder_every=1000)
    a.run(3)
    b.run(3)
    assert np.array_equal(_by_uid(a)[1], _by_uid(b)[1])


def test_columns_changed_from_python_reach_the_kernels(device):
    """An action moves agents through the numpy view: the device sees it."""
    sim = bs.Simulation(bs.Box.cube(40.0), dt=0.1, seed=1, mechanics=bs.SoftSphere(), device=device)
    sim.add_agents("a", [[10.0, 20.0, 20.0], [30.0, 20.0, 20.0]], diameter=10.0)

    def pull_together(s):
        if s.step == 1:
            s.agents.position[:, 0] = [16.0, 24.0]  # overlapping now: pushed apart next

    sim.add_action(pull_together)
    sim.run(2)
    x = np.sort(sim.agents.position[:, 0])
    assert x[0] < 16.0 and x[1] > 24.0  # repelled from the positions the action set
    sim.agents["diameter"][:] = 4.0
    sim.run(1)
    assert np.allclose(sim.agents.diameter, 4.0)


def test_growth_division_runs_on_every_backend(device):
    """Behaviours without a GPU kernel yet run on the host copy of the columns
    (the profile shows them): births, deaths and uids are the CPU's."""
    from biosim import models

    def make(dev):
        sim = bs.Simulation(bs.Box.cube(80.0), dt=0.5, seed=2, device=dev)
        pop = sim.add_agents("t", bs.init.ball(20, 15.0, center=(40.0, 40.0, 40.0), seed=1),
                             diameter=np.linspace(10.0, 12.5, 20))
        pop.behaviours += [models.GrowthDivision(growth_rate=200.0, division_diameter=12.6),
                           models.Apoptosis(rate=0.01)]
        return sim

    ref, sim = make("cpu"), make(device)
    ref.run(6)
    sim.run(6)
    assert len(sim.agents) == len(ref.agents) > 20
    u0, d0 = _by_uid(ref, "diameter")
    u1, d1 = _by_uid(sim, "diameter")
    assert np.array_equal(u0, u1)  # the same births and deaths, the same uids
    if device == "cpu":
        assert np.array_equal(d0, d1)
    else:  # cube roots by libdevice (numpy under the simulator): a few ulp from the CPU kernels
        np.testing.assert_allclose(d1, d0, rtol=1e-14, atol=0)
    np.testing.assert_allclose(_by_uid(sim)[1], _by_uid(ref)[1], rtol=0, atol=1e-9)


def test_snapshots_and_checkpoints_of_a_gpu_run(device, tmp_path):
    sim = _two_types(device, bs.SoftSphere(), "closed", n=60)
    sim.writers.append(bs.io.HDF5Writer(str(tmp_path / "run.h5"), every=2))
    sim.run(2)
    sim.save_checkpoint(str(tmp_path / "c.h5"))
    sim.run(2)
    run = bs.io.open_run(str(tmp_path / "run.h5"))
    snap = run.agents(-1)
    order = np.argsort(snap["uid"])
    assert np.array_equal(snap["position"][order], _by_uid(sim)[1])  # bit-exact with the live run
    back = bs.Simulation.load_checkpoint(str(tmp_path / "c.h5"))
    back.writers.clear()
    back.run(2)
    np.testing.assert_allclose(_by_uid(back)[1], _by_uid(sim)[1], rtol=0, atol=1e-10)


def test_neighbour_pairs_of_a_gpu_grid(device):
    sim = _two_types(device, bs.SoftSphere(), "periodic", n=100)
    offsets, rows = sim.neighbours(9.0)
    t = sim.agents
    got = {(min(t.uid[i], t.uid[j]), max(t.uid[i], t.uid[j]))
           for i in range(len(t)) for j in rows[offsets[i]:offsets[i + 1]]}
    want = {(min(t.uid[i], t.uid[j]), max(t.uid[i], t.uid[j]))
            for i, j in brute_pairs(t.position, 9.0, sim.box, True)}
    assert got == want and want


@needs_cuda
def test_the_circles_kernel_agrees_with_the_cpu():
    from biosim.bench.circles import make_circles

    a, b = make_circles(800), make_circles(800, device="cuda")
    a.run(2)
    b.run(2)
    np.testing.assert_allclose(_by_uid(b)[1], _by_uid(a)[1], rtol=0, atol=1e-12)


# -- the PTX gate ----------------------------------------------------------------------------------
@needs_cuda
def test_every_cuda_kernel_compiles_to_ptx_for_sm90_without_float_atomics():
    pytest.importorskip("cuda.bindings", reason="numba-cuda[cu13] (NVVM) is needed to compile PTX")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-m", "biosim.kernels.cuda.ptx", "--cc", "9.0"], capture_output=True,
                         text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "CUDA kernels compile to PTX for sm_90 with no float atomics" in out.stdout
    assert "forces.FORCE_KERNELS['biodynamo']" in out.stdout


def test_the_ptx_gate_catches_float_atomics():
    from biosim.kernels.cuda.ptx import FLOAT_ATOMIC_ADD

    assert FLOAT_ATOMIC_ADD.search("atom.global.add.f64 %fd1, [%rd2], %fd3;")
    assert FLOAT_ATOMIC_ADD.search("red.global.add.f32 [%rd2], %f3;")
    assert not FLOAT_ATOMIC_ADD.search("atom.global.add.u64 %rd1, [%rd2], 1;")


def _growth_death_motility(dev):
    from biosim import models

    sim = bs.Simulation(bs.Box.cube(120.0), dt=0.5, seed=4, device=dev)
    pop = sim.add_agents("t", bs.init.ball(150, 30.0, center=(60.0, 60.0, 60.0), seed=2),
                         diameter=np.linspace(10.0, 12.5, 150))
    pop.behaviours += [models.GrowthDivision(growth_rate=100.0, division_diameter=12.6),
                       models.Apoptosis(rate=0.02), models.RandomWalk(diffusion=0.1)]
    return sim


@needs_cuda
@pytest.mark.parametrize("model", ["growth_death_motility", "substances_and_rules"])
def test_a_device_step_moves_no_column_across_the_bus(model, monkeypatch):
    """Growth, division, death, random motility, mechanics and the closed box;
    then every substance-coupled model and an agent rule: after the first
    step no column crosses the bus (only counts, the few rows of daughters
    and the dead, and face-sized boundary terms when they change do)."""
    sim = _growth_death_motility("cuda") if model == "growth_death_motility" else _coupled("cuda")[0]
    sim.run(1)
    moved = []
    B = sim.backend
    for name in ("copy_to_host", "upload", "to_host", "to_device"):
        orig = getattr(B, name)

        def spy(src, *dst, orig=orig, name=name):
            moved.append((name, len(src)))
            return orig(src, *dst)
        monkeypatch.setattr(B, name, spy)
    n0 = len(sim.agents)
    sim.run(4)
    assert sim.agents.total_births > 0 and sim.agents.total_deaths > 0 and len(sim.agents) != n0
    assert moved and not [m for m in moved if m[1] > 20], moved


def test_epidemiology_is_the_cpu_s_on_every_backend(device):
    """Random walk at fixed speed, infection by proximity and recovery in a
    periodic box (BioDynaMo's measles model, denser): the same infections,
    recoveries and uids on every backend (decisions are uniform draws);
    positions within the unit vectors' tolerance."""
    from biosim import models

    def make(dev):
        sim = bs.Simulation(bs.Box.cube(40.0), boundary="periodic", dt=1.0, seed=9, mechanics=None, device=dev)
        pos = bs.init.uniform(400, sim.box, seed=3)
        pop = sim.add_agents("people", pos[40:], diameter=2.0, state=np.int8(models.SUSCEPTIBLE))
        pop.behaviours += [models.RandomWalk(speed=1.5),
                           models.Infection(rate=0.5, radius=4.0, recovery=0.2, search="pull")]
        sim.add_agents("people", pos[:40], diameter=2.0, state=np.int8(models.INFECTED))
        return sim

    ref, sim = make("cpu"), make(device)
    ref.run(4)
    sim.run(4)
    u0, s0 = _by_uid(ref, "state")
    u1, s1 = _by_uid(sim, "state")
    assert np.array_equal(u0, u1) and np.array_equal(s0, s1)
    assert np.count_nonzero(s0 == 1) > 50 and np.count_nonzero(s0 == 2) > 5  # it spread, and some recovered
    np.testing.assert_allclose(_by_uid(sim)[1], _by_uid(ref)[1], rtol=0, atol=1e-11)


@needs_cuda
def test_outgrowing_device_memory_is_refused_before_the_state_changes(monkeypatch):
    sim = bs.Simulation(bs.Box.cube(100.0), dt=0.1, device="cuda", mechanics=None)
    sim.add_agents("a", bs.init.uniform(50, sim.box, seed=1))
    sim.run(1)
    monkeypatch.setattr(sim.backend, "free_memory", lambda: (40_000, 80 * 2**30))
    before = sim.agents.position.copy()
    with pytest.raises(MemoryError, match=r"cuda:0: 1,050 agents .* GiB more device memory .* 0\.00 GiB free of "
                                          r"80\.00 GiB"):
        sim.add_agents("a", bs.init.uniform(1000, sim.box, seed=2))
    assert len(sim.agents) == 50 and np.array_equal(sim.agents.position, before)


def test_a_cell_cycle_with_divisions_is_the_cpu_s_on_every_backend(device):
    from biosim import models

    def make(dev):
        sim = bs.Simulation(bs.Box.cube(100.0), dt=1.0, seed=5, device=dev)
        pop = sim.add_agents("c", bs.init.ball(60, 25.0, center=(50.0, 50.0, 50.0), seed=4), diameter=9.0,
                             phase=np.int8(np.arange(60) % 3 == 0))
        pop.behaviours += [models.CellCycle(("G1", "M"), (4.0, 3.0), fixed=(False, True), divide_after="M",
                                            growth_rate=20.0)]
        return sim

    ref, sim = make("cpu"), make(device)
    ref.run(6)
    sim.run(6)
    u0, p0 = _by_uid(ref, "phase")
    u1, p1 = _by_uid(sim, "phase")
    assert len(u0) > 60 and np.array_equal(u0, u1) and np.array_equal(p0, p1)
    assert np.array_equal(_by_uid(ref, "phase_age")[1], _by_uid(sim, "phase_age")[1])
    np.testing.assert_allclose(_by_uid(sim, "diameter")[1], _by_uid(ref, "diameter")[1], rtol=1e-14)
    sim.agents["phase"][0] = 7
    with pytest.raises(ValueError, match=r"CellCycle: column 'phase' holds 7, not a phase index 0\.\.1"):
        sim.run(1)


@needs_cuda
def test_the_gpu_check_script_writes_what_it_measured(tmp_path):
    """benchmarks/gpu_check.py at its smallest (no bench stage: no time left
    for it): the RNG, bit-for-bit and agreement stages."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(os.path.dirname(__file__), "..",
                                                                            "benchmarks", "gpu_check.py"))
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    out = tmp_path / "gpu_check.json"
    gc.main(["--quick", "--skip-tests", "--budget", "0", "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["rng"]["uniform_array"]["mismatches"] == 0
    assert r["bitwise"]["identical"] is True
    assert all(v["same_uids"] and v["max_position_diff_um"] < 1e-9 for v in r["agreement"].values())
    assert set(r["agreement"]) == {"circles", "mechanics", "proliferation", "epidemiology", "clustering"}
    assert r["bench"]["circles@200"] == {"skipped": "time budget"}  # quick sizes: N / 10^4, at least 200


@bs.agent_rule(reads=("diameter",), writes=("position", "age", "crowd"),
               columns={"age": ("float64", 0.0), "crowd": ("int64", 0)})
def crowding(a, ctx):
    """Every feature of a rule: its columns, draws, neighbours (distance,
    direction, uid, their columns), a substance's value and gradient,
    secretion, division and death."""
    a.age += ctx.dt
    k = 0
    push_x = 0.0
    for n in ctx.neighbours(14.0):
        if n.diameter > 0.0:
            k += 1
            push_x -= n.dx / (n.distance + 1.0) + 0.0 * n.dy * n.dz + 0.0 * n.uid
    a.crowd = k
    gx, gy, gz = ctx.gradient("o2")
    a.position[0] += 0.2 * push_x + 50.0 * gx
    a.position[1] += 50.0 * gy + 0.05 * ctx.normal(1)
    a.position[2] += 50.0 * gz
    c = ctx.concentration("o2")
    ctx.secrete("o2", 2.0 * c)
    if k >= 6 and ctx.uniform(0) < 0.3:
        a.die()
    elif k <= 2 and ctx.uniform(2) < 0.2:
        a.divide()


def _coupled(dev):
    """Every substance-coupled model and a rule: oxygen from a Dirichlet face,
    taken up and secreted; chemotaxis up its gradient, substance-limited
    growth, necrosis where it is low, a gated switch of population and of a
    state column."""
    from biosim import models

    sim = bs.Simulation(bs.Box.cube(100.0), dt=0.5, seed=6, device=dev)
    o2 = sim.add_substance("o2", diffusion=400.0, decay=0.02, spacing=10.0, initial=0.3,
                           boundary={"x-": bs.Dirichlet(1.0)})
    pos = bs.init.ball(90, 30.0, center=(50.0, 50.0, 50.0), seed=3)
    t = sim.add_agents("tumour", pos, diameter=np.linspace(9.0, 11.9, 90), hypoxic=np.int8(0))
    sim.add_agents("stem", [], diameter=10.0)
    t.behaviours += [models.GrowthDivision(growth_rate=60.0, division_diameter=12.0, substance=o2, threshold=0.6),
                     models.Uptake(o2, rate=2.0), models.Secretion(o2, rate=0.5, target=0.9),
                     models.Secretion(o2, rate=3.0), models.Chemotaxis(o2, speed=2.0),
                     models.Necrosis(o2, threshold=0.32, rate=0.4),
                     models.StateSwitch(1, rate=0.5, column="hypoxic", substance=o2, below=0.35),
                     models.StateSwitch("stem", rate=0.1, substance=o2, above=0.33, below=0.5), crowding]
    return sim, o2


def test_substance_models_and_rules_are_the_cpu_s_on_every_backend(device):
    """The same births, deaths, uids, populations and states as the CPU
    (decisions are uniform draws on values that agree to rounding);
    positions and concentrations within the documented tolerances."""
    (ref, a), (sim, b) = _coupled("cpu"), _coupled(device)
    ref.run(5)
    sim.run(5)
    u0, ty0 = _by_uid(ref, "type")
    u1, ty1 = _by_uid(sim, "type")
    assert np.array_equal(u0, u1) and np.array_equal(ty0, ty1)
    assert ref.agents.total_births > 5 and ref.agents.total_deaths > 5  # divisions (growth and rule), deaths
    assert 0 < np.count_nonzero(ty0 == 1) < len(ty0)  # some switched population
    for col in ("hypoxic", "crowd", "parent"):
        assert np.array_equal(_by_uid(ref, col)[1], _by_uid(sim, col)[1]), col
    assert 0 < np.count_nonzero(_by_uid(ref, "hypoxic")[1]) < len(u0)
    np.testing.assert_allclose(_by_uid(sim, "age")[1], _by_uid(ref, "age")[1], rtol=0, atol=0)
    np.testing.assert_allclose(_by_uid(sim)[1], _by_uid(ref)[1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(_by_uid(sim, "diameter")[1], _by_uid(ref, "diameter")[1], rtol=1e-13)
    np.testing.assert_allclose(b.concentration, a.concentration, rtol=1e-11, atol=1e-13)


def test_source_sums_are_the_cpu_s_bit_for_bit(device):
    """Many agents secreting into and taking up from few voxels, in several
    calls: the per-voxel sums in the canonical order, the same additions on
    every backend (no diffusion, no decay: the grid is the sums applied)."""
    from biosim import models

    def make(dev):
        sim = bs.Simulation(bs.Box.cube(40.0), dt=0.7, seed=3, device=dev, mechanics=None)
        s = sim.add_substance("s", diffusion=0.0, spacing=20.0, initial=1.0)
        pop = sim.add_agents("c", bs.init.uniform(300, sim.box, seed=8), diameter=np.linspace(3.0, 9.0, 300))
        pop.behaviours += [models.Secretion(s, rate=0.37), models.Uptake(s, rate=0.011),
                           models.Secretion(s, rate=0.05, target=2.5)]
        return sim, s

    (ref, a), (sim, b) = make("cpu"), make(device)
    ref.run(3)
    sim.run(3)
    assert np.abs(a.concentration - 1.0).min() > 0.01
    assert np.array_equal(a.concentration, b.concentration)


@pytest.mark.parametrize("boundary", ["closed", "periodic"])
def test_sampling_at_the_cells_is_the_cpu_s_on_every_backend(device, boundary):
    """Values and gradients at the agents' centres, sampled where the
    backend's kernels live, against Substance.sample on the host (the CPU
    kernel), including agents beyond the outermost voxel centres."""
    sim = bs.Simulation(bs.Box(np.zeros(3), [90.0, 60.0, 30.0]), boundary=boundary, device=device)
    s = sim.add_substance("s", diffusion=1.0, spacing=10.0,
                          initial=lambda x, y, z: np.sin(x / 13.0) * np.cos(y / 7.0) + 0.01 * z * z)
    pos = np.vstack([bs.init.uniform(150, sim.box, seed=4), [[0.0, 0.0, 0.0], [90.0, 60.0, 30.0], [1.0, 59.5, 29.0]]])
    sim.add_agents("c", pos)
    rows = sim.backend.to_device(np.arange(0, len(pos), 2, dtype=np.int64))
    value, grad = s.sample_rows(rows, gradient=True)
    v0, g0 = s.sample(sim.agents.position[::2], gradient=True)
    np.testing.assert_allclose(sim.backend.to_host(value), v0, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(sim.backend.to_host(grad), g0, rtol=1e-13, atol=1e-15)
    assert np.abs(g0).max() > 0.05


def test_the_profile_shows_no_host_work_but_output_and_actions(device):
    sim, _ = _coupled(device)
    sim.run(2)
    profile = sim.profile()
    lines = {line.split()[0]: line for line in profile.splitlines()[2:] if line.strip()}
    assert "tumour.crowding" in lines and "tumour.Chemotaxis" in lines
    if device == "cpu":
        assert "host" not in profile
    else:
        host = sorted(k for k, line in lines.items() if line.endswith("host"))
        assert host == ["actions", "output"], host  # Python callbacks and writers: host by nature


@needs_cuda
def test_a_rule_that_cannot_compile_for_the_gpu_says_why_and_whether_the_cpu_runs_it():
    """Compiled to PTX without a GPU (the first step on a GPU raises the same
    error): the rule's name, numba-cuda's message, and whether it works on
    the CPU."""
    pytest.importorskip("cuda.bindings", reason="numba-cuda[cu13] (NVVM) is needed to compile PTX")
    script = (
        "import numpy as np\n"
        "import biosim as bs\n"
        "from biosim.rules import compile_for_gpu\n"
        "@bs.agent_rule(writes=('age',), columns={'age': ('float64', 0.0)})\n"
        "def scratch(a, ctx):\n"
        "    buf = np.empty(3)\n"
        "    buf[0] = ctx.dt\n"
        "    a.age += buf[0]\n"
        "@bs.agent_rule(writes=('age',), columns={'age': ('float64', 0.0)})\n"
        "def broken(a, ctx):\n"
        "    a.age += 'x'\n"
        "sim = bs.Simulation(bs.Box.cube(50.0), device='cpu')\n"
        "pop = sim.add_agents('c', [[10.0, 10.0, 10.0]])\n"
        "for r in (scratch, broken):\n"
        "    pop.behaviours += [r]\n"
        "    try:\n"
        "        compile_for_gpu(pop.behaviours[-1], sim, pop)\n"
        "    except TypeError as e:\n"
        "        print('ERROR', e, '\\nEND')\n")
    path = os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "gpu_rule_errors.py")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(script)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, path], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    errors = out.stdout.split("\nEND")
    assert "agent rule 'scratch' could not be compiled for the GPU (sm_90) by numba-cuda" in errors[0]
    assert "It compiles for the CPU: run it with device='cpu'" in errors[0] and "np.empty(3)" in errors[0]
    assert "agent rule 'broken' could not be compiled for the GPU" in errors[1]
    assert "It does not compile for the CPU either" in errors[1] and "iadd" in errors[1]


@pytest.mark.parametrize("solver", ["implicit", "explicit"])
@pytest.mark.parametrize("faces", ["mixed", "periodic", "timed"])
def test_substances_agree_with_the_cpu(device, solver, faces):
    """Diffusion, decay, secretion and uptake on each backend: the CPU's
    grid to rounding (a Dirichlet face, a flux face, no-flux faces; a
    periodic box; a Dirichlet value that changes with time)."""
    from biosim import models

    def make(dev):
        sim = bs.Simulation(bs.Box(np.zeros(3), [100.0, 80.0, 60.0]), boundary="periodic" if faces == "periodic"
                            else "closed", dt=0.5, seed=2, device=dev)
        bc = {"mixed": {"x-": bs.Dirichlet(2.0), "y+": bs.Neumann(0.3)}, "periodic": None,
              "timed": bs.Dirichlet(lambda x, y, z, t: 1.0 + 0.01 * x + 0.001 * t)}[faces]
        s = sim.add_substance("o", diffusion=300.0, decay=0.05, spacing=10.0, solver=solver, boundary=bc,
                              initial=lambda x, y, z: np.sin(x / 20.0) + 1.5)
        pop = sim.add_agents("c", bs.init.uniform(40, sim.box, seed=1))
        pop.behaviours += [models.Secretion(s, rate=5.0), models.Uptake(s, rate=0.3)]
        return sim, s

    (ref, a), (sim, b) = make("cpu"), make(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the explicit solver's sub-steps
        ref.run(3)
        sim.run(3)
    before = make("cpu")[1].concentration
    assert np.abs(a.concentration - before).max() > 0.05  # it evolved
    np.testing.assert_allclose(b.concentration, a.concentration, rtol=1e-12, atol=1e-13)
    for s in (a, b):  # a write from Python reaches the device
        s.concentration[0, 0, 0] = 9.0
    ref.run(1)
    sim.run(1)
    np.testing.assert_allclose(b.concentration, a.concentration, rtol=1e-12, atol=1e-13)
