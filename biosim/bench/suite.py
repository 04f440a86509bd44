"""``biosim bench``: the standard scenarios at chosen sizes and thread counts,
each thread count in a process of its own, with a table, JSON, a plot and
the machine record."""
import datetime
import json
import os
import sys

from ._common import _run_code, machine
from .scenarios import SCENARIOS, pyphysicell_available

PHASE_COLUMNS = ("neighbours", "behaviours", "mechanics", "substances", "commit")


def parse_counts(text, name):
    """A list of positive integers from ``"1,2"``, ``"1e5,1e6"`` or a sequence;
    errors name the parameter."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        s = str(item).strip()
        if not s:
            continue
        try:
            v = float(s)
        except ValueError:
            raise ValueError(f"{name}: {s!r} is not a number; give positive integers separated by commas, "
                             f"e.g. 1,2 or 1e5,1e6") from None
        if not v.is_integer() or v < 1:
            raise ValueError(f"{name}: {s!r} must be a positive integer")
        out.append(int(v))
    if not out:
        raise ValueError(f"{name}: give at least one positive integer, got {text!r}")
    return out


def scenario_names(text):
    """The scenario names in ``"circles,proliferation"`` or ``"all"``."""
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if names == ["all"]:
        return list(SCENARIOS)
    bad = [s for s in names if s not in SCENARIOS]
    if bad or not names:
        raise ValueError(f"scenario: {', '.join(map(repr, bad)) or 'none given'}; choose from "
                         f"{', '.join(SCENARIOS)} or all")
    return names


def _phase_cells(r):
    ms = r["ms_per_step"]
    cells = [ms.get(k, 0.0) for k in PHASE_COLUMNS]
    other = sum(v for k, v in ms.items() if k not in PHASE_COLUMNS)
    return cells + [other]


def _baseline(sc, n, threads, steps):
    """The scenario's baseline at ``n`` agents, or None with a printed reason."""
    if sc.baseline is None:
        return None
    if sc.baseline == "measure_pyphysicell":
        ok, why = pyphysicell_available()
        if not ok:
            print(f"  baseline pyphysicell skipped: {why}")
            return None
    bsteps = min(steps, sc.baseline_steps) if sc.baseline_steps else steps
    env = {"PHYSICELL_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    r = _run_code(f"{sc.baseline}({n}, {bsteps})", threads, env)
    r["threads"] = threads
    r["label"] = sc.baseline_label
    return r


def _check_targets(sc, runs, baselines):
    lines = []
    for desc, n, threads, key, bound in sc.targets:
        rows = [r for r in runs if r["agents"] == n and (threads is None or r["threads"] == threads)]
        if not rows:
            continue
        r = max(rows, key=lambda r: r["updates_per_s"])
        if key == "updates_per_s":
            value, ok, shown = r[key], r[key] >= bound, f"{r[key] / 1e6:.2f} M/s"
        elif key == "efficiency":
            if "efficiency" not in r:
                continue
            value = r["efficiency"]
            ok, shown = value >= bound, f"{value:.0%}"
        elif key == "baseline_ratio":
            b = baselines.get(n)
            if b is None:
                continue
            value = r["updates_per_s"] / b["updates_per_s"]
            ok, shown = value >= bound, f"{value:.1f}x"
        elif key == "bytes_per_agent":
            value = r[key]
            ok, shown = value <= bound, f"{value:.0f} B"
        else:
            raise ValueError(f"unknown target key {key!r}")
        lines.append({"target": desc, "value": value, "met": bool(ok)})
        print(f"  target {desc}: {shown} -> {'met' if ok else 'MISSED'}")
    return lines


def run_suite(scenarios="all", agents=None, threads=None, weak=False, steps=None, repeat=1, baseline=True,
              out="bench-results", plot=True, device="cpu", ranks=None):
    """Run the named scenarios and print one table each.

    ``agents``: sizes (default: each scenario's own); ``threads``: thread
    counts (default 1 and all cores), each run in a subprocess with
    ``NUMBA_NUM_THREADS`` set; ``weak``: agents grow in proportion to the
    thread count (the sizes given are those of the smallest count);
    ``steps``: timed steps per run (default: each scenario's own);
    ``repeat``: runs per configuration, each in a process of its own, the
    configurations in turn (1, 2, 1, 2, ... threads or ranks: a slow spell
    of a shared machine falls on each alike); the median run is reported
    (the lower middle of an even count) with every run's throughput
    (``runs_updates_per_s``).  Speed-up
    and parallel efficiency are against the smallest thread count at the
    same size (weak: the same size per thread).  Compilation (or loading
    numba's cache) is timed apart on a small instance and reported as
    ``compile_s``.  Sizes whose estimated memory exceeds 80% of this
    machine's are refused before anything runs; a run that fails is
    reported and the others go on.  ``device`` "cuda" (or "cuda:N") adds,
    at every size, a run on that GPU after the CPU runs, with its ratio to
    the fastest CPU run of the same size.  Writes ``bench.json`` into ``out``
    after every scenario and, with ``plot``, ``bench.png`` at the end (out
    None: nothing written).  ``ranks`` (e.g. "1,2"): MPI scaling instead
    of thread scaling, each rank count under ``mpiexec -n R`` with one
    numba thread per rank (or the one count ``threads`` gives), the
    halo-and-migration phase (``exchange``) and the bytes each rank sends
    per step printed beside each row.  Returns the results dict."""
    names = scenario_names(scenarios)
    from ..backends import parse_device

    device = parse_device(device)
    cores = os.cpu_count() or 1
    counts = sorted(set(parse_counts(threads, "threads"))) if threads is not None else sorted({1, cores})
    if ranks is not None:
        ranks = sorted(set(parse_counts(ranks, "ranks")))
        if threads is None:
            counts = [1]
        if len(counts) != 1:
            raise ValueError(f"threads: with ranks give one thread count per rank, got {threads!r}")
        if max(ranks) > 1:
            from ._common import mpiexec

            mpiexec()  # refused now, not after the first scenario
    sizes = None if agents is None else parse_counts(agents, "agents")
    if steps is not None:
        steps = parse_counts([steps], "steps")[0]
    repeat = parse_counts([repeat], "repeat")[0]
    mach = machine()
    _check_memory(names, sizes, counts if ranks is None else ranks, weak, mach)
    print(f"biosim bench: {mach['cpu']}, {mach['logical_cores']} logical cores ({mach['usable_cores']} usable), "
          f"{mach['memory_gib']} GiB; biosim {mach['biosim']}, numba {mach['numba']}, numpy {mach['numpy']}, "
          f"python {mach['python']}")
    if max(counts) > mach["usable_cores"]:
        print(f"  note: {max(counts)} threads on {mach['usable_cores']} usable cores is oversubscribed")
    results = {"machine": mach, "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "command": sys.argv, "threads": counts, "ranks": ranks, "weak": bool(weak), "repeat": repeat,
               "device": device, "scenarios": {}}
    if device != "cpu":
        from ..kernels.cuda import describe

        results["gpu"] = describe()
        print(f"  gpu: {results['gpu']}")
    for name in names:
        results["scenarios"][name] = _run_scenario(name, sizes, counts, weak, steps, repeat, baseline, device,
                                                   ranks)
        if out:  # after every scenario, so an interrupted suite keeps what it measured
            path = _write(results, out)
    if out:
        print(f"\nresults: {path}")
        if plot:
            png = os.path.join(out, "bench.png")
            plot_results(results, png)
            print(f"plot: {png}")
    return results


def _agents_at(n, t, counts, weak):
    """Agents of a run with ``t`` threads for size ``n``: n, or with weak
    scaling n in proportion to the smallest thread count."""
    return n * t // counts[0] if weak else n


def _check_memory(names, sizes, counts, weak, mach):
    """Refuse, before anything runs, a size whose estimated peak memory exceeds
    80% of this machine's."""
    if not mach.get("memory_gib"):
        return
    limit = 0.8 * mach["memory_gib"] * 2**30
    for name in names:
        sc = SCENARIOS[name]
        for n in sizes or sc.agents:
            biggest = _agents_at(n, max(counts), counts, weak)
            need = biggest * sc.bytes_per_agent + 3e8  # + the interpreter, numba and the grids
            if need > limit:
                most = int((limit - 3e8) / sc.bytes_per_agent)
                raise ValueError(f"agents: {biggest:,} agents of {name} need about {need / 2**30:.1f} GiB "
                                 f"({sc.bytes_per_agent:.0f} bytes each); this machine has "
                                 f"{mach['memory_gib']} GiB: use at most about {most:.2g}")


def _write(results, out):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "bench.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    return path


def _failure(err):
    """The last informative line of a failed subprocess's message."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else repr(err)


# FLAME GPU 2's published circles figures at 10^6 agents (ms per step), REFERENCES.md
FLAME_GPU_CIRCLES = (("H100 PCIe", 2.12), ("H100 NVL", 1.84))


def _row(r, label, st):
    ph = " ".join(f"{v:7.1f}" for v in _phase_cells(r)[:-1]) + f" {_phase_cells(r)[-1]:6.1f}"
    sp = (f"{r['speedup']:6.2f}x {r['efficiency']:6.0%}" if "speedup" in r else f"{'':>7} {'':>6}")
    mem = (f"{r['device_bytes_per_agent']:7.0f} {'(dev)':>6}" if r.get("device", "cpu") != "cpu"
           else f"{r['bytes_per_agent']:7.0f} {r['peak_bytes_per_agent']:6.0f}")
    return (f"  {r['agents']:>11,} {label:>3} {r['updates_per_s'] / 1e6:8.2f} {1e3 * r['seconds'] / st:9.2f} | {ph} | "
            f"{sp} | {mem}")


def _run_device(name, n, st, repeat, device, cpu_runs, failures):
    """The GPU run of scenario ``name`` at ``n`` agents, printed with its ratio
    to the fastest CPU run of the same size; None if it failed."""
    try:
        r = _run_code(f"measure_scenario({name!r}, {n}, {st}, {repeat})", None, {"BIOSIM_DEVICE": device})
    except RuntimeError as e:
        failures.append({"agents": n, "device": device, "error": str(e)})
        print(f"  {n:>11,} gpu failed: {_failure(e)}")
        return None
    r["size"] = n
    print(_row(r, "gpu", st))
    cpu = [c for c in cpu_runs if c["agents"] == n]
    if cpu:
        best = max(cpu, key=lambda c: c["updates_per_s"])
        r["cpu_ratio"] = r["updates_per_s"] / best["updates_per_s"]
        print(f"  {'':>11} {device} is {r['cpu_ratio']:.1f}x the CPU with {best['threads']} thread(s) "
              f"({r['device_bytes_per_agent']:.0f} bytes/agent on the device)")
    if name == "circles":
        ms = 1e3 * r["seconds"] / st
        print(f"  {'':>11} FLAME GPU 2 (published, 10^6 agents): "
              + ", ".join(f"{gpu} {t} ms/step" for gpu, t in FLAME_GPU_CIRCLES) + f"; biosim here {ms:.2f} ms/step")
    return r


def _run_scenario(name, sizes, counts, weak, steps, repeat, baseline, device="cpu", ranks=None):
    """Measure one scenario at every size and thread count (or MPI rank
    count), print its table, baselines and targets; returns its part of the
    results.  A run that fails (out of memory, killed) is reported and
    recorded, and the others go on."""
    sc = SCENARIOS[name]
    st = steps or sc.steps
    workers = counts if ranks is None else ranks  # what scales: threads, or ranks of counts[0] threads
    what = "ranks" if ranks is not None else "threads"
    how = f"median of {repeat} runs, the configurations in turn" if repeat > 1 else "median of 1"
    print(f"\n{name}: {sc.title}; {st} steps, {'weak' if weak else 'strong'} scaling over {what}, {how}")
    print(f"  {'agents':>11} {'thr' if ranks is None else 'rks':>3} {'M upd/s':>8} {'ms/step':>9} | {'neighb':>7} "
          f"{'behav':>7} {'mech':>7} {'subst':>7} {'commit':>7} {'other':>6} | {'speedup':>7} {'effic':>6} | "
          f"{'B/agent':>7} {'peak':>6}")
    runs, failures, gpu_runs = [], [], []
    for n in sizes or sc.agents:
        base = None
        got = {w: [] for w in workers}
        # per configuration: (agents, threads, ranks)
        setup = {w: (_agents_at(n, w, workers, weak), *((w, 1) if ranks is None else (counts[0], w))) for w in workers}
        for _ in range(repeat):  # the configurations in turn, so a slow spell of the machine falls on each alike
            for w in workers:
                nn, t, r_count = setup[w]
                if got[w] is None:
                    continue  # failed before
                try:
                    got[w].append(_run_code(f"measure_scenario({name!r}, {nn}, {st}, 1)", t,
                                            {"BIOSIM_DEVICE": "cpu"}, r_count))
                except RuntimeError as e:
                    failures.append({"agents": nn, "threads": t, "ranks": r_count, "error": str(e)})
                    print(f"  {nn:>11,} {w:>3} failed: {_failure(e)}")
                    got[w] = None
        for w in workers:
            if not got[w]:
                continue
            _, t, r_count = setup[w]
            r = sorted(got[w], key=lambda g: g["updates_per_s"])[(len(got[w]) - 1) // 2]  # the median run
            r["runs_updates_per_s"] = [g["updates_per_s"] for g in got[w]]
            r["size"] = n
            if base is None:
                base = r
            else:
                r["speedup"] = r["updates_per_s"] / base["updates_per_s"]
                r["efficiency"] = r["speedup"] * (base["threads"] * base.get("ranks", 1)) / (t * r_count)
            runs.append(r)
            print(_row(r, w, st))
            if ranks is not None:
                ms = r["ms_per_step"]
                total = 1e3 * r["seconds"] / st
                ex = ms.get("exchange", 0.0)
                grid = f" on {r['rank_grid']} blocks" if r.get("rank_grid") else ""
                print(f"  {'':>11} {'':>3} halo and migration {ex:.2f} ms/step ({ex / total:.0%} of the step), "
                      f"{r['exchange_bytes_per_step'] / 1e3:.1f} kB sent per rank and step{grid}")
        if device != "cpu":
            g = _run_device(name, n, st, repeat, device, runs, failures)
            if g is not None:
                gpu_runs.append(g)
    part = {"definition": " ".join((sc.doc or "").split()), "steps": st, "runs": runs, "failures": failures,
            "baselines": {}, "targets": [], "gpu_runs": gpu_runs}
    if not runs:
        return part
    last = runs[-1]
    if len(last["behaviour_ms_per_step"]) > 1:
        print("  behaviours (ms/step, last row): " + ", ".join(
            f"{k} {v:.2f}" for k, v in last["behaviour_ms_per_step"].items()))
    comp = [r["compile_s"] for r in runs]
    print(f"  compilation or cache load (one step of a small instance, not in the numbers above): "
          f"{min(comp):.2f}-{max(comp):.2f} s")
    if name == "physicell_template":
        for r in runs:
            print(f"  {r['agents']:,} cells, {r['threads']} thread(s): {st} steps = {st * 0.1:g} simulated min "
                  f"in {r['seconds']:.2f} s")
    baselines = {}
    if baseline and sc.baseline and ranks is None:
        tmax = max(r["threads"] for r in runs)
        for n in sorted({r["agents"] for r in runs if r["threads"] == tmax}):
            try:
                b = _baseline(sc, n, tmax, st)
            except RuntimeError as e:
                print(f"  baseline {sc.baseline_label} at {n:,} agents failed: {_failure(e)}")
                continue
            if b is None:
                break
            baselines[n] = b
            best = max((r for r in runs if r["agents"] == n), key=lambda r: r["updates_per_s"])
            extra = f" ({b['seconds']:.2f} s for {b['steps']} steps)" if name == "physicell_template" else ""
            print(f"  baseline {b['label']} at {n:,} agents, {b['threads']} thread(s): "
                  f"{b['updates_per_s'] / 1e6:.3f} M agent-updates/s{extra}; biosim with {best['threads']} "
                  f"thread(s) is {best['updates_per_s'] / b['updates_per_s']:.1f}x faster")
        if baselines and sc.baseline_note:
            print(f"  note: {sc.baseline_note}")
    if sc.reference:
        print(f"  reference: {sc.reference}")
    part["baselines"] = {str(k): v for k, v in baselines.items()}
    part["targets"] = _check_targets(sc, runs, baselines) if ranks is None else _rank_targets(name, runs, weak)
    return part


# the MPI issue's goals for this machine (one thread per rank)
WEAK_RANK_SCENARIOS = ("proliferation", "clustering")


def _rank_targets(name, runs, weak):
    """The MPI targets: weak scaling 1 -> 2 ranks at least 85% efficient
    (proliferation and clustering), halo and migration at most 15% of the
    step at 10^6 agents per rank."""
    lines = []
    for r in runs:
        if r.get("ranks", 1) < 2:
            continue
        per_rank = r["agents"] / r["ranks"]
        if weak and r["ranks"] == 2 and "efficiency" in r and name in WEAK_RANK_SCENARIOS:
            lines.append({"target": f"weak scaling 1 -> 2 ranks at least 85% ({per_rank:,.0f} agents per rank)",
                          "value": r["efficiency"], "met": bool(r["efficiency"] >= 0.85)})
        if per_rank >= 1e6:
            share = r["ms_per_step"].get("exchange", 0.0) / (1e3 * r["seconds"] / r["steps"])
            lines.append({"target": f"halo and migration at most 15% of the step at 10^6 agents per rank "
                                    f"({r['ranks']} ranks)", "value": share, "met": bool(share <= 0.15)})
    for t in lines:
        shown = f"{t['value']:.0%}"
        print(f"  target {t['target']}: {shown} -> {'met' if t['met'] else 'MISSED'}")
    return lines


def plot_results(results, path):
    """Speed-up and parallel efficiency against threads, and throughput
    against agents, for every scenario in ``results`` (a dict from
    :func:`run_suite` or its JSON file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(results, str):
        with open(results) as f:
            results = json.load(f)
    fig, (ax_s, ax_e, ax_n) = plt.subplots(1, 3, figsize=(15, 4.5))
    counts = results.get("ranks") or results["threads"]
    across = "ranks" if results.get("ranks") else "threads"

    def workers(r):
        return r.get("ranks", 1) if results.get("ranks") else r["threads"]
    ax_s.plot(counts, [t / counts[0] for t in counts], "k--", lw=1, label="ideal")
    ax_e.axhline(1.0, color="k", ls="--", lw=1)
    ax_e.axhline(0.85, color="grey", ls=":", lw=1, label="85%")
    styles = ("-", "--", ":", "-.")
    for k, (name, sc) in enumerate(results["scenarios"].items()):
        color = f"C{k % 10}"
        runs = sc["runs"]
        for j, n in enumerate(sorted({r["size"] for r in runs})):
            rows = sorted((r for r in runs if r["size"] == n), key=workers)
            t = [workers(r) for r in rows]
            sp = [r["updates_per_s"] / rows[0]["updates_per_s"] for r in rows]
            label = f"{name} N={n:,}"
            ax_s.plot(t, sp, "o", ls=styles[j % 4], color=color, label=label)
            ax_e.plot(t, [s * t[0] / ti for s, ti in zip(sp, t)], "o", ls=styles[j % 4], color=color, label=label)
        for j, thr in enumerate(sorted({workers(r) for r in runs}, reverse=True)):
            rows = sorted((r for r in runs if workers(r) == thr), key=lambda r: r["agents"])
            ax_n.plot([r["agents"] for r in rows], [r["updates_per_s"] for r in rows], "os^v"[j % 4],
                      ls=styles[j % 4], color=color, label=f"{name}, {thr} {across}")
    ax_s.set(xlabel=across, ylabel="speed-up", title="speed-up" + (" (weak)" if results.get("weak") else ""))
    ax_e.set(xlabel=across, ylabel="parallel efficiency", title="parallel efficiency", ylim=(0, 1.2))
    ax_n.set(xlabel="agents", ylabel="agent-updates per second", title="throughput", xscale="log", yscale="log")
    for ax in (ax_s, ax_e, ax_n):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    m = results["machine"]
    fig.suptitle(f"biosim {m['biosim']} on {m['cpu']} ({m['logical_cores']} logical cores), {results['date']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
