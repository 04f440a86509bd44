"""The embedded default model run by ``biosim demo``: a tumour spheroid that
grows from 8 cells to about 10^4 by growth, division, a little apoptosis and
random motility, with soft-sphere mechanics, written to HDF5 and rendered
(cut open, coloured by diameter) to a PNG and an MP4."""
import os
import time

import numpy as np

from . import init
from .io import HDF5Writer
from .mechanics import SoftSphere
from .simulation import Simulation
from .space import Box


def build(seed=42, cells=8, out=None, every=20):
    """The demo simulation (not yet run).

    Cells of 10 µm double their volume in about 60 min (growth 8.7 µm³/min,
    division at 12.6 µm, daughter/mother volume ratio U(0.9, 1.1)), die at
    1e-4 /min and diffuse at 0.05 µm²/min; dt = 0.5 min in a closed 600 µm box.
    """
    from biosim import models  # the model library sits above the engine

    sim = Simulation(box=Box.cube(600.0), boundary="closed", dt=0.5, seed=seed,
                     mechanics=SoftSphere(repulsion=2.0, adhesion=0.4))
    rng = np.random.default_rng(seed)
    tumour = sim.add_agents("tumour", init.ball(cells, 10.0, center=(300.0, 300.0, 300.0), seed=seed),
                            diameter=rng.uniform(10.0, 12.6, cells))  # desynchronised cell cycles
    tumour.behaviours += [
        models.GrowthDivision(growth_rate=8.7, division_diameter=12.6, volume_ratio=(0.9, 1.1)),
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
    d = sim.agents.diameter
    centre = sim.agents.position.mean(axis=0)
    radius = np.sqrt(((sim.agents.position - centre) ** 2).sum(axis=1).mean() * 5 / 3)
    print(f"demo: {n} cells after {sim.step} steps ({sim.time:g} min simulated) in {wall:.1f} s")
    print(f"      mean diameter {d.mean():.2f} µm, spheroid radius ~{radius:.0f} µm")
    print("      time per phase: " + ", ".join(f"{k} {v:.2f} s" for k, v in sim.timings.items() if v > 0.005))
    print(f"      snapshots: {path}")
    picture = os.path.join(out_dir, "demo.png")
    try:
        from biosim import viz

        viz.render(path, snapshot=-1, color_by="diameter", clip="y", out=picture)
        print(f"      picture:   {picture}")
        film = os.path.join(out_dir, "demo.mp4")
        frames = viz.movie(path, out=film, every=2, fps=12, color_by="diameter", clip="y", progress=progress)
        print(f"      movie:     {film} ({frames} frames)")
    except RuntimeError as e:  # no OpenGL here: the run itself is complete
        print(f"      no picture: {e}")
    return path
