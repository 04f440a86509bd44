"""Models for the sweep tests: top-level functions worker processes import."""
import numpy as np

import biosim as bs
from biosim import models


def growing(rate=0.01, cells=20, seed=0):
    """A small dividing population with counts recorded every 5 steps."""
    sim = bs.Simulation(bs.Box.cube(100.0), dt=1.0, seed=seed, mechanics=None)
    pop = sim.add_agents("cells", bs.init.uniform(cells, sim.box, seed=seed + 1), diameter=5.0)
    pop.behaviours += [models.CellCycle(("G",), (1.0 / rate,))]
    sim.record_counts(every=5)
    sim.record("mean_x", lambda s: float(np.mean(s.agents.position[:, 0])), every=10)
    return sim


def failing(rate=0.01, seed=0):
    if rate > 0.05:
        raise RuntimeError(f"rate {rate} is too high for this model")
    return growing(rate=rate, seed=seed)


def not_a_simulation(seed=0):
    return 42
