"""The standard benchmark suite, as ``biosim bench`` (same options):
throughput, time per step by phase, speed-up and parallel efficiency per
thread count, peak memory per agent, against baselines measured in the same
run; writes bench-results/bench.json and bench.png.

    python benchmarks/bench_suite.py                                  # every scenario, default sizes
    python benchmarks/bench_suite.py --scenario circles --agents 1e6,1e7 --threads 1,2
    python benchmarks/bench_suite.py --scenario physicell_template --agents 1e4,1e5 --threads 2
    python benchmarks/bench_suite.py --list                           # the scenario definitions

The scenarios are defined in biosim/bench/ (SCENARIOS).
"""
import sys

from biosim.cli import main

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
