"""The embedded default model run by ``biosim demo``: a tumour spheroid that
grows from 8 cells to several thousand in about 10 h.  Cells divide
asynchronously (a spread of starting sizes and of daughter sizes), consume
oxygen that diffuses in from the box faces, grow more slowly where it is
scarce and turn necrotic where it runs out, so a necrotic core forms inside a
live rim.  Written to HDF5 and rendered cut open over the oxygen slice, live
and necrotic cells in two colours, to a PNG and an MP4."""
import os
import time

import numpy as np

from . import init
from .io import HDF5Writer
from .mechanics import SoftSphere
from .simulation import Simulation
from .space import Box
from .substances import Dirichlet

OXYGEN = 38.0  # mmHg at the box faces
HYPOXIC = 12.0  # mmHg: below it cells turn necrotic


def build(seed=42, cells=8, out=None, every=20):
    """The demo simulation (not yet run).

    Cells of 10 to 12.6 µm (so they do not divide in lockstep) grow at 8.7
    µm³/min, slowed in proportion below 15 mmHg of oxygen, and divide at 12.6
    µm into daughters of U(0.9, 1.1) volume ratio; they take up oxygen at
    20 /min (PhysiCell's uptake: per cell, times cell over voxel volume),
    turn necrotic (population ``necrotic``: no growth, no uptake) at 0.02
    /min where oxygen is below 12 mmHg, die at 1e-4 /min and diffuse at 0.05
    µm²/min.  Oxygen diffuses at 4000 µm²/min, decays at 0.1 /min and is
    held at 38 mmHg on the faces of a closed 600 µm box; dt = 0.5 min.
    """
    from biosim import models  # the model library sits above the engine

    sim = Simulation(box=Box.cube(600.0), boundary="closed", dt=0.5, seed=seed,
                     mechanics=SoftSphere(repulsion=2.0, adhesion=0.4))
    oxygen = sim.add_substance("oxygen", diffusion=4000.0, decay=0.1, spacing=20.0, initial=OXYGEN,
                               boundary=Dirichlet(OXYGEN), unit="mmHg")
    rng = np.random.default_rng(seed)
    live = sim.add_agents("live", init.ball(cells, 10.0, center=(300.0, 300.0, 300.0), seed=seed),
                          diameter=rng.uniform(10.0, 12.6, cells))  # desynchronised cell cycles
    sim.add_agents("necrotic", np.zeros((0, 3)), diameter=10.0)
    live.behaviours += [
        models.GrowthDivision(growth_rate=8.7, division_diameter=12.6, volume_ratio=(0.9, 1.1), substance=oxygen,
                              threshold=15.0),
        models.Uptake(oxygen, rate=20.0),
        models.StateSwitch(to="necrotic", rate=0.02, substance=oxygen, below=HYPOXIC),
        models.Apoptosis(rate=1e-4),
        models.RandomWalk(diffusion=0.05),
    ]
    if out is not None:
        sim.writers.append(HDF5Writer(out, every=every))
    return sim


def main(out_dir="out", steps=1240, seed=42, progress=True):
    """Run the demo into ``out_dir``/demo.h5 and print a summary; returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "demo.h5")
    sim = build(seed=seed, out=path)
    t0 = time.perf_counter()
    sim.run(steps, progress=progress)
    wall = time.perf_counter() - t0
    n = len(sim.agents)
    necrotic = len(sim.populations["necrotic"])
    centre = sim.agents.position.mean(axis=0)
    radius = np.sqrt(((sim.agents.position - centre) ** 2).sum(axis=1).mean() * 5 / 3)
    o2 = sim.substances["oxygen"].concentration
    print(f"demo: {n} cells after {sim.step} steps ({sim.time:g} min simulated) in {wall:.1f} s")
    print(f"      {n - necrotic} live, {necrotic} necrotic (oxygen below {HYPOXIC:g} mmHg); spheroid radius "
          f"~{radius:.0f} µm; oxygen {o2.min():.1f}..{o2.max():.1f} mmHg")
    print("      time per phase: " + ", ".join(f"{k} {v:.2f} s" for k, v in sim.timings.items() if v > 0.005))
    print(f"      snapshots: {path}")
    picture = os.path.join(out_dir, "demo.png")
    try:
        from biosim import viz

        look = dict(color_by="type", clip="y", substance="oxygen")  # cut open over the oxygen slice
        viz.render(path, snapshot=-1, out=picture, **look)
        print(f"      picture:   {picture}")
        film = os.path.join(out_dir, "demo.mp4")
        frames = viz.movie(path, out=film, every=2, fps=12, progress=progress, **look)
        print(f"      movie:     {film} ({frames} frames)")
    except RuntimeError as e:  # no OpenGL here: the run itself is complete
        print(f"      no picture: {e}")
    return path
