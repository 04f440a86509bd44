"""Diffusion throughput: voxel-updates per second of the explicit and the
implicit solver on 100^3 and 50^3 grids, with 1 and 2 threads (each in its
own process), against numpy's explicit step measured in the same run.

    python benchmarks/bench_diffusion.py [--steps 20] [--sizes 100,50]
"""
import argparse

from biosim import bench

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sizes", default="100,50")
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default 1 and all cores)")
    a = p.parse_args()
    threads = None if a.threads is None else [int(t) for t in a.threads.split(",")]
    bench.diffusion_main(sizes=[int(s) for s in a.sizes.split(",")], threads=threads, steps=a.steps)
