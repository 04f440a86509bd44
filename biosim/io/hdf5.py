"""HDF5 snapshots: one file per run, crash-safe.

Layout (format ``biosim-run``, version 1)::

    /                      attrs: biosim_format, format_version, metadata (JSON)
    /snapshots/step        int64 (S,)   simulation step of each snapshot
    /snapshots/time        float64 (S,) simulated time, min
    /snapshots/count       int64 (S,)   agents in each snapshot
    /agents/<column>       (R, ...)     every column of every snapshot, stacked:
                                        snapshot k holds rows offset[k]:offset[k]+count[k]
                                        with offset = cumsum of count
    /series/<name>/{step,time,value}   a recorded scalar time series (sim.record)
    /substances/<name>     (S, nx, ny, nz) float64 concentration grid of each
                                        snapshot (axes x, y, z; NaN before the
                                        substance existed); attrs: spacing, lower

Agent columns keep their dtype (float64 positions, bit-exact with the live
run).  When a run returns, an XDMF sidecar (``run.xmf``) is written beside
the file so ParaView can open it (with neurites, also ``run.neurites.h5``:
their elements as line segments, see :mod:`biosim.io.xdmf`).  The file is written in HDF5's single-writer/multiple-reader (SWMR)
mode, which orders every metadata write so the file is consistent on disk at
any moment: a snapshot is complete once its entry in ``/snapshots`` exists,
and a run killed at any point (even SIGKILL) leaves every completed snapshot
readable.  Rows past the last complete snapshot are ignored by readers and
overwritten by the next write.  Library versions v110..v114 keep the file
readable by ParaView's HDF5.  Metadata is JSON, never pickle.
"""
import contextlib
import json
import os
import tempfile

import h5py
import numpy as np

from .. import _validate as V
from .xdmf import write_grids, write_segments, write_sidecar

FORMAT = "biosim-run"
FORMAT_VERSION = 1
LIBVER = ("v110", "v114")
_INDEX = ("step", "time", "count")


def _check_output_path(path, name="path"):
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{name} must be a file path, got {path!r}") from None
    if not isinstance(path, str):
        raise TypeError(f"{name} must be a str or os.PathLike file path, got bytes {path!r}")
    if not path or "\0" in path:
        raise ValueError(f"{name} must be a file name such as run.h5, got {path!r}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"{name} {path!r}: directory {parent!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"{name} {path!r} is a directory; give a file name such as run.h5")
    return path


def abandon_h5(f):
    """Close an h5py file whose writes failed without writing to it again:
    its file descriptor is pointed at /dev/null first, so HDF5's final flush
    (which, on a full disk, fails and crashes the library) goes nowhere and
    what is on disk stays as it was."""
    try:
        fd = f.id.get_vfd_handle()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, fd)
        os.close(null)
    except (OSError, RuntimeError, ValueError):
        pass
    try:
        f.close()
    except (OSError, RuntimeError, ValueError):
        pass


def lock_output(path, who):
    """Take the advisory lock of output file ``path`` (``.NAME.lock`` beside
    it, flock): a second live writer of the same file, in this process or
    another, is refused with a ValueError naming the process that holds it.
    HDF5's own file lock cannot serve (SWMR mode drops it).  Returns the
    lock's file descriptor for :func:`unlock_output`; the OS releases the
    lock when the process dies."""
    import fcntl

    folder, name = os.path.split(os.path.abspath(path))
    lock = os.path.join(folder, f".{name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        except OSError:
            holder = "unknown"
        os.close(fd)
        raise ValueError(f"{who}: {path!r} is being written by another live writer (process {holder}; lock "
                         f"{lock!r}); two writers on one file would destroy each other's output: give this one "
                         f"another path") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd, lock


def unlock_output(held):
    """Release a lock from :func:`lock_output` and remove its file."""
    if held is None:
        return
    fd, lock = held
    try:
        os.unlink(lock)
    except OSError:
        pass
    os.close(fd)


# what reading a damaged or crafted file can raise, beyond the readers' own checks
DAMAGED = (KeyError, TypeError, AttributeError, IndexError, RecursionError, MemoryError, RuntimeError,
           OverflowError, OSError, ValueError)


class OutputError(OSError):
    """Writing output failed (disk full, size limit, permissions); the message
    names the file and what stays readable."""


class HDF5Writer:
    """Writes every agent column to ``path`` on steps that are multiples of
    ``every`` (the initial state included), for ``sim.writers``.

    The file is created (replacing an older one) at the first ``run()`` and
    appended to by later runs of the same simulation; it is closed whenever
    ``run()`` returns, so other processes may open it then (and, with
    ``open_run``, while it runs).

    Parameters
    ----------
    path : str or os.PathLike
        Output file; its directory must exist.
    every : int
        Snapshot interval in steps (>= 1).
    compression : {None, "gzip"}
        gzip keeps the file readable by ParaView (lzf would not).
    """

    def __init__(self, path, every=1, compression=None):
        self.path = _check_output_path(path)
        self.every = V.positive_int("every", every)
        if compression not in (None, "gzip"):
            raise ValueError(f"compression must be None or 'gzip', got {compression!r}")
        self.compression = compression
        self._file = None
        self._created = False
        self._rows = 0
        self._snapshots = 0
        self._last_step = None
        self._columns = {}
        self._grids = {}
        self._series = {}
        self._series_written = {}
        self._sim = None
        self._metadata = None
        self._resume_at = None  # set by load_checkpoint: append after this step
        self._resume_meta = None  # and the run's box, boundary, dt, seed, which the file must match
        self._lock = None  # held from open to close: no second writer of the same file

    def __repr__(self):
        return f"HDF5Writer({self.path!r}, every={self.every})"

    # -- lifecycle --------------------------------------------------------------
    def open(self, sim):
        """Create or reopen the file for ``sim`` (called by ``run``)."""
        if self._file is not None:
            return
        if self._lock is None:
            self._lock = lock_output(self.path, "HDF5Writer")
        try:
            self._open(sim)
        except BaseException:
            unlock_output(self._lock)
            self._lock = None
            raise

    def _open(self, sim):
        meta = json.dumps(sim.metadata())
        if self._resume_at is not None:
            self._resume(self._resume_at)
            self._resume_at = None
        if not self._created:
            f = h5py.File(self.path, "w", libver=LIBVER)
            f.attrs["biosim_format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            g = f.create_group("snapshots")
            for name, dt in zip(_INDEX, (np.int64, np.float64, np.int64)):
                g.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dt, chunks=(1024,))
            f.create_group("agents")
            f.create_group("substances")
            f.create_group("series")
            self._created = True
        else:
            f = h5py.File(self.path, "r+", libver=LIBVER)
        f.attrs["metadata"] = meta
        self._metadata = meta
        for name in sim.agents.columns + sim.agents.derived:  # derived columns too (computed as written)
            self._ensure_column(f, sim, name)
        for name, sub in sim.substances.items():
            self._ensure_substance(f, name, sub)
        for name, rec in sim.records.items():
            self._ensure_series(f, name, getattr(rec, "unit", None))
        f.swmr_mode = True
        self._file = f

    def _resume(self, step):
        """Continue an existing run file after a checkpoint at ``step``: keep
        the snapshots and series entries up to ``step`` (later ones, written
        after the checkpoint by the interrupted process, are dropped and
        written again) and append from there.  A missing file is started anew."""
        if not os.path.lexists(self.path):
            return
        check_resumable(self.path, self._resume_meta)
        with _open_h5(self.path) as f:
            steps = f["snapshots"]["step"][:]
            counts = f["snapshots"]["count"][:]
            m = min(f["snapshots"][k].shape[0] for k in _INDEX)
        keep = int(np.searchsorted(steps[:m], step, side="right"))
        _clear_for_writing(self.path)
        with h5py.File(self.path, "r+", libver=LIBVER) as f:
            for k in _INDEX:
                f["snapshots"][k].resize(keep, axis=0)
            for name, g in f["series"].items():
                n = int(np.searchsorted(g["step"][: min(g[k].shape[0] for k in g)], step, side="right"))
                for k in ("step", "time", "value"):
                    g[k].resize(n, axis=0)
        self._created = True
        self._snapshots = keep
        self._rows = int(counts[:keep].sum())
        self._last_step = int(steps[keep - 1]) if keep else None

    def _ensure_column(self, f, sim, name):
        spec = sim.agents.spec(name)
        g = f["agents"]
        if name not in g:
            row_bytes = spec.dtype.itemsize * int(np.prod(spec.shape))
            # about one snapshot per chunk, between 16 KiB and 1 MiB
            rows = max(len(sim.agents), 1)
            rows_per_chunk = int(min(max(rows, (1 << 14) // row_bytes), max(1, (1 << 20) // row_bytes)))
            g.create_dataset(name, shape=(self._rows,) + spec.shape, maxshape=(None,) + spec.shape,
                             dtype=spec.dtype, chunks=(rows_per_chunk,) + spec.shape,
                             fillvalue=np.asarray(spec.default, dtype=spec.dtype),
                             compression=self.compression)
        self._columns[name] = g[name]

    def _ensure_substance(self, f, name, sub):
        g = f["substances"]
        if name not in g:
            ds = g.create_dataset(name, shape=(self._snapshots,) + sub.shape, maxshape=(None,) + sub.shape,
                                  dtype=np.float64, chunks=(1,) + sub.shape, fillvalue=np.nan,
                                  compression=self.compression)
            ds.attrs["spacing"] = sub.spacing
            ds.attrs["lower"] = sub.lower
        self._grids[name] = g[name]

    def _ensure_series(self, f, name, unit=None):
        g = f.require_group("series")
        if name not in g:
            s = g.create_group(name)
            s.attrs["unit"] = unit or ""
            for key, dt in (("step", np.int64), ("time", np.float64), ("value", np.float64)):
                s.create_dataset(key, shape=(0,), maxshape=(None,), dtype=dt, chunks=(1024,))
        self._series[name] = g[name]
        self._series_written.setdefault(name, g[name]["value"].shape[0])

    def _write_series(self, sim):
        for name, g in self._series.items():
            rec = sim.records.get(name)
            if rec is None:
                continue
            done = self._series_written[name]
            if len(rec) <= done:
                continue
            new = (rec.steps[done:], rec.times[done:], rec.values[done:])
            # value last: a reader takes the shortest of the three
            for key, arr in zip(("step", "time", "value"), new):
                ds = g[key]
                ds.resize(len(rec), axis=0)
                ds[done:] = arr
                ds.flush()
            self._series_written[name] = len(rec)

    def close(self):
        """Flush and release the file (called when ``run`` returns) and write
        the XDMF sidecar (``.xmf`` beside it) for ParaView."""
        if self._file is None:
            return
        f = self._file
        try:
            if self._sim is not None:
                self._write_series(self._sim)
            snaps = f["snapshots"]
            columns = {name: (ds.dtype, int(np.prod(ds.shape[1:])), ds.shape[0])
                       for name, ds in self._columns.items()}
            counts = snaps["count"][:]
            segments = None
            neurites = self._sim.neurites if self._sim is not None else None
            if neurites is not None and neurites.types and all(c in self._columns for c in ("distal", "axis")):
                segments = write_segments(self.path, self._columns, counts, neurites.types)
            grids = write_grids(self.path, self._grids) if self._grids else None
            write_sidecar(self.path, snaps["step"][:], snaps["time"][:], counts, columns, segments, grids)
        finally:
            self._file = None
            self._columns = {}
            self._grids = {}
            self._series = {}
            try:
                f.close()
            finally:
                unlock_output(self._lock)
                self._lock = None

    def _abandon(self):
        """Release a file whose last write failed without writing to it again.
        What is on disk is the consistent state of the last completed snapshot
        (SWMR ordering); HDF5 would still flush its caches on close, and with the
        disk full that fails and crashes the library at exit.  So its file
        descriptor is pointed at /dev/null first: the final flush goes nowhere
        and the file on disk stays as it was."""
        f, self._file = self._file, None
        self._columns, self._grids, self._series = {}, {}, {}
        if f is not None:
            abandon_h5(f)
        unlock_output(self._lock)
        self._lock = None

    # -- writing ---------------------------------------------------------------
    def write(self, sim):
        """Append one snapshot of ``sim``'s current state (once per step).  A
        failed write (a full disk, a file-size limit) raises OutputError naming
        the file and step; the snapshots written before stay readable."""
        try:
            self._write(sim)
        except (OSError, RuntimeError) as e:  # h5py reports failed writes as either
            if isinstance(e, OutputError):
                raise
            self._abandon()
            raise OutputError(f"writing the snapshot of step {sim.step} to {self.path!r} failed ({' '.join(str(e).split())}); is the "
                              f"disk full or a file-size limit reached?  The {self._snapshots} snapshots written "
                              f"before it stay readable") from e

    def _write(self, sim):
        if self._file is None:
            self.open(sim)
        if self._last_step == sim.step:
            return
        agents = sim.agents
        self._sim = sim
        missing = ([c for c in agents.columns + agents.derived if c not in self._columns]
                   + [s for s in sim.substances if s not in self._grids]
                   + [r for r in sim.records if r not in self._series])
        if missing:  # new columns or substances: leave SWMR briefly to create their datasets
            self.close()
            self.open(sim)
        n = len(agents)
        start, stop = self._rows, self._rows + n
        for name, ds in self._columns.items():
            if ds.shape[0] < stop:
                ds.resize(stop, axis=0)
            if n:
                ds[start:stop] = agents[name]
            ds.flush()
        self._write_series(sim)
        k = self._snapshots
        for name, ds in self._grids.items():
            if ds.shape[0] < k + 1:
                ds.resize(k + 1, axis=0)
            ds[k] = sim.substances[name]._current()
            ds.flush()
        snaps = self._file["snapshots"]
        for name, value in zip(_INDEX, (sim.step, sim.time, n)):
            ds = snaps[name]
            ds.resize(k + 1, axis=0)
            ds[k] = value
        for name in _INDEX:
            snaps[name].flush()
        self._file.flush()
        self._rows = stop
        self._snapshots = k + 1
        self._last_step = sim.step


class Run:
    """A biosim run read from HDF5 (see :func:`open_run`).

    Attributes
    ----------
    steps : int64 array of the snapshot steps
    times : float64 array of the snapshot times (min)
    metadata : dict (parameters, seed, versions, populations, columns, substances)
    populations : list of population names, indexed by type code
    columns : tuple of column names
    substances : tuple of substance names
    records : tuple of recorded series names (read with :meth:`series`)
    units : dict {series name: its unit, '' when none was given}
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        with self._open() as f:
            self._read_index(f)

    def _open(self):
        return _open_h5(self.path)

    @contextlib.contextmanager
    def _damaged(self):
        """HDF5's errors reading a damaged file (a bad checksum, a broken
        object header) as a ValueError naming the file."""
        try:
            yield
        except (OSError, KeyError, RuntimeError) as e:
            raise ValueError(f"run file {self.path!r} is damaged: reading it failed ({e})") from e

    def _read_index(self, f):
        g = f["snapshots"]
        m = min(g[name].shape[0] for name in _INDEX)
        self.steps = g["step"][:m]
        self.times = g["time"][:m]
        self._counts = g["count"][:m]
        rows = min((ds.shape[0] for ds in f["agents"].values() if isinstance(ds, h5py.Dataset)), default=0)
        if self._counts.dtype.kind not in "iu" or (m and (int(self._counts.min()) < 0
                                                          or int(self._counts.sum(dtype=np.float64)) > rows)):
            raise ValueError(f"run file {self.path!r} is damaged: its snapshot counts do not match the {rows} "
                             f"agent rows stored")
        self._offsets = np.concatenate([[0], np.cumsum(self._counts)]).astype(np.int64)
        self.metadata = json.loads(f.attrs["metadata"]) if "metadata" in f.attrs else {}
        pops = self.metadata.get("populations", {})
        self.populations = [name for name, _ in sorted(pops.items(), key=lambda kv: kv[1]["type"])]
        self.columns = tuple(f["agents"].keys())
        self.substances = tuple(f["substances"].keys()) if "substances" in f else ()
        self.records = tuple(f["series"].keys()) if "series" in f else ()
        self.units = {name: _unit(f["series"][name].attrs.get("unit", "")) for name in self.records}

    def refresh(self):
        """Re-read the snapshot index (for a run still being written)."""
        with self._open() as f:
            self._read_index(f)
        return self

    def __len__(self):
        return len(self.steps)

    def __repr__(self):
        return f"Run({self.path!r}, {len(self)} snapshots, steps {self.steps[:1].tolist()}..{self.steps[-1:].tolist()})"

    def index(self, step):
        """Snapshot index of simulation step ``step`` (ValueError if absent)."""
        hits = np.flatnonzero(self.steps == step)
        if not hits.size:
            raise ValueError(f"step {step!r} is not in this run; snapshots hold steps "
                             f"{_summary(self.steps)}")
        return int(hits[0])

    def _snapshot(self, i):
        """Validate a Python-style snapshot index; returns it as 0..len-1."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"snapshot index must be an integer, got {i!r}")
        m = len(self)
        if not -m <= i < m:
            raise IndexError(f"snapshot index {i} out of range: this run has {m} snapshots")
        return int(i) % m

    def agents(self, i=-1, columns=None):
        """The agents of snapshot ``i`` (Python-style index: -1 is the last) as a
        dict {column: array}; ``columns`` limits which are read."""
        i = self._snapshot(i)
        names = self.columns if columns is None else tuple(columns)
        unknown = [c for c in names if c not in self.columns]
        if unknown:
            raise KeyError(f"no column {unknown[0]!r}; columns are {', '.join(self.columns)}")
        a, b = self._offsets[i], self._offsets[i + 1]
        with self._damaged(), self._open() as f:
            g = f["agents"]
            return {c: g[c][a:b] for c in names}


    def series(self, name):
        """A recorded time series: dict of ``step``, ``time`` (min) and ``value``
        arrays (see ``Simulation.record``)."""
        if name not in self.records:
            known = ", ".join(self.records) or "none"
            raise KeyError(f"no series {name!r} in this run; series are {known}")
        with self._damaged(), self._open() as f:
            g = f["series"][name]
            m = min(g[k].shape[0] for k in ("step", "time", "value"))
            return {k: g[k][:m] for k in ("step", "time", "value")}

    def substance(self, name, i=-1):
        """The concentration grid (nx, ny, nz) of substance ``name`` at snapshot ``i``."""
        if name not in self.substances:
            known = ", ".join(self.substances) or "none"
            raise KeyError(f"no substance {name!r} in this run; substances are {known}")
        i = self._snapshot(i)
        with self._damaged(), self._open() as f:
            return f["substances"][name][i]


    # -- tables for pandas and AnnData --------------------------------------------------
    def frame(self, i=-1, columns=None):
        """Snapshot ``i`` (the indices and errors of :meth:`agents`) as a pandas
        DataFrame, one row per agent in uid order: ``position`` becomes the
        columns ``x``, ``y``, ``z`` (µm), other 3-vectors ``name_x``,
        ``name_y``, ``name_z``, wider vectors ``name_0``, ``name_1`` ...;
        with ``type``, a categorical ``population`` column of the population
        names.  ``columns`` limits which columns are read."""
        import pandas as pd

        cols = self.agents(i, columns)
        order = np.argsort(cols["uid"], kind="stable") if "uid" in cols else slice(None)
        data = {}
        if "uid" in cols:
            data["uid"] = cols["uid"][order]
        if "type" in cols:
            codes = cols["type"][order].astype(np.int64)
            if codes.size and (codes.min() < 0 or codes.max() >= len(self.populations)):
                raise ValueError(f"run file {self.path!r} is damaged: snapshot {i} has type codes "
                                 f"{int(codes.min())}..{int(codes.max())} but {len(self.populations)} populations")
            data["population"] = pd.Categorical.from_codes(codes, categories=list(self.populations))
        for name in sorted(cols, key=lambda c: c != "position"):  # x, y, z first, then the file's order
            if name == "uid":
                continue
            arr = cols[name][order]
            if arr.ndim == 1:
                data[name] = arr
                continue
            flat = arr.reshape(len(arr), -1)
            if name == "position" and flat.shape[1] == 3:
                labels = ["x", "y", "z"]
            elif flat.shape[1] == 3:
                labels = [f"{name}_{a}" for a in "xyz"]
            else:
                labels = [f"{name}_{k}" for k in range(flat.shape[1])]
            for label, k in zip(labels, range(flat.shape[1])):
                data[label] = flat[:, k]
        return pd.DataFrame(data)

    def series_frame(self):
        """Every recorded series (:meth:`series`) as one pandas DataFrame: a
        row per step that any series recorded, in step order, with ``step``,
        ``time`` (min) and a column per series (NaN where a series skipped
        that step)."""
        import pandas as pd

        steps, times, values = [], [], {}
        for name in self.records:
            s = self.series(name)
            steps.append(s["step"])
            times.append(s["time"])
            values[name] = s
        if not steps:
            return pd.DataFrame({"step": np.zeros(0, np.int64), "time": np.zeros(0)})
        all_steps = np.concatenate(steps)
        all_times = np.concatenate(times)
        step, first = np.unique(all_steps, return_index=True)
        data = {"step": step, "time": all_times[first]}
        for name, s in values.items():
            col = np.full(step.size, np.nan)
            col[np.searchsorted(step, s["step"])] = s["value"]
            data[name] = col
        return pd.DataFrame(data)

    def to_anndata(self, i=-1, columns=None):
        """Snapshot ``i`` as an ``anndata.AnnData`` (``pip install
        "biosim[anndata]"``) for the spatial tools of the scverse (squidpy,
        scanpy): one observation per agent, named by uid, in uid order;
        positions (µm) in ``obsm["spatial"]``; every other column of
        :meth:`frame` in ``obs`` (the population as a categorical); no
        variables (``X`` is n x 0).  ``uns["biosim"]`` holds the run's path,
        the snapshot's step and time (min) and the unit of space (µm)."""
        try:
            import anndata
        except ImportError:
            raise ImportError('to_anndata needs anndata: pip install "biosim[anndata]" (or pip install anndata)') \
                from None
        if columns is not None:
            columns = list(columns) + [c for c in ("uid", "position") if c not in columns]
        df = self.frame(i, columns)
        spatial = df[["x", "y", "z"]].to_numpy()
        obs = df.drop(columns=["x", "y", "z"])
        obs.index = obs["uid"].astype(str).to_numpy()
        k = self._snapshot(i)
        return anndata.AnnData(obs=obs, obsm={"spatial": spatial},
                               uns={"biosim": {"path": self.path, "step": int(self.steps[k]),
                                               "time": float(self.times[k]), "space_unit": "µm"}})


def _unit(value):
    """A series' unit attribute as a short string ('' when absent or not a
    short printable string: a hostile file cannot feed the plots anything
    else)."""
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return ""
    return value if V.is_unit(value) else ""


def _summary(steps):
    if len(steps) <= 8:
        return steps.tolist()
    return f"{steps[:3].tolist()} ... {steps[-3:].tolist()} ({len(steps)} snapshots)"


def open_run(path):
    """Open a biosim run written by :class:`HDF5Writer` (also while it is being
    written, or after the writer was killed).  Raises FileNotFoundError or
    ValueError with a clear message for anything else."""
    try:
        p = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a file path, got {path!r}") from None
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such run file: {p!r}")
    if os.path.isdir(p) or not h5py.is_hdf5(p):
        raise ValueError(f"{p!r} is not an HDF5 file (expected a biosim run written by HDF5Writer)")
    try:
        with _open_h5(p) as f:
            fmt = f.attrs.get("biosim_format")
            if isinstance(fmt, bytes):
                fmt = fmt.decode()
            if fmt != FORMAT or "snapshots" not in f or "agents" not in f:
                raise ValueError(f"{p!r} is an HDF5 file but not a biosim run (no biosim_format "
                                 f"attribute, or missing /snapshots or /agents)")
    except (OSError, KeyError, RuntimeError) as e:
        raise ValueError(f"cannot read run file {p!r}: it is damaged or truncated ({e})") from None
    try:
        return Run(p)
    except DAMAGED as e:
        raise ValueError(f"run file {p!r} is damaged or not as biosim writes it ({type(e).__name__}: {e})") from e


# what a run file holds: groups, and numeric datasets stored in the file
_RUN_GROUPS = frozenset(("snapshots", "agents", "substances", "series"))


def check_resumable(path, meta=None):
    """Refuse, before anything is written, a run file that a resumed writer
    must not append to or cut: damaged or foreign (see :func:`open_run`), not
    plain (:func:`check_plain_run_file`), or the run of another simulation
    (``meta``: the checkpoint's box, boundary, dt and seed)."""
    if os.path.isfile(path) and h5py.is_hdf5(path):
        from ._probe import probe

        probe(path, "run")  # a crafted file must not crash this process
    run = open_run(path)
    check_plain_run_file(path)
    if meta is not None:
        differs = [k for k, v in meta.items() if run.metadata.get(k) != v]
        if differs:
            raise ValueError(f"run file {path!r} is not the run of this checkpoint (its {', '.join(differs)} "
                             f"differ); refusing to append to it or cut it")


def check_plain_run_file(path):
    """Refuse a run file that biosim did not write as it is, before anything
    is written to it: every object reached by a hard link (no soft or
    external links), every dataset numeric and stored in the file itself
    (no external storage, no virtual dataset: either could point a write at
    any file on the machine), a regular file that is no link and has no
    other name (a hard link would carry writes elsewhere), and only the
    groups biosim writes."""
    st = os.lstat(path)
    import stat

    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"run file {path!r} is a link or not a regular file; refusing to write to it")
    if st.st_nlink > 1:
        raise ValueError(f"run file {path!r} has {st.st_nlink} hard links (it is also another file); "
                         f"refusing to write to it")

    def refuse(name, why):
        raise ValueError(f"run file {path!r}: /{name} {why}; biosim does not write such files, "
                         f"refusing to append to it")

    def walk(group, prefix, depth):
        for key in group:
            name = f"{prefix}{key}"
            link = group.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                refuse(name, f"is a {type(link).__name__}")
            obj = group[key]
            if isinstance(obj, h5py.Group):
                if depth >= 2:
                    refuse(name, "is a group nested deeper than biosim's")
                walk(obj, name + "/", depth + 1)
            elif isinstance(obj, h5py.Dataset):
                if depth == 0:
                    refuse(name, "is a dataset at the top level")
                if obj.is_virtual:
                    refuse(name, "is a virtual dataset")
                if obj.external:
                    refuse(name, f"is stored in external files {[e[0] for e in obj.external]}")
                if obj.dtype.kind not in "biuf" or obj.dtype.fields is not None:
                    refuse(name, f"has dtype {obj.dtype}")
            else:
                refuse(name, "is neither a group nor a dataset")

    try:
        with _open_h5(path) as f:
            for key in f:
                if key not in _RUN_GROUPS:
                    refuse(key, "is not a group biosim writes")
            walk(f, "", 0)
    except OSError as e:
        raise ValueError(f"cannot read run file {path!r}: it is damaged ({e})") from None


def _clear_for_writing(path):
    """Make a run file left by a killed SWMR writer writable again.  HDF5
    marks such a file as still open for writing (only the h5clear tool
    resets that); its consistent content is read as a SWMR reader does and
    copied into a fresh file that atomically replaces it."""
    try:
        h5py.File(path, "r+", libver=LIBVER).close()
        return
    except OSError as e:
        if "h5clear" not in str(e) and "already open" not in str(e):
            raise ValueError(f"cannot open run file {path!r} for appending: {e}") from None
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".resume-", suffix=".h5", dir=folder)
    os.close(fd)
    try:
        with h5py.File(path, "r", swmr=True) as src, h5py.File(tmp, "w", libver=LIBVER) as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for name in src:
                src.copy(src[name], dst, name=name)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _open_h5(p):
    """Open for reading.  A file still held by a SWMR writer (locked) or left
    by a killed one (status flags set) is opened as a SWMR reader, which reads
    its last consistent state; anything else opens plainly, so a damaged file
    fails at once instead of being retried."""
    try:
        return h5py.File(p, "r")
    except OSError as e:
        msg = str(e)
        if "h5clear" in msg or "already open" in msg or "unable to lock file" in msg:
            return h5py.File(p, "r", swmr=True)
        raise
