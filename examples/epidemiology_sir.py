"""Epidemiology: SIR by proximity
==============================

BioDynaMo's measles demo: 2000 susceptible and 10 infected people moving at
random in a periodic 100^3 box, infected by proximity, recovering at a
constant rate; the agent curves against the SIR equations solved with scipy.

    python examples/epidemiology_sir.py [N_AGENTS] [STEPS] [REPEATS] [OUT.png]

Parameters are BioDynaMo's (demo/epidemiology, dt = 1 h): speed 5.786 µm per
hour, infection probability 0.2851 per hour near an infected agent (here a
rate per contact), recovery probability 0.00521 per hour, and its
"infection radius" 10.5092, which BioDynaMo passes to a search that takes a
squared radius: the contact distance is sqrt(10.5092) = 3.24 µm.  Larger N
keeps the density (the box grows) and the infected fraction.

It prints, and plots, the mean over REPEATS seeds of S, I and R against

* the SIR equations with the rates the agents imply (mass action:
  beta = contacts per agent x infection probability per step / dt), and
* BioDynaMo's fitted measles curve (beta = 0.06719, gamma = 0.00521 per hour).

The agent epidemic starts slower than mass action (an infected agent's
neighbours are infected too) and then follows it.
"""
import sys

import numpy as np
from scipy.integrate import solve_ivp

import biosim as bs
from biosim import models

DT = 60.0                                   # min (BioDynaMo: 1 h per step)
SPEED = 5.78594372145249 / 60.0             # µm/min
RADIUS = np.sqrt(10.5092197414493)          # µm
P_INFECT = 0.285097276954021                # per step, per infected contact
P_RECOVER = 0.00521                         # per step
BIODYNAMO_BETA, BIODYNAMO_GAMMA = 0.06719, 0.00521  # per hour


def simulate(n, steps, seed, every=10):
    """One run: (times in h, S, I, R) recorded every ``every`` steps."""
    edge = 100.0 * (n / 2010.0) ** (1.0 / 3.0)
    sim = bs.Simulation(bs.Box.cube(edge), boundary="periodic", dt=DT, seed=seed, mechanics=None)
    n_infected = max(1, round(n * 10 / 2010))
    pos = bs.init.uniform(n, sim.box, seed=seed)
    people = sim.add_agents("people", pos[n_infected:], diameter=2.0)
    people.behaviours += [
        models.RandomWalk(speed=SPEED),
        models.Infection(rate=models.rate_from_probability(P_INFECT, DT), radius=RADIUS,
                         recovery=models.rate_from_probability(P_RECOVER, DT)),
    ]
    sim.add_agents("people", pos[:n_infected], diameter=2.0, state=models.INFECTED)
    sim.record_counts(every=every)
    sim.run(steps)
    rec = sim.records
    s, i, r = (rec[f"count_people_{k}"] for k in ("susceptible", "infected", "recovered"))
    return s.times / 60.0, s.values, i.values, r.values


def sir_ode(n, i0, beta, gamma, hours):
    """S, I, R of the SIR equations (rates per hour) at ``hours``."""
    def f(t, y):
        s, i, r = y
        return [-beta * s * i / n, beta * s * i / n - gamma * i, gamma * i]
    sol = solve_ivp(f, (0.0, hours[-1]), [n - i0, i0, 0.0], t_eval=hours, rtol=1e-9, atol=1e-9)
    return sol.y


def equivalent_rates(n):
    """beta, gamma (per hour) of the SIR equations the agent rules imply in a
    well-mixed population: contacts per agent (n - 1)/V x (4/3) pi r^3, each
    infecting with probability P_INFECT per step of DT."""
    volume = 100.0 ** 3 * n / 2010.0
    contacts = (n - 1) / volume * 4.0 / 3.0 * np.pi * RADIUS ** 3
    return contacts * P_INFECT * 60.0 / DT, -np.log1p(-P_RECOVER) * 60.0 / DT


def main(n=2010, steps=1000, repeats=10, out="epidemiology_sir.png"):
    runs = [simulate(n, steps, seed) for seed in range(1, repeats + 1)]
    hours = runs[0][0]
    mean = np.mean([np.stack(r[1:]) for r in runs], axis=0)
    i0 = max(1, round(n * 10 / 2010))
    beta, gamma = equivalent_rates(n)
    ode = sir_ode(n, i0, beta, gamma, hours)
    bdm = sir_ode(n, i0, BIODYNAMO_BETA, BIODYNAMO_GAMMA, hours)
    dev = np.abs(mean - ode).max(axis=1) / n
    dev_bdm = np.abs(mean - bdm).max(axis=1) / n
    print(f"{repeats} runs of {n} agents, {steps} steps of {DT:g} min; mass-action beta = {beta:.4f}/h, "
          f"gamma = {gamma:.5f}/h")
    print("largest gap of the mean agent curves, as a fraction of N:")
    print(f"  vs SIR with the equivalent rates: S {dev[0]:.3f}  I {dev[1]:.3f}  R {dev[2]:.3f}")
    print(f"  vs BioDynaMo's measles fit      : S {dev_bdm[0]:.3f}  I {dev_bdm[1]:.3f}  R {dev_bdm[2]:.3f}")
    peak = int(np.argmax(mean[1]))
    print(f"agent epidemic peak: {mean[1][peak]:.0f} infected at {hours[peak]:.0f} h "
          f"(equivalent SIR: {ode[1].max():.0f} at {hours[int(np.argmax(ode[1]))]:.0f} h)")
    if out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        colours = ("tab:blue", "tab:red", "tab:green")
        for k, name in enumerate(("susceptible", "infected", "recovered")):
            for r in runs:
                ax.plot(hours, r[k + 1], color=colours[k], alpha=0.15, lw=0.8)
            ax.plot(hours, mean[k], color=colours[k], lw=2, label=f"{name} (agents, mean)")
            ax.plot(hours, ode[k], color=colours[k], ls="--", lw=1.5)
            ax.plot(hours, bdm[k], color=colours[k], ls=":", lw=1.5)
        ax.plot([], [], "k--", label="SIR, equivalent rates")
        ax.plot([], [], "k:", label="SIR, BioDynaMo's measles fit")
        ax.set_xlabel("time (h)")
        ax.set_ylabel("people")
        ax.set_title(f"SIR by proximity: {n} agents, {repeats} seeds")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out)
        print(f"plot: {out}")
    return dev


if __name__ == "__main__":
    args = sys.argv[1:]
    main(n=int(args[0]) if len(args) > 0 else 2010, steps=int(args[1]) if len(args) > 1 else 1000,
         repeats=int(args[2]) if len(args) > 2 else 10, out=args[3] if len(args) > 3 else "epidemiology_sir.png")
