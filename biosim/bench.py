"""Benchmarks: mechanics (neighbour search plus soft-sphere forces) and
diffusion (both solvers).

Mechanics benchmark: neighbour search plus soft-sphere mechanics.

Scenario (fixed, so numbers compare across machines and versions): N agents
uniform at random in a closed cube of edge N^(1/3) (density 1 per unit
volume), diameter 1, ``SoftSphere(adhesion_range=1.5)`` so the interaction
range is 1.5, dt = 0.1.  One step = bin + sort + forces + capped update +
boundary.  Throughput is agent-updates per second (N x steps / wall time),
compilation excluded (one warm-up step first).  Each thread count runs in a
subprocess of its own with ``NUMBA_NUM_THREADS`` set.  Memory per agent is
(resident memory after the run - resident memory before the positions were
made) / N, in a process of its own.  The baseline is the same step written
with numpy and scipy's cKDTree, timed in the same run.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

RANGE = 1.5


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _make(n, seed=1):
    import biosim as bs

    edge = n ** (1.0 / 3.0)
    sim = bs.Simulation(bs.Box.cube(edge), boundary="closed", dt=0.1, seed=seed,
                        mechanics=bs.SoftSphere(repulsion=2.0, adhesion=0.4, adhesion_range=RANGE))
    return sim


def measure_engine(n, steps):
    """Run in the current process: dict with updates/s and per-phase ms/step."""
    import biosim as bs

    warm = _make(1000)
    warm.add_agents("cells", bs.init.uniform(1000, warm.box, seed=2), diameter=1.0)
    warm.run(1)  # compile (or load the cache) before anything is measured
    del warm
    rss0 = _rss_bytes()
    sim = _make(n)
    pos = bs.init.uniform(n, sim.box, seed=3)
    sim.add_agents("cells", pos, diameter=1.0)
    del pos
    sim.run(1)
    sim.timings.update(dict.fromkeys(sim.timings, 0.0))
    t0 = time.perf_counter()
    sim.run(steps)
    wall = time.perf_counter() - t0
    rss1 = _rss_bytes()
    import numba

    return {
        "agents": n, "steps": steps, "threads": numba.get_num_threads(), "seconds": wall,
        "updates_per_s": n * steps / wall,
        "ms_per_step": {k: 1e3 * v / steps for k, v in sim.timings.items() if v > 0},
        "bytes_per_agent": (rss1 - rss0) / n,
    }


def measure_ckdtree(n, steps):
    """The same step in numpy + scipy cKDTree (query_pairs, bincount sums)."""
    from scipy.spatial import cKDTree

    import biosim as bs

    sim = _make(n)
    pos = bs.init.uniform(n, sim.box, seed=3)
    m = sim.mechanics
    lower, upper = sim.box.lower, sim.box.upper
    t0 = time.perf_counter()
    for _ in range(steps):
        pairs = cKDTree(pos).query_pairs(RANGE, output_type="ndarray")
        i, j = pairs[:, 0], pairs[:, 1]
        d = pos[i] - pos[j]
        r = np.sqrt((d * d).sum(axis=1))
        s = 1.0  # (d_i + d_j) / 2 for unit diameters
        f = m.repulsion * np.maximum(0, 1 - r / s) - m.adhesion * np.maximum(0, 1 - r / (m.adhesion_range * s))
        fv = d * (f / r)[:, None]
        force = np.stack([np.bincount(i, fv[:, k], n) - np.bincount(j, fv[:, k], n) for k in range(3)], axis=1)
        disp = force * (sim.dt / m.damping)
        norm = np.linalg.norm(disp, axis=1)
        big = norm > m.max_displacement
        disp[big] *= (m.max_displacement / norm[big])[:, None]
        pos = np.clip(pos + disp, lower, upper)
    wall = time.perf_counter() - t0
    return {"agents": n, "steps": steps, "seconds": wall, "updates_per_s": n * steps / wall}


def _subprocess(kind, n, steps, threads=None):
    return _run_code(f"measure_{kind}({n}, {steps})", threads)


def main(agents=1_000_000, threads=None, steps=10, baseline=True, memory_agents=None, out=None):
    """Print the benchmark table; returns the results as a dict."""
    cores = os.cpu_count() or 1
    if threads is None:
        counts = sorted({1, cores})
    elif isinstance(threads, str):
        counts = [int(t) for t in threads.split(",") if t.strip()]
    else:
        counts = list(threads)
    print(f"biosim mechanics benchmark: N={agents:,} agents, density 1, range {RANGE}, {steps} steps, "
          f"closed box; {cores} cores")
    results = {"agents": agents, "steps": steps, "runs": []}
    for t in counts:
        r = _subprocess("engine", agents, steps, t)
        results["runs"].append(r)
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r["ms_per_step"].items())
        print(f"  {t:>2} thread(s): {r['updates_per_s'] / 1e6:7.2f} M agent-updates/s   "
              f"({phases} ms/step)")
    base = results["runs"][0]["updates_per_s"]
    for r in results["runs"][1:]:
        print(f"  speed-up {r['threads']} vs {results['runs'][0]['threads']} thread(s): "
              f"{r['updates_per_s'] / base:.2f}x (efficiency {r['updates_per_s'] / base / r['threads'] * results['runs'][0]['threads']:.0%})")
    best = max(results["runs"], key=lambda r: r["updates_per_s"])
    if baseline:
        ref_steps = max(1, min(steps, 3))
        b = _subprocess("ckdtree", agents, ref_steps)
        results["ckdtree"] = b
        print(f"  numpy + cKDTree baseline: {b['updates_per_s'] / 1e6:7.2f} M agent-updates/s; biosim with "
              f"{best['threads']} thread(s) is {best['updates_per_s'] / b['updates_per_s']:.1f}x faster")
    print(f"  memory held per agent at N={agents:,}: {best['bytes_per_agent']:.0f} bytes")
    if memory_agents:
        r = _subprocess("engine", memory_agents, 2, cores)
        results["memory_run"] = r
        print(f"  N={memory_agents:,}: runs, {r['bytes_per_agent']:.0f} bytes per agent, "
              f"{r['updates_per_s'] / 1e6:.2f} M agent-updates/s with {r['threads']} thread(s)")
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=2)
        print(f"  results: {out}")
    return results


# -- diffusion ---------------------------------------------------------------
def measure_diffusion(solver, n, steps):
    """Voxel-updates per second of one solver on an n^3 grid (D = 100 µm²/min,
    spacing 10 µm, dt = 0.01 min: one diffusion step per base step, within
    the explicit limit), no-flux faces, compilation excluded."""
    import numba

    import biosim as bs

    sim = bs.Simulation(bs.Box.cube(10.0 * n), dt=0.01, mechanics=None)
    rng = np.random.default_rng(1)
    s = sim.add_substance("s", diffusion=100.0, decay=0.0, spacing=10.0, initial=rng.random((n, n, n)),
                          solver=solver)
    sim.run(1)
    t0 = time.perf_counter()
    sim.run(steps)
    wall = time.perf_counter() - t0
    return {"solver": solver, "n": n, "steps": steps, "threads": numba.get_num_threads(),
            "voxel_updates_per_s": n ** 3 * steps / wall, "checksum": float(s.concentration.sum())}


def measure_numpy_diffusion(n, steps):
    """The same explicit step in numpy (edge padding for no-flux faces)."""
    rng = np.random.default_rng(1)
    c = rng.random((n, n, n))
    a = 100.0 * 0.01 / 10.0 ** 2
    t0 = time.perf_counter()
    for _ in range(steps):
        p = np.pad(c, 1, mode="edge")
        lap = (p[:-2, 1:-1, 1:-1] + p[2:, 1:-1, 1:-1] + p[1:-1, :-2, 1:-1] + p[1:-1, 2:, 1:-1]
               + p[1:-1, 1:-1, :-2] + p[1:-1, 1:-1, 2:] - 6.0 * c)
        c = c + a * lap
    wall = time.perf_counter() - t0
    return {"solver": "numpy", "n": n, "steps": steps, "voxel_updates_per_s": n ** 3 * steps / wall}


def diffusion_main(sizes=(100, 50), threads=None, steps=20):
    """Print voxel-updates per second for both solvers, each thread count in its
    own process, against numpy's explicit step measured in the same run."""
    cores = os.cpu_count() or 1
    counts = sorted({1, cores}) if threads is None else list(threads)
    results = []
    for n in sizes:
        print(f"diffusion benchmark: {n}^3 grid, {steps} steps, no-flux faces")
        base = _run_code(f"measure_numpy_diffusion({n}, {max(2, steps // 4)})", None)
        print(f"  numpy explicit step      : {base['voxel_updates_per_s'] / 1e6:8.1f} M voxel-updates/s")
        for solver in ("explicit", "implicit"):
            first = None
            for t in counts:
                r = _run_code(f"measure_diffusion({solver!r}, {n}, {steps})", t)
                first = first or r
                results.append(r)
                extra = f", {r['voxel_updates_per_s'] / first['voxel_updates_per_s']:.2f}x of 1 thread" if t != first["threads"] else ""
                print(f"  {solver:<9} {t:>2} thread(s): {r['voxel_updates_per_s'] / 1e6:8.1f} M voxel-updates/s "
                      f"({r['voxel_updates_per_s'] / base['voxel_updates_per_s']:.1f}x numpy{extra})")
        results.append(base)
    return results


def _run_code(call, threads):
    env = dict(os.environ)
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    code = f"import json, biosim.bench as b; print('RESULT', json.dumps(b.{call}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed ({call}, threads={threads}):\n{out.stderr[-3000:]}")
    return json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
