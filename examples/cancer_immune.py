"""Cancer-immune interaction
=========================

Cancer-immune interaction in PhysiCell's style, written with biosim's
Python API: a disc of tumour cells lives on oxygen that diffuses in from the
domain edge (they cycle where it is plentiful and die of necrosis where it
runs out) and secretes an immunostimulatory factor; T cells migrate up the
factor's gradient, stop when they touch a tumour cell, attack it (one
target at a time, damage accumulating at 1 per minute of contact) and the
damage drives the target into apoptosis.  The phenotype rules are
PhysiCell's rules grammar (models.Rules with rows in the CSV v3 form).

    python examples/cancer_immune.py [TUMOUR_CELLS] [T_CELLS] [HOURS] [OUT_DIR]

Prints the counts of live and dead tumour cells and of attacks over time,
writes OUT_DIR/cancer_immune.h5 and renders OUT_DIR/cancer_immune.png.
"""
import math
import os
import sys

import numpy as np

import biosim as bs
from biosim import models

RULES = [
    # cell type, signal, increases|decreases, behaviour, max_response, half_max, hill_power, applies_to_dead
    ["tumour", "oxygen", "increases", "cycle entry", "0.00072", "21.5", "4", "0"],
    ["tumour", "oxygen", "decreases", "necrosis", "0", "3.75", "8", "0"],
    ["tumour", "damage", "increases", "apoptosis", "0.05", "10", "4", "0"],
    ["tcell", "contact with tumour", "decreases", "migration speed", "0", "0.5", "2", "0"],
]


def main(n_tumour=400, n_tcells=60, hours=24.0, out="cancer_immune", seed=1):
    half = 400.0  # µm: a 2-D domain of 800 x 800 µm, one 20 µm voxel thick
    sim = bs.Simulation(bs.Box([-half, -half, -10.0], [half, half, 10.0]), dt=0.1, seed=seed,
                        mechanics=bs.PhysiCellForce(max_displacement=float("inf")))
    sim.plane = 0.0
    edges = {f: bs.Dirichlet(38.0) for f in ("x-", "x+", "y-", "y+")}
    sim.add_substance("oxygen", diffusion=1e5, decay=0.1, spacing=20.0, initial=38.0, boundary=edges, unit="mmHg")
    sim.add_substance("factor", diffusion=1000.0, decay=0.016, spacing=20.0)
    vol = models.Volume()
    rng = np.random.default_rng(seed)
    r = 0.5 * vol.diameter * math.sqrt(n_tumour / 0.85)  # a packed disc
    a, rr = rng.uniform(0, 2 * math.pi, n_tumour), r * np.sqrt(rng.random(n_tumour))
    disc = np.stack([rr * np.cos(a), rr * np.sin(a), np.zeros(n_tumour)], axis=1)
    tumour = sim.add_agents("tumour", disc, diameter=vol.diameter)
    a = rng.uniform(0, 2 * math.pi, n_tcells)
    rr = rng.uniform(r + 60.0, half - 20.0, n_tcells)
    ring = np.stack([rr * np.cos(a), rr * np.sin(a), np.zeros(n_tcells)], axis=1)
    tcells = sim.add_agents("tcell", ring, diameter=0.8 * vol.diameter)
    every = 60  # the phenotype every 6 min
    tumour.behaviours += [
        vol,
        models.CellCycle(("live",), (math.inf,), probability="linear", placement="physicell", every=every),
        models.Apoptosis(rate=0.0, phases=True, probability="linear", every=every),
        models.Necrosis(rate=0.0, phases=True, probability="linear", every=every),
        models.Damage(repair_rate=0.0),
        models.Uptake("oxygen", rate=10.0),
        models.Secretion("factor", rate=1.0, target=1.0),
        models.Rules(RULES, every=every),
    ]
    tcells.behaviours += [
        models.Volume(total=0.512 * vol.total, nuclear=0.512 * vol.nuclear),
        models.Motility(speed=1.0, persistence_time=5.0, bias=0.7, substance="factor"),
        models.Interactions(attack={"tumour": 0.1}, attack_damage_rate=1.0, attack_duration=30.0),
        models.Rules(RULES, every=every),
    ]
    os.makedirs(out, exist_ok=True)
    steps = int(round(hours * 60 / sim.dt))
    report_every = max(1, min(steps, int(round(2 * 60 / sim.dt))))
    sim.writers.append(bs.io.HDF5Writer(os.path.join(out, "cancer_immune.h5"), every=report_every))
    rows = []

    def report(s):
        t = s.agents
        tum = t.type == tumour.code
        dead = t["death"] != 0
        rows.append((s.time / 60.0, int(np.count_nonzero(tum & ~dead)), int(np.count_nonzero(tum & dead)),
                     int(np.count_nonzero(t["attack_target"] >= 0))))

    sim.add_action(report, every=report_every)
    sim.run(steps, progress=True)
    with sim.gathered():  # every cell (under mpiexec, from every rank)
        report(sim)
    print(f"{'time (h)':>9} {'live tumour':>12} {'dead tumour':>12} {'attacks':>8}")
    for h, live, dead, attacks in rows:
        print(f"{h:9.1f} {live:12d} {dead:12d} {attacks:8d}")
    if sim.rank == 0:  # under mpiexec, one picture
        ok, why = bs.viz.rendering_available()
        if ok:
            png = os.path.join(out, "cancer_immune.png")
            bs.viz.render(os.path.join(out, "cancer_immune.h5"), out=png, camera="xy", color_by="type")
            print(f"picture: {png}")
        else:
            print(f"no picture: {why}")
    return rows


if __name__ == "__main__":
    args = sys.argv[1:]
    main(n_tumour=int(args[0]) if len(args) > 0 else 400, n_tcells=int(args[1]) if len(args) > 1 else 60,
         hours=float(args[2]) if len(args) > 2 else 24.0, out=args[3] if len(args) > 3 else "cancer_immune")
