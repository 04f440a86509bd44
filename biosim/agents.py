"""AgentTable: all agents of a simulation as a structure of arrays.

One numpy array per column, with spare capacity that grows geometrically
(1.5x).  Core columns: ``uid`` (int64, unique for the whole run, never
reused), ``type`` (int32 population code), ``position`` (n, 3) in µm and
``diameter`` in µm.  Behaviours and users add columns with
:meth:`AgentTable.add_column`.  A derived column (:meth:`AgentTable.derive`:
the neurites' ``axis``, ``length``, ``tension`` and ``attachment``) holds no
memory: reading it computes a fresh read-only array from the stored columns.

Column properties and ``table["name"]`` return numpy views of the live rows,
valid until the next step or the next change in agent count; ``uid`` and
``type`` are read-only (biosim assigns them).  Row order is
internal and changes when the engine sorts agents by grid cell: match rows by
``uid``, never by index.

With a GPU backend (``Simulation(device="cuda")``) every column also has a
device copy, and the table tracks which copy is current: reading a column
from Python (``table["name"]``, ``.position``, ...) brings it to the host
and counts it as changed (the view may be written), so it goes back to the
device before the next kernel uses it; kernels reach the device copies
through :meth:`AgentTable.col`.  Nothing else crosses the bus.

Births and deaths requested during a step are queued and committed at the
end of the step, deaths first, then births ordered by (parent uid, the
requesting behaviour, request order within it); daughters get fresh uids in
that order.  A mother that dies in the step has no daughter.
"""
import numpy as np

from ._validate import cast as _cast

CORE_COLUMNS = ("uid", "type", "position", "diameter")
# identity columns: read-only views (uids are unique by construction; type
# codes index per-population tables in the kernels)
READ_ONLY = ("uid", "type")
_GROWTH = 1.5


INHERIT = ("copy", "default", "split")


class ColumnSpec:
    """dtype, default value, per-row shape and inheritance at division of one
    column.  ``inherit``: "copy" (the daughter gets the mother's value),
    "default" (the daughter starts from the column's default) or "split"
    (float columns: mother and daughter each keep half, e.g. a content)."""

    __slots__ = ("dtype", "default", "shape", "inherit")

    def __init__(self, dtype, default, shape=(), inherit="copy"):
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape)
        self.default = default
        self.inherit = inherit

    def __repr__(self):
        return (f"ColumnSpec({self.dtype}, default={self.default!r}, shape={self.shape}, "
                f"inherit={self.inherit!r})")


def _check_name(name):
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"column name must be a Python identifier string, got {name!r}")


def _cpu_grid():
    from .kernels.cpu import grid

    return grid


class AgentTable:
    """Structure-of-arrays storage of every agent (see module docstring)."""

    def __init__(self, backend=None):
        if backend is None:
            from .backends import get_backend

            backend = get_backend("cpu")
        self._backend = backend
        self._dev = {}  # device copies (GPU backends): column -> device array of capacity rows
        self._where = {}  # GPU backends: column -> "host", "device" (the current copy) or "both"
        self._dev_scratch = None
        self._n = 0
        self._capacity = 0
        self._next_uid = 0
        self._specs = {}
        self._data = {}
        self._derived = {}  # name -> (fn(table) -> array of the live rows, ColumnSpec, what it derives from)
        self._scratch = np.empty(0, dtype=np.uint8)
        self._births = []  # (parent uids, {column: rows}, requester, sequence within it)
        self._deaths = []
        self._requester = 0  # set by the simulation before each behaviour: (population, behaviour)
        self._request_seq = 0
        self._in_step = False
        # called as on_commit(births, deaths, dead) after each commit, ``dead`` the sorted uids whose removal
        # was requested (the neurites tidy their trees: biosim.neurites)
        self.on_commit = None
        self.layout = 0  # counts changes that move or drop rows (not appends): caches of rows key on it
        self.decomposition = None  # under MPI (biosim.parallel): own rows, daughters' uids
        self.total_births = 0  # committed over the table's life (bookkeeping checks)
        self.total_deaths = 0
        for name, dtype, default, shape in (
            ("uid", np.int64, -1, ()),
            ("type", np.int32, 0, ()),
            ("position", np.float64, 0.0, (3,)),
            ("diameter", np.float64, 10.0, ()),
        ):
            self._declare(name, dtype, default, shape)

    # -- columns -------------------------------------------------------------
    def _declare(self, name, dtype, default, shape):
        spec = ColumnSpec(dtype, default, shape)
        arr = np.empty((self._capacity,) + spec.shape, dtype=spec.dtype)
        arr[: self._n] = default
        self._specs[name] = spec
        self._data[name] = arr
        self._where[name] = "host"
        return spec

    def add_column(self, name, dtype, default=0, shape=(), inherit=None):
        """Add a column of ``dtype`` (one value, or ``shape`` values, per agent),
        filled with ``default`` for existing and future agents.  ``inherit``
        says what a daughter gets at division: "copy" (the mother's value; the
        default), "default" (the column's default) or "split" (float columns:
        mother and daughter each get half the mother's value).

        Adding a column that exists with the same dtype and shape is a no-op
        (an ``inherit`` given then replaces the column's policy); a different
        dtype or shape, or a core column name, is refused."""
        _check_name(name)
        if name in self._derived:
            raise ValueError(f"column {name!r} is derived from {self._derived[name][2]}: it cannot be added as a "
                             f"stored column; choose another name")
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype of column {name!r} must be a numpy dtype, got {dtype!r}") from None
        if dtype.kind not in "biuf" or dtype.itemsize > 8:
            raise TypeError(f"dtype of column {name!r} must be bool, an integer or a float of at most "
                            f"64 bits, got {dtype}")
        if not (isinstance(shape, tuple) and shape == ()):
            arr = None if isinstance(shape, (str, bytes)) else np.atleast_1d(np.asarray(shape))
            if arr is None or arr.dtype.kind not in "iu" or arr.ndim != 1:
                raise TypeError(f"shape of column {name!r} must be () or a tuple of positive ints, "
                                f"got {shape!r}")
            shape = tuple(int(s) for s in arr)
        if any(s < 1 for s in shape):
            raise ValueError(f"shape of column {name!r} must hold positive sizes, got {shape}")
        if inherit is not None:
            if inherit not in INHERIT:
                raise ValueError(f"inherit of column {name!r} must be one of {', '.join(map(repr, INHERIT))}; "
                                 f"got {inherit!r}")
            if inherit == "split" and dtype.kind != "f":
                raise ValueError(f"inherit='split' halves values: column {name!r} must be a float column, "
                                 f"not {dtype}")
        if name in self._specs:
            spec = self._specs[name]
            if name in CORE_COLUMNS:
                raise ValueError(f"column {name!r} clashes with a core column ({', '.join(CORE_COLUMNS)})")
            if spec.dtype != dtype or spec.shape != shape:
                raise ValueError(f"column {name!r} exists with dtype {spec.dtype} and shape {spec.shape}; "
                                 f"cannot redeclare it as {dtype} with shape {shape}")
            if inherit is not None:
                spec.inherit = inherit
            return
        _cast(f"default of column {name!r}", default, dtype)
        self._declare(name, dtype, default, shape).inherit = inherit or "copy"

    def derive(self, name, fn, dtype, shape=(), sources=""):
        """Declare ``name`` a derived column: it holds no memory, and
        ``table[name]`` returns ``fn(table)``, a fresh array of the live rows
        (``dtype``, ``shape`` per row), read-only.  ``sources`` says what it
        is derived from (for errors: set those instead).  Writers store
        derived columns with the stored ones; restoring ignores them."""
        _check_name(name)
        if name in self._specs:
            raise ValueError(f"column {name!r} is stored; it cannot also be derived")
        self._derived[name] = (fn, ColumnSpec(dtype, 0, shape), sources)

    @property
    def columns(self):
        """Names of all stored columns, core columns first."""
        return tuple(self._specs)

    @property
    def derived(self):
        """Names of the derived columns (:meth:`derive`)."""
        return tuple(self._derived)

    def spec(self, name):
        d = self._derived.get(name)
        return self._specs[name] if d is None else d[1]

    def __len__(self):
        return self._n

    def __contains__(self, name):
        return name in self._specs or name in self._derived

    def __getitem__(self, name):
        try:
            view = self._data[name][: self._n]
        except KeyError:
            d = self._derived.get(name)
            if d is None:
                raise KeyError(f"no column {name!r}; columns are {', '.join([*self._specs, *self._derived])}") from None
            arr = d[0](self)
            arr.flags.writeable = False
            return arr
        if self._backend.on_device:
            self._to_host(name)
            if name not in READ_ONLY:
                self._where[name] = "host"  # the view may be written: the device copy is stale
        if name in READ_ONLY:
            view = view.view()
            view.flags.writeable = False
        return view

    # -- device copies (GPU backends) ---------------------------------------------
    def col(self, name, write=True):
        """Column ``name``'s live rows where the backend's kernels use them: the
        numpy view on the CPU; on a GPU the device copy (uploaded first if
        Python changed the column), counted as changed when ``write``."""
        if name in self._derived:  # computed afresh: a kernel may read it, never write it
            if write:
                raise ValueError(f"column {name!r} is derived from {self._derived[name][2]}: it cannot be written; "
                                 f"write those instead")
            arr = self._derived[name][0](self)
            return self._backend.to_device(arr) if self._backend.on_device else arr
        if not self._backend.on_device:
            return self._data[name][: self._n]
        dev = self._dev.get(name)
        host = self._data[name]
        if dev is None or dev.shape[0] < host.shape[0]:
            self._to_host(name)
            dev = self._backend.empty(host.shape, host.dtype)
            self._dev[name] = dev
            self._where[name] = "host"
        if self._where[name] == "host":
            self._backend.upload(host[: self._n], dev)
            self._where[name] = "both"
        if write:
            self._where[name] = "device"
        return dev[: self._n]

    def _to_host(self, name):
        """Bring column ``name`` to the host if the device copy is newer."""
        if self._where.get(name) == "device":
            if self._n:
                self._backend.copy_to_host(self._dev[name][: self._n], self._data[name][: self._n])
            self._where[name] = "both"

    def to_host(self):
        """Bring every column to the host and count the host copies as the
        current ones (before the table changes shape on the host)."""
        if self._backend.on_device:
            for name in self._data:
                self._to_host(name)
                self._where[name] = "host"

    def dev_scratch(self, shape, dtype):
        """A device scratch array (GPU backends; contents undefined)."""
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 8)
        s = self._dev_scratch
        if s is None or s.size < nbytes:
            s = self._dev_scratch = self._backend.empty(max(nbytes, self._capacity * 24), np.uint8)
        return s[:nbytes].view(dtype).reshape(shape)

    def __setitem__(self, name, value):
        if name in self._derived:
            raise ValueError(f"column {name!r} is derived from {self._derived[name][2]}: set those instead")
        if name in READ_ONLY:
            raise ValueError(f"column {name!r} is read-only: uids are assigned by biosim, and an agent's "
                             f"population is fixed when it is added (add it to another population instead)")
        self[name][...] = value

    def set_type(self, rows, code):
        """Move the agents at ``rows`` into the population of type ``code``
        (the engine's own way to change the read-only type column, e.g. for
        differentiation).  On a GPU backend ``rows`` may be a device array:
        the device copy is changed there."""
        if hasattr(rows, "copy_to_host"):
            self._backend.behaviours.assign(self.col("type"), rows, code)
            return
        self._to_host("type")
        self._where["type"] = "host"
        self._data["type"][: self._n][rows] = code

    uid = property(lambda self: self["uid"], doc="int64 unique id per agent (n,)")
    type = property(lambda self: self["type"], doc="int32 population code per agent (n,)")
    position = property(lambda self: self["position"], doc="float64 centre positions in µm (n, 3)")
    diameter = property(lambda self: self["diameter"], doc="float64 diameters in µm (n,)")

    @property
    def next_uid(self):
        """The uid the next new agent gets (every live uid is below it)."""
        return self._next_uid

    @property
    def capacity(self):
        return self._capacity

    def __repr__(self):
        return f"AgentTable({self._n} agents, columns: {', '.join(self._specs)})"

    # -- storage --------------------------------------------------------------
    def reserve(self, n):
        """Make room for at least ``n`` rows (geometric growth)."""
        if n <= self._capacity:
            return
        cap = n if self._capacity == 0 else max(n, int(self._capacity * _GROWTH) + 16)
        if self._backend.on_device:
            self._check_device_room(n, cap)
        for name, arr in self._data.items():
            new = np.empty((cap,) + arr.shape[1:], dtype=arr.dtype)
            if self._where[name] != "device":
                new[: self._n] = arr[: self._n]
            self._data[name] = new
            dev = self._dev.pop(name, None)
            if dev is not None and self._where[name] != "host":  # grown on the device, copied there
                grown = self._backend.empty(new.shape, new.dtype)
                if self._n:
                    grown[: self._n].copy_to_device(dev[: self._n])
                self._dev[name] = grown
        self._capacity = cap

    # device memory per agent beyond its columns: the grid's cell, order and key
    # (3 x 8 bytes), its sorted columns (5 x 8) and the force buffer (3 x 8)
    DEVICE_EXTRA = 88

    def _check_device_room(self, n, cap):
        """Before growing to ``cap`` rows on a GPU: a MemoryError naming the
        sizes and the device's free memory if the columns (twice: the table
        and its scratch) and the grid's arrays would not fit, so the
        simulation stops with its state and snapshots intact."""
        row = sum(int(np.prod(sp.shape)) * sp.dtype.itemsize if sp.shape else sp.dtype.itemsize
                  for sp in self._specs.values())
        per = 2 * row + self.DEVICE_EXTRA
        need = (cap - self._capacity) * per
        free, total = self._backend.free_memory()
        if total and need > free:
            raise MemoryError(f"{self._backend.name}: {n:,} agents ({cap:,} rows with growth room) need about "
                              f"{need / 2**30:.2f} GiB more device memory ({per} bytes per agent: "
                              f"{len(self._specs)} columns of {row} bytes, twice, plus the grid's arrays); the "
                              f"device has {free / 2**30:.2f} GiB free of {total / 2**30:.2f} GiB. Run fewer "
                              f"agents, drop columns, or use device=\"cpu\"")

    def scratch(self, shape, dtype):
        """A shared scratch array (contents undefined) of at least the table's
        capacity worth of rows; one user at a time (permutation, forces)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        want = max(nbytes, self._capacity * 24)
        if self._scratch.size < nbytes:
            self._scratch = np.empty(want, dtype=np.uint8)
        return self._scratch[:nbytes].view(dtype).reshape(shape)

    def append(self, columns, type_code, uids=None, issued=None):
        """Append rows given as {column: array of length m}; missing columns get
        their defaults.  Assigns new uids (the next m; or ``uids``, then the
        next uid moves on by ``issued``: under MPI, the uids one process
        gives, of which this rank holds some); returns them."""
        m = len(next(iter(columns.values()))) if columns else 0
        step = m if uids is None else int(issued)
        if self._next_uid + step > 2**63 - 1:
            raise ValueError(f"uids would pass 2**63 - 1 (next uid {self._next_uid}, {step} new agents)")
        self.to_host()
        start = self._n
        self.reserve(start + m)
        if uids is None:
            uids = np.arange(self._next_uid, self._next_uid + m, dtype=np.int64)
        self._next_uid += step
        for name, arr in self._data.items():
            if name in columns:
                arr[start:start + m] = columns[name]
            else:
                arr[start:start + m] = self._specs[name].default
        self._data["uid"][start:start + m] = uids
        self._data["type"][start:start + m] = type_code
        self._n = start + m
        return uids

    def restore(self, columns, next_uid):
        """Replace every row by saved ones (a checkpoint or a snapshot):
        ``columns`` maps column names to arrays of n rows, uid and type
        included, in row order; columns it lacks take their defaults.
        ``next_uid`` is the uid the next new agent gets."""
        n = len(columns["uid"])
        for name, arr in columns.items():
            if len(arr) != n:
                raise ValueError(f"column {name!r} has {len(arr)} rows, uid has {n}")
        self.to_host()
        self.reserve(n)
        for name, arr in self._data.items():
            arr[:n] = columns[name] if name in columns else self._specs[name].default
        self._n = n
        self._next_uid = int(next_uid)
        self.layout += 1

    def extend(self, columns):
        """Append rows given whole, uid and type included ({column: array of
        m rows}; columns it lacks take their defaults): agents that already
        exist elsewhere (an MPI rank's aura or migrants).  No uid is
        assigned."""
        m = len(columns["uid"])
        if m == 0:
            return
        self.to_host()
        start = self._n
        self.reserve(start + m)
        for name, arr in self._data.items():
            arr[start:start + m] = columns[name] if name in columns else self._specs[name].default
        self._n = start + m

    def keep(self, rows):
        """Keep only the rows ``rows`` (increasing indices), in that order,
        compacted in place."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == self._n:
            return
        self.to_host()
        m = rows.size
        # rows before the first one dropped stay where they are; the rest move up, in place
        start = int(np.argmax(rows != np.arange(m))) if m and rows[-1] != m - 1 else m
        if start < m:
            tail = rows[start:]
            for arr in self._data.values():
                arr[start:m] = arr[tail]
        self._n = m
        self.layout += 1

    def keep_ends(self, head, tail):
        """Keep the first ``head`` and the last ``tail`` rows, in order, and
        drop those between (what :meth:`keep` does with those rows, moving
        only the last ``tail``: an MPI rank's own rows and newborns at a
        step's end, its aura between them)."""
        n = self._n
        if head + tail >= n:
            return
        self.to_host()
        for arr in self._data.values():
            arr[head:head + tail] = arr[n - tail:n]
        self._n = head + tail
        self.layout += 1

    def drop(self, rows):
        """Remove the rows ``rows`` (increasing indices), filling their
        places with the last rows kept: the other rows keep their places, but
        not their order (for callers that do not need it: an MPI rank's
        emigrants, a few rows scattered through the table, without moving
        the rest)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        self.to_host()
        m = self._n - rows.size
        holes = rows[rows < m]
        tail = np.setdiff1d(np.arange(m, self._n), rows, assume_unique=True)  # as many as there are holes
        for arr in self._data.values():
            arr[holes] = arr[tail]
        self._n = m
        self.layout += 1

    def permute(self, order):
        """Reorder the live rows: row i becomes old row ``order[i]`` (``order``
        where the backend's kernels live: columns on the device are permuted
        there, the others on the host)."""
        n = self._n
        self.layout += 1
        K = self._backend.grid
        host_order = None
        for name, arr in self._data.items():
            if self._backend.on_device and self._where[name] != "host":
                dev = self.col(name)
                flat = dev.reshape(n, -1) if n else dev
                tmp = self.dev_scratch(flat.shape, flat.dtype)
                K.gather_rows(flat, order, n, tmp)
                K.copy_rows(tmp, n, flat)
                continue
            if host_order is None:
                host_order = self._backend.to_host(order)
            flat = arr[:n].reshape(n, -1)
            tmp = self.scratch(flat.shape, flat.dtype)
            _cpu_grid().gather_rows(flat, host_order, n, tmp)
            _cpu_grid().copy_rows(tmp, n, flat)

    def rows_of(self, uids):
        """Row indices of the agents with these uids (KeyError for unknown)."""
        uids = np.asarray(uids, dtype=np.int64)
        live = self["uid"]
        srt = np.argsort(live, kind="stable")
        pos = np.searchsorted(live, uids, sorter=srt)
        pos = np.minimum(pos, max(len(live) - 1, 0))
        if len(live) == 0 or not np.array_equal(live[srt[pos]], uids):
            missing = np.setdiff1d(uids, live)
            raise KeyError(f"no agents with uid {missing[:10].tolist()}")
        return srt[pos]

    def take_column(self, name, rows):
        """Column ``name`` at ``rows``, where the backend's kernels live (a
        numpy array on the CPU, a device array on a GPU)."""
        if not self._backend.on_device:
            return self._data[name][: self._n][rows]
        m = len(rows)
        spec = self._specs[name]
        dev = self.col(name, write=False)
        width = int(np.prod(spec.shape)) if spec.shape else 1
        tmp = self._backend.empty((m, width), spec.dtype)
        if m:
            self._backend.grid.gather_rows(dev.reshape(self._n, width), rows, m, tmp)
        return tmp.reshape((m,) + spec.shape)

    def take(self, rows):
        """Copies of every column at ``rows`` as a dict of host arrays (``rows``
        where the backend's kernels live; on a GPU the rows are gathered on
        the device and only they cross the bus)."""
        if not self._backend.on_device:
            return {name: arr[: self._n][rows] for name, arr in self._data.items()}
        out = {}
        host_rows = None
        m = len(rows)
        for name, arr in self._data.items():
            if self._where[name] == "host":
                if host_rows is None:
                    host_rows = self._backend.to_host(rows)
                out[name] = arr[: self._n][host_rows]
                continue
            dev = self.col(name, write=False)
            flat = dev.reshape(self._n, -1) if self._n else dev
            tmp = self._backend.empty((m, flat.shape[1] if self._n else 1), arr.dtype)
            self._backend.grid.gather_rows(flat, rows, m, tmp)
            out[name] = self._backend.to_host(tmp).reshape((m,) + arr.shape[1:])
        return out

    # -- births and deaths -------------------------------------------------------
    def _daughter_order(self, dead):
        """The queued daughters in commit order: by parent uid, requesting
        behaviour, request order; those whose mother is in ``dead`` (sorted
        uids, or None) dropped.  Parent uids queued on the device (a few) are
        brought to the host for it.  Returns (order, their parents' uids)."""
        B = self._backend
        if not self._births:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        parents = np.concatenate([np.asarray(B.to_host(b[0]), dtype=np.int64) for b in self._births])
        requester = np.concatenate([np.full(len(b[0]), b[2], dtype=np.int64) for b in self._births])
        seq = np.concatenate([np.full(len(b[0]), b[3], dtype=np.int64) for b in self._births])
        order = np.lexsort((seq, requester, parents))
        if dead is not None:
            order = order[~np.isin(parents[order], dead)]
        return order, parents[order]

    def _commit_device(self):
        """commit() on a GPU backend, in the same order: the dead uids (few)
        go to the device, which removes their rows by a scan of the survival
        flags and a scatter of every device column; daughters' rows (few),
        queued as host arrays, are ordered on the host and written after the
        survivors (every column is compacted on the device; a column only
        the host held is uploaded once for that)."""
        B = self._backend
        K = B.grid
        deaths = births = 0
        dead = None
        if self._deaths:
            dead = np.unique(np.concatenate([np.asarray(B.to_host(d), dtype=np.int64).ravel()
                                             for d in self._deaths]))
            self._deaths = []
            n = self._n
            place, kept = K.survivors(self.col("uid", False), n, B.to_device(dead))
            deaths = n - kept
            if deaths:
                for name in self._data:  # every column on the device (one upload of a host-only column)
                    dev = self.col(name)
                    flat = dev.reshape(n, -1)
                    tmp = self.dev_scratch(flat.shape, flat.dtype)
                    K.compact_rows(flat, place, n, tmp)
                    if kept:
                        K.copy_rows(tmp, kept, flat)
                self._n = kept
                self.layout += 1
        if self._births:
            order, _ = self._daughter_order(dead)
            m = order.size
            start = self._n
            self.reserve(start + m)
            for name, arr in self._data.items():
                if name == "uid":
                    vals = np.arange(self._next_uid, self._next_uid + m, dtype=np.int64)
                else:
                    vals = np.concatenate([np.asarray(B.to_host(b[1][name])) if name in b[1] else
                                           np.broadcast_to(np.asarray(self._specs[name].default, dtype=arr.dtype),
                                                           (len(b[0]),) + arr.shape[1:])
                                           for b in self._births])[order]
                if self._where[name] == "host":
                    arr[start:start + m] = vals
                elif m:
                    dev = self._dev[name]
                    dev[start:start + m].copy_to_device(np.ascontiguousarray(vals, dtype=arr.dtype))
                    self._where[name] = "device"
            self._next_uid += m
            self._n = start + m
            births = m
            self._births = []
        self._requester = 0
        self._request_seq = 0
        self.total_births += births
        self.total_deaths += deaths
        if self.on_commit is not None:
            self.on_commit(births, deaths, dead)
        return births, deaths

    def begin_requests(self, requester):
        """Births requested from now on come from ``requester``, an integer
        fixed by what requests them (the simulation passes one per
        (population, behaviour)), so the order of daughters and their uids
        never depends on whether an earlier behaviour requested any."""
        self._requester = int(requester)
        self._request_seq = 0

    def request_births(self, parent_uids, columns):
        """Queue daughters: ``columns`` holds arrays of their values (missing
        columns: defaults; uid is assigned at commit and ``type`` kept)."""
        if not hasattr(parent_uids, "copy_to_host"):  # device arrays stay where they are
            parent_uids = np.asarray(parent_uids, dtype=np.int64)
        if parent_uids.size:
            self._births.append((parent_uids, columns, self._requester, self._request_seq))
            self._request_seq += 1

    def request_deaths(self, uids):
        """Queue the agents with these uids (a host array, or a device array
        on a GPU backend) for removal at the end of the step."""
        if not hasattr(uids, "copy_to_host"):
            uids = np.asarray(uids, dtype=np.int64).ravel()
        if uids.size:
            self._deaths.append(uids)

    def remove(self, uids):
        """Remove the agents with these uids: at the end of the current step when
        called during one, at once otherwise.  Unknown uids raise KeyError."""
        uids = np.asarray(uids, dtype=np.int64).ravel()
        self.rows_of(uids)  # validates
        self.request_deaths(uids)
        if not self._in_step:
            self.commit()

    def commit(self):
        """Apply queued deaths, then births (a daughter whose mother died in
        the same step is dropped); returns (births, deaths)."""
        if self._backend.on_device and (self._deaths or self._births):
            return self._commit_device()
        deaths = births = 0
        dead = None
        dd = self.decomposition if self._in_step else None
        if self._deaths:
            dead = np.unique(np.concatenate(self._deaths))
            self._deaths = []
            keep = ~np.isin(self["uid"], dead, assume_unique=False)
            deaths = self._n - int(keep.sum())
            if deaths:
                n_new = int(keep.sum())
                for name, arr in self._data.items():
                    arr[:n_new] = arr[: self._n][keep]
                self._n = n_new
                self.layout += 1
                if dd is not None:  # the own rows stay first
                    dd.n_own = int(keep[:dd.n_own].sum())
        if dd is not None:  # a collective call on every rank, daughters or not
            order, parents = self._daughter_order(dead)
            own = dd.owns_rows(parents)  # the aura's daughters are born on their mothers' ranks
            order, parents = order[own], parents[own]
            uids, total = dd.daughter_uids(parents)
        if self._births:
            if dd is None:
                order, _ = self._daughter_order(dead)
            m = order.size
            start = self._n
            self.reserve(start + m)
            for name, arr in self._data.items():
                if name == "uid":
                    continue
                vals = [b[1][name] if name in b[1] else
                        np.broadcast_to(np.asarray(self._specs[name].default, dtype=arr.dtype),
                                        (b[0].size,) + arr.shape[1:])
                        for b in self._births]
                arr[start:start + m] = np.concatenate(vals)[order]
            self._data["uid"][start:start + m] = (np.arange(self._next_uid, self._next_uid + m) if dd is None
                                                  else uids)
            self._next_uid += m if dd is None else total
            self._n = start + m
            births = m
            self._births = []
        elif dd is not None:
            self._next_uid += total
        self._requester = 0
        self._request_seq = 0
        self.total_births += births
        self.total_deaths += deaths
        if self.on_commit is not None:
            self.on_commit(births, deaths, dead)
        return births, deaths
