"""A tumour spheroid in oxygen
===========================

A tumour spheroid in an oxygen field held at the box faces: cells consume
oxygen, proliferate where it is plentiful (the rim) and die in the hypoxic
core.  Reports the spheroid's diameter over time beside BioDynaMo's
published in-vitro spheroid curves (../shared/REFERENCES.md).

    python examples/tumour_spheroid.py [N_CELLS] [HOURS] [OUT.h5]

Parameters are textbook values, not fitted to the published curves:
oxygen D = 1e5 µm²/min, decay 0.1 /min, 38 mmHg at the faces (PhysiCell's
defaults), uptake 10 /min per cell volume; cells of 10 µm double in about a
day at full oxygen, growth slows below 20 mmHg, necrosis below 5 mmHg.
"""
import os
import sys

import numpy as np

import biosim as bs
from biosim import models

# BioDynaMo (Bioinformatics 2022, Fig. 5): spheroid diameter at 360 h for
# 2000, 4000 and 8000 initial cells, within in-vitro error bars.
PUBLISHED_360H = {2000: 410.0, 4000: 465.0, 8000: 505.0}


def spheroid_diameter(position):
    """Diameter (µm) of the uniform ball with the cells' radius of gyration."""
    if len(position) == 0:
        return 0.0
    r2 = ((position - position.mean(axis=0)) ** 2).sum(axis=1).mean()
    return 2.0 * np.sqrt(5.0 / 3.0 * r2)


def main(n=2000, hours=72.0, out=None, seed=7, report_every_h=12.0):
    dt = 1.0  # min
    box = bs.Box.cube(800.0)
    sim = bs.Simulation(box, boundary="closed", dt=dt, seed=seed,
                        mechanics=bs.SoftSphere(repulsion=2.0, adhesion=0.4))
    # diffusion sub-steps of 0.05 min keep fast uptake and fast diffusion coupled
    oxygen = sim.add_substance("oxygen", diffusion=1e5, decay=0.1, spacing=20.0, initial=38.0,
                               boundary=bs.Dirichlet(38.0), dt=0.05, unit="mmHg")
    radius = 10.0 * np.cbrt(n / 0.64) / 2  # packed 10 µm cells
    rng = np.random.default_rng(seed)
    tumour = sim.add_agents("tumour", bs.init.ball(n, radius, center=(400.0, 400.0, 400.0), seed=seed),
                            diameter=rng.uniform(10.0, 12.5, n))
    tumour.behaviours += [
        models.Uptake(oxygen, rate=10.0),
        models.GrowthDivision(growth_rate=0.36, division_diameter=12.6, volume_ratio=(0.9, 1.1),
                              substance=oxygen, threshold=20.0),
        models.Necrosis(oxygen, threshold=5.0, rate=1 / 360.0),
        models.Apoptosis(rate=1e-5),
    ]
    if out:
        sim.writers.append(bs.io.HDF5Writer(out, every=max(1, int(min(report_every_h, hours) * 60 / dt))))
    rows = []

    def report(s):
        rows.append((s.time / 60.0, len(s.agents), spheroid_diameter(s.agents.position),
                     float(oxygen.concentration.min())))
    every = max(1, int(report_every_h * 60 / dt))
    sim.add_action(report, every=every)
    sim.run(int(hours * 60 / dt), progress=True)
    with sim.gathered():  # every cell (under mpiexec, from every rank)
        report(sim)
        if sim.rank == 0 and bs.viz.rendering_available()[0]:  # where offscreen rendering works
            picture = os.path.splitext(out)[0] + ".png" if out else "tumour_spheroid.png"
            bs.viz.render(sim, color_by="diameter", substance="oxygen", clip="y", out=picture)
    print(f"{'time (h)':>9} {'cells':>7} {'diameter (µm)':>14} {'min O2 (mmHg)':>14}")
    for t, cells, d, o2 in rows:
        print(f"{t:9.1f} {cells:7d} {d:14.1f} {o2:14.2f}")
    ref = PUBLISHED_360H.get(n)
    if ref:
        print(f"BioDynaMo's published spheroid of {n} initial cells: about {ref:.0f} µm at 360 h "
              f"(this run: {rows[-1][2]:.0f} µm at {rows[-1][0]:g} h; parameters not fitted)")
    else:
        print("BioDynaMo's published spheroids reach about "
              + ", ".join(f"{v:.0f} µm ({k} cells)" for k, v in PUBLISHED_360H.items()) + " at 360 h")
    return rows


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    hours = float(sys.argv[2]) if len(sys.argv) > 2 else 72.0
    out = sys.argv[3] if len(sys.argv) > 3 else None
    main(n, hours, out)
