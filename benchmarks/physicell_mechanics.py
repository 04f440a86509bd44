"""PhysiCell's potentials in their three forms, timed in one run: one set
of parameters for every cell (``PhysiCellForce()``), a pair table per
population (``adhesion=`` matrix), and per-population values with
affinities (``repulsion=``/``adhesion=``/``adhesion_range=`` dicts and
``affinity=``, PhysiCell's sqrt(c_i c_j) per pair: the per-cell kernel).

    python benchmarks/physicell_mechanics.py                    # N = 10^5, 1 and 2 threads
    python benchmarks/physicell_mechanics.py --agents 1000000 --threads 1

Cells of PhysiCell's default diameter (16.8 µm) at the density of a packed
tumour (one per 2000 µm³, about 10 neighbours within reach), two
populations of half the cells each.  It prints, per form and thread count,
the force evaluations per second (agents x steps / s, the best of
``--repeat``), the ratio to the one-parameter form measured in the same run.  Then whole mechanics steps with and without PhysiCell's spring
attachments (``models.Attachments``) on every cell.  The per-cell form keeps no extra column (unless rules drive the
mechanics), only 48 bytes of scratch per agent: each cell's three values
and their copy in the grid's sorted order.
"""
import argparse
import time

import numpy as np
from numba import get_num_threads, set_num_threads

import biosim as bs


def build(n, form, seed=1):
    side = (n * 2000.0) ** (1.0 / 3.0)
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0.0, side, (n, 3))
    if form == "uniform":
        force = bs.PhysiCellForce(max_displacement=float("inf"))
    elif form == "pair table":
        force = bs.PhysiCellForce(adhesion=[[0.4, 0.2], [0.2, 0.6]], max_displacement=float("inf"))
    else:
        force = bs.PhysiCellForce(repulsion={"a": 10.0, "b": 5.0}, adhesion={"a": 0.4, "b": 0.6},
                                  adhesion_range={"a": 1.25, "b": 1.5}, affinity=[[1.0, 0.5], [0.5, 1.0]],
                                  max_displacement=float("inf"))
    sim = bs.Simulation(bs.Box.cube(side), boundary="closed", dt=0.1, seed=seed, mechanics=force)
    half = n // 2
    sim.add_agents("a", pos[:half], diameter=16.8)
    sim.add_agents("b", pos[half:], diameter=16.8)
    return sim


def time_steps(sim, steps, repeat):
    sim.run(2)  # compile
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        sim.run(steps)
        best = min(best, time.perf_counter() - t0)
    return len(sim.agents) * steps / best


def with_attachments(sim):
    from biosim import models

    for p in sim.populations.values():
        p.behaviours += [models.Attachments(attachment_rate=0.1, detachment_rate=0.01)]
    return sim


def time_forces(sim, steps, repeat):
    sim.mechanics.forces(sim)  # compile and size the scratch
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(steps):
            sim.mechanics.forces(sim)
        best = min(best, time.perf_counter() - t0)
    return len(sim.agents) * steps / best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default 1 and all cores)")
    a = p.parse_args()
    top = get_num_threads()
    threads = [int(x) for x in a.threads.split(",")] if a.threads else sorted({1, top})
    forms = ("uniform", "pair table", "per cell")
    print(f"PhysiCell potentials, {a.agents} agents, {a.steps} force evaluations, best of {a.repeat}")
    print(f"{'form':<12} {'threads':>7} {'agents/s':>12} {'vs uniform':>11}")
    for nt in threads:
        set_num_threads(nt)
        base = None
        for form in forms:
            try:
                sim = build(a.agents, form)
            except (TypeError, ValueError) as e:  # a form this version does not have
                print(f"{form:<12} {nt:>7} {'n/a':>12}  ({e})")
                continue
            rate = time_forces(sim, a.steps, a.repeat)
            base = rate if form == "uniform" else base
            print(f"{form:<12} {nt:>7} {rate:>12.4g} {rate / base:>10.3f}x")
    print(f"\nwhole mechanics steps (grid, forces, springs, update), {a.steps} steps: PhysiCell's spring "
          f"attachments (models.Attachments, rate 0.1 /min, 12 slots) against none")
    print(f"{'form':<12} {'threads':>7} {'agents/s':>12} {'vs none':>11} {'attached':>9}")
    for nt in threads:
        set_num_threads(nt)
        base = time_steps(build(a.agents, "uniform"), a.steps, a.repeat)
        print(f"{'none':<12} {nt:>7} {base:>12.4g} {1.0:>10.3f}x")
        sim = with_attachments(build(a.agents, "uniform"))
        rate = time_steps(sim, a.steps, a.repeat)
        held = float((sim.agents["attached"][: len(sim.agents)] >= 0).sum(axis=1).mean())
        print(f"{'attachments':<12} {nt:>7} {rate:>12.4g} {rate / base:>10.3f}x {held:>9.2f}")
    set_num_threads(top)


if __name__ == "__main__":
    main()
