"""Mechanics: sphere-sphere forces between neighbours and the position update.

Choose one with ``Simulation(mechanics=...)``:

* :class:`SoftSphere` (the default): linear repulsion with adhesion, explicit
  Euler of velocity = force / damping.
* :class:`PhysiCellForce`: PhysiCell's quadratic potentials and its
  second-order Adams-Bashforth position update.
* :class:`BioDynaMoForce`: BioDynaMo's default sphere force and its
  mass-weighted displacement with adherence threshold.
* ``None``: no mechanics.

Forces here are velocity-like: with ``damping=1`` (SoftSphere) a force of 1
moves a cell 1 µm/min.  Every law has a finite reach, and the neighbour grid
is always built with a cutoff that covers it for the largest diameter present,
so no interacting pair is ever dropped.  Displacements are capped at
``max_displacement`` µm per step.
"""
import numpy as np
from numba import get_num_threads

from . import _validate as V


def _sphere_columns(sim, grid, rows):
    """The grid's sorted columns for the sphere force loops: neurite
    elements (cylinders, :mod:`biosim.neurites`) enter them far away, where
    they add exactly nothing to any sphere (their contacts are the
    neurites' own kernels')."""
    cols = grid.sorted_columns(sim.agents, rows)
    if sim.neurites is not None and sim.neurites.types:
        from .kernels.cpu.neurites import hide_cylinders

        t = sim.agents
        hide_cylinders(cols, grid.kernel_args()[1], t.type, sim.neurites.is_cyl(), len(t))
    return cols


_EVERY_ROW = np.zeros(0, np.uint8)


def _needed_rows(sim):
    """The force kernels' ``need``: under MPI the rows whose forces the step
    reads (:meth:`biosim.parallel.Decomposition.force_rows`), else empty
    (every row)."""
    dd = sim._dd
    need = None if dd is None else dd.force_rows()
    return _EVERY_ROW if need is None else need


class Mechanics:
    """Base class: a pair-force law plus a position update."""

    kernel = None  # key into biosim.kernels.cpu.forces.FORCE_KERNELS
    # Mean agents per cutoff-wide grid cell from which the grid halves its
    # x-cells for this law (None: UniformGrid.SPLIT_OCCUPANCY).  Halved cells
    # shorten the pair loops' windows by a sixth but double the cells the
    # gather visits, so the costlier a pair, the sooner they pay (measured
    # crossovers, forces at 10^6 agents, 1 thread: soft sphere about 5.1,
    # PhysiCell about 4.7, BioDynaMo, with its second square root, about 3.9).
    split_occupancy = None

    def __init__(self, max_displacement):
        self.max_displacement = V.positive("max_displacement", max_displacement, allow_inf=True)

    # subclasses define: _params() -> (p0, p1, p2), reach (a, b), update
    def reach(self):
        """(a, b): the force vanishes beyond a * (d_i + d_j) / 2 + b µm."""
        raise NotImplementedError

    def cutoff(self, max_diameter):
        """Interaction range (µm) for the largest diameter present."""
        a, b = self.reach()
        return a * float(max_diameter) + b

    def columns(self):
        """Extra agent columns this law needs: (name, dtype, default, shape)."""
        return ()

    def parameters(self):
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def to_dict(self):
        return {"class": type(self).__name__, "parameters": self.parameters()}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"{type(self).__name__}({args})"

    _NO_TABLE = np.zeros((1, 1))
    _NO_CELLS = np.zeros((1, 3))  # coincident_pushes' per-cell values, for the laws without them

    def prepare(self, sim):
        """Check the law against the simulation before a run (populations are
        known then); returns the (ntypes, ntypes) adhesion table of a
        type-dependent law, else None."""
        return None

    def forces(self, sim):
        """Total pair force on every agent, (n, 3) (a scratch array: use it
        before anything else uses the table's scratch)."""
        t = sim.agents
        n = len(t)
        table = self.prepare(sim)
        B = sim.backend
        K = B.forces
        grid = sim._neighbour_grid(self.cutoff(sim._max_diameter()))
        params = np.array(self._params(), dtype=np.float64)
        if B.on_device:  # one thread per agent, coincident centres included
            force = t.dev_scratch((n, 3), np.float64)
            tab = B.to_device(self._NO_TABLE if table is None else table)
            K.pair_forces(self.kernel, params, t.col("type", False), tab, table is not None, n, *grid.device_args(),
                          grid.sorted_columns(t, 4), t.col("uid", False), sim.seed, sim.step, force)
            return force
        force = t.scratch((n, 3), np.float64)
        kernel = K.FORCE_KERNELS[self.kernel, bool(grid.periodic.any()), table is not None]
        args = grid.kernel_args()
        room, occupancy = K.gather_room(grid.cell_start, grid.dims, grid.inv_h, grid.cutoff, n, grid.periodic)
        self._warn_if_crowded(sim, grid, occupancy)
        buf = np.zeros((get_num_threads(), 6, room))  # finite past the gathered data
        cols = _sphere_columns(sim, grid, 4 if table is None else 5)
        flag = np.empty(n, dtype=np.uint8)
        tab = self._NO_TABLE if table is None else table
        kernel(params, t.type, tab, n, *args, cols, buf, force, flag, _needed_rows(sim))
        if flag.any():  # coincident centres: pushes drawn outside fast-math
            K.coincident_pushes(np.flatnonzero(flag), K.LAW_CODES[self.kernel], table is not None, params,
                                t.position, t.diameter, t.uid, t.type, tab, self._NO_CELLS, *args, sim.seed,
                                sim.step, force)
        return force

    CROWDING = 8.0  # a cell holding this many times what packs into it without overlap is crowded

    def _warn_if_crowded(self, sim, grid, occupancy):
        """Warn once per simulation when a grid cell holds far more agents than
        fit into it (CROWDING times the spheres of the smallest diameter that
        pack into the cell's volume at 74%): the pair loops then cost O(N^2)
        in that cell (all 10^5 agents at one point: 38 s a step)."""
        if occupancy <= 64 or getattr(sim, "_told_crowded", False):
            return
        t = sim.agents
        cell = float(np.prod(grid.box.length / grid.dims))
        fits = 0.74 * cell / (np.pi / 6.0 * float(t.diameter.min()) ** 3)
        if occupancy > self.CROWDING * max(fits, 1.0):
            sim._told_crowded = True
            import warnings

            warnings.warn(f"one neighbour-grid cell ({cell:.3g} µm³) holds {occupancy} agents, {occupancy / fits:.0f} "
                          f"times what fits into it without overlap: agents are piled up (too much growth in too "
                          f"little space, or placed at one point?), and the force loops cost O(N²) there",
                          RuntimeWarning, stacklevel=4)

    def _refuse_non_finite(self, sim, force, bad):
        """After an update that left ``bad`` agents unmoved for a non-finite
        force: a ValueError naming them and the parameters."""
        if not bad:
            return
        t = sim.agents
        force = sim.backend.to_host(force)
        rows = np.flatnonzero(~np.all(np.isfinite(force[: len(t)]), axis=1))
        where = (f"agent uid {int(t.uid[rows[0]])} (force {force[rows[0]].tolist()})"
                 + (f" and {rows.size - 1} more" if rows.size > 1 else "") if rows.size
                 else f"{bad} agents (an infinite move with max_displacement=inf)")
        raise ValueError(f"{type(self).__name__}: the force on {where} at step {sim.step} is not finite, so "
                         f"the move is undefined: overlapping agents under extreme parameters ({self!r}, "
                         f"dt={sim.dt:g} min)?  Those agents were not moved")

    def apply(self, sim):
        """Compute forces and move the agents (phase 4 of the step)."""
        if len(sim.agents) == 0:
            return
        force = self.forces(sim)
        for term in sim.force_terms.values():  # e.g. the springs of models.Attachments
            term(sim, force)
        self.update(sim, force)


def _pair_spec(name, value):
    """(public value, matrix or None, pairs or None) of a pair parameter given
    as one number, a square symmetric matrix indexed by type code, or a dict
    ``{("a", "b"): value}`` over population names (the public value of a
    dict keys each pair as "a|b", as a checkpoint stores it)."""
    if isinstance(value, dict):
        clean = {}
        for key, v in value.items():
            if not isinstance(key, tuple) or len(key) != 2 or not all(isinstance(k, str) for k in key):
                raise TypeError(f"{name} dict keys must be pairs of population names, got {key!r}")
            v = V.positive(f"{name}[{key!r}]", v, allow_zero=True)
            other = clean.get(tuple(sorted(key)))
            if other is not None and other != v:
                raise ValueError(f"{name} gives {key!r} two values ({other} and {v}); it must be symmetric")
            clean[tuple(sorted(key))] = v
        return {f"{a}|{b}": v for (a, b), v in clean.items()}, None, clean
    if np.ndim(value) == 0:
        return V.positive(name, value, allow_zero=True), None, None
    try:
        m = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, a square matrix or a dict of population pairs, "
                        f"got {value!r}") from None
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"a {name} matrix must be square (ntypes x ntypes), got shape {m.shape}")
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ValueError(f"{name} matrix entries must be finite and >= 0, got {m.tolist()}")
    if not np.array_equal(m, m.T):
        raise ValueError(f"the {name} matrix must be symmetric (a pair acts both ways), got {m.tolist()}")
    return m.tolist(), m, None


def _pair_table(name, matrix, pairs, names):
    """The (ntypes, ntypes) table of a pair parameter given as a matrix or a
    dict of population pairs, checked against the populations ``names``."""
    if matrix is not None:
        if len(names) > len(matrix):
            raise ValueError(f"the {name} matrix is {len(matrix)} x {len(matrix)} but there are "
                             f"{len(names)} populations ({', '.join(names)}); give one row per population")
        return matrix
    table = np.zeros((max(1, len(names)), max(1, len(names))))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            key = tuple(sorted((a, b)))
            if key not in pairs:
                raise ValueError(f"{name} has no value for the pair {key!r}; give every pair of "
                                 f"populations ({', '.join(names)})")
            table[i, j] = pairs[key]
    unknown = {k for pair in pairs for k in pair} - set(names)
    if unknown:
        raise ValueError(f"{name} names populations that do not exist: {', '.join(sorted(unknown))}; "
                         f"populations are {', '.join(names)}")
    return table


def _per_population(name, value, minimum=0.0):
    """A per-cell parameter: one number, or a dict ``{population: value}``
    (each >= ``minimum``, finite)."""
    def check(what, v):
        v = V.positive(what, v, allow_zero=True)
        if v < minimum:
            raise ValueError(f"{what} must be >= {minimum:g}, got {v!r}")
        return v

    if not isinstance(value, dict):
        return check(name, value)
    if not value:
        raise ValueError(f"{name} is an empty dict; give a number or {{population: value}}")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise TypeError(f"{name} dict keys must be population names, got {k!r}")
        out[k] = check(f"{name}[{k!r}]", v)
    return out


def _is_per_population(value):
    return isinstance(value, dict) and bool(value) and all(isinstance(k, str) for k in value)


class _TypedAdhesion:
    """Adhesion given as one number, or per pair of populations: a square
    symmetric matrix indexed by type code (populations in order of creation),
    or a dict ``{("a", "b"): value}`` over population names covering every
    pair (order within a pair does not matter)."""

    def _set_adhesion(self, adhesion):
        self.adhesion, self._matrix, self._pairs = _pair_spec("adhesion", adhesion)

    def _max_adhesion(self):
        if self._matrix is not None:
            return float(self._matrix.max())
        if self._pairs is not None:
            return max(self._pairs.values(), default=0.0)
        return self.adhesion

    def _params(self):
        return self.repulsion, self._max_adhesion(), self.adhesion_range

    def reach(self):
        return (self.adhesion_range if self._max_adhesion() > 0 else 1.0), 0.0

    def pair_adhesion(self, a=0, b=0):
        """Adhesion between type codes (or, with a dict, population names) a and b."""
        if self._matrix is not None:
            return float(self._matrix[a, b])
        if self._pairs is not None:
            return self._pairs[tuple(sorted((a, b)))]
        return self.adhesion

    def prepare(self, sim):
        if self._matrix is None and self._pairs is None:
            return None
        return _pair_table("adhesion", self._matrix, self._pairs, list(sim.populations))


class SoftSphere(_TypedAdhesion, Mechanics):
    """Linear soft spheres with short-range adhesion (the default mechanics).

    With contact distance s = (d_i + d_j) / 2 and centre distance r, the force
    pushing the two cells apart is::

        F(r) = repulsion * (1 - r / s)                 for r < s
             - adhesion  * (1 - r / (adhesion_range s)) for r < adhesion_range s

    so an isolated pair rests at r* = s (repulsion - adhesion) /
    (repulsion - adhesion / adhesion_range).  Positions follow velocity =
    force / damping (explicit Euler), capped at ``max_displacement``.

    Parameters
    ----------
    repulsion : float, default 2.0
        Force at full overlap before adhesion (µm/min with damping 1).
    adhesion : float, matrix or dict, default 0.4
        Adhesive force at full overlap (same units); 0 disables adhesion.
        Per pair of populations (differential adhesion, cell sorting): a
        symmetric matrix indexed by type code, or ``{("a", "b"): value}``
        over population names covering every pair.
    adhesion_range : float, default 1.25
        Reach of adhesion as a multiple of the contact distance (>= 1).
    damping : float, default 1.0
        Drag coefficient: velocity (µm/min) = force / damping.
    max_displacement : float, default 3.0
        Cap on the displacement per step, µm.
    """

    kernel = "soft_sphere"
    split_occupancy = 5.0  # see Mechanics

    def __init__(self, repulsion=2.0, adhesion=0.4, adhesion_range=1.25, damping=1.0,
                 max_displacement=3.0):
        super().__init__(max_displacement)
        self.repulsion = V.positive("repulsion", repulsion, allow_zero=True)
        self._set_adhesion(adhesion)
        self.adhesion_range = V.positive("adhesion_range", adhesion_range)
        if self.adhesion_range < 1.0:
            raise ValueError(f"adhesion_range must be >= 1 (a multiple of the contact distance), "
                             f"got {adhesion_range!r}")
        self.damping = V.positive("damping", damping)

    def equilibrium_distance(self, d1, d2, a=0, b=0):
        """Rest distance (µm) of an isolated pair of diameters d1, d2 (of types
        a and b when the adhesion is per pair of types)."""
        s = 0.5 * (d1 + d2)
        adh = self.pair_adhesion(a, b)
        if adh == 0:
            return s
        return s * (self.repulsion - adh) / (self.repulsion - adh / self.adhesion_range)

    def update(self, sim, force):
        t = sim.agents
        bad = sim.backend.forces.overdamped_update(t.col("position"), force, len(t), sim.dt / self.damping,
                                                   self.max_displacement)
        self._refuse_non_finite(sim, force, bad)


class PhysiCellForce(_TypedAdhesion, Mechanics):
    """PhysiCell's potentials (PhysiCell_cell.cpp, ``add_potentials``) with its
    Adams-Bashforth position update.

    With R = r_i + r_j (sum of radii) and S = lam_i r_i + lam_j r_j (the
    adhesion reach)::

        v(r) = sqrt(c_i c_j) (1 - r/R)^2 for r < R
               - sqrt(a_i a_j) f_ij (1 - r/S)^2 for r < S

    along the centre line (µm/min), with each cell's repulsion c, adhesion a
    and relative adhesion reach lam, and the pair's affinity factor f_ij
    (PhysiCell's sqrt(aff_ij aff_ji)).  Positions: x += dt (1.5 v - 0.5
    v_prev) (``previous_velocity`` column).  PhysiCell caps nothing: pass
    ``max_displacement=float("inf")`` to match it.

    One value of each for every cell gives the fastest kernel; values per
    population (dicts), an ``affinity``, or ``models.Rules`` driving
    "cell-cell adhesion", "cell-cell repulsion" or "relative maximum
    adhesion distance" (per cell) select the per-cell kernel (about 0.65x
    the throughput: ``benchmarks/physicell_mechanics.py``).

    Parameters
    ----------
    repulsion : float or dict, default 10.0
        PhysiCell's cell_cell_repulsion_strength c (µm/min): one number, or
        ``{population: value}`` naming every population.
    adhesion : float, dict, matrix, default 0.4
        PhysiCell's cell_cell_adhesion_strength a (µm/min): one number, or
        ``{population: value}``; or, with one repulsion and reach for all,
        the pair's whole adhesion as for SoftSphere (a symmetric matrix by
        type code or ``{("a", "b"): value}``, replacing sqrt(a_i f_ij a_j)).
    adhesion_range : float or dict, default 1.25
        relative_maximum_adhesion_distance lam (>= 1), or ``{population:
        value}``.
    affinity : float, matrix or dict, optional
        The pair factor f_ij = sqrt(aff_ij aff_ji) of PhysiCell's
        cell_adhesion_affinities (>= 0; symmetric matrix by type code or
        ``{("a", "b"): value}``); default 1 for every pair.
    max_displacement : float, default 3.0
        Cap on the displacement per step, µm.
    wall : float, default 0
        PhysiCell's virtual wall at the domain edge (µm/min; its
        ``virtual_wall_at_domain_edge`` is 100): a cell whose centre is
        closer than its radius r to a face of the box (the nearest one; x and
        y only when ``sim.plane`` is set) is pushed inwards at
        wall (1 - d/r)^2, within the Adams-Bashforth step.  0: none (cells
        are clamped to a closed box).
    """

    kernel = "physicell"
    split_occupancy = 4.75  # see Mechanics
    # the behaviours of PhysiCell's rules that set these values per cell (models.Rules)
    RULE_KEYS = {"cell-cell repulsion": "repulsion", "cell-cell adhesion": "adhesion",
                 "relative maximum adhesion distance": "adhesion_range"}

    def __init__(self, repulsion=10.0, adhesion=0.4, adhesion_range=1.25, max_displacement=3.0, wall=0.0,
                 affinity=None):
        super().__init__(max_displacement)
        self.wall = V.positive("wall", wall, allow_zero=True)
        self.repulsion = _per_population("repulsion", repulsion)
        self.adhesion_range = _per_population("adhesion_range", adhesion_range, minimum=1.0)
        self._adhesion_cells = _is_per_population(adhesion)  # {population: value}, not pairs
        if self._adhesion_cells:
            self.adhesion = _per_population("adhesion", adhesion)
            self._matrix = self._pairs = None
        else:
            self._set_adhesion(adhesion)
        self.affinity = None
        self._aff_matrix = self._aff_pairs = None
        if affinity is not None:
            self.affinity, self._aff_matrix, self._aff_pairs = _pair_spec("affinity", affinity)
        if self._cellwise() and (self._matrix is not None or self._pairs is not None):
            raise ValueError("PhysiCellForce: adhesion per pair of populations (a matrix or pairs dict) replaces "
                             "sqrt(a_i f_ij a_j) as a whole, so it takes one repulsion and one adhesion_range and "
                             "no affinity; give adhesion per population ({population: value}) with affinity= "
                             "instead")

    def _cellwise(self):
        """Whether the per-cell kernel runs (values per population, an
        affinity, or rules driving a value per cell)."""
        return (isinstance(self.repulsion, dict) or isinstance(self.adhesion_range, dict)
                or self._adhesion_cells or self.affinity is not None
                or bool(getattr(self, "_ruled_cells", None)))

    def columns(self):
        return (("previous_velocity", np.float64, 0.0, (3,)),)

    def value(self, key, population):
        """This law's ``key`` ("repulsion", "adhesion" or "adhesion_range") for
        the cells of ``population`` (a name)."""
        v = getattr(self, key)
        if isinstance(v, dict):
            if population not in v:
                raise ValueError(f"PhysiCellForce: {key} has no value for population {population!r}; give every "
                                 f"population ({key}={{name: value}} names {', '.join(v)})")
            return v[population]
        if key == "adhesion" and (self._matrix is not None or self._pairs is not None):
            raise ValueError("PhysiCellForce: adhesion is given per pair of populations, not per cell; give "
                             "adhesion per population ({population: value}) to let rules set it per cell")
        return v

    def rule_column(self, key, population):
        """Let a rule set ``key`` per cell for ``population`` (models.Rules):
        returns the column it writes (float, one value per agent)."""
        column = "rule_" + key
        self.__dict__.setdefault("_ruled_cells", {}).setdefault(key, set()).add(population)
        return column

    def _params(self):
        def top(v):
            return max(v.values()) if isinstance(v, dict) else v

        if not self._cellwise():
            return super()._params()
        return top(self.repulsion), top(self.adhesion), top(self.adhesion_range)

    def reach(self):
        if not self._cellwise():
            return super().reach()
        rng = self.adhesion_range
        return (max(rng.values()) if isinstance(rng, dict) else rng), 0.0

    def equilibrium_distance(self, d1, d2, a=0, b=0):
        R = 0.5 * (d1 + d2)
        if self._cellwise():
            raise ValueError("PhysiCellForce.equilibrium_distance takes one repulsion, adhesion and range for all "
                             "cells; this law has values per population or per cell")
        adh = self.pair_adhesion(a, b)
        if adh == 0:
            return R
        a, b = np.sqrt(self.repulsion), np.sqrt(adh)
        return (a - b) / (a / R - b / (self.adhesion_range * R))

    def _cell_tables(self, sim):
        """(values, driven) of the per-cell kernel: each population's
        repulsion, adhesion and adhesion_range as rows of a (3, ntypes)
        float64 table, and (3, ntypes) uint8 flags where a rule sets the
        value per cell (column ``rule_<key>``)."""
        names = list(sim.populations) or ["(none)"]
        keys = ("repulsion", "adhesion", "adhesion_range")
        values = np.array([[self.value(k, p) for p in names] for k in keys], dtype=np.float64)
        ruled = getattr(self, "_ruled_cells", {})
        driven = np.array([[p in ruled.get(k, ()) for p in names] for k in keys], dtype=np.uint8)
        unknown = {p for k in keys if isinstance(getattr(self, k), dict) for p in getattr(self, k)} - set(names)
        if unknown:
            raise ValueError(f"PhysiCellForce names populations that do not exist: {', '.join(sorted(unknown))}; "
                             f"populations are {', '.join(names)}")
        return values, driven

    def prepare(self, sim):
        if not self._cellwise():
            return super().prepare(sim)
        if self._aff_matrix is None and self._aff_pairs is None:
            n = max(1, len(sim.populations))
            return np.full((n, n), 1.0 if self.affinity is None else float(self.affinity))
        return _pair_table("affinity", self._aff_matrix, self._aff_pairs, list(sim.populations))

    def forces(self, sim):
        if not self._cellwise():
            return super().forces(sim)
        return self._cell_forces(sim)

    def _cell_forces(self, sim):
        """Mechanics.forces with the per-cell kernel: each cell's values
        (sqrt(c), sqrt(a), lam d) computed once, sorted with the grid's
        columns and gathered with them."""
        t = sim.agents
        n = len(t)
        B = sim.backend
        K = B.forces
        affinity = self.prepare(sim)
        values, driven = self._cell_tables(sim)
        ruled = getattr(self, "_ruled_cells", {})
        none = B.zeros(1, np.float64)
        rules = [t.col("rule_" + k, False) if k in ruled else none
                 for k in ("repulsion", "adhesion", "adhesion_range")]
        # the reach: at most the largest lam times the largest diameter (a rule-set lam: its column's largest)
        lam = max(float(values[2].max()), sim._column_max(rules[2]) if "adhesion_range" in ruled else 0.0)
        grid = sim._neighbour_grid(max(lam, 1.0) * sim._max_diameter())  # may reorder the rows
        cellv = self._cell_values(B, n)
        bad = K.cell_mechanics(t.col("type", False), t.col("diameter", False), n, B.to_device(values),
                               B.to_device(driven), *rules, cellv)
        if bad:
            self._refuse_cell_values(sim, values, driven)
        params = np.array(self._params(), dtype=np.float64)
        if B.on_device:
            force = t.dev_scratch((n, 3), np.float64)
            K.pair_forces("physicell_cell", params, t.col("type", False), B.to_device(affinity), True, n,
                          *grid.device_args(), grid.sorted_columns(t, 4), t.col("uid", False), sim.seed, sim.step,
                          force, cellv)
            return force
        force = t.scratch((n, 3), np.float64)
        kernel = K.FORCE_KERNELS["physicell_cell", bool(grid.periodic.any()), True]
        args = grid.kernel_args()
        room, occupancy = K.gather_room(grid.cell_start, grid.dims, grid.inv_h, grid.cutoff, n, grid.periodic)
        self._warn_if_crowded(sim, grid, occupancy)
        buf = np.zeros((get_num_threads(), 9, room))
        cols = _sphere_columns(sim, grid, 8)
        K.sorted_cell_values(cellv, args[1], n, cols)
        flag = np.empty(n, dtype=np.uint8)
        kernel(params, t.type, affinity, n, *args, cols, buf, force, flag, _needed_rows(sim))
        if flag.any():
            K.coincident_pushes(np.flatnonzero(flag), K.LAW_CODES["physicell_cell"], True, params, t.position,
                                t.diameter, t.uid, t.type, affinity, cellv, *args, sim.seed, sim.step, force)
        return force

    def _cell_values(self, B, n):
        """The (n, 3) array of each cell's values, kept between steps."""
        buf = getattr(self, "_cellv", None)
        if buf is None or buf.shape[0] < n or B.on_device != hasattr(buf, "copy_to_host"):
            buf = self._cellv = B.empty((max(n, 2 * getattr(buf, "shape", (0,))[0]), 3), np.float64)
        return buf[:n]

    def _refuse_cell_values(self, sim, values, driven):
        t = sim.agents
        names = list(sim.populations)
        for k, key in enumerate(("repulsion", "adhesion", "adhesion_range")):
            if not driven[k].any():
                continue
            col = sim.backend.to_host(t.col("rule_" + key, False))[: len(t)]
            tp = t.type[: len(t)]
            rows = np.flatnonzero(driven[k][tp].astype(bool) & ~(np.isfinite(col) & (col >= (1.0 if k == 2 else 0.0))))
            if rows.size:
                i = int(rows[0])
                raise ValueError(f"PhysiCellForce: agent uid {int(t.uid[i])} ({names[tp[i]]}) has {key} "
                                 f"{col[i]!r} (column rule_{key}) at step {sim.step}: it must be finite and "
                                 f"{'>= 1' if k == 2 else '>= 0'}; the rules set it")
        raise ValueError(f"PhysiCellForce: invalid per-cell values at step {sim.step} ({values.tolist()})")

    def update(self, sim, force):
        t = sim.agents
        K = sim.backend.forces
        if self.wall > 0:
            K.wall_push(t.col("position", False), t.col("diameter", False), force, len(t), sim.box.lower,
                        sim.box.upper, sim.plane is not None, self.wall)
        bad = K.adams_bashforth_update(t.col("position"), force, t.col("previous_velocity"), len(t),
                                       sim.dt, self.max_displacement)
        self._refuse_non_finite(sim, force, bad)


class BioDynaMoForce(Mechanics):
    """BioDynaMo's default sphere force (src/core/interaction_force.cc) with its
    displacement rule.

    Each radius is inflated by ``radius_inflation``; with overlap
    delta = r_i + r_j - r and rr = r_i r_j / (r_i + r_j)::

        F = repulsion * delta - attraction * sqrt(rr * delta)   for delta > 0

    Coincident centres get a random force in U(-3, 3)^3 (counter-based, equal
    and opposite).  Displacement per step = F dt / (density * volume), applied
    only when ``|F|`` > adherence, capped at ``max_displacement`` (3 µm).  The
    neighbour search covers the force's whole reach, (d_i + d_j)/2 + 2
    radius_inflation, unlike BioDynaMo, whose search stops at the largest
    diameter.

    BioDynaMo's time unit is the hour: a run with its default dt = 0.01 h is
    dt = 0.6 min here, and ``density`` plays the same role per minute.

    Parameters
    ----------
    repulsion : float, default 2.0   (BioDynaMo's k)
    attraction : float, default 1.0  (BioDynaMo's gamma)
    radius_inflation : float, default 1.5 (µm)
    density : float, default 1.0     (mass per µm³)
    adherence : float, default 0.0   (force threshold below which cells stay put)
    max_displacement : float, default 3.0 (µm per step)
    """

    kernel = "biodynamo"
    split_occupancy = 4.0  # see Mechanics

    def __init__(self, repulsion=2.0, attraction=1.0, radius_inflation=1.5, density=1.0,
                 adherence=0.0, max_displacement=3.0):
        super().__init__(max_displacement)
        self.repulsion = V.positive("repulsion", repulsion, allow_zero=True)
        self.attraction = V.positive("attraction", attraction, allow_zero=True)
        self.radius_inflation = V.positive("radius_inflation", radius_inflation, allow_zero=True)
        self.density = V.positive("density", density)
        self.adherence = V.positive("adherence", adherence, allow_zero=True)

    def _params(self):
        return self.repulsion, self.attraction, self.radius_inflation

    def reach(self):
        return 1.0, 2.0 * self.radius_inflation

    def equilibrium_distance(self, d1, d2):
        """Rest distance (µm) of an isolated pair (F = 0 with delta > 0)."""
        ri, rj = 0.5 * d1 + self.radius_inflation, 0.5 * d2 + self.radius_inflation
        rr = ri * rj / (ri + rj)
        delta = rr * (self.attraction / self.repulsion) ** 2 if self.repulsion > 0 else 0.0
        return ri + rj - delta

    def update(self, sim, force):
        t = sim.agents
        bad = sim.backend.forces.mass_update(t.col("position"), force, t.col("diameter", False), len(t), sim.dt,
                                             self.density, self.adherence, self.max_displacement)
        self._refuse_non_finite(sim, force, bad)


MECHANICS = {c.__name__: c for c in (SoftSphere, PhysiCellForce, BioDynaMoForce)}
