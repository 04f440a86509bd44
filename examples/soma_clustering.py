"""Soma clustering
===============

BioDynaMo's soma-clustering demo: two cell types, each secreting its own
substance and moving up its gradient, so cells of one type cluster.

    python examples/soma_clustering.py [N_CELLS] [STEPS]

At the end it reports BioDynaMo's validation criterion (validation_criterion.h)
on the cells of one octant of the box: their count lies between 0.25 and 4
times N/8; opposite-type pairs closer than 15 µm divided by (close pairs + 1)
is at most 0.1; and cells have at least 5 same-type neighbours within 15 µm on
average.  The script exits with status 1 if the criterion fails.
"""
import sys

import numpy as np

import biosim as bs
from biosim import models


def criterion(position, kind, box, radius=15.0):
    """(passed, report) of BioDynaMo's soma-clustering criterion on the lower
    octant of ``box``."""
    half = box.lower + box.length / 2
    inside = np.all(position < half, axis=1)
    p, k = position[inside], kind[inside]
    n_expected = len(position) / 8
    pairs = bs.neighbour_pairs(p, radius, box, "closed")
    same = k[pairs[:, 0]] == k[pairs[:, 1]]
    opposite_ratio = np.count_nonzero(~same) / (len(pairs) + 1)
    same_neighbours = 2 * np.count_nonzero(same) / max(len(p), 1)
    ok = (0.25 * n_expected <= len(p) <= 4 * n_expected and opposite_ratio <= 0.1 and same_neighbours >= 5)
    report = (f"octant cells {len(p)} (N/8 = {n_expected:.0f}), opposite-type close-pair ratio "
              f"{opposite_ratio:.3f} (<= 0.1), same-type neighbours {same_neighbours:.1f} (>= 5): "
              f"{'PASS' if ok else 'FAIL'}")
    return ok, report


def main(n=2000, steps=2000, seed=4357, out=None, picture="soma_clustering.png"):
    box = bs.Box.cube(250.0)
    sim = bs.Simulation(box, boundary="closed", dt=0.1, seed=seed,
                        mechanics=bs.SoftSphere(repulsion=2.0, adhesion=0.4))
    # a long decay length (sqrt(D / decay) = 220 µm) lets distant cells sense each other
    subs = [sim.add_substance(f"substance_{k}", diffusion=500.0, decay=0.01, spacing=10.0) for k in range(2)]
    rng = np.random.default_rng(seed)
    for k in range(2):
        cells = sim.add_agents(f"type_{k}", box.lower + rng.random((n // 2, 3)) * box.length, diameter=10.0)
        cells.behaviours += [models.Secretion(subs[k], rate=10.0),      # amount/min per cell
                             models.Chemotaxis(subs[k], speed=1.0),     # µm/min up its own gradient
                             models.RandomWalk(diffusion=0.5)]
    if out:
        sim.writers.append(bs.io.HDF5Writer(out, every=max(1, steps // 20)))
    ok, report = criterion(sim.agents.position, sim.agents.type, box)
    print(f"start: {report}")
    sim.run(steps, progress=True)
    with sim.gathered():  # every cell (under mpiexec, from every rank)
        ok, report = criterion(sim.agents.position, sim.agents.type, box)
        if picture and sim.rank == 0 and bs.viz.rendering_available()[0]:  # where offscreen rendering works
            bs.viz.render(sim, color_by="type", out=picture)
    print(f"after {steps} steps ({sim.time:g} min): {report}")
    return ok


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    if not main(n, steps, picture=sys.argv[3] if len(sys.argv) > 3 else "soma_clustering.png"):
        sys.exit(1)  # the criterion failed
