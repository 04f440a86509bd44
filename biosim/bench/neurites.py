"""The neurite benchmark: neurons growing and branching (the issue's target:
10^6 neurite elements, element-updates per second, 1 -> 2 thread
efficiency, bytes per element)."""
import os

import numpy as np

from ._common import _measure, scaling_runs

ELEMENTS_PER_NEURON = 48  # after set-up: 4 neurites of 12 elements
NEURON_SPACING = 60.0  # µm between somata on a cubic lattice


def make_neurons(n, seed=1):
    """About ``n`` neurite elements: somata (diameter 10 µm) on a cubic
    lattice 60 µm apart, each with four neurites grown to 12 elements of up
    to 2 µm (BioDynaMo's neurite_max_length in its demos), the tips of random
    length (so they do not all split at once); each step the
    terminal elements elongate at 0.5 µm/min (persistence 5, randomness 0.5,
    as BioDynaMo's basal dendrites), bifurcate at 0.002/min and branch at
    0.002/min, with BioDynaMo's neurite mechanics and soma forces."""
    import biosim as bs
    from biosim import models

    somata = max(1, round(n / ELEMENTS_PER_NEURON))
    side = int(np.ceil(somata ** (1 / 3)))
    edge = side * NEURON_SPACING
    sim = bs.Simulation(bs.Box.cube(edge), dt=0.6, seed=seed, mechanics=bs.BioDynaMoForce())
    grid = (np.indices((side,) * 3).reshape(3, -1).T[:somata] + 0.5) * NEURON_SPACING
    soma = sim.add_agents("soma", grid, diameter=10.0)
    dirs = np.array([[0, 0, 1], [1, 0, -1], [-1, 1, -1], [-1, -1, -1]], float)
    dend = sim.add_neurites(np.repeat(soma.uids, 4), np.tile(dirs, (somata, 1)), diameter=1.0,
                            mechanics=bs.NeuriteMechanics(max_length=2.0))
    N = sim.neurites
    t = sim.agents
    rng = np.random.default_rng(seed)
    for k in range(ELEMENTS_PER_NEURON // 4):  # grow every tip by one element, the last by a random length
        rows = N.rows()
        rows = rows[t["daughter_left"][rows] < 0]
        step = rng.uniform(0.0, 1.8, rows.size) if k == ELEMENTS_PER_NEURON // 4 - 1 else np.full(rows.size, 1.9)
        N._elongate_rows(rows, step, N.unit_axis(rows))
        N.discretize()
    dend.behaviours += [models.NeuriteElongation(speed=0.5, persistence=5.0, randomness=0.5),
                        models.NeuriteBifurcation(rate=0.002), models.NeuriteBranching(rate=0.002)]
    return sim


def measure_neurons(n, steps):
    sim, result = _measure(make_neurons, n, steps, warm=2000)
    result["elements"] = int(sim.neurites.rows().size)
    # the memory held at the end over the agents at the end (bytes_per_agent divides it by the start's count)
    result["bytes_per_agent_end"] = result["bytes_per_agent"] * n / max(result["agents_end"], 1)
    return result


def neurites_main(sizes=(1_000_000,), threads=None, steps=20):
    """Print element-updates per second for 1 and all cores, the speed-up and
    the memory per agent."""
    print(f"biosim neurite benchmark: neurons growing and branching, steps 1..{steps}; {os.cpu_count() or 1} cores")
    results = []
    for n, t, r, first in scaling_runs("measure_neurons({n}, " + str(steps) + ")", sizes, threads):
        results.append(r)
        ratio = r["updates_per_s"] / first["updates_per_s"]
        eff = f", {ratio:.2f}x of 1 thread, efficiency {ratio / t:.0%}" if r is not first else ""
        phases = ", ".join(f"{k} {v:.0f}" for k, v in r["ms_per_step"].items() if v >= 0.5)
        print(f"  N={n:>10,} {t:>2} thread(s): {r['updates_per_s'] / 1e6:6.2f} M agent-updates/s{eff}; "
              f"{1e3 * r['seconds'] / steps:.0f} ms/step ({phases}); {r['bytes_per_agent_end']:.0f} B/agent held "
              f"at the end (peak {r['peak_bytes_per_agent']:.0f} per starting agent); {r['elements']:,} elements "
              f"at the end")
    return results
