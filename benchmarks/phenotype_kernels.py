"""The phenotype passes of PhysiCell's template, alone: the live cycle
(``CellCycle.live``) and immediate apoptosis (``Apoptosis``) over N agents
with no mechanics and no substance, so the step is those passes and the
commit of the few births and deaths.  Run it against two checkouts to
compare kernel versions in one session:

    python benchmarks/phenotype_kernels.py --agents 1000000 --steps 20
    PYTHONPATH=/path/to/other/checkout python benchmarks/phenotype_kernels.py ...

It prints the ms per step of each behaviour (best of ``--repeat``) and of
the whole step, and the agents per second of the whole step.
"""
import argparse
import time

import numpy as np

import biosim as bs
from biosim import models


def build(n, seed=1):
    sim = bs.Simulation(bs.Box.cube(1000.0), dt=6.0, seed=seed, mechanics=None)
    pop = sim.add_agents("cells", np.random.default_rng(seed).uniform(0, 1000, (n, 3)), diameter=10.0)
    pop.behaviours += [models.CellCycle.live(), models.Apoptosis(5.31667e-05)]
    return sim


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    print(f"biosim from {bs.__file__}")
    build(1000).run(2)  # compile
    best, per = float("inf"), {}
    for _ in range(a.repeat):
        sim = build(a.agents)
        t0 = time.perf_counter()
        sim.run(a.steps)
        wall = time.perf_counter() - t0
        if wall < best:
            best = wall
            per = {k: v for k, v in getattr(sim, "behaviour_timings", {}).items()}
    for k, v in per.items():
        print(f"  {k}: {1e3 * v / a.steps:.2f} ms/step")
    print(f"whole step: {1e3 * best / a.steps:.2f} ms/step, {a.agents * a.steps / best:.4g} agents/s "
          f"({a.agents} agents, {a.steps} steps, best of {a.repeat})")


if __name__ == "__main__":
    main()
