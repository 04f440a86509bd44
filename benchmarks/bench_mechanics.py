"""Neighbour search + mechanics throughput, 2-thread speed-up, memory per agent
and the ratio against a numpy + scipy cKDTree step, all measured in this run.

    python benchmarks/bench_mechanics.py                 # N = 10^6, memory check at 10^7
    python benchmarks/bench_mechanics.py --agents 100000 --memory-agents 0
    python benchmarks/bench_mechanics.py --boundary periodic   # minimum-image pairs

The scenario is defined in biosim/bench/mechanics.py (make_mechanics).
"""
import argparse

from biosim import bench

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default 1 and all cores)")
    p.add_argument("--memory-agents", type=int, default=10_000_000, help="0 to skip the large run")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--boundary", choices=("closed", "periodic"), default="closed")
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args()
    bench.main(agents=a.agents, threads=a.threads, steps=a.steps, baseline=not a.no_baseline,
               memory_agents=a.memory_agents or None, out=a.json, boundary=a.boundary)
