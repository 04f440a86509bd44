"""PhysiCell's template project
============================

PhysiCell's template project, loaded from its settings file and run on
biosim: the cells of the default type cycle (live model), grow back after
each division (the standard volume model), die by apoptosis (kept as
shrinking apoptotic cells for 8.6 h) and push each other with PhysiCell's
potentials, in PhysiCell's 2-D domain of 1000 x 1000 µm.

    python examples/physicell_template.py [N_CELLS] [HOURS] [OUT_DIR]

Prints the number of cells, their mean diameter and mean nearest-neighbour
distance every 6 h (pyphysicell's 48 h values for 1000 cells: mean
diameter 15.7 µm, nearest-neighbour distance 15.0 µm, ../shared/NOTES.md),
writes OUT_DIR/template.h5 and renders OUT_DIR/template.png.
"""
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

import biosim as bs

try:
    HERE = Path(__file__).parent
except NameError:  # run by the docs' gallery, which runs each example in its folder
    HERE = Path.cwd()
SETTINGS = HERE / "physicell" / "template" / "config" / "PhysiCell_settings.xml"


def nearest_neighbour_distance(position):
    """Mean distance (µm) from each cell to its nearest other cell."""
    if len(position) < 2:
        return float("nan")
    d, _ = cKDTree(position).query(position, k=2)
    return float(d[:, 1].mean())


def main(n=1000, hours=48.0, out="physicell_template", seed=0):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        project = bs.physicell.read(SETTINGS, seed=seed, number_of_cells=n)
    for w in caught:
        print(f"note: {w.message}")
    sim = project.simulation
    os.makedirs(out, exist_ok=True)
    steps = int(round(hours * 60 / sim.dt))
    every = max(1, min(steps, int(round(6 * 60 / sim.dt))))  # 6 h (or the whole run)
    sim.writers.append(bs.io.HDF5Writer(os.path.join(out, "template.h5"), every=every))
    rows = []

    def report(s):
        t = s.agents
        live = t["death"] == 0 if "death" in t else np.ones(len(t), bool)
        rows.append((s.time / 60.0, len(t), int(live.sum()), float(t.diameter[live].mean()) if live.any() else 0.0,
                     nearest_neighbour_distance(t.position)))

    sim.add_action(report, every=every)
    sim.run(steps, progress=True)
    with sim.gathered():  # every cell (under mpiexec, from every rank)
        report(sim)
    print(f"{'time (h)':>9} {'cells':>7} {'live':>7} {'mean diameter (µm)':>19} {'nearest neighbour (µm)':>23}")
    for h, cells, live, d, nn in rows:
        print(f"{h:9.1f} {cells:7d} {live:7d} {d:19.2f} {nn:23.2f}")
    print("pyphysicell, 1000 cells at 48 h: mean diameter 15.7 µm, nearest neighbour 15.0 µm")
    if sim.rank == 0:  # under mpiexec, one picture
        ok, why = bs.viz.rendering_available()
        if ok:
            png = os.path.join(out, "template.png")
            bs.viz.render(os.path.join(out, "template.h5"), out=png, camera="xy", color_by="diameter")
            print(f"picture: {png}")
        else:
            print(f"no picture: {why}")
    return rows


if __name__ == "__main__":
    args = sys.argv[1:]
    main(n=int(args[0]) if len(args) > 0 else 1000, hours=float(args[1]) if len(args) > 1 else 48.0,
         out=args[2] if len(args) > 2 else "physicell_template")
