"""A tumour spheroid
=================

A tumour spheroid: cells grow, divide, die and jostle; snapshots to HDF5.

    python examples/spheroid.py [N_CELLS] [STEPS] [OUT.h5]
    biosim run examples/spheroid.py 50 200 small.h5
"""
import os
import sys

import numpy as np

import biosim as bs
from biosim import models

n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
out = sys.argv[3] if len(sys.argv) > 3 else "spheroid.h5"

sim = bs.Simulation(box=bs.Box.cube(400.0), boundary="closed", dt=0.1, seed=42,
                    mechanics=bs.SoftSphere(repulsion=2.0, adhesion=0.4))
tumour = sim.add_agents(
    "tumour",
    position=bs.init.ball(n=n, radius=60.0, center=(200.0, 200.0, 200.0), seed=1),
    diameter=10.0,
)
tumour.behaviours += [
    models.GrowthDivision(growth_rate=30.0, division_diameter=14.0),  # µm³/min, µm
    models.Apoptosis(rate=0.0005),                                   # 1/min
    models.RandomWalk(diffusion=0.1),                                # µm²/min
]
sim.writers.append(bs.io.HDF5Writer(out, every=50))
sim.run(steps, progress=True)

run = bs.io.open_run(out)
first, last = run.agents(0), run.agents(-1)
radius = np.linalg.norm(last["position"] - last["position"].mean(axis=0), axis=1).max()
print(f"{len(run)} snapshots; cells {len(first['uid'])} -> {len(last['uid'])}; "
      f"outer radius {radius:.0f} µm after {run.times[-1]:g} min")
with sim.gathered():  # every cell (under mpiexec, from every rank)
    if sim.rank == 0 and bs.viz.rendering_available()[0]:  # where offscreen rendering works
        bs.viz.render(sim, color_by="diameter", clip="y", out=os.path.splitext(out)[0] + ".png")
