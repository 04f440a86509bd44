"""Plots of runs over time (matplotlib, no display needed)."""
import os

import numpy as np


def plot_counts(run, out="counts.png"):
    """Plot the number of agents of each population over time (min) (with the
    counts per state when the run recorded them, see
    ``Simulation.record_counts``), and under it every other series the run
    recorded (``sim.record``), and save it to ``out`` (.png, .pdf or .svg);
    returns {population: counts per snapshot}."""
    from biosim.io import Run, open_run

    if isinstance(run, (str, os.PathLike)):
        run = open_run(run)
    if not isinstance(run, Run):
        raise TypeError(f"plot_counts takes a run (bs.io.open_run(path)) or its path; got {type(run).__name__}")
    ext = os.path.splitext(str(out))[1].lower()
    if ext not in (".png", ".pdf", ".svg"):
        raise ValueError(f"out {str(out)!r}: use .png, .pdf or .svg; got {ext or '(none)'}")
    names = list(run.populations)
    counts = np.zeros((len(run), max(len(names), 1)), dtype=np.int64)
    for i in range(len(run)):
        types = run.agents(i, columns=["type"])["type"]
        c = np.bincount(types, minlength=counts.shape[1]) if types.size else np.zeros(counts.shape[1], int)
        counts[i, : len(c)] = c[: counts.shape[1]]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # counts recorded every few steps (record_counts) are finer than snapshots
    count_series = [r for r in run.records if r.startswith("count_")]
    records = [r for r in run.records if not r.startswith("count_")]
    fig, axes = plt.subplots(2 if records else 1, 1, figsize=(6, 6 if records else 4), dpi=120, squeeze=False)
    ax = axes[0, 0]
    if count_series:
        for name in count_series:
            s = run.series(name)
            ax.plot(s["time"], s["value"], label=name[len("count_"):])
    else:
        for k, name in enumerate(names or ["agents"]):
            ax.plot(run.times, counts[:, k], label=name)
    ax.set_xlabel("time (min)")
    ax.set_ylabel("agents")
    ax.legend()
    if records:
        ax2 = axes[1, 0]
        for name in records:
            s = run.series(name)
            ax2.plot(s["time"], s["value"], label=name)
        ax2.set_xlabel("time (min)")
        ax2.set_ylabel("recorded value")
        ax2.legend()
    fig.tight_layout()
    fig.savefig(str(out))
    plt.close(fig)
    return {name: counts[:, k] for k, name in enumerate(names)}
