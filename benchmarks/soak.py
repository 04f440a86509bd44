"""Soak: a long run must keep memory flat and its agent bookkeeping exact.

N agents (default 10^5) in a closed box with soft-sphere mechanics and a
random walk; cells grow at a constant rate and divide at 12 µm (a cycle of
T = 503 min from birth) and die at rate ln 2 / T, the rate at which such a
population is stationary (Euler-Lotka: 2 exp(-mu T) = 1).  Every
``--report`` steps it prints the agent count, resident memory (RSS) and
throughput, and checks that uids are unique and that the count equals the
start + births - deaths.  At the end it prints the RSS growth between the
first and the last report and exits with status 1 if a check failed.

    python benchmarks/soak.py                      # 10^5 agents, 10^4 steps
    python benchmarks/soak.py --agents 2000 --steps 300 --report 100
"""
import argparse
import sys
import time

import numpy as np

import biosim as bs
from biosim import models
from biosim.bench import _rss_bytes


def main(agents=100_000, steps=10_000, report=1000, seed=1):
    v_div = np.pi / 6 * 12.0 ** 3                      # µm³ at division
    growth = 0.9                                       # µm³/min
    cycle = 0.5 * v_div / growth                       # min from birth (v_div / 2) to division
    rate = np.log(2.0) / cycle                         # 1/min: death balances division
    edge = (agents * 1000.0 / 0.3) ** (1 / 3)          # a volume fraction of ~0.2
    sim = bs.Simulation(bs.Box.cube(edge), dt=1.0, seed=seed, mechanics=bs.SoftSphere())
    # founders of every age: volumes uniform between birth and division
    volume = np.random.default_rng(seed).uniform(0.5 * v_div, v_div, agents)
    cells = sim.add_agents("cells", bs.init.uniform(agents, sim.box, seed=seed),
                           diameter=np.cbrt(6 / np.pi * volume))
    cells.behaviours += [models.GrowthDivision(growth_rate=growth, division_diameter=12.0),
                         models.Apoptosis(rate=rate), models.RandomWalk(diffusion=0.5)]
    print(f"soak: {agents:,} agents, {steps:,} steps, cycle {cycle:.0f} min, death {rate:.5f}/min, "
          f"box {edge:.0f} µm")
    print("     step     agents   births   deaths   RSS (MiB)   agent-updates/s   checks")
    ok = True
    first_rss = None
    t0 = time.perf_counter()
    done = 0
    while sim.step < steps:
        n0 = len(sim.agents)
        chunk = min(report, steps - sim.step)
        t1 = time.perf_counter()
        sim.run(chunk)
        wall = time.perf_counter() - t1
        t = sim.agents
        uids = t.uid
        unique = np.unique(uids).size == len(t)
        balance = len(t) == agents + t.total_births - t.total_deaths
        ok &= unique and balance
        rss = _rss_bytes() / 2**20
        first_rss = rss if first_rss is None else first_rss
        done += n0 * chunk
        print(f"  {sim.step:7d}  {len(t):9,d}  {t.total_births:7,d}  {t.total_deaths:7,d}  {rss:10.1f}   "
              f"{n0 * chunk / wall / 1e6:10.2f} M      uids {'unique' if unique else 'DUPLICATED'}, "
              f"count {'= start + births - deaths' if balance else 'WRONG'}")
    print(f"RSS growth from the first to the last report: {rss - first_rss:+.1f} MiB "
          f"({(rss - first_rss) * 2**20 / max(len(sim.agents), 1):+.1f} bytes per agent); "
          f"{done / (time.perf_counter() - t0) / 1e6:.2f} M agent-updates/s overall; "
          f"bookkeeping {'OK' if ok else 'FAILED'}")
    return ok


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--report", type=int, default=1000)
    a = p.parse_args()
    sys.exit(0 if main(a.agents, a.steps, a.report) else 1)
