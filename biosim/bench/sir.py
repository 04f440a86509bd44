"""Epidemiology benchmark: SIR by proximity (BioDynaMo's measles demo scaled
at constant density)."""
import os

import numpy as np

from ._common import _measure, _run_code, scaling_runs, thread_counts

# BioDynaMo's measles demo (demo/epidemiology): 2000 susceptible + 10 infected
# agents in a periodic 100^3 box, dt = 1 h, speed 5.786 per hour, infection
# probability 0.2851 per step near an infected agent, recovery 0.00521 per
# step.  Its infection radius 10.5092 is passed to a search that takes a
# squared radius, so the contact distance is sqrt(10.5092).
SIR_DT = 60.0                                         # min
SIR_SPEED = 5.78594372145249 / 60.0                   # µm/min
SIR_RADIUS = 10.5092197414493 ** 0.5                  # µm
SIR_P_INFECT = 0.285097276954021                      # per step, per infected contact
SIR_P_RECOVER = 0.00521                               # per step
SIR_DENSITY = 2010 / 100.0 ** 3                       # agents / µm³
SIR_Q = 1.0 - SIR_P_INFECT


def _sir_rule():
    from ..rules import agent_rule

    @agent_rule(writes=("state",))
    def sir(a, ctx):
        """The work of models.Infection (SIR at dt = SIR_DT) written as a user rule."""
        if a.state == 0:
            k = 0
            for n in ctx.neighbours(SIR_RADIUS):
                if n.state == 1:
                    k += 1
            if k > 0 and ctx.uniform(0) < 1.0 - SIR_Q ** k:
                a.state = 1
        elif a.state == 1:
            if ctx.uniform(0) < SIR_P_RECOVER:
                a.state = 2
    return sir


def make_sir(n, seed=1, rule=False, search="auto"):
    """The epidemiology benchmark scenario at ``n`` agents: BioDynaMo's measles
    demo scaled at constant density (box edge 100 (n / 2010)^(1/3) µm,
    periodic) and infected fraction (10 in 2010); random walk at fixed speed
    plus SIR infection by proximity, no mechanics.  ``rule=True`` replaces
    models.Infection by the same work written as an agent rule; ``search``
    is models.Infection's contact search ("pull" is the rule's algorithm)."""
    import biosim as bs
    from biosim import models

    edge = 100.0 * (n / 2010.0) ** (1.0 / 3.0)
    sim = bs.Simulation(bs.Box.cube(edge), boundary="periodic", dt=SIR_DT, seed=seed, mechanics=None)
    n_inf = max(1, round(n * 10 / 2010))
    pos = bs.init.uniform(n, sim.box, seed=seed + 1)
    pop = sim.add_agents("people", pos[n_inf:], diameter=2.0, state=np.int8(models.SUSCEPTIBLE))
    infection = _sir_rule() if rule else models.Infection(
        rate=models.rate_from_probability(SIR_P_INFECT, SIR_DT), radius=SIR_RADIUS,
        recovery=models.rate_from_probability(SIR_P_RECOVER, SIR_DT), search=search)
    pop.behaviours += [models.RandomWalk(speed=SIR_SPEED), infection]
    sim.add_agents("people", pos[:n_inf], diameter=2.0, state=np.int8(models.INFECTED))
    return sim


def measure_sir(n, steps, rule=False, search="auto"):
    """Agent-updates per second of steps 1..steps of the SIR scenario (step 0
    compiles or loads the cache and is not timed)."""
    sim, result = _measure(lambda m: make_sir(m, rule=rule, search=search), n, steps, warm=3000)
    result.update(rule=rule, sir=np.bincount(sim.agents["state"], minlength=3)[:3].tolist())
    return result


BIODYNAMO_SIR_RATE = 10.05e6 * 1000 / (19 * 60 + 18)  # agent-updates/s, 2-core system (published)


def sir_main(sizes=(1_000_000, 10_000_000), threads=None, steps=50, rule=True):
    """Print the SIR benchmark table: per size and thread count, agent-updates
    per second of models.Infection + RandomWalk and, with ``rule``, of the
    same infection written as an agent rule; against BioDynaMo's published
    2-core figure."""
    cores = os.cpu_count() or 1
    counts = thread_counts(threads)
    print(f"biosim SIR benchmark (BioDynaMo measles scaled): density {SIR_DENSITY * 1e6:.0f} per 100^3 µm³, "
          f"10 infected in 2010, radius {SIR_RADIUS:.3f} µm, steps 1..{steps}; {cores} cores")
    print(f"  BioDynaMo published, 10.05 M agents on 2 cores: {BIODYNAMO_SIR_RATE / 1e6:.2f} M agent-updates/s")
    results = []
    for n in sizes:
        for _, t, r, first in scaling_runs("measure_sir({n}, " + str(steps) + ")", [n], counts):
            results.append(r)
            phases = ", ".join(f"{k} {v:.1f}" for k, v in r["behaviour_ms_per_step"].items())
            extra = (f", {r['updates_per_s'] / first['updates_per_s']:.2f}x of 1 thread"
                     if r is not first else "")
            print(f"  N={n:>11,} {t:>2} thread(s): {r['updates_per_s'] / 1e6:7.2f} M agent-updates/s "
                  f"({r['updates_per_s'] / BIODYNAMO_SIR_RATE:.2f}x BioDynaMo{extra}); "
                  f"{1e3 * r['seconds'] / steps:.1f} ms/step ({phases}; neighbours "
                  f"{r['ms_per_step'].get('neighbours', 0):.1f}); {r['bytes_per_agent']:.0f} B/agent")
        if rule:
            t = counts[-1]
            u = _run_code(f"measure_sir({n}, {steps}, rule=True)", t)
            pull = _run_code(f"measure_sir({n}, {steps}, search='pull')", t)
            results += [u, pull]
            auto = next(r for r in results if r["agents"] == n and r["threads"] == t and not r["rule"])
            ui = u["behaviour_ms_per_step"]["people.sir"]
            pi = pull["behaviour_ms_per_step"]["people.Infection"]
            ai = auto["behaviour_ms_per_step"]["people.Infection"]
            print(f"  N={n:>11,} {t:>2} thread(s), infection as a user rule: {u['updates_per_s'] / 1e6:7.2f} M "
                  f"agent-updates/s; rule {ui:.1f} ms/step, models.Infection {pi:.1f} ms/step with the same "
                  f"search (pull: rule/built-in {ui / pi:.2f}x), {ai:.1f} ms/step with search='auto'")
    return results
