"""Checkpoints: everything needed to continue a simulation bit for bit.

A checkpoint is one HDF5 file (format ``biosim-checkpoint``)::

    /                       attrs: biosim_format, format_version, state (JSON)
    /agents/<column>        the live rows of every column, in row order
    /substances/<name>      each concentration grid
    /records/<name>/{step,time,value}   the recorded series so far

``state`` holds the box, boundary, dt, seed, step, the end step of the run
in progress, the random-stream counter, the neighbour grid's build count
(it decides when rows are re-sorted), the columns' dtypes, defaults and
inheritance, the populations with their behaviours (import path,
constructor parameters and random stream), the mechanics, the substances'
parameters, the writers, actions and records.  Nothing is pickled and no
file content is ever evaluated: behaviours, rules, actions and record
functions are named by import path, and loading imports only biosim's own
modules and those in the ``allow`` list the caller passes.  Functions
defined in ``__main__`` (a script) or inside other functions cannot be
named that way; saving refuses them with a message saying how to make them
restorable.
"""
import importlib
import json
import os
import tempfile

import h5py
import numpy as np

from .. import _validate as V
from ._probe import probe
from .hdf5 import DAMAGED

FORMAT = "biosim-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read (the message says why)."""


# -- naming callables by import path --------------------------------------------
def import_path(obj, what):
    """``module:qualname`` of a module-level function or class, or a
    CheckpointError saying how to make ``what`` restorable."""
    module = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if module is None or qual is None:
        raise CheckpointError(f"{what} ({obj!r}) cannot be saved in a checkpoint: it has no import path; "
                              f"use a function defined at the top level of a module")
    if module == "__main__":
        raise CheckpointError(f"{what} {qual!r} is defined in __main__ (the script being run), which a checkpoint "
                              f"cannot name: move it into a module (e.g. my_model.py beside the script), import "
                              f"it from there, and pass allow=['my_model'] when loading")
    if "<" in qual:  # <lambda>, <locals>
        raise CheckpointError(f"{what} {module}.{qual} is a lambda or a nested function, which a checkpoint cannot "
                              f"name: define it at the top level of module {module!r}")
    return f"{module}:{qual}"


def _allowed(module, allow):
    if module == "biosim" or module.startswith("biosim."):
        return True
    return any(module == a or module.startswith(a + ".") for a in allow)


def resolve(path, allow, what, kind="function"):
    """The object named ``module:qualname``, imported only if its module is
    biosim's or in ``allow``, and only if it is what the checkpoint says it
    is: ``kind`` "function" (a plain Python function), "behaviour" (a
    Behaviour class) or "rule" (an agent rule definition), defined in an
    allowed module itself.  The qualname walks only through classes, never
    into another module (``biosim.io.checkpoint:os.system`` is refused), and
    no ``__main__`` module is imported (importing one runs a program)."""
    import types

    if not isinstance(path, str) or path.count(":") != 1:
        raise CheckpointError(f"{what}: malformed import path {path!r} in the checkpoint")
    module, qual = path.split(":", 1)
    parts = qual.split(".")
    if not module or any(not p.isidentifier() for p in module.split(".")) or any(not p.isidentifier() for p in parts):
        raise CheckpointError(f"{what}: malformed import path {path!r} in the checkpoint")
    if "__main__" in module.split("."):
        raise CheckpointError(f"{what} {path!r} names a __main__ module, which a checkpoint may not import "
                              f"(importing it runs a program)")
    if not _allowed(module, allow):
        raise CheckpointError(f"{what} {path!r} comes from module {module!r}, which is not allowed: loading imports "
                              f"only biosim's modules and those you pass, e.g. allow=[{module.split('.')[0]!r}] "
                              f"(only for checkpoints you trust)")
    try:
        obj = importlib.import_module(module)
        for part in parts:
            obj = getattr(obj, part)
            if isinstance(obj, types.ModuleType):
                raise CheckpointError(f"{what} {path!r} walks into module {obj.__name__!r}: a checkpoint names "
                                      f"objects defined in an allowed module itself")
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"{what} {path!r} cannot be imported: {e}") from None
    from ..behaviour import Behaviour
    from ..rules import RuleDefinition

    if kind == "rule":
        ok, own = isinstance(obj, RuleDefinition), getattr(getattr(obj, "fn", None), "__module__", None)
        expected = "an agent rule (@bs.agent_rule)"
    elif kind == "behaviour":
        ok, own = isinstance(obj, type) and issubclass(obj, Behaviour), getattr(obj, "__module__", None)
        expected = "a biosim Behaviour class"
    else:
        ok, own = isinstance(obj, types.FunctionType), getattr(obj, "__module__", None)
        expected = "a Python function"
    if not ok:
        raise CheckpointError(f"{what} {path!r} is {type(obj).__name__} {obj!r}, not {expected}")
    if not isinstance(own, str) or "__main__" in own.split(".") or not _allowed(own, allow):
        raise CheckpointError(f"{what} {path!r} is defined in module {own!r}, not in an allowed module "
                              f"(biosim's or those you pass in allow)")
    return obj


# -- saving -----------------------------------------------------------------------
def _behaviour_state(b):
    from ..rules import AgentRule

    if isinstance(b, AgentRule):
        d = b.definition
        path = import_path(d.fn, "agent rule")
        module, _ = path.split(":")
        try:
            found = getattr(importlib.import_module(module), d.name)
        except (ImportError, AttributeError):
            found = None
        if found is not d:
            raise CheckpointError(f"agent rule {d.name!r} is not reachable as {module}.{d.name}; define it with "
                                  f"@bs.agent_rule at the top level of module {module!r}")
        return {"rule": f"{module}:{d.name}", "every": b.every, "stream": b.stream}
    return {"class": import_path(type(b), "behaviour"), "parameters": b.parameters(),
            "stream": b.stream}


def _substance_state(sub):
    from ..substances import Dirichlet

    for face in sub.faces:
        if isinstance(face, Dirichlet) and callable(face.value):
            raise CheckpointError(f"substance {sub.name!r} has a Dirichlet boundary given as a function, which a "
                                  f"checkpoint cannot store; use a number")
    return {"name": sub.name, **sub.to_dict(), "told": sub._told}


def _writer_state(w):
    from .hdf5 import HDF5Writer

    if isinstance(w, HDF5Writer):
        return {"class": "HDF5Writer", "path": os.path.abspath(w.path), "every": w.every,
                "compression": w.compression}
    if isinstance(w, Checkpointer):
        return {"class": "Checkpointer", "path": os.path.abspath(w.path), "every": w.every}
    raise CheckpointError(f"writer {w!r} cannot be saved in a checkpoint (HDF5Writer and Checkpointer can)")


def state_of(sim):
    """The JSON-able state of ``sim`` (without the arrays); raises
    CheckpointError for anything that cannot be restored."""
    t = sim.agents
    columns = [{"name": c, "dtype": str(t.spec(c).dtype), "default": np.asarray(t.spec(c).default).item(),
                "shape": list(t.spec(c).shape), "inherit": t.spec(c).inherit} for c in t.columns]
    records = []
    for rec in sim.records.values():
        counts = getattr(rec, "_counts", None)
        entry = {"name": rec.name, "every": rec.trigger.every, "counts": counts, "unit": rec.unit}
        if counts is None and not rec.name.startswith("count_"):
            entry["fn"] = import_path(rec.fn, f"the function of record {rec.name!r}")
        elif counts is None:
            entry["fn"] = None  # a population count (record_counts) is rebuilt
        records.append(entry)
    return {
        "box": sim.box.to_dict(), "boundary": sim.boundary, "dt": sim.dt, "seed": sim.seed,
        "reorder_every": sim.reorder_every, "plane": sim.plane, "step": sim.step, "run_end": sim._run_end, "streams": sim._streams,
        "count_every": sim._count_every,
        "grid_builds": sim._grid.builds, "next_uid": int(t._next_uid),
        "total_births": t.total_births, "total_deaths": t.total_deaths,
        "mechanics": None if sim.mechanics is None else sim.mechanics.to_dict(),
        "neurites": None if sim.neurites is None else sim.neurites.to_dict(),
        "columns": columns,
        "populations": [{"name": p.name, "code": p.code, "behaviours": [_behaviour_state(b) for b in p.behaviours]}
                        for p in sim.populations.values()],
        "substances": [_substance_state(s) for s in sim.substances.values()],
        "writers": [_writer_state(w) for w in sim.writers],
        "actions": [{"fn": import_path(a.fn, "action"), "every": a.trigger.every, "local": a.local}
                    for a in sim.actions],
        "records": records,
    }


def save(sim, path):
    """Write a checkpoint of ``sim`` to ``path`` atomically (a temporary file
    in the same directory, then renamed): a crash while saving leaves the
    previous checkpoint intact."""
    path = os.fspath(path)
    state = state_of(sim)  # refuses unrestorable parts before touching the disk
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CheckpointError(f"checkpoint path {path!r}: directory {folder!r} does not exist")
    for w in state["writers"]:  # found again beside the checkpoint when the folder moves
        rel = os.path.relpath(w["path"], folder)
        w["relpath"] = None if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".h5", dir=folder)
    os.close(fd)
    f = None
    try:
        f = h5py.File(tmp, "w")
        f.attrs["biosim_format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["state"] = json.dumps(state)
        g = f.create_group("agents")
        for name in sim.agents.columns:
            g.create_dataset(name, data=sim.agents[name])
        g = f.create_group("substances")
        for name, sub in sim.substances.items():
            g.create_dataset(name, data=sub._current())
        g = f.create_group("records")
        for name, rec in sim.records.items():
            r = g.create_group(name)
            r.create_dataset("step", data=rec.steps)
            r.create_dataset("time", data=rec.times)
            r.create_dataset("value", data=rec.values)
        f.flush()
        f, done = None, f
        done.close()
        os.replace(tmp, path)
    except BaseException as e:
        if f is not None:  # writing failed: close without HDF5's final flush (on a full disk it crashes)
            from .hdf5 import abandon_h5

            abandon_h5(f)
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, (OSError, RuntimeError)):
            from .hdf5 import OutputError

            raise OutputError(f"writing checkpoint {path!r} failed ({' '.join(str(e).split())}); is the disk full "
                              f"or a file-size limit reached?  The previous checkpoint there, if any, is "
                              f"unchanged") from e
        raise
    return path


# -- loading ----------------------------------------------------------------------
def _read(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such checkpoint: {path!r}")
    if os.path.isdir(path) or not h5py.is_hdf5(path):
        raise CheckpointError(f"{path!r} is not a biosim checkpoint (not an HDF5 file)")
    try:
        probe(path, "checkpoint")  # a crafted file must not crash this process
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path!r}: it is damaged or truncated ({e})") from None
    fmt = f.attrs.get("biosim_format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT or "state" not in f.attrs:
        f.close()
        raise CheckpointError(f"{path!r} is an HDF5 file but not a biosim checkpoint (biosim_format is {fmt!r}); "
                              f"to start from a run's snapshot use Simulation.from_run")
    if int(f.attrs.get("format_version", 0)) > FORMAT_VERSION:
        f.close()
        raise CheckpointError(f"checkpoint {path!r} has format version {f.attrs['format_version']}, newer than this "
                              f"biosim reads ({FORMAT_VERSION})")
    return f


def mechanics_from(d):
    from ..mechanics import MECHANICS

    if d is None:
        return None
    cls = MECHANICS.get(d.get("class"))
    if cls is None:
        raise CheckpointError(f"unknown mechanics {d.get('class')!r}; known: {', '.join(MECHANICS)}")
    params = dict(d["parameters"])
    for key in ("adhesion", "affinity"):  # pairs of populations are stored as "a|b"; per population, as names
        v = params.get(key)
        if isinstance(v, dict) and v and all(k.count("|") == 1 for k in v):
            params[key] = {tuple(k.split("|")): x for k, x in v.items()}
    return cls(**params)


def substance_boundary(d, periodic):
    from ..substances import FACES, Dirichlet, Neumann

    if periodic:
        return None
    faces = {}
    for face in FACES:
        spec = d[face]
        if spec["class"] == "Neumann":
            faces[face] = Neumann(spec["flux"])
        elif spec["class"] == "Dirichlet":
            faces[face] = Dirichlet(spec["value"])
        else:
            raise CheckpointError(f"unknown boundary {spec!r} for face {face}")
    return faces


def behaviour_from(spec, allow, who):
    if "rule" in spec:
        definition = resolve(spec["rule"], allow, f"agent rule of {who}", "rule")
        return definition(every=spec["every"])
    cls = resolve(spec["class"], allow, f"behaviour of {who}", "behaviour")
    try:
        return cls(**spec["parameters"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"behaviour {spec['class']} of {who} cannot be rebuilt from its parameters "
                              f"{spec['parameters']}: {e}") from None


def _inside(path, root):
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def writer_path(w, checkpoint, allow_outputs):
    """Where a writer named in ``checkpoint`` may write: its path relative to
    the checkpoint's folder (as saved), else the stored absolute path, which
    must lie, symbolic links resolved, inside the checkpoint's folder or
    inside one of ``allow_outputs`` (folders or files the user confirmed).
    A checkpoint is a file from anyone: it must not choose what gets
    written outside the folder it came in."""
    what = f"{w.get('class')} writer"
    folder = os.path.dirname(os.path.realpath(checkpoint))
    rel, stored = w.get("relpath"), w.get("path")
    if rel is not None:
        if not isinstance(rel, str) or not rel or os.path.isabs(rel):
            raise CheckpointError(f"{what}: malformed relative path {rel!r} in checkpoint {checkpoint!r}")
        target = os.path.join(folder, rel)
    else:
        if not isinstance(stored, str) or not stored:
            raise CheckpointError(f"{what}: malformed path {stored!r} in checkpoint {checkpoint!r}")
        target = stored if os.path.isabs(stored) else os.path.join(folder, stored)
    real = os.path.realpath(target)
    roots = [folder] + [os.path.realpath(os.fspath(a)) for a in allow_outputs]
    if not any(_inside(real, r) for r in roots):
        raise CheckpointError(
            f"{what} of checkpoint {checkpoint!r} writes to {target!r}"
            + (f" (a link to {real!r})" if real != os.path.abspath(target) else "")
            + f", outside the checkpoint's folder {folder!r}: a checkpoint cannot choose files to write "
              f"elsewhere.  If that is your run's output, confirm it with allow_outputs=[{os.path.dirname(real)!r}] "
              f"(biosim resume --allow-output DIR), or move the output beside the checkpoint")
    return real


def check_checkpoint_target(path):
    """A Checkpointer's file may be replaced only if it is absent or a biosim
    checkpoint (a checkpoint naming another run's file must not destroy it)."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isfile(path):
        raise CheckpointError(f"Checkpointer path {path!r} is a link or not a regular file; refusing to replace it")
    try:
        _read(path).close()
    except CheckpointError as e:
        raise CheckpointError(f"Checkpointer path {path!r} holds something other than a biosim checkpoint, "
                              f"which resuming would replace; refusing ({e})") from None


def _count(state, key, path, none=False):
    """A non-negative integer of the state (or None where allowed)."""
    v = state.get(key)
    if v is None and none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**62:
        raise CheckpointError(f"{path!r}: {key} must be an integer in [0, 2**62), got {v!r}")
    return v


def _check_codes(codes, path):
    """Population codes must be the integers 0, 1, ... (they index tables)."""
    if not (all(type(c) is int for c in codes) and sorted(codes) == list(range(len(codes)))):
        raise CheckpointError(f"{path!r}: population codes must be 0..{len(codes) - 1}, got {codes}")


def _check_restored(sim, path):
    """What the kernels index with (finite positions, positive diameters,
    type codes of the populations) and unique uids below ``next_uid``."""
    t = sim.agents
    uid = t.uid
    if len(uid):
        if int(uid.min()) < 0 or int(uid.max()) >= t.next_uid:
            raise CheckpointError(f"checkpoint {path!r}: uids must lie in [0, next_uid = {t.next_uid}), got "
                                  f"{int(uid.min())}..{int(uid.max())}")
        if np.unique(uid).size != uid.size:
            raise CheckpointError(f"checkpoint {path!r}: {uid.size - np.unique(uid).size} duplicate uids")
    try:
        sim.check_state()
    except ValueError as e:
        raise CheckpointError(f"{path!r}: {e}") from None


# The checkpoint state's schema: key -> allowed kinds ("?" marks optional
# keys); lists name the schema of their items.  Values are checked further
# by the constructors they go to.
_NUM, _INT, _STR, _NONE, _BOOL = "number", "integer", "string", "null", "boolean"
_BEHAVIOUR = {"rule?": (_STR,), "class?": (_STR,), "parameters?": (dict,), "every?": (_INT,), "stream": (_INT,)}
_SCHEMA = {
    "box": ({"lower": (list,), "upper": (list,)},), "boundary": (_STR,), "dt": (_NUM,), "seed": (_INT,),
    "reorder_every?": (_INT,), "plane?": (_NUM, _NONE), "step": (_INT,), "run_end": (_INT, _NONE), "streams": (_INT,),
    "count_every": (_INT, _NONE), "grid_builds": (_INT,), "next_uid": (_INT,), "total_births?": (_INT,),
    "total_deaths?": (_INT,), "mechanics": (dict, _NONE), "neurites?": (dict, _NONE),
    "columns": ([{"name": (_STR,), "dtype": (_STR,), "default": (_NUM, _BOOL), "shape": (list,),
                  "inherit": (_STR,)}],),
    "populations": ([{"name": (_STR,), "code": (_INT,), "behaviours": ([_BEHAVIOUR],)}],),
    "substances": ([{"name": (_STR,), "diffusion": (_NUM,), "decay": (_NUM,), "spacing": (_NUM,),
                     "solver": (_STR,), "dt": (_NUM, _NONE), "boundary": (dict,), "told?": (_BOOL,),
                    "unit?": (_STR, _NONE)}],),
    "writers": ([{"class": (_STR,), "path": (_STR,), "relpath?": (_STR, _NONE), "every": (_INT,),
                  "compression?": (_STR, _NONE)}],),
    "actions": ([{"fn": (_STR,), "every": (_INT,), "local?": (_BOOL,)}],),
    "records": ([{"name": (_STR,), "every": (_INT,), "counts": (dict, list, _NONE), "fn?": (_STR, _NONE),
                 "unit?": (_STR, _NONE)}],),
}


def _kind_ok(value, kind):
    if kind is _NONE:
        return value is None
    if kind is _BOOL:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is _INT:
        return isinstance(value, int)
    if kind is _NUM:
        return isinstance(value, (int, float))
    if kind is _STR:
        return isinstance(value, str)
    if isinstance(kind, list):
        return isinstance(value, list)
    if isinstance(kind, dict):
        return isinstance(value, dict)
    return isinstance(value, kind)


def check_schema(value, schema, where="state"):
    """CheckpointError naming the first entry of the state that is missing
    or of the wrong kind (see _SCHEMA)."""
    if not isinstance(value, dict):
        raise CheckpointError(f"{where} must be a JSON object, got {type(value).__name__}")
    for key, kinds in schema.items():
        name = key.rstrip("?")
        if name not in value:
            if key.endswith("?"):
                continue
            raise CheckpointError(f"{where} lacks {name!r}")
        v = value[name]
        kind = next((k for k in kinds if _kind_ok(v, k)), None)
        if kind is None:
            names = [k if isinstance(k, str) else "list" if isinstance(k, list) or k is list else "object"
                     for k in kinds]
            raise CheckpointError(f"{where}.{name} must be {' or '.join(names)}, got {v!r:.80}")
        if isinstance(kind, dict):
            check_schema(v, kind, f"{where}.{name}")
        elif isinstance(kind, list):
            for i, item in enumerate(v):
                check_schema(item, kind[0], f"{where}.{name}[{i}]")


def load(path, allow=(), allow_outputs=()):
    """Rebuild the Simulation saved in ``path`` (see module doc).  Writers
    write only inside the checkpoint's folder or ``allow_outputs``.  Any
    failure on a damaged or crafted file is a CheckpointError."""
    try:
        return _load(path, allow, allow_outputs)
    except (CheckpointError, FileNotFoundError):
        raise
    except DAMAGED as e:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} is damaged or not as biosim writes it "
                              f"({type(e).__name__}: {e})") from e


def _load(path, allow, allow_outputs):
    from ..agents import CORE_COLUMNS
    from ..simulation import Population, Record, Simulation
    from ..space import Box

    path = os.fspath(path)
    if isinstance(allow, str):
        allow = (allow,)
    allow = tuple(allow)
    if isinstance(allow_outputs, (str, os.PathLike)):
        allow_outputs = (allow_outputs,)
    allow_outputs = tuple(allow_outputs)
    with _read(path) as f:
        s = json.loads(f.attrs["state"])
        try:
            check_schema(s, _SCHEMA)
        except CheckpointError as e:
            raise CheckpointError(f"checkpoint {path!r}: {e}") from None
        box = Box(s["box"]["lower"], s["box"]["upper"])
        sim = Simulation(box, boundary=s["boundary"], dt=s["dt"], seed=s["seed"],
                         mechanics=mechanics_from(s["mechanics"]), reorder_every=s.get("reorder_every", 8))
        sim.plane = s.get("plane")
        t = sim.agents
        g = f["agents"]
        if s.get("neurites") is not None:
            from ..neurites import DERIVED

            # written before the neurites' axis, length, tension and attachment were derived: stored then
            s["columns"] = [c for c in s["columns"] if c.get("name") not in {d[0] for d in DERIVED}]
        for c in s["columns"]:
            if c["name"] not in g:
                raise CheckpointError(f"checkpoint {path!r} lacks column {c['name']!r}")
            if c["name"] not in CORE_COLUMNS:
                t.add_column(c["name"], c["dtype"], c["default"], tuple(c["shape"]), c["inherit"])
        try:
            t.restore({c["name"]: g[c["name"]][:] for c in s["columns"]}, _count(s, "next_uid", path))
        except ValueError as e:
            raise CheckpointError(f"checkpoint {path!r}: {e}") from None
        t.total_births, t.total_deaths = (_count(s, "total_births", path, none=True) or 0,
                                          _count(s, "total_deaths", path, none=True) or 0)
        periodic = s["boundary"] == "periodic"
        for sd in s["substances"]:
            sub = sim.add_substance(sd["name"], sd["diffusion"], sd["decay"], sd["spacing"],
                                    initial=f["substances"][sd["name"]][:],
                                    boundary=substance_boundary(sd["boundary"], periodic), solver=sd["solver"], decay_split=sd.get("decay_split", False),
                                    dirichlet_layer=sd.get("dirichlet_layer", False),
                                    dt=sd["dt"], unit=sd.get("unit"))
            sub._told = sd.get("told", False)
        _check_codes([p.get("code") for p in s["populations"]], path)
        for p in s["populations"]:
            if not isinstance(p.get("name"), str) or not p["name"]:
                raise CheckpointError(f"checkpoint {path!r}: a population name must be a non-empty string, "
                                      f"got {p.get('name')!r}")
        for p in sorted(s["populations"], key=lambda p: p["code"]):
            pop = Population(sim, p["name"], p["code"])
            sim.populations[p["name"]] = pop
        if s.get("neurites") is not None:
            _restore_neurites(sim, s["neurites"], path)
        for p in s["populations"]:
            pop = sim.populations[p["name"]]
            for spec in p["behaviours"]:
                b = behaviour_from(spec, allow, f"population {p['name']!r}")
                pop.behaviours.append(b)
                b._stream = _count(spec, "stream", path)
        sim._streams = _count(s, "streams", path)
        sim.step = sim._first_step = _count(s, "step", path)
        sim._run_end = _count(s, "run_end", path, none=True)
        sim._count_every = _count(s, "count_every", path, none=True)
        sim._grid.builds = _count(s, "grid_builds", path)
        for a in s["actions"]:
            sim.add_action(resolve(a["fn"], allow, "action"), a["every"], local=a.get("local", False))
        if sim._count_every is not None:
            sim._sync_count_records()
        for r in s["records"]:
            rec = sim.records.get(r["name"])
            if rec is None:
                if r.get("fn") is None:
                    raise CheckpointError(f"record {r['name']!r} has no function to restore")
                rec = Record(r["name"], resolve(r["fn"], allow, f"record {r['name']!r}"), r["every"], r.get("unit"))
                sim.records[r["name"]] = rec
            data = f["records"][r["name"]]
            rec._steps = data["step"][:].tolist()
            rec._times = data["time"][:].tolist()
            rec._values = data["value"][:].tolist()
    _check_restored(sim, path)
    # after the file is closed: a Checkpointer's target may be this very file
    from .hdf5 import HDF5Writer, check_resumable

    for w in s["writers"]:
        if w.get("class") not in ("HDF5Writer", "Checkpointer"):
            raise CheckpointError(f"unknown writer {w.get('class')!r} in checkpoint {path!r}")
        target = writer_path(w, path, allow_outputs)
        if w["class"] == "HDF5Writer":
            writer = HDF5Writer(target, w["every"], w.get("compression"))
            writer._resume_at = sim.step
            writer._resume_meta = {k: s[k] for k in ("box", "boundary", "dt", "seed")}
            if os.path.lexists(target):
                try:
                    check_resumable(target, writer._resume_meta)
                except (ValueError, OSError) as e:
                    raise CheckpointError(f"checkpoint {path!r}: {e}") from None
        else:
            check_checkpoint_target(target)
            writer = Checkpointer(target, w["every"])
        sim.writers.append(writer)
    return sim


class Checkpointer:
    """A writer for ``sim.writers`` that saves a checkpoint to ``path`` every
    ``every`` steps (replacing the previous one atomically), so a killed run
    can go on with ``biosim resume PATH`` or ``Simulation.load_checkpoint``.
    Whether the simulation can be checkpointed is checked when the run
    starts, before any step is taken."""

    def __init__(self, path, every):
        from .hdf5 import _check_output_path

        self.path = _check_output_path(path)
        self.every = V.positive_int("every", every)
        self._last_step = None
        self._lock = None

    def __repr__(self):
        return f"Checkpointer({self.path!r}, every={self.every})"

    def open(self, sim):
        from .hdf5 import lock_output

        state_of(sim)  # raises now, not hours into the run
        if self._lock is None:
            self._lock = lock_output(self.path, "Checkpointer")

    def write(self, sim):
        if self._last_step == sim.step:
            return
        save(sim, self.path)
        self._last_step = sim.step

    def close(self):
        from .hdf5 import unlock_output

        unlock_output(self._lock)
        self._lock = None


def _dotted_to_colon(path):
    module, _, name = path.rpartition(".")
    return f"{module}:{name}"


def from_run(path, snapshot=-1, allow=()):
    """A new Simulation from a snapshot of a run (see Simulation.from_run);
    any failure on a damaged or crafted file is a CheckpointError."""
    from .hdf5 import open_run

    if isinstance(allow, str):
        allow = (allow,)
    p = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if p is not None and os.path.isfile(p) and h5py.is_hdf5(p):
        try:  # a crafted file must not crash this process
            probe(p, "run", snapshot if isinstance(snapshot, int) and not isinstance(snapshot, bool) else -1)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
    run = open_run(path)
    if len(run) == 0:
        raise CheckpointError(f"run {os.fspath(path)!r} holds no snapshot to start from")
    i = run._snapshot(snapshot)  # a bad index is the caller's IndexError or TypeError
    try:
        return _from_run(run, i, tuple(allow))
    except CheckpointError:
        raise
    except DAMAGED as e:
        raise CheckpointError(f"run {run.path!r} is damaged or not as biosim writes it "
                              f"({type(e).__name__}: {e})") from e


def _restore_neurites(sim, d, path):
    from ..neurites import Neurites

    if not isinstance(d, dict):
        raise CheckpointError(f"{path!r}: its neurites are {d!r}, not a dict")
    try:
        Neurites.from_dict(sim, d)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path!r}: its neurites cannot be restored: {e}") from None


def _from_run(run, i, allow):
    from ..agents import CORE_COLUMNS
    from ..simulation import Population, Simulation
    from ..space import Box

    meta = run.metadata
    try:
        box = Box(meta["box"]["lower"], meta["box"]["upper"])
        sim = Simulation(box, boundary=meta["boundary"], dt=meta["dt"], seed=meta["seed"],
                         mechanics=mechanics_from(meta["mechanics"]),
                         reorder_every=meta.get("reorder_every", 8))
        plane = meta.get("plane")  # a 2-D run's mid-plane (runs written before it was stored: none)
        if plane is not None:
            try:
                sim.plane = plane
            except (TypeError, ValueError) as e:
                raise CheckpointError(f"run {run.path!r}: its metadata plane {plane!r} is not a z in its box: "
                                      f"{e}") from None
        columns, pops, subs = meta["columns"], meta["populations"], meta.get("substances", {})
    except KeyError as e:
        raise CheckpointError(f"run {run.path!r} lacks the metadata {e} needed to rebuild its simulation") from None
    t = sim.agents
    derived = set()
    if meta.get("neurites") is not None:
        from ..neurites import DERIVED

        derived = {d[0] for d in DERIVED}  # stored in runs written before they were derived
    for name, c in columns.items():
        if name not in CORE_COLUMNS and name not in derived:
            t.add_column(name, c["dtype"], c.get("default", 0), tuple(c["shape"]), c.get("inherit", "copy"))
    periodic = meta["boundary"] == "periodic"
    for name, sd in subs.items():
        for face, spec in sd["boundary"].items():
            if spec["class"] == "Dirichlet" and not isinstance(spec["value"], (int, float)):
                raise CheckpointError(f"substance {name!r} had a Dirichlet boundary given as a function "
                                      f"({spec['value']}); a simulation cannot be rebuilt from it")
        sim.add_substance(name, sd["diffusion"], sd["decay"], sd["spacing"], initial=run.substance(name, i),
                          boundary=substance_boundary(sd["boundary"], periodic), solver=sd["solver"], dt=sd["dt"],
                          decay_split=sd.get("decay_split", False), dirichlet_layer=sd.get("dirichlet_layer", False),
                          unit=sd.get("unit") if V.is_unit(sd.get("unit")) else None)
    _check_codes([p.get("type") for p in pops.values()], run.path)
    ordered = sorted(pops.items(), key=lambda kv: kv[1]["type"])
    for name, p in ordered:
        sim.populations[name] = Population(sim, name, p["type"])
    if meta.get("neurites") is not None:
        _restore_neurites(sim, meta["neurites"], run.path)
    streams = 0
    for name, p in ordered:
        for d in p["behaviours"]:
            params = dict(d["parameters"])
            if "rule" in params:
                spec = {"rule": _dotted_to_colon(params["rule"]), "every": params.get("every", 1)}
            else:
                spec = {"class": _dotted_to_colon(d["class"]), "parameters": params}
            b = behaviour_from(spec, allow, f"population {name!r}")
            sim.populations[name].behaviours.append(b)
            if d.get("stream") is not None:
                b._stream = _count(d, "stream", run.path)
            streams = max(streams, b._stream)
    sim._streams = streams
    data = run.agents(i)
    t.restore({k: v for k, v in data.items() if k in t}, int(data["uid"].max()) + 1 if len(data["uid"]) else 0)
    sim.step = sim._first_step = int(run.steps[i])
    _check_restored(sim, run.path)
    return sim
