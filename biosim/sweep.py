"""Parameter sweeps on any ``concurrent.futures`` executor: a local process
pool (the default), ``mpi4py.futures.MPIPoolExecutor()`` on a cluster, or a
Dask client's executor.

    df = bs.sweep(model, {"rate": [0.1, 0.2], "speed": [1.0, 2.0]}, steps=600, seeds=3, out="sweep")

``model(**params, seed=...)`` builds a :class:`biosim.Simulation`; every run
is its ``steps`` steps, and the result is a pandas DataFrame with one row
per run and recorded step (the parameters, ``seed``, ``step``, ``time`` in
min, and every record of the simulation: ``sim.record``,
``sim.record_counts``).
"""
import hashlib
import inspect
import itertools
import json
import os
import pickle
import sys
import traceback
from concurrent.futures import as_completed
from pathlib import Path

from . import _validate as V


class SweepError(ValueError):
    """A sweep that cannot start: its model, parameters or folder."""


def sweep(model, parameters, steps, seeds=1, executor=None, out=None, progress=True):
    """Run ``model`` for every combination of ``parameters`` and seed.

    Parameters
    ----------
    model : callable
        ``model(**params, seed=...) -> Simulation``: a function defined at
        the top level of a module (or of a script run as ``__main__`` under
        ``if __name__ == "__main__":``), so that worker processes can import
        it.
    parameters : dict of lists, or list of dicts
        A dict ``{name: [values]}`` runs every combination (the product); a
        list of dicts runs each one.  Values must be JSON-friendly (numbers,
        strings, booleans, None, lists of them): they name the runs.
    steps : int
        Steps per run (>= 0).
    seeds : int or list of int, default 1
        ``n``: seeds 0 .. n-1; or the seeds themselves.
    executor : concurrent.futures.Executor, optional
        Where runs go: by default a process pool of one worker per core,
        each with one numba thread (closed at the end); any executor works
        as it is (``mpi4py.futures.MPIPoolExecutor()``, a Dask client's
        ``get_executor()``, a ``ThreadPoolExecutor``).
    out : str or Path, optional
        A folder: each run writes ``run-<key>.h5`` (the initial and final
        snapshots with its records, ``bs.io.open_run``) and, when it ends,
        ``run-<key>.json`` (parameters, seed, records).  A run whose JSON
        file is there is not run again: start the same sweep again to
        finish one that was interrupted.
    progress : bool, default True
        A progress bar counting runs (stderr).

    Returns
    -------
    pandas.DataFrame
        One row per run and recorded step (a run without records: one row,
        its final step).  ``df.attrs["failed"]`` lists the runs that raised
        (parameters, seed, error); they are also reported on stderr, and
        the others go on.
    """
    import pandas as pd

    runs = plan(model, parameters, seeds)
    steps = V.positive_int("steps", steps, allow_zero=True)
    folder = None
    if out is not None:
        folder = Path(out)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SweepError(f"sweep: cannot make the folder out={str(out)!r}: {e}") from None
    results, todo = [], []
    for params, seed in runs:
        key = run_key(params, seed, steps)
        done = folder / f"run-{key}.json" if folder is not None else None
        if done is not None and done.is_file():
            results.append(json.loads(done.read_text()))
        else:
            todo.append((params, seed, key))
    own = executor is None and bool(todo)
    if own:
        executor = default_executor(len(todo))
    failed = []
    try:
        futures = [executor.submit(run_one, model, params, seed, steps,
                                   None if folder is None else str(folder / f"run-{key}"))
                   for params, seed, key in todo]
        bar = _progress(len(runs), len(results), progress)
        for f in as_completed(futures):
            try:
                r = f.result()
            except Exception as e:  # the executor itself failed (a worker died, pickling, ...)
                r = {"error": f"{type(e).__name__}: {e}", "params": None, "seed": None}
            if "error" in r:
                failed.append(r)
                print(f"sweep: run {r.get('params')} seed {r.get('seed')} failed: {r['error']}", file=sys.stderr)
            else:
                results.append(r)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    finally:
        if own:
            executor.shutdown()
    names = list(dict.fromkeys(k for params, _ in runs for k in params))  # in order of first appearance
    place = {run_key(params, seed, steps): i for i, (params, seed) in enumerate(runs)}
    rows = []
    for r in sorted(results, key=lambda r: place.get(run_key(r["params"], r["seed"], steps), len(place))):
        rows += _rows(r, names)  # in the order of the runs: the parameters' product, then the seeds
    df = pd.DataFrame(rows, columns=None if rows else names + ["seed", "step", "time"])
    df.attrs["parameters"] = names
    df.attrs["failed"] = failed
    return df


def plan(model, parameters, seeds):
    """The runs of a sweep, [(params dict, seed)], after checking the model
    and parameters (SweepError naming what is wrong)."""
    if not callable(model):
        raise SweepError(f"sweep: model must be a function model(**params, seed=...) -> Simulation, got {model!r}")
    if isinstance(parameters, dict):
        for k, v in parameters.items():
            if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
                raise SweepError(f"sweep: parameters[{k!r}] must be a list of values, got {v!r}")
        names = list(parameters)
        combos = [dict(zip(names, values)) for values in itertools.product(*(list(parameters[k]) for k in names))]
    elif isinstance(parameters, (list, tuple)) and all(isinstance(p, dict) for p in parameters):
        combos = [dict(p) for p in parameters]
    else:
        raise SweepError(f"sweep: parameters must be a dict of lists (their product) or a list of dicts, got "
                         f"{parameters!r}")
    if isinstance(seeds, bool) or not (isinstance(seeds, int) or (isinstance(seeds, (list, tuple)) and seeds)):
        raise SweepError(f"sweep: seeds must be a count >= 1 or a non-empty list of ints, got {seeds!r}")
    seed_list = list(range(V.positive_int("seeds", seeds))) if isinstance(seeds, int) else list(seeds)
    for s in seed_list:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SweepError(f"sweep: every seed must be an int >= 0, got {s!r}")
    try:
        sig = inspect.signature(model)
    except (TypeError, ValueError):
        sig = None
    if sig is not None and not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        takes = [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if "seed" not in takes:
            raise SweepError(f"sweep: model {_name(model)} must take seed= (it takes {', '.join(takes) or 'nothing'})")
        for params in combos:
            for k in params:
                if k == "seed":
                    raise SweepError("sweep: 'seed' is not a parameter; give the seeds with seeds=")
                if k not in takes:
                    raise SweepError(f"sweep: model {_name(model)} does not take parameter {k!r}; it takes "
                                     f"{', '.join(takes)}")
    for params in combos:
        try:
            json.dumps(params)
        except TypeError:
            raise SweepError(f"sweep: parameter values must be JSON-friendly (numbers, strings, lists), got "
                             f"{params!r}") from None
    try:
        pickle.dumps(model)
    except Exception as e:
        raise SweepError(f"sweep: model {_name(model)} cannot be sent to worker processes ({type(e).__name__}: {e});"
                         f" define it at the top level of a module or script") from None
    return [(params, seed) for params in combos for seed in seed_list]


def run_key(params, seed, steps):
    """A short stable name of one run (its parameters, seed and steps)."""
    text = json.dumps({"params": params, "seed": seed, "steps": steps}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _one_thread():
    from numba import set_num_threads

    set_num_threads(1)


def default_executor(runs):
    """A process pool of one worker per core (at most ``runs``), each with
    one numba thread; processes are spawned, not forked (numba's threading
    layers are not safe across a fork)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return ProcessPoolExecutor(max_workers=max(1, min(cores, runs)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_one_thread)


def run_one(model, params, seed, steps, stem=None):
    """One run (in a worker): build, run ``steps`` steps, return its records;
    with ``stem``, write ``stem.h5`` and, at the end, ``stem.json``.  Errors
    come back as ``{"error": ...}`` so the other runs go on."""
    try:
        from . import parallel
        from .io import HDF5Writer
        from .simulation import Simulation

        parallel.AUTO = False  # a worker's run is one process, even on an MPI worker (mpi4py.futures)

        sim = model(**params, seed=seed)
        if not isinstance(sim, Simulation):
            raise TypeError(f"model returned {type(sim).__name__}, not a biosim Simulation")
        if stem is not None:
            sim.writers.append(HDF5Writer(stem + ".h5", every=max(steps, 1)))
        sim.run(steps)
        result = {"params": params, "seed": seed, "steps": steps, "final_step": int(sim.step),
                  "final_time": float(sim.time),
                  "records": {name: {"steps": rec.steps.tolist(), "times": rec.times.tolist(),
                                     "values": rec.values.tolist()} for name, rec in sim.records.items()}}
        if stem is not None:
            tmp = stem + ".json.tmp"
            with open(tmp, "w") as f:
                json.dump(result, f)
            os.replace(tmp, stem + ".json")  # complete only once written whole
        return result
    except Exception as e:
        return {"params": params, "seed": seed, "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc()}


def _rows(r, names):
    base = {k: r["params"].get(k) for k in names}
    base["seed"] = r["seed"]
    recs = r["records"]
    if not recs:
        return [{**base, "step": r["final_step"], "time": r["final_time"]}]
    by_step = {}
    for name, rec in recs.items():
        for s, t, v in zip(rec["steps"], rec["times"], rec["values"]):
            row = by_step.setdefault(s, {**base, "step": s, "time": t})
            row[name] = v
    return [by_step[s] for s in sorted(by_step)]


def _name(model):
    return f"{getattr(model, '__module__', '?')}.{getattr(model, '__qualname__', repr(model))}"


def _progress(total, done, show):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="sweep", unit="run", file=sys.stderr)


def run_script(path, out=None, executor=None, progress=True):
    """``biosim sweep SCRIPT.py``: import the script as a module (its folder
    on the path, so worker processes import it too) and run the sweep its
    ``SWEEP`` dict defines: ``{"model": function, "parameters": ...,
    "steps": ..., "seeds": ...}`` (the keyword arguments of :func:`sweep`;
    ``model`` defaults to the script's function ``model``).  Returns the
    DataFrame."""
    import importlib

    path = Path(path).resolve()
    if not path.is_file() or path.suffix != ".py":
        raise SweepError(f"biosim sweep: {str(path)!r} is not a Python script")
    if not path.stem.isidentifier():
        raise SweepError(f"biosim sweep: the script's name {path.stem!r} must be a Python identifier (workers "
                         f"import it by that name)")
    sys.path.insert(0, str(path.parent))
    module = importlib.import_module(path.stem)
    spec = getattr(module, "SWEEP", None)
    if not isinstance(spec, dict):
        raise SweepError(f"biosim sweep: {path} defines no SWEEP dict (e.g. SWEEP = {{'parameters': {{'rate': "
                         f"[0.1, 0.2]}}, 'steps': 100, 'seeds': 2}}) ")
    kw = dict(spec)
    unknown = set(kw) - {"model", "parameters", "steps", "seeds", "out"}
    if unknown:
        raise SweepError(f"biosim sweep: SWEEP has keys {', '.join(sorted(unknown))}; it takes model, parameters, "
                         f"steps, seeds, out")
    model = kw.pop("model", getattr(module, "model", None))
    if model is None:
        raise SweepError(f"biosim sweep: {path} defines no function model(**params, seed=...) and SWEEP names none")
    if out is not None:
        kw["out"] = out
    for need in ("parameters", "steps"):
        if need not in kw:
            raise SweepError(f"biosim sweep: SWEEP must give {need!r}")
    return sweep(model, executor=executor, progress=progress, **kw)
