"""Plots of runs over time (matplotlib, no display needed)."""
import os

import numpy as np


def plot_counts(run, out="counts.png", log=False):
    """Plot a run's agent counts over time (min) and save it to ``out``
    (.png, .pdf or .svg); returns {population: counts per snapshot}.

    Panels, top to bottom: the number of agents of each population (from
    the counts the run recorded, ``Simulation.record_counts``, else from
    its snapshots), ``log=True`` on a log scale (for exponential growth);
    for each population whose behaviours record states (``models.Infection``,
    ``models.CellCycle`` ...), its states stacked; then the other recorded
    series (``sim.record``), one panel per unit, each labelled with its
    name and the axis with its unit."""
    from biosim.io import Run, open_run

    if isinstance(run, (str, os.PathLike)):
        run = open_run(run)
    if not isinstance(run, Run):
        raise TypeError(f"plot_counts takes a run (bs.io.open_run(path)) or its path; got {type(run).__name__}")
    ext = os.path.splitext(str(out))[1].lower()
    if ext not in (".png", ".pdf", ".svg"):
        raise ValueError(f"out {str(out)!r}: use .png, .pdf or .svg; got {ext or '(none)'}")
    if not isinstance(log, (bool, np.bool_)):
        raise TypeError(f"log must be True or False, got {log!r}")
    names = list(run.populations)
    counts = np.zeros((len(run), max(len(names), 1)), dtype=np.int64)
    for i in range(len(run)):
        types = run.agents(i, columns=["type"])["type"]
        c = np.bincount(types, minlength=counts.shape[1]) if types.size else np.zeros(counts.shape[1], int)
        counts[i, : len(c)] = c[: counts.shape[1]]
    totals, states, others = _series_kinds(run, names)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = sorted({run.units.get(r, "") for r in others})
    panels = 1 + len(states) + len(units)
    fig, axes = plt.subplots(panels, 1, figsize=(6.4, 2.2 + 2.0 * panels), dpi=120, squeeze=False, sharex=True)
    ax = axes[0, 0]
    if totals:  # counts recorded every few steps are finer than snapshots
        for pop, name in totals.items():
            s = run.series(name)
            ax.plot(s["time"], s["value"], label=pop)
    else:
        for k, name in enumerate(names or ["agents"]):
            ax.plot(run.times, counts[:, k], label=name)
    ax.set_ylabel("agents" + (" (log scale)" if log else ""))
    if log:
        ax.set_yscale("log", nonpositive="mask")
    ax.set_title("agents per population")
    ax.legend(fontsize="small", loc="best")
    for k, (pop, series) in enumerate(states.items(), start=1):
        ax = axes[k, 0]
        data = [run.series(name) for _, name in series]
        steps = np.unique(np.concatenate([d["step"] for d in data]))
        time = np.zeros(steps.size)
        stack = np.zeros((len(data), steps.size))
        for j, d in enumerate(data):  # a state recorded from a later step on counts 0 before it
            at = np.searchsorted(steps, d["step"])
            stack[j, at] = d["value"]
            time[at] = d["time"]
        ax.stackplot(time, stack, labels=[label for label, _ in series])
        ax.set_ylabel("agents")
        ax.set_title(f"{pop}: states (stacked)")
        ax.legend(fontsize="small", loc="upper left")
    for k, unit in enumerate(units, start=1 + len(states)):
        ax = axes[k, 0]
        for name in others:
            if run.units.get(name, "") == unit:
                s = run.series(name)
                ax.plot(s["time"], s["value"], label=f"{name} ({unit})" if unit else name)
        ax.set_ylabel(unit or "value (no unit given)")
        ax.legend(fontsize="small", loc="best")
    axes[-1, 0].set_xlabel("time (min)")
    fig.tight_layout()
    fig.savefig(str(out))
    plt.close(fig)
    return {name: counts[:, k] for k, name in enumerate(names)}


def _series_kinds(run, names):
    """The run's recorded series sorted into ({population: its count series},
    {population: [(state, series)]}, [other series])."""
    from biosim.simulation import count_name

    safe = {pop: count_name(pop) for pop in names}
    totals = {pop: name for pop, name in safe.items() if name in run.records}
    states, others = {}, []
    for name in run.records:
        if name in totals.values():
            continue
        owner = max((pop for pop, prefix in safe.items() if name.startswith(prefix + "_")),
                    key=lambda pop: len(safe[pop]), default=None)
        if owner is None:
            others.append(name)
        else:
            states.setdefault(owner, []).append((name[len(safe[owner]) + 1:], name))
    return totals, states, others
