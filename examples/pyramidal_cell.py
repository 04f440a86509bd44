"""A pyramidal neuron
==================

BioDynaMo's pyramidal-cell demo (demo/pyramidal_cell): one neuron whose
apical dendrite grows up and whose three basal dendrites grow down, each
guided by a substance that is a Gaussian band (sigma 200 µm) at its end of
the box, with BioDynaMo's weights, speeds and thinning.  Writes the run
(HDF5), the morphology (SWC) and a picture.

    python examples/pyramidal_cell.py [STEPS] [OUT_DIR]

Units: BioDynaMo's step is 0.01 h = 0.6 min (dt here); its speeds in µm/h
are / 60 (µm/min), its per-step changes and probabilities / 0.6 (per min).
"""
import os
import sys

import numpy as np

import biosim as bs
from biosim import models

STEP = 0.6  # min, BioDynaMo's 0.01 h


def gaussian_band(sim, centre_z, sigma=200.0, spacing=35.0):
    """A static substance exp(-(z - centre)^2 / (2 sigma^2)) on the voxel
    centres (BioDynaMo's GaussianBand along z)."""
    nz = int(round(sim.box.length[2] / spacing))
    z = sim.box.lower[2] + (np.arange(nz) + 0.5) * spacing
    shape = tuple(int(round(e / spacing)) for e in sim.box.length)
    return np.broadcast_to(np.exp(-((z - centre_z) ** 2) / (2 * sigma**2)), shape).copy()


def build(seed=2688649975):
    box = bs.Box((-250.0,) * 3, (450.0,) * 3)
    sim = bs.Simulation(box, dt=STEP, seed=seed, mechanics=bs.BioDynaMoForce())
    apical_cue = sim.add_substance("substance_apical", diffusion=0.0, spacing=35.0,
                                   initial=gaussian_band(sim, box.upper[2]))
    basal_cue = sim.add_substance("substance_basal", diffusion=0.0, spacing=35.0,
                                  initial=gaussian_band(sim, box.lower[2]))
    soma = sim.add_agents("soma", [[150.0, 150.0, 0.0]], diameter=10.0)
    mech = bs.NeuriteMechanics(max_length=2.0)
    apical = sim.add_neurites(soma, (0, 0, 1), name="apical", swc_type=4, mechanics=mech)
    basal = sim.add_neurites(np.repeat(soma.uids, 3), [(0, 0, -1), (0, 0.6, -0.8), (0.3, -0.6, -0.8)],
                             name="basal", swc_type=3)
    apical.behaviours += [
        models.NeuriteElongation(speed=100 / 60, substance=apical_cue, persistence=4.0, randomness=0.3,
                                 gradient_weight=0.06, diameter_rate=-0.00071 / STEP, min_diameter=0.575),
        # only the main shaft branches (BioDynaMo: the side branches' copies of the behaviour cannot)
        models.NeuriteBranching(rate=0.038 / STEP, diameter=0.65, min_diameter=0.55, max_branch_order=1),
    ]
    basal.behaviours += [
        models.NeuriteElongation(speed=50 / 60, substance=basal_cue, persistence=6.0, randomness=0.4,
                                 gradient_weight=0.03, diameter_rate=-0.00085 / STEP, min_diameter=0.75),
        models.NeuriteBifurcation(rate=0.006 / STEP, min_diameter=0.75),
    ]
    return sim


def main(steps=500, out_dir="."):
    sim = build()
    os.makedirs(out_dir, exist_ok=True)
    sim.writers.append(bs.io.HDF5Writer(os.path.join(out_dir, "pyramidal_cell.h5"), every=max(1, steps // 10)))
    sim.run(steps, progress=True)
    lines = bs.io.write_swc(sim, os.path.join(out_dir, "neuron.swc"))  # under mpiexec, rank 0 writes it
    with sim.gathered():  # every element (under mpiexec, from every rank)
        t = sim.agents
        rows = sim.neurites.rows()
        tips = rows[t["daughter_left"][rows] < 0]
        apical = t["distal"][tips][t.type[tips] == sim.populations["apical"].code]
        basal = t["distal"][tips][t.type[tips] == sim.populations["basal"].code]
        report = (f"after {steps} steps ({sim.time:g} min): {rows.size} neurite elements, {tips.size} tips, "
                  f"{int(t['branch_order'][rows].max())} branch orders; apical tips up to "
                  f"z = {apical[:, 2].max():.1f} µm, basal tips down to z = {basal[:, 2].min():.1f} µm; neuron.swc "
                  f"has {lines} samples")
        if sim.rank == 0:  # under mpiexec, one report and one picture
            print(report)
            try:
                bs.viz.render(sim, color_by="type", out=os.path.join(out_dir, "pyramidal_cell.png"), camera="xz")
                print("rendered pyramidal_cell.png")
            except RuntimeError as e:  # no offscreen rendering on this machine
                print(f"not rendered: {e}")
    return sim


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500, sys.argv[2] if len(sys.argv) > 2 else ".")
