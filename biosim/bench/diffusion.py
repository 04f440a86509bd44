"""Diffusion benchmark: voxel-updates per second of both solvers against
numpy's explicit step."""
import os
import time

import numpy as np

from ._common import _run_code


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
