"""A parameter sweep on the default executor against the same runs one
after another in one process, measured in the same run.

    python benchmarks/bench_sweep.py                  # 8 runs of soma clustering: the example's 2000 cells, 2000 steps
    python benchmarks/bench_sweep.py --runs 4 --steps 200

The model is BioDynaMo's soma clustering as the bench suite defines it
(``biosim.bench.scenarios.make_clustering``: 2000 cells in a 250 µm box,
two substances, secretion, chemotaxis, random walk, soft spheres), one
run per seed.  The baseline runs the same seeds one after another in this
process with every core's numba thread; the sweep runs them with
``bs.sweep`` on its default executor (a process pool of one worker per
core, one numba thread each; worker start-up and kernel cache loads
included).  Both must give the same final records, bit for bit: the script checks.

It also times one more run of the same model in this process with one
numba thread.  A sweep of one-thread workers on every core can be at most
cores x (a run's time on all cores' threads) / (its time on one thread)
faster than the baseline: the baseline's threads already share each run's
work.  The script prints that bound, measured in the same run, and the
sweep's speed-up as a fraction of it.
"""
import argparse
import os
import time

import numpy as np
from numba import get_num_threads, set_num_threads

import biosim as bs
from biosim.bench.scenarios import make_clustering


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--agents", type=int, default=2000)
    p.add_argument("--steps", type=int, default=2000)
    a = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    make_clustering(200, 0).run(2)  # compile here, so the baseline times the runs only
    t0 = time.perf_counter()
    means = []
    for seed in range(a.runs):
        sim = _counted(a.agents, a.steps, seed)
        sim.run(a.steps)
        means.append(sim.records["mean_x"].values[-1])
    serial = time.perf_counter() - t0
    threads = get_num_threads()
    set_num_threads(1)
    t0 = time.perf_counter()
    one = _counted(a.agents, a.steps, a.runs)
    one.run(a.steps)
    single = time.perf_counter() - t0
    set_num_threads(threads)
    t0 = time.perf_counter()
    df = bs.sweep(_counted, {"n": [a.agents], "every": [a.steps]}, steps=a.steps, seeds=a.runs, progress=False)
    swept = time.perf_counter() - t0
    last = df[df.step == a.steps].sort_values("seed")["mean_x"].to_numpy()
    assert np.array_equal(last, means) and not df.attrs["failed"]  # the same bits: threads change nothing
    print(f"{a.runs} runs of soma clustering ({a.agents} cells, {a.steps} steps), {cores} cores")
    workers = min(cores, a.runs)
    bound = workers * (serial / a.runs) / single
    print(f"  one after another in one process, {threads} numba threads: {serial:.2f} s "
          f"({serial / a.runs:.2f} s a run)")
    print(f"  one more run in this process with 1 numba thread: {single:.2f} s "
          f"(threads speed one run up {single / (serial / a.runs):.2f}x)")
    print(f"  bs.sweep, default executor ({workers} workers x 1 thread):   {swept:.2f} s")
    print(f"  speed-up of the sweep: {serial / swept:.2f}x, of at most {bound:.2f}x on this machine "
          f"({workers} workers x {serial / a.runs:.2f} s / {single:.2f} s): {serial / swept / bound:.0%} of it")


def _counted(n, every, seed):
    """The model: make_clustering with the cells' mean x (µm) recorded."""
    sim = make_clustering(n, seed)
    sim.record("mean_x", lambda s: float(np.mean(s.agents.position[: len(s.agents), 0])), every=every)
    return sim


if __name__ == "__main__":
    main()
