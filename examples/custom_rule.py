"""A user-written agent rule: contact inhibition
=============================================

A user-written agent rule: contact inhibition.  Cells grow and divide, but
stop growing once they have more than K neighbours within reach, so a
colony stops filling its inside and grows at the rim.

    python examples/custom_rule.py [N_CELLS] [STEPS]
"""
import sys

import numpy as np

import biosim as bs

K = 6              # neighbours that stop growth
REACH = 12.0       # µm, centre-to-centre
GROWTH = 30.0      # µm³/min
DIVIDE_AT = 12.6   # µm


@bs.agent_rule(reads=("diameter",), writes=("diameter", "crowded"),
               columns={"crowded": ("int8", 0)})
def contact_inhibition(cell, ctx):
    neighbours = 0
    for other in ctx.neighbours(REACH):
        neighbours += 1
    if neighbours > K:
        cell.crowded = 1
    else:
        cell.crowded = 0
        volume = np.pi / 6.0 * cell.diameter ** 3 + GROWTH * ctx.dt
        cell.diameter = (6.0 * volume / np.pi) ** (1.0 / 3.0)
        if cell.diameter >= DIVIDE_AT:
            cell.divide()


def main(n=20, steps=1500, seed=3, picture="custom_rule.png"):
    sim = bs.Simulation(bs.Box.cube(400.0), dt=0.2, seed=seed, mechanics=bs.SoftSphere())
    colony = sim.add_agents("colony", bs.init.ball(n, 15.0, (200.0, 200.0, 200.0), seed=seed), diameter=10.0)
    colony.behaviours += [contact_inhibition]
    sim.run(steps, progress=True)
    with sim.gathered():  # every cell (under mpiexec, from every rank)
        t = sim.agents
        r = np.linalg.norm(t.position - t.position.mean(axis=0), axis=1)
        inner = r < np.median(r)
        print(f"{len(t)} cells after {sim.time:g} min; crowded: {t['crowded'][inner].mean():.0%} of the inner "
              f"half, {t['crowded'][~inner].mean():.0%} of the outer half")
        if picture and sim.rank == 0 and bs.viz.rendering_available()[0]:  # where offscreen rendering works
            bs.viz.render(sim, color_by="crowded", clip="y", out=picture)
    return sim


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
    main(n, steps, picture=sys.argv[3] if len(sys.argv) > 3 else "custom_rule.png")
