"""FLAME GPU 2's circles benchmark in 3D: pure neighbour search and interaction."""
import os
import time

import numpy as np

from ._common import _measure, _run_code

CIRCLES_RADIUS = 2.0
CIRCLES_STRENGTH = 0.05


def _circles_behaviour():
    from ..behaviour import Behaviour
    from ..kernels.cpu.circles import circles_step

    class Circles(Behaviour):
        """FLAME GPU 2's circles model as a behaviour (closed box): every agent
        moves by the mean of sin(-2 pi d / r) x strength along the unit
        vectors to its neighbours closer than r (µm)."""

        writes = ("position",)
        device_ready = True

        def __init__(self, radius=CIRCLES_RADIUS, strength=CIRCLES_STRENGTH, every=1):
            super().__init__(every)
            self.radius = radius
            self.strength = strength

        def search_radius(self, sim):
            return self.radius

        def max_move(self, sim, dt):
            return abs(self.strength)  # the mean of unit vectors times at most the strength

        def run(self, sim, population, dt):
            from numba import get_num_threads

            from ..kernels.cpu.forces import gather_capacity

            t = sim.agents
            n = len(t)
            if n == 0:
                return
            B = sim.backend
            if B.on_device:  # one thread per agent; the sorted copy is read, so positions are written in place
                grid = sim._neighbour_grid(self.radius)
                pos = t.col("position")
                B.circles.circles_step(grid.sorted_columns(t), n, *grid.device_args(), self.radius, self.strength,
                                       pos)
                B.forces.clamp_to_box(pos, n, sim.box.lower, sim.box.upper)
                return
            grid = sim._neighbour_grid(self.radius)
            args = grid.kernel_args()
            room, _ = gather_capacity(grid.cell_start, grid.dims, grid.inv_h, grid.cutoff, n)
            buf = np.empty((get_num_threads(), 4, room))
            # the kernel reads the sorted copy of the positions, so it may write the new ones in place
            circles_step(grid.sorted_columns(t), n, *args, self.radius, self.strength, buf, t.position)
            sim.confine(t.position)

    return Circles


def make_circles(n, seed=1, device=None):
    """FLAME GPU 2's circles benchmark in 3D: N agents uniform in a closed cube
    of side N^(1/3) (density 1), interaction radius 2, strength 0.05; each
    step every agent moves by the mean of sin(-2 pi d / r) x 0.05 along the
    unit vectors to its neighbours closer than r.  Pure neighbour search and
    interaction: no mechanics, no other behaviour."""
    import biosim as bs

    sim = bs.Simulation(bs.Box.cube(n ** (1.0 / 3.0)), boundary="closed", dt=1.0, seed=seed, mechanics=None,
                        device=device)
    pop = sim.add_agents("circles", bs.init.uniform(n, sim.box, seed=seed + 1), diameter=1.0)
    pop.behaviours += [_circles_behaviour()()]
    return sim


def measure_circles(n, steps):
    sim, result = _measure(make_circles, n, steps)
    result["checksum"] = float(sim.agents.position.sum())
    return result


def circles_reference(pos, radius=CIRCLES_RADIUS, strength=CIRCLES_STRENGTH, lower=None, upper=None):
    """One circles step in numpy + scipy cKDTree (the baseline, and the test
    reference): new positions, clamped to [lower, upper] when given."""
    from scipy.spatial import cKDTree

    n = len(pos)
    pairs = cKDTree(pos).query_pairs(radius, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    d = pos[j] - pos[i]
    r = np.sqrt((d * d).sum(axis=1))
    ok = r > 0
    i, j, d, r = i[ok], j[ok], d[ok], r[ok]
    f = (strength * np.sin(-2 * np.pi * r / radius) / r)[:, None] * d
    total = np.zeros((n, 3))
    np.add.at(total, i, f)
    np.add.at(total, j, -f)
    count = np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
    new = pos + total / np.maximum(count, 1)[:, None]
    if lower is not None:
        new = np.clip(new, lower, upper)
    return new


def measure_circles_ckdtree(n, steps):
    import biosim as bs

    sim = make_circles(n)
    pos = sim.agents.position.copy()
    lower, upper = sim.box.lower, sim.box.upper
    t0 = time.perf_counter()
    for _ in range(steps):
        pos = circles_reference(pos, lower=lower, upper=upper)
    wall = time.perf_counter() - t0
    del bs
    return {"agents": n, "steps": steps, "seconds": wall, "updates_per_s": n * steps / wall}


def circles_main(agents=1_000_000, threads=None, steps=10, baseline=True):
    """Print the circles table: agent-updates per second per thread count, the
    speed-up and the ratio to numpy + cKDTree measured in the same run."""
    cores = os.cpu_count() or 1
    counts = sorted({1, cores}) if threads is None else list(threads)
    print(f"biosim circles benchmark (FLAME GPU 2): N={agents:,}, density 1, radius {CIRCLES_RADIUS}, "
          f"{steps} steps, closed box; {cores} cores")
    runs = []
    for t in counts:
        r = _run_code(f"measure_circles({agents}, {steps})", t)
        runs.append(r)
        print(f"  {t:>2} thread(s): {r['updates_per_s'] / 1e6:7.2f} M agent-updates/s   "
              f"({r['ms_per_step'].get('neighbours', 0):.1f} ms/step neighbours, "
              f"{r['ms_per_step'].get('behaviours', 0):.1f} ms/step interaction); "
              f"{r['bytes_per_agent']:.0f} bytes/agent")
    for r in runs[1:]:
        sp = r["updates_per_s"] / runs[0]["updates_per_s"]
        print(f"  speed-up {r['threads']} vs {runs[0]['threads']} thread(s): {sp:.2f}x "
              f"(efficiency {sp / r['threads'] * runs[0]['threads']:.0%})")
    if baseline:
        b = _run_code(f"measure_circles_ckdtree({agents}, {max(1, min(steps, 3))})", None)
        best = max(runs, key=lambda r: r["updates_per_s"])
        print(f"  numpy + cKDTree baseline: {b['updates_per_s'] / 1e6:7.2f} M agent-updates/s; biosim with "
              f"{best['threads']} thread(s) is {best['updates_per_s'] / b['updates_per_s']:.1f}x faster")
    return runs
