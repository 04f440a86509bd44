"""The ``biosim`` command: run, demo, physicell, render, view, resume, info, bench."""
import argparse
import os
import platform
import runpy
import sys


def _set_threads(n):
    """Set numba's thread count; above the pool size, re-exec with a bigger pool."""
    if n is None:
        return
    if n < 1:
        sys.exit(f"biosim: --threads must be >= 1, got {n}")
    import numba

    if n > numba.config.NUMBA_NUM_THREADS:
        if os.environ.get("_BIOSIM_REEXEC"):
            sys.exit(f"biosim: cannot start {n} threads (numba's pool has {numba.config.NUMBA_NUM_THREADS})")
        env = dict(os.environ, NUMBA_NUM_THREADS=str(n), _BIOSIM_REEXEC="1")
        os.execve(sys.executable, [sys.executable, "-m", "biosim.cli", *sys.argv[1:]], env)
    numba.set_num_threads(n)


def _set_device(device):
    """Make ``device`` the default of every Simulation this process builds
    (``$BIOSIM_DEVICE``, inherited by benchmark subprocesses); a bad value
    or a missing GPU ends the command with the reason."""
    if device is None:
        return
    from biosim.backends import parse_device

    try:
        os.environ["BIOSIM_DEVICE"] = parse_device(device)
    except (TypeError, ValueError) as e:
        sys.exit(f"biosim: --device: {e}")


def cmd_info(args):
    import h5py
    import numba
    import numpy as np

    import biosim
    from biosim._cache import cache_dir
    from biosim.bench._common import cpu_model
    from biosim.kernels import cuda

    rows = [
        ("biosim", biosim.__version__),
        ("python", platform.python_version()),
        ("numpy", np.__version__),
        ("numba", numba.__version__),
        ("h5py", f"{h5py.__version__} (HDF5 {h5py.version.hdf5_version})"),
        ("cpu", f"{cpu_model()}, {os.cpu_count()} logical cores"),
        ("threads", f"{numba.get_num_threads()} of {numba.config.NUMBA_NUM_THREADS} "
                    f"(NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'unset')})"),
        ("threading layer", numba.config.THREADING_LAYER),
        ("gpu", cuda.describe()),
        ("default device", os.environ.get("BIOSIM_DEVICE") or "cpu"),
        ("numba cache", os.environ.get("NUMBA_CACHE_DIR", "next to the sources (__pycache__)")),
        ("rule cache", os.path.join(cache_dir(), "rules")),
    ]
    for k, v in rows:
        print(f"{k:>16}: {v}")


def cmd_run(args):
    if not os.path.isfile(args.script):
        sys.exit(f"biosim run: no such script: {args.script!r}")
    sys.argv = [args.script, *args.script_args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    try:
        runpy.run_path(args.script, run_name="__main__")
    finally:
        if args.profile:
            from biosim.simulation import _LIVE

            for sim in list(_LIVE):
                if sim.step > sim._first_step:
                    print(sim.profile(), file=sys.stderr)


def cmd_resume(args):
    from biosim import Simulation
    from biosim.io import CheckpointError

    for folder in (os.getcwd(), os.path.dirname(os.path.abspath(args.checkpoint))):
        if folder not in sys.path:  # where the allowed model modules usually live
            sys.path.insert(0, folder)
    try:
        sim = Simulation.load_checkpoint(args.checkpoint, allow=args.allow, allow_outputs=args.allow_output)
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        sys.exit(f"biosim resume: {e}")
    end = sim._run_end if args.until is None else args.until
    if end is None or end <= sim.step:
        print(f"biosim resume: {args.checkpoint} is at step {sim.step}; the run it came from asked for step "
              f"{end}: nothing to do")
        return
    print(f"biosim resume: step {sim.step} -> {end} ({len(sim.agents)} agents)")
    sim.run(end - sim.step, progress=not args.quiet)


def cmd_physicell(args):
    import warnings

    from biosim.io import HDF5Writer
    from biosim.models import physicell

    path = args.project
    if os.path.isdir(path):
        path = os.path.join(path, "config", "PhysiCell_settings.xml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            project = physicell.read(path, seed=args.seed)
        except (ValueError, TypeError, FileNotFoundError) as e:
            sys.exit(f"biosim physicell: {e}")
    for w in caught:
        print(f"biosim physicell: warning: {w.message}", file=sys.stderr)
    sim = project.simulation
    minutes = project.max_time if args.max_time is None else args.max_time
    if not minutes >= 0:
        sys.exit(f"biosim physicell: --max-time must be >= 0 min, got {minutes}")
    steps = int(round(minutes / sim.dt))
    out = args.out or os.path.join(project.output, "biosim.h5")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    sim.writers.append(HDF5Writer(out, every=max(1, int(round(project.save_interval / sim.dt)))))
    print(f"biosim physicell: {project.settings}: {len(sim.agents)} cells of {', '.join(sim.populations)}, "
          f"{minutes:g} min in {steps} steps of {sim.dt:g} min -> {out}")
    sim.run(steps, progress=not args.quiet)
    print(out)


def cmd_demo(args):
    from biosim import demo

    if args.steps < 0:
        sys.exit(f"biosim demo: --steps must be >= 0, got {args.steps}")
    demo.main(out_dir=args.out, steps=args.steps, seed=args.seed, progress=not args.quiet)


def cmd_render(args):
    from biosim import viz
    from biosim.viz.render import IMAGE_EXTENSIONS, MOVIE_EXTENSIONS

    ext = os.path.splitext(args.output)[1].lower()
    if ext not in IMAGE_EXTENSIONS + MOVIE_EXTENSIONS:
        sys.exit(f"biosim render: output {args.output!r}: supported types are "
                 f"{', '.join(IMAGE_EXTENSIONS + MOVIE_EXTENSIONS)}")
    try:
        if ext in MOVIE_EXTENSIONS:
            viz.movie(args.run, out=args.output, every=args.every, fps=args.fps, color_by=args.color_by,
                      substance=args.substance, clip=args.clip)
        else:
            viz.render(args.run, snapshot=args.snapshot, step=args.step, color_by=args.color_by,
                       substance=args.substance, clip=args.clip, out=args.output)
    except (ValueError, KeyError, IndexError, FileNotFoundError, RuntimeError) as e:
        sys.exit(f"biosim render: {e}")
    print(args.output)


def cmd_view(args):
    from biosim import viz

    try:
        viz.view(args.run, color_by=args.color_by, substance=args.substance, clip=args.clip)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as e:
        sys.exit(f"biosim view: {e}")


def cmd_bench(args):
    from biosim import bench

    if args.list:
        for name, sc in bench.SCENARIOS.items():
            print(f"{name}\n    " + "\n    ".join(line.strip() for line in sc.doc.strip().splitlines()) + "\n")
        return
    counts = args.bench_threads
    if counts is None and getattr(args, "threads", None):
        counts = str(args.threads)
    try:
        bench.run_suite(args.scenario, agents=args.agents, threads=counts, weak=args.weak, steps=args.steps,
                        repeat=args.repeat, baseline=not args.no_baseline, out=args.out or None,
                        plot=not args.no_plot, device=os.environ.get("BIOSIM_DEVICE") or "cpu", ranks=args.ranks)
    except ValueError as e:
        sys.exit(f"biosim bench: {e}")


def build_parser():
    p = argparse.ArgumentParser(prog="biosim", description="Agent-based simulation of cell biology.")
    p.add_argument("--threads", type=int, default=None, help="numba threads (default: all cores)")
    p.add_argument("--device", default=None, metavar="cpu|cuda|cuda:N",
                   help="where simulations run (default: cpu, or $BIOSIM_DEVICE); bench: cuda adds GPU runs")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a simulation script")
    r.add_argument("--profile", action="store_true",
                   help="print the wall time per phase and per behaviour of each simulation at the end")
    r.add_argument("script")
    r.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="run the embedded default model (a growing tumour spheroid)")
    d.add_argument("--out", default="out", help="output directory (default: out)")
    d.add_argument("--steps", type=int, default=1240, help="steps of 0.5 min (default: 1240)")
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_demo)

    v = sub.add_parser("render", help="render a snapshot of a run to a picture, or the run to a movie")
    v.add_argument("run", help="a run written by HDF5Writer")
    v.add_argument("-o", "--output", required=True, help="picture (.png, .jpg) or movie (.mp4, .gif) path")
    v.add_argument("--color-by", default="type", help="column to colour by (default: type)")
    which = v.add_mutually_exclusive_group()
    which.add_argument("--snapshot", type=int, default=-1, help="snapshot index (default: -1, the last)")
    which.add_argument("--step", type=int, default=None, help="simulation step to show")
    v.add_argument("--substance", default=None, help="show this substance as a slice")
    v.add_argument("--clip", default=None, help="cut open along x, y or z")
    v.add_argument("--every", type=int, default=1, help="movies: every n-th snapshot")
    v.add_argument("--fps", type=float, default=10.0, help="movies: frames per second")
    v.set_defaults(func=cmd_render)

    w = sub.add_parser("view", help="an interactive window with a slider over the snapshots of a run")
    w.add_argument("run")
    w.add_argument("--color-by", default="type")
    w.add_argument("--substance", default=None)
    w.add_argument("--clip", default=None)
    w.set_defaults(func=cmd_view)

    c = sub.add_parser("resume", help="continue a run from a checkpoint (bs.io.Checkpointer) to its end step")
    c.add_argument("checkpoint")
    c.add_argument("--allow", action="append", default=[],
                   help="a module the checkpoint may import rules, behaviours or actions from (repeatable)")
    c.add_argument("--allow-output", action="append", default=[], metavar="PATH",
                   help="a folder or file outside the checkpoint's folder that its writers may write to "
                        "(repeatable; by default they write only beside the checkpoint)")
    c.add_argument("--until", type=int, default=None, help="run to this step instead of the recorded end")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_resume)

    pc = sub.add_parser("physicell", help="run a PhysiCell project (its config/PhysiCell_settings.xml), writing "
                                          "biosim's HDF5")
    pc.add_argument("project", help="the project folder (with config/PhysiCell_settings.xml) or the settings file")
    pc.add_argument("--out", default=None,
                    help="the HDF5 run file (default: biosim.h5 in the project's <save><folder>)")
    pc.add_argument("--max-time", type=float, default=None, help="minutes to simulate (default: <max_time>)")
    pc.add_argument("--seed", type=int, default=None, help="random seed (default: <options><random_seed>)")
    pc.add_argument("--quiet", action="store_true", help="no progress bar")
    pc.set_defaults(func=cmd_physicell)

    sw = sub.add_parser("sweep", help="run the parameter sweep a script defines (its SWEEP dict) on a process pool",
                        description="Import SCRIPT.py and run bs.sweep with its SWEEP dict ({'parameters': ..., "
                                    "'steps': ..., 'seeds': ...}; the model: the script's function model(**params, "
                                    "seed=...)), one worker per core with one numba thread each. Prints the runs' "
                                    "last rows and writes every row to a CSV file.")
    sw.add_argument("script", help="a Python script defining model(**params, seed=...) and SWEEP")
    sw.add_argument("--out", default=None, help="folder for each run's HDF5 and JSON (a rerun skips runs done)")
    sw.add_argument("--csv", default=None, help="the table's CSV file (default: sweep.csv in --out, else none)")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=cmd_sweep)

    i = sub.add_parser("info", help="versions, threads, GPU")
    i.set_defaults(func=cmd_info)

    b = sub.add_parser("bench", help="the benchmark suite: throughput, per-phase times, scaling across cores",
                       description="Run biosim's benchmark scenarios; each thread count runs in a process of its "
                                   "own. Prints a table, writes bench.json and bench.png into --out.")
    b.add_argument("--scenario", default="all",
                   help="comma-separated: circles, mechanics, proliferation, epidemiology, clustering, "
                        "physicell_template, or all (default)")
    b.add_argument("--agents", default=None, help="comma-separated sizes, e.g. 1e5,1e6 (default: per scenario)")
    b.add_argument("--threads", "--threads-list", dest="bench_threads", default=None, metavar="1,2",
                   help="comma-separated thread counts (default: 1 and all cores)")
    b.add_argument("--ranks", default=None, metavar="1,2",
                   help="MPI scaling: each rank count under mpiexec, one numba thread per rank (or --threads N); "
                        "prints the halo and migration time and bytes per step")
    b.add_argument("--weak", action="store_true", help="weak scaling: agents in proportion to threads (or ranks)")
    b.add_argument("--steps", type=int, default=None, help="timed steps per run (default: per scenario)")
    b.add_argument("--repeat", type=int, default=1, help="runs per configuration; the median is reported")
    b.add_argument("--out", default="bench-results", help="folder for bench.json and bench.png ('' for none)")
    b.add_argument("--no-plot", action="store_true", help="no PNG")
    b.add_argument("--no-baseline", action="store_true", help="skip the cKDTree and pyphysicell baselines")
    b.add_argument("--list", action="store_true", help="print every scenario's definition and exit")
    b.set_defaults(func=cmd_bench)

    for sp in (r, c, d, v, w, i, pc):
        sp.add_argument("--threads", type=int, default=argparse.SUPPRESS, help="numba threads")
    for sp in (r, c, d, b, pc):
        sp.add_argument("--device", default=argparse.SUPPRESS, metavar="cpu|cuda|cuda:N",
                        help="where simulations run (default: cpu, or $BIOSIM_DEVICE)")
    return p


def cmd_sweep(args):
    from pathlib import Path

    from .sweep import SweepError, run_script

    try:
        df = run_script(args.script, out=args.out, progress=not args.quiet)
    except SweepError as e:
        raise SystemExit(str(e)) from None
    csv = args.csv or (str(Path(args.out) / "sweep.csv") if args.out else None)
    if csv:
        df.to_csv(csv, index=False)
    failed = df.attrs.get("failed", [])
    keys = list(df.attrs.get("parameters", ())) + ["seed"]
    last = df.groupby(keys, dropna=False, sort=False).tail(1) if len(df) else df
    print(last.to_string(index=False))
    print(f"{len(last)} runs done, {len(failed)} failed" + (f"; table: {csv}" if csv else ""))
    if failed:
        raise SystemExit(1)


def main(argv=None):
    args = build_parser().parse_args(argv)
    _set_threads(args.threads)
    _set_device(args.device)
    args.func(args)


if __name__ == "__main__":
    main()
