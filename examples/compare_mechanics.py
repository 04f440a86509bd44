"""Three force laws on one cluster
===============================

The same packed cluster relaxed with biosim's, PhysiCell's and BioDynaMo's
force laws: how far apart do neighbours settle?

    python examples/compare_mechanics.py [N_CELLS] [STEPS]
"""
import sys

import numpy as np

import biosim as bs

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
picture = sys.argv[3] if len(sys.argv) > 3 else "compare_mechanics.png"

laws = {
    "SoftSphere": bs.SoftSphere(repulsion=2.0, adhesion=0.4),
    "PhysiCell": bs.PhysiCellForce(repulsion=10.0, adhesion=0.4),
    # BioDynaMo's mass-weighted update: light cells so it settles in the same time
    "BioDynaMo": bs.BioDynaMoForce(density=0.002),
}
start = bs.init.ball(n, radius=4.0 * n ** (1 / 3), center=(300.0, 300.0, 300.0), seed=3)
print(f"{n} cells of 10 µm, {steps} steps of 0.05 min")
for name, mech in laws.items():
    sim = bs.Simulation(bs.Box.cube(600.0), dt=0.05, seed=1, mechanics=mech)
    sim.add_agents("cells", start, diameter=10.0)
    sim.run(steps)
    with sim.gathered():  # every cell (under mpiexec, from every rank)
        p = sim.agents.position
    pairs = bs.neighbour_pairs(p, 12.0, sim.box)
    d = np.linalg.norm(p[pairs[:, 0]] - p[pairs[:, 1]], axis=1)
    print(f"  {name:<10}: median neighbour distance {np.median(d):5.2f} µm "
          f"(isolated pair rests at {mech.equilibrium_distance(10.0, 10.0):5.2f} µm), "
          f"cluster radius {np.linalg.norm(p - p.mean(axis=0), axis=1).max():5.1f} µm")
with sim.gathered():  # the last law's cluster, cut open (under mpiexec, from every rank)
    if sim.rank == 0 and bs.viz.rendering_available()[0]:  # where offscreen rendering works
        bs.viz.render(sim, color_by="type", clip="y", out=picture)
