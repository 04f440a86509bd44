"""Rendering speed: seconds per offscreen 1024x768 frame at 10^4, 10^5 and
10^6 agents with the default path (sphere meshes up to max_spheres = 20000
agents, points rendered as spheres above), and the sphere-mesh path measured
in the same run as the baseline the fast path is compared with.

    python benchmarks/bench_render.py [--sizes 10000,100000,1000000]
"""
import argparse
import time

import numpy as np

import biosim as bs
from biosim import viz


def frame_seconds(sim, repeats, **kw):
    viz.render(sim, out=None, window_size=(1024, 768), **kw)  # warm-up (VTK pipeline, probe)
    t0 = time.perf_counter()
    for _ in range(repeats):
        viz.render(sim, out=None, window_size=(1024, 768), **kw)
    return (time.perf_counter() - t0) / repeats


def main(sizes, repeats=2):
    ok, why = viz.rendering_available()
    if not ok:
        raise SystemExit(why)
    print("biosim render benchmark: offscreen 1024x768, agents uniform in a cube, coloured by a column")
    for n in sizes:
        edge = 10.0 * (n / 0.5) ** (1 / 3)  # 10 µm cells at half packing
        sim = bs.Simulation(bs.Box.cube(edge), mechanics=None)
        sim.add_agents("cells", bs.init.uniform(n, sim.box, seed=1), diameter=10.0,
                       tag=np.arange(n) % 5)
        fast = frame_seconds(sim, repeats, color_by="tag")
        line = f"  N={n:>9,}: {fast:6.2f} s/frame ({'sphere meshes' if n <= 20000 else 'points as spheres'})"
        if n <= 100_000:
            meshes = frame_seconds(sim, 1, color_by="tag", max_spheres=n + 1)
            points = frame_seconds(sim, repeats, color_by="tag", max_spheres=0)
            line += (f"; sphere meshes {meshes:.2f} s, points as spheres {points:.2f} s "
                     f"({meshes / points:.1f}x faster)")
        print(line, flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    main([int(s) for s in a.sizes.split(",")], a.repeats)
