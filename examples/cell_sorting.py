"""Cell sorting by differential adhesion
=====================================

Steinberg's differential adhesion: two cell types, randomly mixed in an
aggregate, sort out because like cells adhere more strongly than unlike ones.

    python examples/cell_sorting.py [N_CELLS] [STEPS] [OUT.h5]

"dark" cells adhere strongly to each other, "light" cells less, and the two
types weakly to each other (an adhesion matrix in bs.SoftSphere); every
cell also jiggles (a random walk), which lets the aggregate rearrange.  It
prints, over time, the fraction of same-type pairs among neighbouring cells
(centres closer than 1.2 diameters: 0.5 for a random mixture of two equal
halves) and the mean distance of each type from the aggregate's centre (the
more cohesive dark cells gather inside, as in Steinberg's experiments).
"""
import os
import sys

import numpy as np

import biosim as bs
from biosim import models

DIAMETER = 10.0  # µm
ADHESION = {("dark", "dark"): 1.2, ("light", "light"): 0.5, ("dark", "light"): 0.1}  # µm/min at overlap


def same_type_fraction(sim, radius=1.2 * DIAMETER):
    """Fraction of neighbouring pairs (centres closer than ``radius`` µm)
    whose two cells are of the same type."""
    t = sim.agents
    pairs = bs.neighbour_pairs(t.position, radius, sim.box, sim.boundary)
    if len(pairs) == 0:
        return float("nan")
    return float(np.mean(t.type[pairs[:, 0]] == t.type[pairs[:, 1]]))


def radii(sim):
    """Mean distance (µm) of dark and of light cells from the aggregate's centre."""
    t = sim.agents
    centre = t.position.mean(axis=0)
    r = np.linalg.norm(t.position - centre, axis=1)
    return tuple(float(r[t.type == sim.populations[k].code].mean()) for k in ("dark", "light"))


def main(n=1000, steps=3000, out=None, seed=7, picture="cell_sorting.png"):
    radius = (n * (DIAMETER / 2) ** 3 / 0.55) ** (1 / 3)  # a packed aggregate
    box = bs.Box.cube(6 * radius)
    sim = bs.Simulation(box, boundary="closed", dt=0.2, seed=seed,
                        mechanics=bs.SoftSphere(repulsion=4.0, adhesion=ADHESION, adhesion_range=1.3))
    pos = bs.init.ball(n, radius, box.lower + box.length / 2, seed=seed)
    kind = np.random.default_rng(seed).random(n) < 0.5
    for name, rows in (("dark", kind), ("light", ~kind)):
        cells = sim.add_agents(name, pos[rows], diameter=DIAMETER)
        cells.behaviours += [models.RandomWalk(diffusion=0.3)]  # µm²/min
    if out:
        sim.writers.append(bs.io.HDF5Writer(out, every=max(1, steps // 10)))
    sim.record("same_type_fraction", same_type_fraction, every=max(1, steps // 10))
    start = end = same_type_fraction(sim)
    print(f"{n} cells ({len(sim.populations['dark'])} dark, {len(sim.populations['light'])} light), "
          f"adhesion {ADHESION}")
    print("   time (min)   same-type neighbours   mean radius dark / light (µm)")
    chunk = max(1, steps // 10)
    while sim.step < steps:
        sim.run(min(chunk, steps - sim.step))
        with sim.gathered():  # every cell (under mpiexec, from every rank)
            rd, rl = radii(sim)
            print(f"   {sim.time:10.0f}   {same_type_fraction(sim):20.3f}   {rd:8.1f} / {rl:.1f}")
            end = same_type_fraction(sim)
    print(f"same-type neighbour fraction: {start:.3f} at the start, {end:.3f} after {sim.time:g} min")
    with sim.gathered():  # every cell (under mpiexec, from every rank)
        if picture and sim.rank == 0 and bs.viz.rendering_available()[0]:  # where offscreen rendering works
            bs.viz.render(sim, color_by="type", clip="y", out=picture)
    return start, end


if __name__ == "__main__":
    args = sys.argv[1:]
    main(n=int(args[0]) if args else 1000, steps=int(args[1]) if len(args) > 1 else 3000,
         out=args[2] if len(args) > 2 else None,
         picture=os.path.splitext(args[2])[0] + ".png" if len(args) > 2 else "cell_sorting.png")
