"""Neurons: neurites as chains and trees of cylinder agents (BioDynaMo's
neuroscience model, ported from Cx3D).

A neurite element is an ordinary row of the agent table, in a population
made by :meth:`Simulation.add_neurites`.  Its columns:

``distal`` (3,) µm
    The distal end, where all its mass sits (BioDynaMo's mass location).
``position``
    The midpoint between the proximal and distal ends (what the neighbour
    grid bins, what writers and renderers see as the agent's centre).
``axis`` (3,) µm, derived
    The spring axis, from the proximal end to the distal end:
    ``2 (distal - position)``.
``diameter`` µm, ``length`` µm (derived: the norm of the axis), ``resting_length`` µm
``tension``, derived
    T = k (L - R) / R, from ``spring_constant`` k (default 10).
``adherence``
    The force below which the point mass does not move (default 0.1).
``mother``, ``daughter_left``, ``daughter_right`` (uids, -1 for none)
    The tree: the mother is a neurite element or the soma (any spherical
    agent); a lone daughter is the left one; an element without a left
    daughter is terminal.
``attachment`` (3,), derived
    For an element whose mother is the soma (a first element), the unit
    direction of its proximal end from the soma's centre (the end sits on
    the soma's surface and follows it); 0 for the others.
``branch_order``, ``swc_type``
    Branch points between it and the soma; its SWC structure type.

The derived columns (``axis``, ``length``, ``tension``, ``attachment``) hold
no memory: the kernels compute them where they read them,
``sim.agents["axis"]`` returns a fresh read-only array, and snapshots store
them beside the stored columns.  The axis so derived differs from the way
from the proximal end to the distal point by at most the rounding of the
midpoint (about 10^-16 of the coordinates).  A first element's attachment
is read before its soma moves in the mechanics (at the step's start when a
behaviour may move somata), and its proximal end put back on the moved
soma's surface along it.  A soma moved otherwise (by an action, between
runs, apart from its daughter at a division) turns its first elements'
attachments toward where their proximal ends were.  To change an element's
tension, set its resting length.

Each step (see :meth:`Simulation.run`): after the behaviours, every terminal
element longer than ``max_length`` splits (discretisation); in the
mechanics phase each element's point mass moves under its own spring, what
its daughters pass on and its contacts with spheres and cylinders; somata
feel the cylinders' contacts (and, with ``soma_feels_tension``, their first
elements' pull).  Tree changes (elongation, retraction, splits, branches)
take effect at once, in the order of the elements' uids, so new elements get
the same uids whatever the thread count.  When an agent is removed, the
neurite elements attached to it are removed with it (their subtrees too):
no uid ever points to a missing agent.

Under MPI (:mod:`biosim.parallel`) an element belongs to the rank whose
block holds its midpoint, so a tree may span ranks.  Each rank runs the
growth behaviours, tree operations and mechanics on its own elements and on
its aura alike (the aura is two tree links wider than the contacts need, so
every element an own element reads is computed as its owner computes it);
elements at the aura's outer edge, whose mother or daughters the rank lacks,
keep their state.  Operations that make elements are applied to the rows
their owners chose, and new uids are counted over every rank, as one process
counts them.  A removed agent's subtree is removed round by round across the
ranks.  Results are bit-identical to one process for any number of ranks.
Between runs a rank holds only its own elements: the tree operations are
refused there (call them from behaviours, rules or actions).

Time: BioDynaMo's step is 0.01 h = 0.6 min and its speeds are µm/h; biosim
speeds are µm/min (BioDynaMo's speed / 60), and a neurite's point mass moves
by force x dt / ``damping`` (the default 0.6 min moves it by the force per
0.6 min, as BioDynaMo moves it by the force per step).
"""
import numpy as np

from . import _validate as V
from .kernels.cpu import forces as FK
from .kernels.cpu import neurites as NK

COLUMNS = (
    ("distal", np.float64, 0.0, (3,)),
    ("resting_length", np.float64, 1.0, ()),
    ("spring_constant", np.float64, 10.0, ()),
    ("adherence", np.float64, 0.1, ()),
    ("mother", np.int64, -1, ()),
    ("daughter_left", np.int64, -1, ()),
    ("daughter_right", np.int64, -1, ()),
    ("branch_order", np.int32, 0, ()),
    ("swc_type", np.int8, 3, ()),
)
# columns derived on every read (AgentTable.derive), not stored: (name, shape, what they derive from)
DERIVED = (("axis", (3,), "distal and position: 2 (distal - position)"),
           ("length", (), "distal and position: |axis|"),
           ("tension", (), "the length, resting_length and spring_constant: k (L - R) / R"),
           ("attachment", (3,), "a first element's proximal end and its soma's position: the direction between"))
# what a new element copies from the element it grows from
_COPIED = ("diameter", "spring_constant", "adherence", "branch_order", "swc_type")
_BRANCH_STREAM = 0x4E42  # random perpendiculars of Neurites.branch/bifurcate without directions


class NeuriteMechanics:
    """How neurite elements move (BioDynaMo's NeuriteElement mechanics).

    Parameters
    ----------
    damping : float, default 0.6
        min: a point mass moves by force x dt / damping per step (0.6 min
        is BioDynaMo's step, where the move equals the force).
    max_displacement : float, default 3.0
        Cap on a point mass's move per step, µm.
    neurite_scale : float, default 0.01
        Factor on the forces between cylinders and, on an element touched by
        one, on its own spring and its daughters' pull (BioDynaMo's h/m
        "to avoid kinks"); 1 disables it.
    soma_feels_tension : bool, default False
        Whether a soma is pulled by the springs of its first elements (and
        the contact forces they pass on).  BioDynaMo's NeuronSoma does not
        feel them; Cx3D's PhysicalSphere did.
    max_length : float, default 15.0
        µm: a terminal element longer than this splits in two (the new
        proximal element takes 90% of it), after the behaviours of each step.
    springs : {"implicit", "explicit"}, default "implicit"
        How the springs at a point mass enter its move.  "explicit" is
        BioDynaMo's move = force x dt / damping, which overshoots and
        oscillates (kinks) once an element's k dt / (R damping) exceeds 2:
        BioDynaMo's 2 µm elements in its demos, k = 10, at its step.
        "implicit" solves (I + dt/damping K) move = force x dt / damping
        with K the stiffness of the springs at the point (its own and its
        pulling daughters', (k / R) along each axis): the same force
        balance, relaxed without overshoot for any step.
    """

    SPRINGS = ("implicit", "explicit")

    def __init__(self, damping=0.6, max_displacement=3.0, neurite_scale=0.01, soma_feels_tension=False,
                 max_length=15.0, springs="implicit"):
        self.damping = V.positive("damping", damping)
        self.max_displacement = V.positive("max_displacement", max_displacement, allow_inf=True)
        self.neurite_scale = V.positive("neurite_scale", neurite_scale, allow_zero=True)
        self.soma_feels_tension = V.boolean("soma_feels_tension", soma_feels_tension)
        self.max_length = V.positive("max_length", max_length)
        self.springs = V.choice("springs", springs, self.SPRINGS)

    def parameters(self):
        return dict(vars(self))

    def __repr__(self):
        return "NeuriteMechanics(" + ", ".join(f"{k}={v!r}" for k, v in self.parameters().items()) + ")"


def _unit_rows(name, value, m):
    """(m, 3) unit vectors from one (3,) vector or one per row; zero or
    non-finite ones refused, naming the row."""
    try:
        d = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (3,) vector or an (m, 3) array of numbers, got {value!r}") from None
    if d.shape == (3,):
        d = np.broadcast_to(d, (m, 3)).copy()
    if d.shape != (m, 3):
        raise ValueError(f"{name} must be one (3,) vector or one per element ({m}, 3), got shape {d.shape}")
    norm = np.sqrt(np.einsum("ij,ij->i", d, d))
    bad = np.flatnonzero(~(np.isfinite(norm) & (norm > 0)))
    if bad.size:
        raise ValueError(f"{name} row {int(bad[0])} = {d[bad[0]].tolist()} has no direction: a direction must be "
                         f"finite and of non-zero length")
    return d / norm[:, None]


def _per_row(name, value, m, allow_zero=False):
    """One positive finite float per row from a scalar or an (m,) array."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a number or one per element, got {value!r}")
    arr = np.broadcast_to(arr.astype(np.float64), (m,)) if arr.ndim == 0 else arr.astype(np.float64)
    if arr.shape != (m,):
        raise ValueError(f"{name} must be a number or one per element ({m},), got shape {arr.shape}")
    ok = np.isfinite(arr) & ((arr >= 0) if allow_zero else (arr > 0))
    if not ok.all():
        bad = arr[~ok][0]
        raise ValueError(f"{name} must be finite and {'>= 0' if allow_zero else '> 0'}, got {bad!r}")
    return np.array(arr)


def _perpendiculars(axis, u):
    """Unit vectors perpendicular to each row of ``axis`` (unit), at the
    angle 2 pi u about it from a fixed perpendicular."""
    a = axis
    helper = np.where(np.abs(a[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    e1 = np.cross(a, helper)
    e1 /= np.linalg.norm(e1, axis=1)[:, None]
    e2 = np.cross(a, e1)
    t = 2 * np.pi * np.asarray(u)[:, None]
    return np.cos(t) * e1 + np.sin(t) * e2


class Neurites:
    """The neurite elements of a simulation (``sim.neurites``, made by the
    first :meth:`Simulation.add_neurites`): their populations, their
    mechanics and the tree operations, which take the elements' uids
    (behaviours and actions call them)."""

    def __init__(self, sim, mechanics=None):
        if sim.backend.on_device:
            raise ValueError(f"neurites run on the CPU backend only (so far); got device={sim.device!r}: use "
                             f"device=\"cpu\"")
        if sim.boundary == "periodic" and sim.ranks > 1:
            raise ValueError(f"neurites in a periodic box run in one process (so far), not on {sim.ranks} MPI ranks: "
                             f"use boundary='closed' or 'open', or run without mpiexec")
        self.sim = sim
        self.mechanics = NeuriteMechanics() if mechanics is None else mechanics
        self.types = []  # codes of the neurite populations
        for name, dtype, default, shape in COLUMNS:
            sim.agents.add_column(name, dtype, default, shape)
        for name, shape, sources in DERIVED:
            sim.agents.derive(name, getattr(self, f"_{name}_column"), np.float64, shape, sources)
        self._row_of = np.zeros(0, np.int32)
        self._pushes = None
        self._held_attach = None  # (first elements' uids, sorted; their attachments) read at the step's start
        sim.agents.on_commit = self._after_commit
        sim.force_terms["neurites"] = self._sphere_term

    @property
    def mechanics(self):
        """The :class:`NeuriteMechanics` in use."""
        return self._mechanics

    @mechanics.setter
    def mechanics(self, value):
        if not isinstance(value, NeuriteMechanics):
            raise TypeError(f"neurite mechanics must be bs.NeuriteMechanics(...), got {value!r}")
        self._mechanics = value

    def to_dict(self):
        return {"types": list(self.types), "mechanics": self.mechanics.parameters()}

    @classmethod
    def from_dict(cls, sim, d):
        """The neurites of a checkpoint or a run's metadata (``to_dict``), for
        ``sim`` whose populations exist; ValueError/TypeError on bad values."""
        types = d.get("types")
        codes = [p.code for p in sim.populations.values()]
        if not isinstance(types, list) or not all(isinstance(c, int) and c in codes for c in types):
            raise ValueError(f"neurite types must be population codes ({codes}), got {types!r}")
        params = d.get("mechanics")
        if not isinstance(params, dict):
            raise ValueError(f"neurite mechanics must be a dict of NeuriteMechanics parameters, got {params!r}")
        try:
            mechanics = NeuriteMechanics(**params)
        except TypeError as e:
            raise ValueError(f"neurite mechanics {params!r}: {e}") from None
        self = cls(sim, mechanics)
        self.types = list(types)
        sim.neurites = self
        return self

    # -- lookups ------------------------------------------------------------------
    def _key(self):
        """Changes whenever rows may have moved: agents added (the count and
        next uid), or rows moved or dropped (the table's layout count)."""
        t = self.sim.agents
        return len(t), t.next_uid, t.layout

    def _dd(self):
        """The MPI decomposition while each rank holds its own agents and
        their aura (a step), else None (one process, or the whole
        simulation gathered on every rank for actions)."""
        dd = self.sim._dd
        return None if dd is None or dd.whole_sim else dd

    def _box(self):
        """(lower corner, edge lengths, periodic flags per axis) of the box,
        what the kernels take to keep elements whole across periodic faces."""
        box = self.sim.box
        periodic = np.full(3, self.sim.boundary == "periodic")
        return np.asarray(box.lower, np.float64), np.asarray(box.length, np.float64), periodic

    def _shortest(self, d):
        """Vectors ``d`` (m, 3) µm the shortest way round a periodic box (as
        the kernels' min_image); unchanged in a closed or open one."""
        if self.sim.boundary != "periodic":
            return d
        L = np.asarray(self.sim.box.length, np.float64)
        return d - L * np.rint(d / L)

    # -- derived columns (see the module docstring) -------------------------------
    def axis(self, rows):
        """Axes (m, 3) µm of the neurite rows ``rows``: proximal to distal,
        2 (distal - position)."""
        t = self.sim.agents
        out = np.empty((np.size(rows), 3))
        NK.axes(np.asarray(rows, np.int64), t["distal"], t.position, *self._box()[1:], out)
        return out

    def length(self, rows):
        """Lengths (m,) µm of the neurite rows ``rows``: the norms of their axes."""
        t = self.sim.agents
        out = np.empty(np.size(rows))
        NK.lengths(np.asarray(rows, np.int64), t["distal"], t.position, *self._box()[1:], out)
        return out

    def unit_axis(self, rows):
        """Unit axes (m, 3) of the neurite rows ``rows``."""
        return self.axis(rows) / self.length(rows)[:, None]

    def tension(self, rows):
        """Tensions (m,) of the neurite rows ``rows``, k (L - R) / R."""
        t = self.sim.agents
        out = np.empty(np.size(rows))
        NK.tensions(np.asarray(rows, np.int64), t["distal"], t.position, t["resting_length"], t["spring_constant"],
                    *self._box()[1:], out)
        return out

    def _at_rest(self, distal, mid):
        """Resting lengths (m,) µm of new elements at rest: their lengths as
        derived from their distal points and midpoints (m, 3), so their
        tension is exactly 0."""
        out = np.empty(len(distal))
        NK.lengths(np.arange(len(distal)), np.ascontiguousarray(distal, np.float64),
                   np.ascontiguousarray(mid, np.float64), *self._box()[1:], out)
        return out

    def _column(self, fn, shape):
        """A derived column's values for every row (0 for rows that are not
        neurite elements)."""
        t = self.sim.agents
        out = np.zeros((len(t),) + shape)
        rows = np.flatnonzero(self.is_cyl()[t.type]) if self.types else np.zeros(0, np.int64)
        out[rows] = fn(rows)
        return out

    def _axis_column(self, table):
        return self._column(self.axis, (3,))

    def _length_column(self, table):
        return self._column(self.length, ())

    def _tension_column(self, table):
        return self._column(self.tension, ())

    def first_rows(self, rows):
        """Those of the neurite rows ``rows`` (whose mothers this process
        holds) whose mother is a soma (first elements), in their order."""
        t = self.sim.agents
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        mask = np.empty(rows.size, np.uint8)
        NK.first_mask(rows, t.type, self.is_cyl(), t["mother"], self.row_of(), mask)
        return rows[mask.view(bool)]

    def attachment(self, first):
        """Unit directions (m, 3) from their somata's centres to the proximal
        ends of the first elements ``first`` (rows)."""
        t = self.sim.agents
        out = np.empty((np.size(first), 3))
        NK.attachments(np.asarray(first, np.int64), t.position, t["distal"], t["mother"], self.row_of(),
                       *self._box()[1:], out)
        return out

    def _attachment_column(self, table):
        t = self.sim.agents
        out = np.zeros((len(t), 3))
        if self.types:
            rows = np.flatnonzero(self.is_cyl()[t.type])
            # under MPI between runs a rank may lack an element's mother (left 0 there)
            first = self.first_rows(rows[self._alive(t["mother"][rows])])
            out[first] = self.attachment(first)
        return out

    def _wrapped(self, x):
        """Points ``x`` (m, 3) µm wrapped into a periodic box (as the kernels'
        wrap_coordinate: points inside are unchanged); others unchanged."""
        if self.sim.boundary != "periodic":
            return x
        lower, L, _ = self._box()
        v = x - lower
        out = (v < 0) | (v >= L)
        v = np.where(out, v - L * np.floor(v / L), v)
        v = np.where(out & (v >= L), 0.0, v)
        return np.where(out, lower + v, x)

    def _check_rank_local(self, what):
        dd = self._dd()
        if dd is not None and not self.sim.agents._in_step:
            raise RuntimeError(f"{what}: under MPI, between runs a rank holds only its own elements, not their "
                               f"mothers and daughters on other ranks; change neurites in a behaviour, a rule or "
                               f"an action (inside run()), where every rank sees the trees it needs")

    def _linked(self, rows):
        """Mask: which ``rows`` this rank may change the geometry of.  In one
        process all; under MPI those whose mother it holds (the others, at
        the aura's outer edge, keep their state: no own element reads
        them)."""
        if self._dd() is None:
            return np.ones(rows.size, bool)
        return self._alive(self.sim.agents["mother"][rows])

    def _complete(self, rows):
        """Under MPI the ``rows`` whose mother and daughters this rank holds:
        the elements whose move it computes (the others, at the aura's outer
        edge, stay where they are); in one process ``rows``."""
        if self._dd() is None or rows.size == 0:
            return rows
        t = self.sim.agents
        ok = self._linked(rows)
        for col in ("daughter_left", "daughter_right"):
            d = t[col][rows]
            ok &= (d < 0) | self._alive(d)
        return rows[ok]

    def probe(self, m):
        """(m, 3): the first ``m`` rows' positions, with neurite elements'
        distal points instead of their midpoints (what MPI's movement check
        follows: a midpoint jumps when its element splits)."""
        t = self.sim.agents
        p = t.position[:m]
        if not self.types:
            return p
        cyl = self.is_cyl()[t.type[:m]].astype(bool)
        return np.where(cyl[:, None], t["distal"][:m], p)

    def is_cyl(self):
        """(ntypes,) uint8: 1 for the neurite populations' type codes."""
        key = (len(self.sim.populations), tuple(self.types))
        if getattr(self, "_cyl_key", None) != key:
            flag = np.zeros(max(len(self.sim.populations), 1), np.uint8)
            flag[self.types] = 1
            self._cyl, self._cyl_key = flag, key
        return self._cyl

    def rows(self):
        """Rows (increasing) of every neurite element."""
        key = (self._key(), tuple(self.types))
        old = getattr(self, "_rows_key", None)
        if old != key:
            t = self.sim.agents
            n = len(t)
            dtype = np.int32 if t.capacity < 2**31 else np.int64  # 4 bytes an element
            if not self.types:
                self._rows_cache = np.zeros(0, dtype)
            elif old is not None and old[0][2:] == key[0][2:] and old[1] == key[1] and old[0][0] <= n:
                start = old[0][0]  # rows appended only: the new ones added
                more = (start + np.flatnonzero(self.is_cyl()[t.type[start:n]])).astype(dtype)
                self._rows_cache = np.concatenate([self._rows_cache, more]) if more.size else self._rows_cache
            else:
                self._rows_cache = np.flatnonzero(self.is_cyl()[t.type]).astype(dtype)
            self._rows_key = key
        return self._rows_cache

    def row_of(self):
        """uid -> row for the live agents (current rows).  After appends only
        (the same rows, more of them) only the new rows are mapped."""
        key = self._key()
        old = getattr(self, "_map_key", None)
        if old != key:
            t = self.sim.agents
            if self._row_of.size < t.next_uid:
                # rows as int32 (a table of 2^31 rows or more: int64), grown by a quarter at a time
                grown = np.zeros(max(t.next_uid, self._row_of.size + self._row_of.size // 4),
                                 np.int32 if t.capacity < 2**31 else np.int64)
                grown[: self._row_of.size] = self._row_of
                self._row_of = grown
            n = len(t)
            appended = old is not None and old[2:] == key[2:] and old[0] <= n
            start = old[0] if appended else 0
            if not appended and self.sim._dd is not None:
                # under MPI a tree may point to elements on other ranks: those uids map to row 0, so every
                # lookup stays inside the table (the aura is wide enough that no own element reads them)
                self._row_of[: t.next_uid] = 0
            NK.row_map(t.uid[start:], n - start, self._row_of, start)
            self._map_key = key
        return self._row_of

    def _rows_of(self, uids, what="uid"):
        t = self.sim.agents
        uids = np.atleast_1d(np.asarray(uids))
        if uids.dtype.kind not in "iu":
            raise TypeError(f"{what} must be agent uids (integers), got {uids!r}")
        try:
            rows = t.rows_of(uids.astype(np.int64))
        except KeyError as e:
            raise ValueError(f"{what}: {e.args[0]} in this simulation") from None
        return rows

    def _element_rows(self, uids, what="neurite"):
        """Rows of neurite elements by uid, in increasing uid order."""
        uids = np.unique(np.atleast_1d(np.asarray(uids, dtype=np.int64)))
        rows = self._rows_of(uids, what)
        flag = self.is_cyl()[self.sim.agents.type[rows]]
        if not flag.all():
            raise ValueError(f"{what}: agent uid {int(uids[np.flatnonzero(flag == 0)[0]])} is not a neurite element")
        return rows

    def _proximal(self, rows):
        """The proximal ends (m, 3) of the neurite rows: their mothers' distal
        points; a first element's (on the soma's surface) its own, distal -
        axis, as are those of elements whose mother is beyond this MPI
        rank's aura (valid while their distal points have not moved since
        their midpoints were set)."""
        t = self.sim.agents
        prox = t["distal"][rows] - self.axis(rows)
        m = self.row_of()[t["mother"][rows]]
        on = self._linked(rows)
        on[on] = self.is_cyl()[t.type[m[on]]].astype(bool)
        prox[on] = t["distal"][m[on]]
        return prox

    def _set_geometry(self, rows, tension=None, proximal=None):
        """The midpoint of ``rows`` from their distal points and their
        ``proximal`` ends, and the resting length that keeps the tension
        (R = k L / (T + k)), T ``tension``.  Both default to the rows' now
        (:meth:`_proximal`, :meth:`tension`), which needs their distal
        points unmoved since their midpoints were set; :meth:`_update` keeps
        the resting length instead."""
        t = self.sim.agents
        T = self.tension(rows) if tension is None else tension
        proximal = self._proximal(rows) if proximal is None else proximal
        axis = self._shortest(t["distal"][rows] - proximal)
        t.position[rows] = self._wrapped(t["distal"][rows] - 0.5 * axis)
        L = self.length(rows)  # as derived from the new midpoints
        k = t["spring_constant"][rows]
        t["resting_length"][rows] = k * L / (T + k)

    def _agree(self, rows):
        """Before a tree operation that makes elements from ``rows`` (in uid
        order): (keep, index, total).  In one process every row is kept,
        index is 0, 1, ... and total the row count.  Under MPI each rank
        runs the operation on its own rows and the aura's alike; the own
        rows' owners decide: ``keep`` drops the aura rows their owner did not
        choose (and those whose mother this rank lacks, see :meth:`_linked`),
        ``index`` is each kept row's place among every rank's chosen rows (by
        uid) and ``total`` their number, so the new elements get the uids one
        process gives.  A collective call under MPI."""
        dd = self._dd()
        if dd is None:
            return np.ones(rows.size, bool), np.arange(rows.size), rows.size
        uid = self.sim.agents.uid[rows]
        chosen = np.sort(np.concatenate(dd.comm.allgather(uid[rows < dd.n_own])))
        pos = np.minimum(np.searchsorted(chosen, uid), max(chosen.size - 1, 0))
        keep = (chosen[pos] == uid) if chosen.size else np.zeros(rows.size, bool)
        keep &= self._linked(rows)
        return keep, pos[keep], chosen.size

    def _append(self, columns, types, index, k=1, total=None):
        """Append new elements: ``k`` per parent, their columns as arrays in
        parent order (a parent's k together), ``index`` the parents' places
        and ``total`` their number (:meth:`_agree`); returns their uids."""
        t = self.sim.agents
        start = len(t)
        index = np.asarray(index, np.int64)
        uids = t.next_uid + (k * index[:, None] + np.arange(k)).ravel()
        uids = t.append(columns, int(types[0]) if len(types) else 0, uids=uids, issued=k * int(total))
        t._data["type"][start:start + len(uids)] = types
        t.total_births += len(uids)
        self.sim._grid_valid = False
        return uids

    def _alive(self, uids):
        """Which of ``uids`` (-1: none) name a live agent, through the uid
        map (no sort of every uid)."""
        t = self.sim.agents
        u = np.asarray(uids, dtype=np.int64)
        n = len(t)
        ok = (u >= 0) & (u < t.next_uid)
        if n == 0:
            return ok & False
        r = self.row_of()[np.where(ok, u, 0)]
        r = np.where(ok & (r < n), r, 0)
        return ok & (t.uid[r] == u)

    def _remove(self, uids):
        """Remove agents now (a tree operation's elements; live, distinct uids)."""
        t = self.sim.agents
        uids = np.asarray(uids, dtype=np.int64)
        if uids.size == 0:
            return
        keep = np.ones(len(t), dtype=bool)
        keep[self.row_of()[uids]] = False
        t.keep(np.flatnonzero(keep))
        dd = self.sim._dd
        if dd is not None and t._in_step:  # the own rows stay first
            dd.n_own = int(keep[:dd.n_own].sum())
        t.total_deaths += uids.size
        self.sim._grid_valid = False

    def _relink(self, mother_rows, old, new):
        """In each mother row (a neurite), the daughter pointer equal to
        ``old`` (uid) becomes ``new``."""
        t = self.sim.agents
        for col in ("daughter_left", "daughter_right"):
            c = t[col]
            hit = c[mother_rows] == old
            c[mother_rows[hit]] = np.asarray(new)[hit]

    def _tidy_daughters(self, rows, gone=None):
        """Daughter pointers of ``rows`` to agents that are gone (not live
        here, or with ``gone`` among those uids) dropped; a lone daughter
        made the left one."""
        t = self.sim.agents
        left = t["daughter_left"][rows]
        right = t["daughter_right"][rows]
        if gone is None:
            lok, rok = self._alive(left), self._alive(right)
        else:
            lok = (left >= 0) & ~np.isin(left, gone)
            rok = (right >= 0) & ~np.isin(right, gone)
        t["daughter_left"][rows] = np.where(lok, left, np.where(rok, right, -1))
        t["daughter_right"][rows] = np.where(lok & rok, right, -1)

    # -- building -------------------------------------------------------------------
    def add(self, soma, direction, diameter, length, name, spring_constant, adherence, swc_type):
        sim = self.sim
        t = sim.agents
        pop = sim.populations.get(name)
        if pop is not None and pop.code not in self.types:
            raise ValueError(f"population {name!r} holds spherical agents; give the neurites a population name of "
                             f"their own (name=...)")
        if hasattr(soma, "uids") and hasattr(soma, "code"):
            if soma.code in self.types:
                raise ValueError(f"soma: population {soma.name!r} is a neurite population; a soma is a spherical "
                                 f"agent")
            uids = soma.uids
        else:
            uids = np.atleast_1d(np.asarray(soma))
            if uids.dtype.kind not in "iu" or uids.ndim != 1:
                raise TypeError(f"soma must be a Population or an array of agent uids, got {soma!r}")
        m = uids.size
        if m == 0:
            raise ValueError("soma: no agents to extend neurites from (an empty population or uid list)")
        rows = self._rows_of(uids, "soma")
        cyl = self.is_cyl()[t.type[rows]] if self.types else np.zeros(m, np.uint8)
        if cyl.any():
            raise ValueError(f"soma: agent uid {int(uids[np.flatnonzero(cyl)[0]])} is a neurite element; a soma is "
                             f"a spherical agent")
        u = _unit_rows("direction", direction, m)
        d = _per_row("diameter", diameter, m)
        L = _per_row("length", length, m)
        k = _per_row("spring_constant", spring_constant, m)
        a = _per_row("adherence", adherence, m, allow_zero=True)
        swc = V.positive_int("swc_type", swc_type, allow_zero=True)
        if swc > 127:
            raise ValueError(f"swc_type must be an SWC structure type 0..127, got {swc_type!r}")
        proximal = t.position[rows] + 0.5 * t.diameter[rows][:, None] * u
        distal = self._wrapped(proximal + L[:, None] * u)
        mid = self._wrapped(distal - 0.5 * L[:, None] * u)
        pop = sim.add_agents(name, mid, d, distal=distal, resting_length=self._at_rest(distal, mid),
                             spring_constant=k, adherence=a,
                             mother=t.uid[rows].astype(np.int64), daughter_left=-1, daughter_right=-1,
                             branch_order=0, swc_type=swc)
        if pop.code not in self.types:
            self.types.append(pop.code)
        return pop

    # -- tree operations (uids in, at once) --------------------------------------------
    def terminal_rows(self, population):
        """Rows (increasing) of the population's terminal elements (no left
        daughter)."""
        t = self.sim.agents
        out = t.scratch((len(t),), np.int64)  # a fresh n-row array each call cost more in page faults than the scan
        return out[:NK.terminal_rows(t.type, population.code, t["daughter_left"], len(t), out)].copy()

    def tip_directions(self, rows, grad, stream, persistence, randomness, weight):
        """Growth directions (m, 3) of the tips ``rows``: persistence x axis
        + randomness x U(-1, 1)^3 (the tip's uid, the step and ``stream``) +
        weight x the unit vector of ``grad`` (a row per tip, or none)."""
        t = self.sim.agents
        out = np.empty((rows.size, 3))
        NK.tip_directions(rows, t["distal"], t.position, *self._box()[1:], t.uid, grad, self.sim.seed, self.sim.step,
                          stream, persistence, randomness, weight, out)
        return out

    def terminal(self, rows):
        return self.sim.agents["daughter_left"][rows] < 0

    def elongate(self, uids, distance, direction):
        """Move the distal end of each terminal element in ``uids`` by
        ``distance`` µm (one value, or one per element) along ``direction``
        (one (3,) vector or one per element), only forward: an element whose
        axis makes more than 90° with the direction does not move.  The
        element's tension becomes 0 (its resting length its new length).
        BioDynaMo's ElongateTerminalEnd(speed, direction) moves by speed x dt."""
        self._check_rank_local("elongate")
        rows = self._element_rows(uids)
        self._elongate_rows(rows, _per_row("distance", distance, rows.size, allow_zero=True),
                            _unit_rows("direction", direction, rows.size))

    def _elongate_rows(self, rows, distance, direction, rate=0.0, floor=0.0):
        """Elongate the terminal ones of ``rows`` by ``distance`` (µm, one
        per row) along ``direction`` (m, 3) of any non-zero length (see
        :meth:`elongate`), then change their diameters by ``rate`` µm (not
        below ``floor`` when shrinking)."""
        t = self.sim.agents
        term = self.terminal(rows) & self._linked(rows)
        if not term.all():
            rows, distance, direction = rows[term], distance[term], direction[term]
        if rows.size == 0:
            return
        NK.grow_tips(np.ascontiguousarray(rows, dtype=np.int64), np.ascontiguousarray(direction, dtype=np.float64),
                     np.ascontiguousarray(distance, dtype=np.float64), t.position, t.diameter, t.type, self.is_cyl(),
                     t["distal"], t["mother"], self.row_of(), t["resting_length"], float(rate), float(floor),
                     *self._box())
        self.sim._grid_valid = False

    def retract(self, uids, distance):
        """Retract each terminal element in ``uids`` by ``distance`` µm
        (BioDynaMo's RetractTerminalEnd with speed x dt), keeping its
        tension: longer than distance + 0.1 µm, it shortens; else, attached
        to the soma, it is removed; else, its mother having no other
        daughter, it merges with its mother and retracts on; else it is
        removed (and its mother keeps its other daughter, as the left one).
        Elements retracted together decide from the tree as it was before
        the call, so two sibling tips that both reach the branch point are
        both removed."""
        self._check_rank_local("retract")
        rows = self._element_rows(uids)
        self._retract_rows(rows, _per_row("distance", distance, rows.size, allow_zero=True))

    def _retract_rows(self, rows, distance):
        t = self.sim.agents
        keep = self.terminal(rows) & self._linked(rows)
        uids, s = t.uid[rows[keep]], distance[keep]
        while uids.size:
            rows = self.row_of()[uids]
            L = self.length(rows)
            # lengths within 1e-9 µm of the threshold count as above it: the derived length carries the rounding
            # of the midpoint (about 1e-15 µm a step near the soma, 1e-13 after BioDynaMo's 200 retractions), which
            # must not decide whether an element goes (BioDynaMo's test: removed at the 70th step of 0.1 µm)
            short = L > s + (0.1 - 1e-9)
            r = rows[short]
            if r.size:
                factor = (L[short] - s[short]) / L[short]
                T = self.tension(r)  # kept: read before the distal points move, as the proximal ends
                prox = self._proximal(r)
                t["distal"][r] = self._wrapped(prox + self.axis(r) * factor[:, None])
                self._set_geometry(r, T, prox)
            ok = ~short & self._linked(rows)  # under MPI a merged element's new mother may be beyond the aura
            rows, s = rows[ok], s[ok]
            if rows.size == 0:
                break
            row_of = self.row_of()
            mrows = row_of[t["mother"][rows]]
            soma = ~self.is_cyl()[t.type[mrows]].astype(bool)
            merge = ~soma & (t["daughter_right"][mrows] < 0)
            gone = t.uid[rows[~merge]]
            # the mothers (neurites) that lose a daughter: tidied after the removal
            losing = t.uid[mrows[~merge & ~soma]]
            merging, merged = rows[merge], mrows[merge]
            # merge: the element takes its mother's place (the mother's mother and proximal end)
            prox = self._proximal(merged)
            grand = t["mother"][merged]
            grows = row_of[grand]
            gcyl = self.is_cyl()[t.type[grows]].astype(bool)
            self._relink(grows[gcyl], t.uid[merged][gcyl], t.uid[merging][gcyl])
            t["mother"][merging] = grand
            self._set_geometry(merging, proximal=prox)
            keep_uids = t.uid[merging]
            keep_s = s[merge]
            self._remove(np.concatenate([gone, t.uid[merged]]))
            # the removed elements had no daughters (tips, or a merged mother whose tip took its place), so
            # only their mothers change: each keeps its other daughter, as the left one (under MPI, the
            # mothers this rank holds)
            losing = np.unique(losing)
            self._tidy_daughters(self.row_of()[losing[self._alive(losing)]])
            uids, s = keep_uids, keep_s
        self.sim._grid_valid = False

    def split(self, uids, distal_portion=0.1):
        """Split each element in ``uids`` in two: a new proximal element
        takes ``1 - distal_portion`` of its length and resting length and
        takes its place in the tree (BioDynaMo's SplitNeuriteElement).
        Returns the new elements' uids (in the order of ``uids``, sorted)."""
        self._check_rank_local("split")
        portion = V.positive("distal_portion", distal_portion)
        if portion >= 1:
            raise ValueError(f"distal_portion must be in (0, 1), got {distal_portion!r}")
        return self._split_rows(self._element_rows(uids), portion)

    def _split_rows(self, rows, portion, agreed=None):
        """Split ``rows`` (in uid order); ``agreed``: their (index, total)
        when the caller already ran :meth:`_agree`."""
        t = self.sim.agents
        if agreed is None:
            keep, index, total = self._agree(rows)
            rows = rows[keep]
        else:
            index, total = agreed
        if rows.size == 0:
            self._append({}, (), (), 1, total)  # other ranks' elements: the next uid moves on
            return np.zeros(0, np.int64)
        old = t.uid[rows]
        cols = {c: t[c][rows].copy() for c in _COPIED + ("mother",)}
        prox = self._proximal(rows)  # the new elements' proximal ends: the split ones' now
        cols["distal"] = self._wrapped(t["distal"][rows] - portion * self.axis(rows))
        cols["resting_length"] = (1 - portion) * t["resting_length"][rows]
        cols["daughter_left"] = old
        cols["daughter_right"] = np.full(rows.size, -1, np.int64)
        cols["position"] = cols["distal"]
        types = t.type[rows].copy()
        mothers = t["mother"][rows].copy()
        new = self._append(cols, types, index, 1, total)
        row_of = self.row_of()
        rows, prow = row_of[old], row_of[new]
        mrows = row_of[mothers]
        cyl = self.is_cyl()[t.type[mrows]].astype(bool)
        self._relink(mrows[cyl], old[cyl], new[cyl])
        t["mother"][rows] = new
        t["resting_length"][rows] *= portion
        by_row = np.argsort(prow, kind="stable")
        # each reads only distal points, which are set, and the new elements' proximal ends
        self._update(np.concatenate([prow, rows]), prow[by_row], prox[by_row])
        return new

    def _update(self, rows, held_rows=None, held=None):
        """The midpoints of ``rows`` from their distal and proximal points (one
        kernel pass); their axes, lengths and tensions follow.  A first
        element's proximal end is ``held[k]`` where ``held_rows[k]`` (sorted)
        is its row, else its own (:meth:`_proximal`)."""
        t = self.sim.agents
        if held_rows is None:
            held_rows, held = np.zeros(0, np.int64), np.zeros((0, 3))
        NK.dependent(np.ascontiguousarray(rows, dtype=np.int64), t.position, t.type, self.is_cyl(), t["distal"],
                     t["mother"], self.row_of(), np.ascontiguousarray(held_rows, dtype=np.int64),
                     np.ascontiguousarray(held, dtype=np.float64), *self._box())

    def discretize(self):
        """Split every terminal element longer than ``mechanics.max_length``
        (BioDynaMo's RunDiscretization: the new proximal element takes 90%)."""
        if not self.types:
            return
        t = self.sim.agents
        n = len(t)
        out = t.scratch((n,), np.int64)
        rows = out[:NK.long_tips(t.type, self.is_cyl(), t["daughter_left"], t["distal"], t.position,
                                 *self._box()[1:], n, self.mechanics.max_length, out)]
        if rows.size or self._dd() is not None:  # under MPI a collective call on every rank
            self._split_rows(rows[np.argsort(t.uid[rows], kind="stable")], 0.1)

    def _grow_from(self, rows, unit, length, diameter):
        """Columns of new elements growing from the distal ends of ``rows``."""
        t = self.sim.agents
        cols = {c: t[c][rows].copy() for c in _COPIED}
        cols["diameter"] = diameter
        cols["branch_order"] = cols["branch_order"] + 1
        cols["mother"] = t.uid[rows].copy()
        axis = unit * length[:, None]
        cols["distal"] = self._wrapped(t["distal"][rows] + axis)
        cols["position"] = self._wrapped(t["distal"][rows] + 0.5 * axis)
        cols["resting_length"] = self._at_rest(cols["distal"], cols["position"])
        cols["daughter_left"] = cols["daughter_right"] = np.full(rows.size, -1, np.int64)
        return cols

    def bifurcate(self, uids, length=1.0, diameter=None, directions=None):
        """Each terminal element in ``uids`` grows two daughters of ``length``
        µm at its distal end (BioDynaMo's Bifurcate): ``directions`` a pair
        (left, right) of (3,) vectors or (m, 3) arrays, or None for two
        directions 60° apart in a random plane through the axis; a
        direction more than 90° from the axis loses its backward part.
        ``diameter`` (default the element's) may be a pair too.  Returns the
        (left, right) uids; elements that are not terminal are skipped."""
        self._check_rank_local("bifurcate")
        rows = self._element_rows(uids)
        rows = rows[self.terminal(rows)]
        m = rows.size
        L = _per_row("length", length, m)
        if isinstance(diameter, tuple) and len(diameter) == 2:
            dl, dr = diameter
        else:
            dl = dr = diameter
        t = self.sim.agents
        dl = t.diameter[rows].copy() if dl is None else _per_row("diameter", dl, m)
        dr = t.diameter[rows].copy() if dr is None else _per_row("diameter", dr, m)
        if directions is None:
            step = self.sim.step
            u = np.empty(m)
            from .kernels.cpu.rng import uniform_array

            uniform_array(self.sim.seed, t.uid[rows].astype(np.int64), step, _BRANCH_STREAM, 0, u)
            ul, ur = self.random_pair(rows, u)
        else:
            try:
                first, second = directions
            except (TypeError, ValueError):
                raise TypeError(f"directions must be a (left, right) pair of directions, got {directions!r}") from None
            ul = _unit_rows("directions[0]", first, m)
            ur = _unit_rows("directions[1]", second, m)
        return self._bifurcate_rows(rows, L, dl, dr, ul, ur)

    def random_pair(self, rows, u):
        """Two unit directions 60° apart, ±30° from each row's axis, in the
        plane at angle 2 pi u about it."""
        t = self.sim.agents
        a = self.unit_axis(rows)
        w = _perpendiculars(a, u)
        c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
        return c * a + s * w, c * a - s * w

    def _forward(self, rows, unit):
        """Directions with the backward part (along a row's axis) removed
        when they make more than 90° with it; normalised."""
        t = self.sim.agents
        a = self.axis(rows)
        dot = np.einsum("ij,ij->i", unit, a)
        back = dot < 0
        unit = unit.copy()
        unit[back] -= (dot[back] / np.einsum("ij,ij->i", a[back], a[back]))[:, None] * a[back]
        norm = np.linalg.norm(unit, axis=1)
        return unit / np.where(norm > 0, norm, 1.0)[:, None]

    def _bifurcate_rows(self, rows, L, dl, dr, ul, ur):
        """Bifurcate ``rows`` (terminal, in uid order) with the daughters'
        lengths, diameters and directions per row."""
        t = self.sim.agents
        keep, index, total = self._agree(rows)
        if not keep.all():
            rows, L, dl, dr, ul, ur = rows[keep], L[keep], dl[keep], dr[keep], ul[keep], ur[keep]
        m = rows.size
        if m == 0:
            self._append({}, (), (), 2, total)  # other ranks' elements: the next uid moves on
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        left = self._grow_from(rows, self._forward(rows, ul), L, dl)
        right = self._grow_from(rows, self._forward(rows, ur), L, dr)
        cols = {c: np.stack([left[c], right[c]], axis=1).reshape((2 * m,) + np.shape(left[c])[1:]) for c in left}
        types = np.repeat(t.type[rows], 2)
        parents = t.uid[rows].copy()
        new = self._append(cols, types, index, 2, total)
        rows = self.row_of()[parents]
        t["daughter_left"][rows] = new[0::2]
        t["daughter_right"][rows] = new[1::2]
        return new[0::2], new[1::2]

    def branch(self, uids, diameter=None, direction=None, length=1.0):
        """Side branches (BioDynaMo's Branch): each element in ``uids`` is
        split at its middle and the new proximal half grows a right daughter
        of ``length`` µm and ``diameter`` (default the element's) along
        ``direction`` (default: a random direction perpendicular to the
        axis); a direction within 45° of the axis (or of its opposite) gets
        a perpendicular part added.  Returns the branches' uids."""
        self._check_rank_local("branch")
        rows = self._element_rows(uids)
        t = self.sim.agents
        m = rows.size
        L = _per_row("length", length, m)
        d = t.diameter[rows].copy() if diameter is None else _per_row("diameter", diameter, m)
        if direction is None:
            from .kernels.cpu.rng import uniform_array

            u = np.empty(m)
            uniform_array(self.sim.seed, t.uid[rows].astype(np.int64), self.sim.step, _BRANCH_STREAM, 1, u)
            unit = _perpendiculars(self.unit_axis(rows), u)
        else:
            unit = _unit_rows("direction", direction, m)
        return self._branch_rows(rows, d, unit, L)

    def _branch_rows(self, rows, d, unit, L):
        """Side branches from ``rows`` (in uid order) of diameter ``d``,
        direction ``unit`` and length ``L`` per row."""
        t = self.sim.agents
        keep, index, total = self._agree(rows)
        if not keep.all():
            rows, d, unit, L = rows[keep], d[keep], unit[keep], L[keep]
        if rows.size == 0:
            self._append({}, (), (), 2, total)  # other ranks' splits and branches: the next uid moves on
            return np.zeros(0, np.int64)
        a = self.unit_axis(rows)
        cos = np.clip(np.einsum("ij,ij->i", unit, a), -1.0, 1.0)
        angle = np.arccos(cos)
        fix = (angle < 0.78) | (angle > 2.35)  # outside 45-135 degrees: a perpendicular part added
        if fix.any():
            unit = unit.copy()
            p = np.cross(np.cross(a[fix], unit[fix]), a[fix])
            pn = np.linalg.norm(p, axis=1)
            p = np.where(pn[:, None] > 0, p / np.where(pn > 0, pn, 1.0)[:, None],
                         _perpendiculars(a[fix], np.zeros(int(fix.sum()))))
            v = unit[fix] + p
            unit[fix] = v / np.linalg.norm(v, axis=1)[:, None]
        prox = self._split_rows(rows, 0.5, (index, total))
        prows = self.row_of()[prox]
        cols = self._grow_from(prows, unit, L, d)
        new = self._append(cols, t.type[prows].copy(), index, 1, total)
        t["daughter_right"][self.row_of()[prox]] = new
        return new

    def apply_requests(self, stream):
        """Apply the tree operations agent rules requested (columns
        ``neurite_request`` and ``neurite_arg``, see :mod:`biosim.rules`), in
        uid order, and clear the requests."""
        t = self.sim.agents
        req = t["neurite_request"]
        rows = np.flatnonzero(req)
        mpi = self._dd() is not None  # the operations that make elements are collective calls then
        if rows.size == 0 and not mpi:
            return
        rows = rows[np.argsort(t.uid[rows], kind="stable")]
        uids = t.uid[rows].copy()
        codes = req[rows].copy()
        args = t["neurite_arg"][rows].copy()
        req[rows] = 0
        row_of = self.row_of
        grow = codes == 1
        if grow.any():
            self._elongate_rows(row_of()[uids[grow]], np.maximum(args[grow, 0], 0.0), args[grow, 1:])
        back = codes == 2
        if back.any():
            self._retract_rows(row_of()[uids[back]], np.maximum(args[back, 0], 0.0))
        live = self._alive(uids)
        fork = (codes == 3) & live
        if fork.any() or mpi:
            r = row_of()[uids[fork]]
            r = r[self.terminal(r)]
            from .rng import uniform

            ul, ur = self.random_pair(r, uniform(self.sim.seed, t.uid[r], self.sim.step, stream ^ 0x4E, 0))
            self._bifurcate_rows(r, np.ones(r.size), t.diameter[r].copy(), t.diameter[r].copy(), ul, ur)
        side = (codes == 4) & live
        if side.any() or mpi:
            r = row_of()[uids[side]]
            from .rng import uniform

            a = self.unit_axis(r)
            unit = _perpendiculars(a, uniform(self.sim.seed, t.uid[r], self.sim.step, stream ^ 0x4E, 1))
            self._branch_rows(r, t.diameter[r].copy(), unit, np.ones(r.size))
        self.sim._grid_valid = False

    # -- the step ---------------------------------------------------------------------
    def reach(self):
        """The neighbour-grid range (µm) the cylinders need: the largest
        bounding radius of a cylinder ((L + d) / 2 about its midpoint) plus
        the largest bounding radius of any agent; None without elements."""
        rows = self.rows()
        t = self.sim.agents
        dd = self._dd()
        if dd is not None:  # over every rank's own elements (a collective call): one process's grid
            rows = rows[rows < dd.n_own]
        rc = NK.largest_bounding_radius(rows, t.diameter, t["distal"], t.position, *self._box()[1:]) \
            if rows.size else -1.0
        if dd is not None:
            rc = dd.allreduce_max(float(rc))
        if rc < 0:
            return None
        self._rc = rc
        return rc + max(rc, 0.5 * float(self.sim._max_diameter()))

    def forces(self):
        """Phase 4, first part: each element's move from the state at the
        step's start, applied to its distal point at once (the sphere
        mechanics that follows reads no neurite column that moves), and the
        spheres' pushes from the cylinders (kept for the sphere mechanics'
        term)."""
        sim = self.sim
        self._pushes = None
        reach = self.reach()  # first: under MPI a collective call
        if self.rows().size == 0:
            return
        grid = sim._neighbour_grid(sim._interaction_cutoff(reach))
        rows = self._rows = self._complete(self.rows())  # after the grid build, which may reorder rows
        row_of = self.row_of()
        t = sim.agents
        n = len(t)
        cell_start, order, lower, inv_h, dims, length, periodic, cutoff = grid.kernel_args()
        # the contact forces on each distal point, then (in place) its move: the table's scratch, free again
        # before the sphere mechanics takes it
        disp = t.scratch((n, 3), np.float64)
        mech = self.mechanics
        cyl = self.is_cyl()
        # touched: the rows contact_forces computes (on return: whether a cylinder touches them)
        touched, sphere_at = np.empty(n, np.uint8), np.empty(n, np.uint8)
        NK.kinds(order, t.type, cyl, n, sphere_at, touched)  # every element in one process
        if self._dd() is not None:  # under MPI those of _complete
            touched[:] = 0
            touched[rows] = 1
        cols = grid.column_buffer(t, 4)  # the sphere loops' buffer: they fill it again after this
        box, box_periodic = self._box()[1:]
        NK.sorted_bounds(t.position, t.diameter, t["distal"], t.type, cyl, order, n, box, box_periodic, cols)
        search = (cols, t.diameter, t.type, t.uid, cyl, t["distal"], t["mother"], cell_start, order,
                  lower, inv_h, dims, length, periodic, cutoff, self._rc)
        NK.contact_forces(n, *search, mech.neurite_scale, sim.seed, sim.step, disp, touched)
        # between spheres and cylinders, found from the spheres (few), added after the cylinders' in sphere order
        spheres = np.flatnonzero(sphere_at)
        offsets = np.zeros(spheres.size + 1, np.int64)
        args = (spheres, cols, cyl, t.diameter, t.type, t.uid, t["distal"], t["mother"], cell_start,
                order, lower, inv_h, dims, length, periodic, cutoff, self._rc, sim.seed, sim.step, offsets)
        NK.sphere_pairs(*args, False, np.empty(0, np.int64), np.empty((0, 4)))
        np.cumsum(offsets, out=offsets)
        pairs, pair_forces = np.empty(offsets[-1], np.int64), np.empty((offsets[-1], 4))
        NK.sphere_pairs(*args, True, pairs, pair_forces)
        # the shares passed to the mothers' points: nonzero only for the few rows something touches, so held
        # for those alone (sorted rows ``hot``), not a row of 3 floats for every agent
        hot = np.union1d(np.flatnonzero(touched), pairs)
        prox = np.empty((hot.size, 3))
        NK.contact_prox(hot, touched, t.position, *search, mech.neurite_scale, sim.seed, sim.step, prox)
        touched[pairs] |= 2  # a sphere touches it: its proximal share is held too
        NK.add_sphere_pairs(pairs, pair_forces, np.argsort(pairs, kind="stable"), disp, hot, prox)
        NK.displacements(rows, t["distal"], t.position, t["adherence"], t["spring_constant"], t["resting_length"],
                         t["daughter_left"], t["daughter_right"], row_of, disp, touched, hot, prox,
                         mech.neurite_scale, sim.dt / mech.damping, mech.max_displacement,
                         mech.springs == "implicit", box, box_periodic, disp)
        first = self.first_rows(rows)
        # the first elements' pulls on their somata, read before the distal points move (the axes, lengths and
        # tensions derive from them), added in the sphere mechanics in uid order
        pulls = None
        if mech.soma_feels_tension:
            pulls = NK.first_pulls(first[np.argsort(t.uid[first], kind="stable")], t["mother"], row_of, t["distal"],
                                   t.position, t["resting_length"], t["spring_constant"], touched, hot, prox, box,
                                   box_periodic)
        # where the first elements sit on their somata, read before their distal points and somata move (or at
        # the step's start, before behaviours moved somata: begin_step)
        attach = self.attachment(first)
        if self._held_attach is not None and self._held_attach[0].size:
            huids, hatt = self._held_attach
            u = t.uid[first]
            k = np.minimum(np.searchsorted(huids, u), huids.size - 1)
            found = huids[k] == u  # not found: an element made first by this step's tree operations
            attach[found] = hatt[k[found]]
        self._held_attach = None
        lo, hi = sim._clamp_box()
        NK.move_distal(rows, disp, t["distal"], lo, hi, sim.boundary == "closed", *self._box())
        self._pushes = (spheres, offsets, pair_forces, pulls, first, attach)

    def begin_step(self):
        """At the step's start (after the actions; under MPI with the aura):
        when a behaviour of a population that is not a neurite one may move
        its agents, where each first element sits on its soma, by uid, read
        while every soma and its first elements agree.  The mechanics then
        puts the proximal ends back on the moved somata along these, so a
        soma a behaviour moves carries its neurites as the mechanics' moves
        do (else :meth:`forces` reads them, the same values)."""
        sim = self.sim
        self._held_attach = None
        moving = any("position" in b.writes for p in sim.populations.values() if p.code not in self.types
                     for b in p.behaviours)
        if not moving or not self.types:
            return
        t = sim.agents
        rows = self.rows()
        first = self.first_rows(rows[self._linked(rows)])
        uids = t.uid[first]
        by_uid = np.argsort(uids, kind="stable")
        self._held_attach = (uids[by_uid], self.attachment(first)[by_uid])

    def clamp(self, lower, upper):
        """The closed box's clamp of every agent's position but the neurite
        elements': their distal points are kept in the box as they move, and
        a midpoint is where its ends put it (clamping one, of a first
        element whose soma reaches past a face, would bend its derived
        axis)."""
        t = self.sim.agents
        FK.clamp_to_box_but(t.position, len(t), np.asarray(lower, np.float64), np.asarray(upper, np.float64), t.type,
                            self.is_cyl())

    def _sphere_term(self, sim, force):
        """The sphere mechanics' extra term: cylinders push the spheres they
        touch (and pull their somata with ``soma_feels_tension``); the
        sphere update leaves neurite rows where they are (the sphere loops
        gave them no force)."""
        if self._pushes is None:
            return
        spheres, offsets, pair_forces, pulls = self._pushes[:4]
        NK.sphere_pushes(spheres, sim._grid.kernel_args()[1], offsets, pair_forces, force)
        if pulls is not None:
            NK.soma_pulls(*pulls, force)

    def move(self):
        """Phase 4, last part (after the spheres moved; the distal points
        moved in :meth:`forces`): every element's axis, length, tension and
        midpoint follow (first elements from their somata's new places)."""
        if self._pushes is None:
            return
        first, attach = self._pushes[4:]
        t = self.sim.agents
        held = np.empty((first.size, 3))  # the first elements' proximal ends on their somata's new surfaces
        NK.soma_points(first, t.position, t.diameter, t["mother"], self.row_of(), attach, held)
        self._update(self._rows, first, held)
        self._pushes = None

    def _after_commit(self, births, deaths, dead):
        """After a commit that removed the agents ``dead`` (uids): the
        elements hanging from them go too, and daughter pointers to any of
        them are dropped.  Under MPI a tree may hang from agents on other
        ranks: what hangs from them is found round by round, each rank
        passing on what it removed, until no rank removes more (a collective
        call within a step; between runs a rank holds its own rows only, so
        the other ranks learn of those removals at the next step's
        commit)."""
        dd = self.sim._dd
        if dd is None or dd.whole_sim:
            if dead is not None and dead.size:
                gone = np.concatenate([dead, self._remove_subtrees(dead)])
                self._tidy_daughters(self.rows(), gone)  # the rows left after the removals
            return
        pending = getattr(self, "_pending_dead", [])
        self._pending_dead = []
        gone = np.concatenate([np.zeros(0, np.int64)] + pending + ([] if dead is None else [dead]))
        t = self.sim.agents
        if not t._in_step:
            self._pending_dead = [gone, self._remove_subtrees(gone)]
            gone = np.concatenate(self._pending_dead)
            self._tidy_daughters(self.rows(), gone)
            return
        every = np.zeros(0, np.int64)
        while True:
            gone = np.unique(np.concatenate(dd.comm.allgather(gone)))
            if gone.size == 0:
                break
            every = np.union1d(every, gone)
            gone = self._remove_subtrees(gone)
        if every.size:
            self._tidy_daughters(self.rows(), every)

    def _remove_subtrees(self, gone):
        """Remove the elements this rank holds that hang from the agents
        ``gone`` (uids), level by level; returns their uids."""
        t = self.sim.agents
        removed = [np.zeros(0, np.int64)]
        while gone.size:
            rows = self.rows()
            gone = t.uid[rows[np.isin(t["mother"][rows], gone)]].copy()
            if gone.size:
                self._remove(gone)
                removed.append(gone)
        return np.concatenate(removed)
