"""Neurons growing and branching (biosim.bench.neurites.make_neurons): prints
element-updates per second for 1 and all cores (steps 1..20, compilation
excluded), the 1 -> all-cores speed-up and efficiency, and the memory per
agent (somata are 1 in 49 agents).  The issue's targets: at 10^6 elements,
5 M updates/s on 2 threads, efficiency >= 85%, <= 250 bytes per element.

    python benchmarks/bench_neurites.py                  # 10^6 elements
    python benchmarks/bench_neurites.py --agents 100000 --steps 10
"""
import argparse

from biosim.bench.neurites import neurites_main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", default="1000000", help="comma-separated sizes (neurite elements)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default 1 and all cores)")
    a = p.parse_args()
    threads = None if a.threads is None else [int(t) for t in a.threads.split(",")]
    neurites_main(sizes=[int(n) for n in a.agents.split(",")], threads=threads, steps=a.steps)
