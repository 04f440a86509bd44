"""Every benchmark script runs, at a tiny size, and prints its numbers."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "benchmarks")


def run_bench(name, *args):
    r = subprocess.run([sys.executable, os.path.join(BENCH, name), *args], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.mark.slow
def test_bench_mechanics_tiny():
    out = run_bench("bench_mechanics.py", "--agents", "3000", "--steps", "2", "--memory-agents", "0")
    assert re.search(r"1 thread\(s\):\s+[\d.]+ M agent-updates/s", out)
    assert "cKDTree baseline" in out and "bytes" in out and "speed-up" in out


def test_bench_mechanics_periodic_tiny():
    out = run_bench("bench_mechanics.py", "--agents", "3000", "--steps", "2", "--memory-agents", "0",
                    "--threads", "1", "--boundary", "periodic")
    assert "periodic box" in out and re.search(r"1 thread\(s\):\s+[\d.]+ M agent-updates/s", out)
    assert "cKDTree baseline" in out


@pytest.mark.parametrize("boundary", ["closed", "periodic"])
def test_ckdtree_baseline_is_the_engine_step(boundary):
    """The cKDTree baseline takes the engine's mechanics step: the same
    positions after one step from the same start."""
    import biosim as bs
    from biosim.bench.mechanics import _make, measure_ckdtree

    n = 2000
    sim = _make(n, boundary=boundary)
    sim.add_agents("cells", bs.init.uniform(n, sim.box, seed=3), diameter=1.0)
    start = sim.agents.position.copy()
    sim.run(1)
    got = sim.agents.position[np.argsort(sim.agents.uid)]
    ref = measure_ckdtree(n, 1, boundary, return_positions=True)
    assert not np.allclose(got, start)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


@pytest.mark.slow
def test_bench_diffusion_tiny():
    out = run_bench("bench_diffusion.py", "--sizes", "12", "--steps", "2")
    assert "numpy explicit step" in out
    assert re.search(r"implicit\s+1 thread\(s\):\s+[\d.]+ M voxel-updates/s", out)


@pytest.mark.slow
def test_bench_render_tiny():
    from biosim import viz

    if not viz.rendering_available()[0]:
        pytest.skip("no offscreen OpenGL here")
    out = run_bench("bench_render.py", "--sizes", "300", "--repeats", "1")
    assert re.search(r"N=\s+300:\s+[\d.]+ s/frame", out) and "faster" in out


@pytest.mark.slow
def test_bench_sir_tiny():
    out = run_bench("bench_sir.py", "--agents", "5000", "--steps", "3")
    assert re.search(r"N=\s+5,000\s+1 thread\(s\):\s+[\d.]+ M agent-updates/s \([\d.]+x BioDynaMo", out)
    assert re.search(r"as a user rule:\s+[\d.]+ M agent-updates/s; rule [\d.]+ ms/step, models.Infection "
                     r"[\d.]+ ms/step with the same search \(pull: rule/built-in [\d.]+x\)", out)


def test_bench_neurites_tiny():
    out = run_bench("bench_neurites.py", "--agents", "3000", "--steps", "3")
    assert re.search(r"N=\s+3,000\s+1 thread\(s\):\s+[\d.]+ M agent-updates/s; \d+ ms/step \(.*\); "
                     r"\d+ B/agent held at the end \(peak \d+ per starting agent\); [\d,]+ elements at the end", out)
    assert re.search(r"2 thread\(s\):\s+[\d.]+ M agent-updates/s, [\d.]+x of 1 thread, efficiency \d+%", out)


def test_neurite_memory_counts_each_array_once_per_agent():
    out = run_bench("neurite_memory.py", "--agents", "2000", "--steps", "2")
    n, cap = (int(v.replace(",", "")) for v in re.search(r"([\d,]+) agents, table capacity ([\d,]+)", out).groups())
    rows = {path: float(b) for b, path in re.findall(r"^\s+([\d.]+) B/agent\s+(sim\S+)$", out, re.M)}
    distal = [b for path, b in rows.items() if path.endswith("['distal']")]
    assert distal == [pytest.approx(24 * cap / n, abs=0.06)]  # a (capacity, 3) float64 column, once
    total = float(re.search(r"([\d.]+) B/agent in all", out).group(1))
    assert sum(rows.values()) <= total + 0.1 * len(rows) and total > 150


def test_circles_step_matches_the_ckdtree_reference():
    import numpy as np

    from biosim import bench

    sim = bench.make_circles(3000, seed=3)
    pos0, uid0 = sim.agents.position.copy(), sim.agents.uid.copy()
    for _ in range(3):
        ref = bench.circles_reference(pos0, lower=sim.box.lower, upper=sim.box.upper)
        sim.run(1)
        got = sim.agents.position[sim.agents.rows_of(uid0)]
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
        assert np.abs(ref - pos0).max() > 1e-3  # agents did move
        pos0 = got


@pytest.mark.slow
def test_bench_circles_tiny():
    out = run_bench("bench_circles.py", "--agents", "5000", "--steps", "2")
    assert re.search(r"1 thread\(s\):\s+[\d.]+ M agent-updates/s", out)
    assert "cKDTree baseline" in out and "speed-up" in out and "bytes/agent" in out


@pytest.mark.slow
def test_soak_tiny():
    out = run_bench("soak.py", "--agents", "1500", "--steps", "200", "--report", "50")
    rows = [ln for ln in out.splitlines() if "uids unique, count = start + births - deaths" in ln]
    assert len(rows) == 4 and "bookkeeping OK" in out
    births, deaths = (int(x.replace(",", "")) for x in rows[-1].split()[2:4])
    assert births > 100 and deaths > 100


def test_physicell_side_by_side_tiny():
    out = run_bench("physicell_side_by_side.py", "--cells", "40", "--hours", "0.2", "--seeds", "2", "--every", "0.1")
    rows = [re.findall(r"\d+\.\d+", ln) for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert len(rows) == 9 and rows[0][1] == "40.00" and rows[1][1] == "16.83"  # 40 cells of 2494 µm³ at the start
    assert "wall time: biosim" in out
    if "pyphysicell" in out.splitlines()[1]:  # the optional baseline reads the same settings file
        assert rows[0][3] == "40.00" and rows[1][3] == "16.83" and "x faster" in out


def test_physicell_mechanics_tiny():
    out = run_bench("physicell_mechanics.py", "--agents", "2000", "--steps", "1", "--repeat", "1", "--threads", "1")
    rates = {ln.split()[0] + ln.split()[1]: ln for ln in out.splitlines() if re.match(r"^(uniform|pair|per|none|att)",
                                                                                       ln)}
    assert {"uniform1", "pairtable", "percell", "none1", "attachments1"} <= set(rates), out
    assert "1.000x" in rates["uniform1"] and "n/a" not in out
    held = float(rates["attachments1"].split()[-1])
    assert held >= 0.0


def test_phenotype_kernels_tiny():
    out = run_bench("phenotype_kernels.py", "--agents", "3000", "--steps", "2", "--repeat", "1")
    assert "cells.CellCycle:" in out and "cells.Apoptosis:" in out and re.search(r"whole step: [0-9.]+ ms/step", out)


def test_bench_sweep_tiny():
    out = run_bench("bench_sweep.py", "--runs", "2", "--agents", "100", "--steps", "3")
    assert "2 runs of soma clustering (100 cells, 3 steps)" in out  # and the script checked the bits agree
    assert re.search(r"speed-up of the sweep: [0-9.]+x, of at most [0-9.]+x on this machine \(2 workers x ", out)
    assert re.search(r"1 numba thread: [0-9.]+ s \(threads speed one run up [0-9.]+x\)", out)


def test_mpi_model_counts_the_aura_shell_and_the_crossings():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mpi_model", os.path.join(BENCH, "mpi_model.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    assert m.blocks(1000) == (10, 10, 10) and sorted(m.blocks(84096)) == [32, 36, 73]
    # 8 ranks of a 200 µm cube at density 1e-3: blocks of 100 µm, a 10 µm aura: 120^3 - 100^3 µm³ of agents
    own, L, aura, mig, ab, mb = m.traffic(8e3, 8, 1e-3, 10.0, 0.5, 44.0, 320.0, "cubes")
    assert own == 1e3 and L == pytest.approx((100.0, 100.0, 100.0), rel=1e-12)
    assert aura == pytest.approx(1e-3 * (120 ** 3 - 100 ** 3)) and ab == pytest.approx(44 * aura)
    assert mig == pytest.approx(1e-3 * 6 * 100 ** 2 * 0.25) and mb == pytest.approx(320 * mig)
    with pytest.raises(ValueError, match="thinner than the interaction range"):
        m.traffic(8e3, 100, 1e-3, 10.0, 0.5, 44.0, 320.0, "slabs")
    out = run_bench("mpi_model.py")
    assert re.search(r"^cubes\s+1e\+06\s+1260 x 1260 x 1260", out, re.M) and "TeraAgent" in out


def test_every_benchmark_has_a_test():
    assert {f for f in os.listdir(BENCH) if f.endswith(".py")} == {
        "bench_mechanics.py", "bench_diffusion.py", "bench_render.py", "bench_sir.py", "soak.py",
        "bench_circles.py", "bench_suite.py", "mechanics_budget.py", "rule_startup.py",
        "gpu_check.py", "physicell_side_by_side.py", "physicell_mechanics.py", "phenotype_kernels.py",
        "bench_sweep.py", "mpi_model.py", "mpi_output.py", "bench_neurites.py", "neurite_memory.py"}  # gpu_check's test: tests/test_gpu.py; mpi_output's:
    # tests/test_mpi.py


def test_bench_on_the_gpu_prints_its_row_and_the_ratio_to_the_cpu():
    """`biosim bench --device cuda` (under the simulator where there is no
    GPU): a "gpu" row after the CPU rows, its ratio to the CPU, and FLAME GPU
    2's published circles figures beside biosim's."""
    from conftest import CUDA

    if not CUDA:
        pytest.skip("numba-cuda not installed")
    out = subprocess.run([sys.executable, "-m", "biosim.cli", "bench", "--device", "cuda", "--scenario", "circles",
                          "--agents", "300", "--threads", "1", "--steps", "1", "--no-baseline", "--out", ""],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"^\s+300\s+1\s", out.stdout, re.M) and re.search(r"^\s+300 gpu\s", out.stdout, re.M)
    assert re.search(r"cuda:0 is [0-9.]+x the CPU with 1 thread\(s\)", out.stdout)
    assert "FLAME GPU 2 (published, 10^6 agents): H100 PCIe 2.12 ms/step, H100 NVL 1.84 ms/step" in out.stdout


@pytest.mark.slow
def test_rule_startup_prints_both_processes():
    out = run_bench("rule_startup.py")
    m = re.search(r"first process ([0-9.]+) s \(compiles and caches\), second process ([0-9.]+) s \(loads\): "
                  r"([0-9.]+)x", out)
    assert m, out
    first, second, ratio = (float(g) for g in m.groups())
    assert first > 0 and second > 0 and ratio == pytest.approx(first / second, rel=0.1)


@pytest.mark.slow
def test_mechanics_budget_tiny():
    out = run_bench("mechanics_budget.py", "--agents", "3000", "--threads", "1", "--steps", "2", "--repeat", "1")
    for label in ("whole step", "grid build and sort", "of which the state check", "sorted columns",
                  "force kernel as shipped", "gather of the neighbourhoods", "distance tests and sums", "force law",
                  "bound if the force law cost nothing", "bound if the gather cost nothing too"):
        assert label in out
    assert re.search(r"throughput as measured: [\d.]+ M agent-updates/s", out)


def test_mechanics_budget_pair_loop_sums_every_pair_in_range():
    """The budget's loop without a force law does the force kernel's distance
    work: its sums of separations equal a cKDTree reference."""
    import importlib.util

    import numpy as np
    from scipy.spatial import cKDTree

    from biosim.bench.mechanics import make_mechanics
    from biosim.kernels.cpu.forces import gather_capacity
    from numba import get_num_threads

    spec = importlib.util.spec_from_file_location("mechanics_budget", os.path.join(BENCH, "mechanics_budget.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sim = make_mechanics(3000)
    sim.run(1)
    t = sim.agents
    grid = sim._neighbour_grid(sim.mechanics.cutoff(t.diameter.max()))
    args = grid.kernel_args()
    cell_start, order, lower, inv_h, dims, length, periodic, cutoff = args
    buf = np.zeros((get_num_threads(), 6, gather_capacity(cell_start, dims, inv_h, cutoff, len(t))[0]))
    out = np.full((len(t), 3), np.nan)
    mod.pairs_without_law(np.array([cutoff * cutoff, 0.0, 1.0]), t.type, sim.mechanics._NO_TABLE, len(t), *args,
                          grid.sorted_columns(t, 4), buf, out, np.empty(len(t), dtype=np.uint8))
    pos = t.position
    pairs = cKDTree(pos).query_pairs(cutoff, output_type="ndarray")
    d = pos[pairs[:, 0]] - pos[pairs[:, 1]]
    ref = np.stack([np.bincount(pairs[:, 0], d[:, k], len(t)) - np.bincount(pairs[:, 1], d[:, k], len(t))
                    for k in range(3)], axis=1)
    assert len(pairs) > 5 * len(t)  # about 7 per agent (14 neighbours), fewer at the walls
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-11)


# -- the suite (biosim bench) ------------------------------------------------------
@pytest.mark.parametrize("name", ["circles", "mechanics", "proliferation", "epidemiology", "clustering",
                                  "physicell_template"])
def test_every_scenario_runs_and_times_its_phases(name):
    from biosim import bench

    r = bench.measure_scenario(name, 1500, 2, repeat=2)
    assert r["scenario"] == name and r["agents"] == 1500 and r["steps"] == 2 and r["repeat"] == 2
    assert len(r["repeats_updates_per_s"]) == 2 and all(u > 0 for u in r["repeats_updates_per_s"])
    assert r["updates_per_s"] in r["repeats_updates_per_s"] and r["compile_s"] > 0
    assert r["peak_bytes_per_agent"] >= r["bytes_per_agent"]
    ms = r["ms_per_step"]
    expect = {"circles": ["neighbours", "behaviours"], "mechanics": ["neighbours", "mechanics"],
              "proliferation": ["neighbours", "behaviours", "mechanics", "commit"],
              "epidemiology": ["neighbours", "behaviours"],
              "clustering": ["neighbours", "behaviours", "mechanics", "substances"],
              "physicell_template": ["neighbours", "mechanics", "substances"]}[name]
    assert all(ms.get(k, 0) > 0 for k in expect), ms
    assert sum(ms.values()) <= 1e3 * r["seconds"] / 2 * 1.01


def test_scenario_definitions():
    import numpy as np

    from biosim import bench

    # PhysiCell's template: 50^3 voxels of 20 µm, diffusion at 0.01 min inside 0.1 min steps, 2494 µm³ cells
    sim = bench.make_physicell_template(500)
    s = sim.substances["substrate"]
    assert s.shape == (50, 50, 50) and s.substeps(sim.dt) == (10, pytest.approx(0.01))
    assert sim.dt == 0.1 and np.allclose(sim.box.lower, -500) and np.allclose(sim.box.upper, 500)
    assert np.allclose(np.pi / 6 * sim.agents.diameter ** 3, 2494.0)
    # the full phenotype every 6 min, with PhysiCell's conventions, wall and force
    beh = sim.populations["default"].behaviours
    assert [type(b).__name__ for b in beh] == ["Volume", "CellCycle", "Apoptosis", "Necrosis"]
    assert [b.every for b in beh] == [60, 60, 60, 60]
    assert beh[1].probability == "linear" and beh[1].placement == "physicell" and beh[2].phases and beh[3].phases
    assert sim.mechanics.wall == 100.0 and s.decay_split and s.dirichlet_layer
    # proliferation: a 20 µm lattice, diameters between a fresh daughter and the division size
    sim = bench.make_proliferation(1000)
    p = sim.agents.position
    assert len(p) == 1000 and np.allclose(np.unique(p[:, 0]), 20.0 * np.arange(10))
    d = sim.agents.diameter
    assert d.min() >= 32.0 / 2 ** (1 / 3) - 1e-9 and d.max() <= 32.0
    # clustering: the box a whole number of voxels, two types of equal size
    sim = bench.make_clustering(5000)
    assert np.allclose(sim.box.length / 10.0, np.round(sim.box.length / 10.0))
    assert np.bincount(sim.agents.type).tolist() == [2500, 2500]


def test_pyphysicell_baseline_builds_the_same_model():
    from biosim import bench

    ok, why = bench.pyphysicell_available()
    if not ok:
        assert "pip install" in why
        pytest.skip(why)
    r = bench.measure_pyphysicell(300, 3)
    assert r["agents"] == 300 and r["steps"] == 3 and r["seconds"] > 0 and r["cells_end"] >= 300
    m = bench.scenarios._pyphysicell_model(60.0)
    assert m.domain.shape == (50, 50, 50) and not m.domain.use_2D
    assert (m.time.dt_diffusion, m.time.dt_mechanics, m.time.dt_phenotype) == (0.01, 0.1, 6.0)


@pytest.mark.slow
def test_biosim_bench_cli(tmp_path):
    import json

    out = tmp_path / "res"
    r = subprocess.run([sys.executable, "-m", "biosim.cli", "bench", "--scenario", "circles,physicell_template",
                        "--agents", "1500", "--threads", "1,2", "--steps", "2", "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    text = r.stdout
    assert re.search(r"circles: FLAME GPU 2.*2 steps, strong scaling", text)
    assert re.search(r"^\s+1,500\s+1\s+[\d.]+\s+[\d.]+ \|", text, re.M)
    assert re.search(r"^\s+1,500\s+2\s+[\d.]+\s+[\d.]+ \|.*\|\s+[\d.]+x\s+\d+%", text, re.M)
    assert "baseline numpy + cKDTree at 1,500 agents" in text and "compilation or cache load" in text
    assert "baseline pyphysicell" in text  # measured, or skipped with the reason
    if "pyphysicell skipped" not in text:
        assert "note: the same physics as pyphysicell (PhysiCell 1.14.2)" in text
    res = json.loads((out / "bench.json").read_text())
    assert set(res["machine"]) >= {"cpu", "logical_cores", "numba", "numpy", "python", "biosim"}
    runs = res["scenarios"]["circles"]["runs"]
    assert [(x["agents"], x["threads"]) for x in runs] == [(1500, 1), (1500, 2)]
    assert runs[1]["efficiency"] == pytest.approx(runs[1]["speedup"] / 2)
    assert res["scenarios"]["circles"]["baselines"]["1500"]["updates_per_s"] > 0
    assert (out / "bench.png").stat().st_size > 10_000
    # weak scaling doubles the agents with the threads
    r = subprocess.run([sys.executable, "-m", "biosim.cli", "bench", "--scenario", "mechanics", "--agents", "1000",
                        "--threads", "1,2", "--weak", "--steps", "1", "--no-baseline", "--out", ""],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"^\s+1,000\s+1 ", r.stdout, re.M) and re.search(r"^\s+2,000\s+2 ", r.stdout, re.M)
    assert "weak scaling" in r.stdout and not (tmp_path / "bench-results").exists()


@pytest.mark.parametrize("args, message", [
    (["--scenario", "nope"], "scenario: 'nope'; choose from circles, mechanics"),
    (["--threads", "0"], "threads: '0' must be a positive integer"),
    (["--agents", "many"], "agents: 'many' is not a number"),
    (["--steps", "0"], "steps: '0' must be a positive integer"),
    (["--repeat", "-1"], "repeat: '-1' must be a positive integer"),
    (["--scenario", "circles", "--agents", "1e12"], "agents: 1,000,000,000,000 agents of circles need about"),
])
def test_biosim_bench_refuses_bad_input(args, message):
    r = subprocess.run([sys.executable, "-m", "biosim.cli", "bench", *args, "--out", ""], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and message in r.stderr, r.stderr


def test_a_failed_run_is_reported_and_the_suite_goes_on(monkeypatch, capsys):
    from biosim.bench import suite

    real = suite._run_code

    def flaky(call, threads, extra_env=None, ranks=1):
        if threads == 2:
            raise RuntimeError("benchmark subprocess failed:\nTraceback ...\nMemoryError: out of memory")
        return real(call, threads, extra_env, ranks)

    monkeypatch.setattr(suite, "_run_code", flaky)
    res = suite.run_suite("circles,epidemiology", agents="1500", threads="1,2", steps=1, baseline=True, out=None)
    text = capsys.readouterr().out
    assert text.count("failed: MemoryError: out of memory") == 2
    assert "baseline numpy + cKDTree at 1,500 agents, 1 thread(s)" in text  # beside the runs that worked
    for name in ("circles", "epidemiology"):
        part = res["scenarios"][name]
        assert [(r["agents"], r["threads"]) for r in part["runs"]] == [(1500, 1)]
        assert part["failures"][0]["threads"] == 2 and "MemoryError" in part["failures"][0]["error"]
