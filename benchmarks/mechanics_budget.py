"""Where the mechanics benchmark's step spends its time, and the bound that
puts on its throughput.

    python benchmarks/mechanics_budget.py                    # N = 10^6, all cores
    python benchmarks/mechanics_budget.py --agents 100000 --threads 1

On the scenario of bench_mechanics.py (biosim.bench.mechanics.make_mechanics:
density 1, range 1.5, about 14 neighbours and 94 candidates per agent) it
times, in one process and with the same thread count: the whole step; the
grid build, and within it the per-step state check (positions finite,
diameters finite and > 0, type codes in range); the sorted columns; the force kernel as shipped; the same chunk
loop with only the gather of the neighbourhoods; and the same loop with the
gather and the distance tests but no force law (each pair in range adds its
separation vector: no square root, no division).  Every part is printed
with its share of the whole step, measured in the same run, and so is the
throughput the step would reach if the force law cost nothing, and if the
gather cost nothing as well.
"""
import argparse
import os
import time

import numpy as np
from numba import get_thread_id, njit, prange

from biosim.kernels.cpu.forces import _FAST, _forces, _open, chunk_of, gather_blocks, x_chunks
from biosim.mechanics import _EVERY_ROW  # the kernels' ``need``: empty, every row's force computed


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def gather_only(cols, cell_start, inv_h, dims, length, periodic, cutoff, buf):
    """The force kernel's chunk loop (closed box) down to the gather of the
    neighbourhoods, and nothing after it."""
    nx = dims[0]
    ny = dims[1]
    nz = dims[2]
    k, nxc, whole = x_chunks(nx, cutoff, inv_h, periodic[0])
    for item in prange(ny * nz * nxc):
        row, x0, x1, empty = chunk_of(item, nxc, nx, cell_start)
        if empty:
            continue
        tid = get_thread_id()
        gather_blocks(x0, x1, row % ny, row // ny, nx, ny, nz, k, whole, periodic, cell_start, cols, buf[tid, 0],
                      buf[tid, 1], buf[tid, 2], buf[tid, 3], buf[tid, 3], buf[tid, 5].view(np.int64), True, False,
                      1.0, length, False, 0, buf[tid, 0:0])


@njit(cache=True, inline="always")
def in_range(r2, di, dj, p0, p1, p2):
    """Stands in for the force law divided by r: 1 for a pair closer than
    sqrt(p0) (p0 the cutoff squared), else 0; no square root, no division."""
    return 1.0 if r2 < p0 else 0.0


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def pairs_without_law(params, types, table, n, cell_start, order, lower, inv_h, dims, length, periodic, cutoff, cols,
                      buf, force, flag):
    """The shipped force kernel's loop (closed box, the force kernels'
    arguments) with :func:`in_range` for the law, ``params[0]`` the cutoff
    squared: force[i] = the sum of the separations x_i - x_j of the pairs
    within the cutoff.  The gather, the distance tests and the sums, without
    the law."""
    _forces(in_range, _open, False, params, types, table, n, cell_start, order, lower, inv_h, dims, length,
            periodic, cutoff, cols, buf, force, flag, _EVERY_ROW)


def _median_ms(fn, repeat):
    fn()  # compile or warm the caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main(agents, threads, steps, repeat):
    import numba

    from biosim.bench.mechanics import make_mechanics
    from biosim.kernels.cpu import forces as K

    numba.set_num_threads(threads)
    sim = make_mechanics(agents)
    sim.run(1)  # compile, and leave the random start's first, largest moves behind
    t = sim.agents
    n = len(t)
    before = sim.timings["neighbours"]
    t0 = time.perf_counter()
    sim.run(steps)
    step = 1e3 * (time.perf_counter() - t0) / steps
    grid_ms = 1e3 * (sim.timings["neighbours"] - before) / steps

    mech = sim.mechanics
    grid = sim._neighbour_grid(mech.cutoff(t.diameter.max()))
    args = grid.kernel_args()
    cell_start, order, lower, inv_h, dims, length, periodic, cutoff = args
    room, _ = K.gather_capacity(cell_start, dims, inv_h, cutoff, n)
    buf = np.zeros((numba.get_num_threads(), 6, room))
    force = np.zeros((n, 3))
    params = np.array(mech._params(), dtype=np.float64)
    cols = grid.sorted_columns(t, 4)
    kernel = K.FORCE_KERNELS["soft_sphere", False, False]

    check_ms = _median_ms(sim.check_state, repeat)
    sorted_ms = _median_ms(lambda: grid.sorted_columns(t, 4), repeat)
    flag = np.empty(n, dtype=np.uint8)
    kernel_ms = _median_ms(lambda: kernel(params, t.type, mech._NO_TABLE, n, *args, cols, buf, force, flag, _EVERY_ROW),
                            repeat)
    gather_ms = _median_ms(lambda: gather_only(cols, cell_start, inv_h, dims, length, periodic, cutoff, buf), repeat)
    in_range_params = np.array([cutoff * cutoff, 0.0, 1.0])
    nolaw_ms = _median_ms(lambda: pairs_without_law(in_range_params, t.type, mech._NO_TABLE, n, *args, cols, buf,
                                                    force, flag), repeat)
    law_ms = kernel_ms - nolaw_ms
    tests_ms = nolaw_ms - gather_ms
    rest_ms = step - grid_ms - sorted_ms - kernel_ms

    print(f"mechanics step budget: N={n:,}, {threads} thread(s), {steps} steps, parts median of {repeat} "
          f"(ms per step; share of the whole step)")
    rows = [("whole step (bench_mechanics.py)", step),
            ("  grid build and sort", grid_ms),
            ("    of which the state check (finite, in range)", check_ms),
            ("  sorted columns", sorted_ms),
            ("  force kernel as shipped", kernel_ms),
            ("    gather of the neighbourhoods", gather_ms),
            ("    distance tests and sums, ~94 candidates/agent", tests_ms),
            ("    force law (square root, division)", law_ms),
            ("  update, boundary, the rest", rest_ms)]
    for label, ms in rows:
        print(f"  {label:<52} {ms:8.1f}  {ms / step:5.0%}")

    def rate(ms):
        return n / (ms * 1e-3) / 1e6

    print(f"  throughput as measured: {rate(step):.2f} M agent-updates/s")
    print(f"  bound if the force law cost nothing: {step - law_ms:.1f} ms/step -> {rate(step - law_ms):.2f} "
          f"M agent-updates/s ({step / (step - law_ms):.2f}x)")
    free = step - law_ms - gather_ms
    print(f"  bound if the gather cost nothing too: {free:.1f} ms/step -> {rate(free):.2f} "
          f"M agent-updates/s ({step / free:.2f}x)")
    print(f"  for 25 M agent-updates/s the step must take at most {n / 25e6 * 1e3:.1f} ms")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    main(a.agents, a.threads, a.steps, a.repeat)
