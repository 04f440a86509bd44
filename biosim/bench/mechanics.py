"""Mechanics benchmark: neighbour search plus soft-sphere mechanics.

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
import time

import numpy as np

from ._common import _measure, _run_code

RANGE = 1.5


BOUNDARIES = ("closed", "periodic")


def _make(n, seed=1, boundary="closed"):
    import biosim as bs

    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")
    edge = n ** (1.0 / 3.0)
    sim = bs.Simulation(bs.Box.cube(edge), boundary=boundary, dt=0.1, seed=seed,
                        mechanics=bs.SoftSphere(repulsion=2.0, adhesion=0.4, adhesion_range=RANGE))
    return sim


def make_mechanics(n, seed=1, boundary="closed"):
    """The mechanics scenario: N agents of diameter 1 uniform at random in a
    closed cube of edge N^(1/3) (density 1), ``SoftSphere(repulsion=2,
    adhesion=0.4, adhesion_range=1.5)`` (interaction range 1.5, about 14
    neighbours), dt = 0.1; no behaviours.  One step = grid build and sort +
    pair forces + capped overdamped update + clamping to the box.  With
    ``boundary="periodic"`` (not the suite's scenario, an option of
    bench_mechanics.py) the cube is periodic: minimum-image pairs, and
    positions wrapped instead of clamped."""
    import biosim as bs

    sim = _make(n, seed, boundary)
    sim.add_agents("cells", bs.init.uniform(n, sim.box, seed=seed + 2), diameter=1.0)
    return sim


def measure_engine(n, steps, boundary="closed"):
    """Run in the current process: dict with updates/s and per-phase ms/step."""
    return _measure(lambda m: make_mechanics(m, boundary=boundary), n, steps, warm=1000)[1]


def measure_ckdtree(n, steps, boundary="closed", return_positions=False):
    """The same step in numpy + scipy cKDTree (query_pairs, bincount sums;
    periodic: the tree's ``boxsize`` and minimum-image separations).  With
    ``return_positions`` the positions after ``steps`` steps instead."""
    from scipy.spatial import cKDTree

    import biosim as bs

    sim = _make(n, boundary=boundary)
    periodic = boundary == "periodic"
    pos = bs.init.uniform(n, sim.box, seed=3)
    m = sim.mechanics
    lower, upper, length = sim.box.lower, sim.box.upper, sim.box.length
    t0 = time.perf_counter()
    for _ in range(steps):
        if periodic:
            pairs = cKDTree(pos - lower, boxsize=length).query_pairs(RANGE, output_type="ndarray")
        else:
            pairs = cKDTree(pos).query_pairs(RANGE, output_type="ndarray")
        i, j = pairs[:, 0], pairs[:, 1]
        d = pos[i] - pos[j]
        if periodic:
            d -= length * np.rint(d / length)
        r = np.sqrt((d * d).sum(axis=1))
        s = 1.0  # (d_i + d_j) / 2 for unit diameters
        f = m.repulsion * np.maximum(0, 1 - r / s) - m.adhesion * np.maximum(0, 1 - r / (m.adhesion_range * s))
        fv = d * (f / r)[:, None]
        force = np.stack([np.bincount(i, fv[:, k], n) - np.bincount(j, fv[:, k], n) for k in range(3)], axis=1)
        disp = force * (sim.dt / m.damping)
        norm = np.linalg.norm(disp, axis=1)
        big = norm > m.max_displacement
        disp[big] *= (m.max_displacement / norm[big])[:, None]
        pos = lower + np.mod(pos + disp - lower, length) if periodic else np.clip(pos + disp, lower, upper)
    wall = time.perf_counter() - t0
    if return_positions:
        return pos
    return {"agents": n, "steps": steps, "seconds": wall, "updates_per_s": n * steps / wall}


def _subprocess(kind, n, steps, threads=None, boundary="closed"):
    return _run_code(f"measure_{kind}({n}, {steps}, {boundary!r})", threads)


def main(agents=1_000_000, threads=None, steps=10, baseline=True, memory_agents=None, out=None, boundary="closed"):
    """Print the benchmark table; returns the results as a dict."""
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")
    cores = os.cpu_count() or 1
    if threads is None:
        counts = sorted({1, cores})
    elif isinstance(threads, str):
        counts = [int(t) for t in threads.split(",") if t.strip()]
    else:
        counts = list(threads)
    print(f"biosim mechanics benchmark: N={agents:,} agents, density 1, range {RANGE}, {steps} steps, "
          f"{boundary} box; {cores} cores")
    results = {"agents": agents, "steps": steps, "boundary": boundary, "runs": []}
    for t in counts:
        r = _subprocess("engine", agents, steps, t, boundary)
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
        b = _subprocess("ckdtree", agents, ref_steps, boundary=boundary)
        results["ckdtree"] = b
        print(f"  numpy + cKDTree baseline: {b['updates_per_s'] / 1e6:7.2f} M agent-updates/s; biosim with "
              f"{best['threads']} thread(s) is {best['updates_per_s'] / b['updates_per_s']:.1f}x faster")
    print(f"  memory held per agent at N={agents:,}: {best['bytes_per_agent']:.0f} bytes")
    if memory_agents:
        r = _subprocess("engine", memory_agents, 2, cores, boundary)
        results["memory_run"] = r
        print(f"  N={memory_agents:,}: runs, {r['bytes_per_agent']:.0f} bytes per agent, "
              f"{r['updates_per_s'] / 1e6:.2f} M agent-updates/s with {r['threads']} thread(s)")
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=2)
        print(f"  results: {out}")
    return results
