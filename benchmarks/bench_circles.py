"""FLAME GPU 2's "circles" benchmark in 3D: pure neighbour search and
interaction.  Prints agent-updates per second for 1 and all cores, the
speed-up, memory per agent, and the ratio to the same step in numpy + scipy
cKDTree, all measured in this run.

    python benchmarks/bench_circles.py                    # N = 10^6
    python benchmarks/bench_circles.py --agents 100000 --steps 5

The scenario is defined in biosim/bench/circles.py (make_circles).
"""
import argparse

from biosim import bench

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default 1 and all cores)")
    p.add_argument("--no-baseline", action="store_true")
    a = p.parse_args()
    threads = None if a.threads is None else [int(t) for t in a.threads.split(",")]
    bench.circles_main(agents=a.agents, threads=threads, steps=a.steps, baseline=not a.no_baseline)
