"""Every benchmark script runs, at a tiny size, and prints its numbers."""
import os
import re
import subprocess
import sys

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


def test_every_benchmark_has_a_test():
    assert {f for f in os.listdir(BENCH) if f.endswith(".py")} == {
        "bench_mechanics.py", "bench_diffusion.py", "bench_render.py", "bench_sir.py", "soak.py",
        "bench_circles.py"}
