"""A PhysiCell project driven by rules
===================================

A rules-driven PhysiCell project on biosim: tumour cells and macrophages
whose phenotype is written in PhysiCell's rules grammar
(examples/physicell/rules/config/cell_rules.csv): oxygen drives the
tumour's cycling and crowding (pressure) stops it, hypoxia kills, damage
from attacking macrophages drives apoptosis and the release of a
pro-inflammatory factor, which draws the macrophages in and makes them eat
the dead.

    python examples/physicell_rules.py [CELLS_PER_TYPE] [HOURS] [OUT_DIR]

Prints the population counts and the mean rule-driven rates over time,
writes OUT_DIR/rules.h5 and renders OUT_DIR/rules.png.
"""
import os
import sys
import warnings
from pathlib import Path

import numpy as np

import biosim as bs

try:
    HERE = Path(__file__).parent
except NameError:  # run by the docs' gallery, which runs each example in its folder
    HERE = Path.cwd()
SETTINGS = HERE / "physicell" / "rules" / "config" / "PhysiCell_settings.xml"


def main(n=40, hours=24.0, out="physicell_rules", seed=3):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        project = bs.physicell.read(SETTINGS, seed=seed, number_of_cells=n)
    for w in caught:
        print(f"note: {w.message}")
    sim = project.simulation
    tumour, macrophage = (sim.populations[k].code for k in ("tumor", "macrophage"))
    os.makedirs(out, exist_ok=True)
    steps = int(round(hours * 60 / sim.dt))
    every = max(1, min(steps, int(round(2 * 60 / sim.dt))))
    sim.writers.append(bs.io.HDF5Writer(os.path.join(out, "rules.h5"), every=every))
    rows = []

    def report(s):
        t = s.agents
        live = t["death"] == 0
        tum = (t.type == tumour) & live
        mac = t.type == macrophage
        rows.append((s.time / 60.0, int(tum.sum()), int(np.count_nonzero((t.type == tumour) & ~live)), int(mac.sum()),
                     float(t["rule_cycle_entry"][tum].mean()) if tum.any() else 0.0,
                     int(np.count_nonzero(t["attack_target"][mac] >= 0))))

    sim.add_action(report, every=every)
    sim.run(steps, progress=True)
    with sim.gathered():  # every cell (under mpiexec, from every rank)
        report(sim)
    print(f"{'time (h)':>9} {'live tumour':>12} {'dead tumour':>12} {'macrophages':>12} {'cycle entry (1/min)':>20} "
          f"{'attacking':>10}")
    for h, live, dead, mac, entry, attacking in rows:
        print(f"{h:9.1f} {live:12d} {dead:12d} {mac:12d} {entry:20.2e} {attacking:10d}")
    if sim.rank == 0:  # under mpiexec, one picture
        ok, why = bs.viz.rendering_available()
        if ok:
            png = os.path.join(out, "rules.png")
            bs.viz.render(os.path.join(out, "rules.h5"), out=png, camera="xy", color_by="type")
            print(f"picture: {png}")
        else:
            print(f"no picture: {why}")
    return rows


if __name__ == "__main__":
    args = sys.argv[1:]
    main(n=int(args[0]) if len(args) > 0 else 40, hours=float(args[1]) if len(args) > 1 else 24.0,
         out=args[2] if len(args) > 2 else "physicell_rules")
