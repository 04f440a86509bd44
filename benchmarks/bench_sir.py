"""BioDynaMo's epidemiology benchmark scaled to this machine: SIR by proximity
with random walk at fixed speed, no mechanics, at the measles demo's density
and infected fraction.  Prints agent-updates per second for 1 and all cores
(steps 1..50, compilation excluded), the ratio to BioDynaMo's published
2-core throughput, and the same infection written as a user agent rule.

    python benchmarks/bench_sir.py                       # 10^6 and 10^7 agents
    python benchmarks/bench_sir.py --agents 100000 --steps 10

The scenario is defined in biosim/bench/sir.py (make_sir).
"""
import argparse

from biosim import bench

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", default="1000000,10000000", help="comma-separated sizes")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default 1 and all cores)")
    p.add_argument("--no-rule", action="store_true", help="skip the user-rule comparison")
    a = p.parse_args()
    threads = None if a.threads is None else [int(t) for t in a.threads.split(",")]
    bench.sir_main(sizes=[int(n) for n in a.agents.split(",")], threads=threads, steps=a.steps,
                   rule=not a.no_rule)
