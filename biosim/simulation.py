"""Simulation: owns the agents, the populations and their behaviours, the
mechanics, the writers and the step loop."""
import contextlib
import time as _time
import warnings
import weakref

import numpy as np

from . import _validate as V
from .agents import CORE_COLUMNS, AgentTable, _check_name
from .behaviour import BehaviourList
from .kernels.cpu import forces as FK
from .mechanics import Mechanics, SoftSphere
from .space import BOUNDARIES, Box, UniformGrid
from .substances import Substance

PHASES = ("actions", "neighbours", "behaviours", "mechanics", "boundary", "substances", "commit", "output",
          "exchange")
_DEFAULT = object()
_LIVE = weakref.WeakSet()  # simulations of this process (for `biosim run --profile`)


class ActionError(RuntimeError):
    """An action raised; the message names it and the step.  Snapshots written
    so far stay readable (writers are closed as run() unwinds)."""


class Trigger:
    """Fires on the state after step s whenever ``s % every == 0`` (s = 0, the
    initial state, included).  An int is accepted wherever a trigger is."""

    def __init__(self, every):
        if isinstance(every, Trigger):
            every = every.every
        self.every = V.positive_int("every", every)

    def fires(self, step):
        return step % self.every == 0

    def __repr__(self):
        return f"Trigger(every={self.every})"


class Action:
    """A plain Python callback ``fn(sim)`` run at the start of a step whose
    number is a multiple of ``every`` (``local``: under MPI on each rank's
    own agents, without gathering the whole simulation)."""

    def __init__(self, fn, every, local=False):
        if not callable(fn):
            raise TypeError(f"fn must be callable (called as fn(sim)), got {fn!r}")
        if not isinstance(local, (bool, np.bool_)):
            raise TypeError(f"local must be True or False, got {local!r}")
        self.fn = fn
        self.trigger = Trigger(every)
        self.local = bool(local)


def identifier(name):
    """``name`` with every character that is not a letter, digit or _ made _."""
    import re

    return re.sub(r"\W", "_", name)


def count_name(population):
    """The name of the series ``record_counts`` keeps for ``population``;
    its states' series are this name, ``_`` and the state."""
    return f"count_{identifier(population)}"


class Record:
    """A scalar time series: ``fn(sim)`` evaluated on the state after every step
    that is a multiple of ``every`` (step 0 included), like a writer."""

    def __init__(self, name, fn, every, unit=None):
        unit = V.unit(f"record {name!r}", unit)
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"record name must be an identifier-like string (it names an HDF5 dataset), "
                             f"got {name!r}")
        if not callable(fn):
            raise TypeError(f"fn of record {name!r} must be callable as fn(sim) -> number, got {fn!r}")
        self.name = name
        self.fn = fn
        self.unit = unit  # written with the series; plots label their axes with it
        self.trigger = Trigger(every)
        self._steps, self._times, self._values = [], [], []

    @property
    def steps(self):
        return np.array(self._steps, dtype=np.int64)

    @property
    def times(self):
        """Times (min) of the recorded values."""
        return np.array(self._times, dtype=np.float64)

    @property
    def values(self):
        return np.array(self._values, dtype=np.float64)

    def __len__(self):
        return len(self._steps)

    def sample(self, sim):
        if self._steps and self._steps[-1] == sim.step:
            return
        value = self.fn(sim)
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(()).item()
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"record {self.name!r}: fn(sim) must return a number, got {value!r} "
                            f"({type(value).__name__})")
        self._add(sim.step, sim.time, float(value))

    def _add(self, step, time, value):
        """Append one sampled value (also: the value rank 0 sampled, under MPI)."""
        self._steps.append(step)
        self._times.append(time)
        self._values.append(value)


class PopulationAgents:
    """The agents of one population, column by column: ``pop.agents["age"]``
    returns a copy of that column for the population's rows (in row order)
    and assignment writes values back (``pop.agents["age"] += 1`` works);
    ``.position``, ``.diameter``, ``.uid``, ``.type``, ``len()``."""

    def __init__(self, population):
        self._pop = population

    def _rows(self):
        return self._pop.rows

    def __len__(self):
        return len(self._pop)

    def __getitem__(self, name):
        return self._pop.sim.agents[name][self._rows()]

    def __setitem__(self, name, value):
        col = self._pop.sim.agents[name]
        rows = self._rows()
        col[rows] = np.broadcast_to(value, (rows.size,) + col.shape[1:])

    @property
    def columns(self):
        return self._pop.sim.agents.columns

    position = property(lambda self: self["position"], lambda self, v: self.__setitem__("position", v))
    diameter = property(lambda self: self["diameter"], lambda self, v: self.__setitem__("diameter", v))
    uid = property(lambda self: self["uid"])
    type = property(lambda self: self["type"])

    def __repr__(self):
        return f"PopulationAgents({self._pop.name!r}, {len(self)} agents)"


class Population:
    """A named agent type with its own behaviours (``population.behaviours``,
    a list: ``+=`` models).  Created by :meth:`Simulation.add_agents`;
    ``population.agents`` reads and writes its agents' columns."""

    def __init__(self, sim, name, code):
        self.sim = sim
        self.name = name
        self.code = code
        self.behaviours = BehaviourList(sim, self)

    def __len__(self):
        return int(np.count_nonzero(self.sim.agents.type == self.code))

    @property
    def rows(self):
        """Row indices of this population's agents (valid like column views)."""
        return np.flatnonzero(self.sim.agents.type == self.code)

    @property
    def uids(self):
        return self.sim.agents.uid[self.rows]

    @property
    def agents(self):
        """Column access restricted to this population (see PopulationAgents)."""
        return PopulationAgents(self)

    def __repr__(self):
        return f"Population({self.name!r}, type={self.code}, agents={len(self)}, behaviours={list(self.behaviours)!r})"


class Simulation:
    """An agent-based simulation of cells in a box.

    Parameters
    ----------
    box : Box
        The domain (µm), e.g. ``Box.cube(400.0)``.
    boundary : {"closed", "periodic", "open"}
        closed: agents stay inside (centres clamped to the box after each
        move; adding agents outside is refused).  periodic: every axis wraps,
        distances use the minimum image.  open: agents whose centre leaves the
        box are removed at the end of the step (the grid does not grow).
    dt : float
        Base time step (min); ``time = step * dt``.
    seed : int
        Key of the counter-based random numbers: same seed, same run, for any
        thread count.
    mechanics : Mechanics or None
        ``SoftSphere()`` (the default), ``PhysiCellForce()``,
        ``BioDynaMoForce()`` or ``None`` (no mechanics).
    reorder_every : int
        Permute the agent table's rows into the canonical order (by grid
        cell, then by uid) every this many neighbour-grid builds; between
        reorders the grid's sort order indexes the table.  A performance
        knob only: every sum over neighbours, scatter and commit follows the
        canonical order whatever the rows' arrangement, so no value changes
        a single bit of the results.  Default 8.
    device : {"cpu", "cuda", "cuda:N"}
        Where the kernels run: "cpu" (numba on every core; the default, or
        ``$BIOSIM_DEVICE``), "cuda" (the first NVIDIA GPU, numba-cuda) or
        "cuda:N".  On a GPU the agent columns live on the device;
        ``sim.agents`` stays the same numpy-facing API (see
        :mod:`biosim.backends` and docs/guide/determinism.md for how
        results compare with the CPU).
    comm : mpi4py communicator or None
        Run this simulation across the communicator's ranks (domain
        decomposition in blocks: :mod:`biosim.parallel`).  None: the
        launcher's ranks when started by ``mpiexec -n R`` with R > 1 (and
        mpi4py installed), else one process.  Results equal one process's
        bit for bit; between steps ``sim.agents`` holds this rank's agents.
    """

    def __init__(self, box, boundary="closed", dt=0.1, seed=0, mechanics=_DEFAULT, reorder_every=8, device=None,
                 comm=None):
        if not isinstance(box, Box):
            raise TypeError(f"box must be a biosim Box (Box.cube(edge) or Box(lower, upper)), got {box!r}")
        self.box = box
        if float(box.length.max()) < 1.0:
            V.unit_warning(f"box edges of {' x '.join(f'{v:g}' for v in box.length)} µm: biosim's unit of length "
                           f"is the µm, and a box smaller than one µm holds no cell; did you give metres or "
                           f"millimetres? (1 mm = 1000 µm)")
        self.boundary = V.choice("boundary", boundary, BOUNDARIES)
        self.dt = V.positive("dt", dt)
        self.seed = V.seed(seed)
        self.reorder_every = V.positive_int("reorder_every", reorder_every)
        self._plane = None
        from .backends import get_backend

        self.backend = get_backend(device)
        self.device = self.backend.name
        if mechanics is _DEFAULT:
            mechanics = SoftSphere()
        if mechanics is not None and not isinstance(mechanics, Mechanics):
            raise TypeError(f"mechanics must be SoftSphere(...), PhysiCellForce(...), "
                            f"BioDynaMoForce(...) or None, got {mechanics!r}")
        self.mechanics = mechanics
        self.agents = AgentTable(self.backend)
        if mechanics is not None:
            for name, dtype, default, shape in mechanics.columns():
                self.agents.add_column(name, dtype, default, shape)
        self.populations = {}
        self.substances = {}
        self.writers = []
        self.actions = []
        self.records = {}
        # extra velocity terms of the mechanics step, {name: f(sim, force)}, each adding to the (n, 3) pair
        # forces before the position update (models register theirs, e.g. models.Attachments' springs)
        self.force_terms = {}
        self.step = 0
        self.timings = dict.fromkeys(PHASES, 0.0)
        self.behaviour_timings = {}
        self._streams = 0
        periodic = [self.boundary == "periodic"] * 3
        self._grid = UniformGrid(box, periodic, reorder_every=self.reorder_every, backend=self.backend)
        self._grid_valid = False
        self._run_end = None
        self.stop_reason = None  # why the last run() stopped (see run)
        self._unit_warned = set()  # (behaviour id, parameter) already checked by _check_units
        self._count_every = None
        self._first_step = 0
        self._dd = self._decomposition(comm)
        self.neurites = None  # biosim.neurites.Neurites, made by the first add_neurites
        _LIVE.add(self)

    def _decomposition(self, comm):
        """The MPI decomposition for ``comm`` (or the launcher's), or None
        for one process."""
        from . import parallel

        if comm is None:
            comm = parallel.launcher_comm()
        elif not (hasattr(comm, "Get_size") and hasattr(comm, "Get_rank") and hasattr(comm, "allgather")):
            raise TypeError(f"comm must be an mpi4py communicator (e.g. MPI.COMM_WORLD) or None, got {comm!r}")
        if comm is None or comm.Get_size() == 1:
            return None
        if self.backend.on_device:
            raise ValueError(f"device={self.device!r} with {comm.Get_size()} MPI ranks: the decomposition runs "
                             f"on the CPU backend only (so far); use device=\"cpu\" or one rank per run")
        self._grid.reorder = False  # own rows stay first in the table during a step
        self.agents.decomposition = dd = parallel.Decomposition(self, comm)
        return dd

    @property
    def rank(self):
        """This process's MPI rank in the simulation's communicator (0 without MPI)."""
        return 0 if self._dd is None else self._dd.rank

    @property
    def ranks(self):
        """Number of MPI ranks the simulation runs on (1 without MPI)."""
        return 1 if self._dd is None else self._dd.size

    @contextlib.contextmanager
    def gathered(self):
        """``with sim.gathered(): ...``: inside the block ``sim.agents`` holds
        the whole simulation on every rank (in uid order), for analysis
        after ``run()``; afterwards each rank holds its own agents again
        and changes made inside are dropped (change agents in an action).
        Under MPI a collective call (every rank enters it); without MPI it
        changes nothing."""
        if self._dd is None:
            yield self
            return
        with self._dd.gathered():
            yield self

    # -- state ---------------------------------------------------------------
    @property
    def time(self):
        """Simulated time (min): ``step * dt``."""
        return self.step * self.dt

    def _new_stream(self):
        self._streams += 1
        return self._streams

    def metadata(self):
        """Run parameters as a JSON-friendly dict (stored with every run)."""
        from . import __version__
        import h5py
        import numba

        return {
            "biosim_version": __version__,
            "numba_version": numba.__version__,
            "numpy_version": np.__version__,
            "h5py_version": h5py.__version__,
            "box": self.box.to_dict(),
            "boundary": self.boundary,
            "dt": self.dt,
            "seed": self.seed,
            "reorder_every": self.reorder_every,
            "plane": self.plane,
            "device": self.device,
            "mechanics": None if self.mechanics is None else self.mechanics.to_dict(),
            "neurites": None if self.neurites is None else self.neurites.to_dict(),
            "populations": {p.name: {"type": p.code, "behaviours": [b.to_dict() for b in p.behaviours]}
                            for p in self.populations.values()},
            "substances": {name: s.to_dict() for name, s in self.substances.items()},
            "columns": {name: {"dtype": str(self.agents.spec(name).dtype),
                               "shape": list(self.agents.spec(name).shape),
                               "default": np.asarray(self.agents.spec(name).default).item(),
                               "inherit": self.agents.spec(name).inherit}
                        for name in self.agents.columns},
        }

    def __repr__(self):
        return (f"Simulation({len(self.agents)} agents, populations={list(self.populations)}, "
                f"step={self.step}, time={self.time:g} min)")

    # -- building -------------------------------------------------------------
    def add_agents(self, name, position, diameter=10.0, **columns):
        """Add agents to population ``name`` (created on first use; type codes
        are 0, 1, ... in order of first appearance) and return the Population.

        ``position``: (n, 3) µm.  ``diameter`` (µm) and every extra column take
        a scalar or a length-n array; a new column takes the array's dtype.
        A keyword that is no column yet but close to one (or to a parameter
        name), such as ``diamter``, is refused as a likely typo; declare a
        deliberately similar new column with ``sim.agents.add_column`` first.
        Positions outside a closed or open box are refused; in a periodic box
        they are wrapped.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string, got {name!r}")
        try:
            raw = np.asarray(position)
            if raw.dtype.kind not in "biuf":
                raise TypeError
            pos = np.array(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"position must be an (n, 3) array of numbers (µm), got {type(position).__name__}") from None
        if pos.ndim == 1 and pos.shape == (3,):
            pos = pos[None, :]
        elif pos.size == 0:  # sim.add_agents(name, []): an empty population, filled later
            pos = pos.reshape(0, 3)
        if pos.ndim != 2 or pos.shape[1] != 3:
            raise ValueError(f"position must have shape (n, 3), got {pos.shape}")
        n = len(pos)
        V.finite_rows("position", pos)
        if self.boundary == "periodic":
            FK.wrap_into_box(pos, n, self.box.lower, self.box.length)
        else:
            inside = self.box.contains(pos)
            if not inside.all():
                i = int(np.flatnonzero(~inside)[0])
                raise ValueError(f"position row {i} = {pos[i].tolist()} lies outside the {self.boundary} box "
                                 f"{self.box.lower.tolist()}..{self.box.upper.tolist()} µm "
                                 f"({int((~inside).sum())} of {n} agents outside)")
        if np.asarray(diameter).dtype.kind == "b":
            raise TypeError(f"diameter must be numbers (µm), got booleans ({diameter!r})")
        diam = self._column_values("diameter", diameter, n, np.float64)
        if not (np.all(np.isfinite(diam)) and np.all(diam > 0)):
            bad = diam[~(np.isfinite(diam) & (diam > 0))]
            raise ValueError(f"diameter must be finite and > 0 (µm), got {bad[0]!r}")
        if n and float(diam.min()) < 0.01:
            V.unit_warning(f"add_agents({name!r}): diameter {float(diam.min()):g} µm: biosim's unit of length is "
                           f"the µm (a cell is about 10 µm across); did you give metres? (1 m = 1e6 µm)")
        elif n and float(diam.max()) > 1e4:
            V.unit_warning(f"add_agents({name!r}): diameter {float(diam.max()):g} µm, over a centimetre: "
                           f"biosim's unit of length is the µm; did you give nanometres? (1 µm = 1000 nm)")
        values = {"position": pos, "diameter": diam}
        new_columns = {}
        for col, val in columns.items():
            if col in CORE_COLUMNS:
                raise ValueError(f"column {col!r} clashes with a core column ({', '.join(CORE_COLUMNS)}); "
                                 f"uid and type are assigned by the engine")
            if col in self.agents.derived:
                raise ValueError(f"column {col!r} is derived, not stored: it cannot be given to add_agents")
            if col in self.agents:
                spec = self.agents.spec(col)
                values[col] = self._column_values(col, val, n, spec.dtype, spec.shape)
            else:
                self._refuse_typo(col)
                _check_name(col)  # before anything is created: a failed call leaves no trace
                arr = self._column_values(col, val, n, None)
                new_columns[col] = arr
                values[col] = arr
        pop = self.populations.get(name)
        for col, arr in new_columns.items():
            self.agents.add_column(col, arr.dtype, np.zeros((), arr.dtype).item(), arr.shape[1:])
        self.agents.append(values, len(self.populations) if pop is None else pop.code)
        if pop is None:  # only once the agents are in: a failed call leaves no empty population
            pop = Population(self, name, len(self.populations))
            self.populations[name] = pop
        self._grid_valid = False
        return pop

    def add_neurites(self, soma, direction, diameter=1.0, length=1.0, *, name="neurites", spring_constant=10.0,
                     adherence=0.1, swc_type=3, mechanics=None):
        """Extend one new neurite from each soma and return the neurites'
        Population (``name``, made on first use; see :mod:`biosim.neurites`).

        ``soma``: a Population (each of its agents) or an array of agent uids
        (a uid repeated extends several neurites from one soma); somata are
        spherical agents of any population.  ``direction``: one (3,) vector or
        one per soma.  Each neurite is one element of ``length`` µm and
        ``diameter`` µm (scalars or one per soma) from the soma's surface
        along the direction, at rest (tension 0), with ``spring_constant``
        and ``adherence`` (BioDynaMo's defaults 10 and 0.1); ``swc_type`` is
        the SWC structure type it is written with (3 dendrite, 4 apical
        dendrite, 2 axon).  ``mechanics``: a :class:`bs.NeuriteMechanics`
        for every neurite of the simulation (default ``NeuriteMechanics()``;
        also ``sim.neurites.mechanics``).  Neurites run on the CPU, in a
        closed or open box (so far).  Under MPI add them before the first
        ``run()`` (every rank holds every agent then) or in an action.
        """
        from .neurites import Neurites

        dd = self._dd
        if dd is not None and dd.bounds is not None and not dd.whole_sim:
            raise RuntimeError("add_neurites: under MPI, after the first run() a rank holds only its own agents, "
                               "not every soma; add neurites before the first run() or in an action "
                               "(sim.add_action), where every rank holds the whole simulation")

        if self.neurites is None:
            self.neurites = Neurites(self, mechanics)
        elif mechanics is not None:
            self.neurites.mechanics = mechanics
        return self.neurites.add(soma, direction, diameter, length, name, spring_constant, adherence, swc_type)

    def _refuse_typo(self, col):
        """A keyword of add_agents that would create a new column but is close
        to an existing column or a parameter name is taken for a typo."""
        import difflib

        known = list(self.agents.columns) + ["name", "position", "diameter"]
        close = difflib.get_close_matches(col, known, n=1, cutoff=0.8)
        if close:
            raise TypeError(f"add_agents got {col}=..., which is not a column; did you mean {close[0]!r}? "
                            f"(a deliberately new column close to that name: declare it first with "
                            f"sim.agents.add_column({col!r}, dtype, default))")

    @staticmethod
    def _column_values(col, val, n, dtype, shape=()):
        arr = np.asarray(val)
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise TypeError(f"column {col!r} must hold numbers or booleans, got dtype {arr.dtype}")
        if dtype is not None:
            arr = V.cast(f"column {col!r}", arr, dtype)
        if arr.ndim == len(shape):  # one value for every agent
            return np.broadcast_to(arr, (n,) + tuple(shape)).copy()
        if arr.shape != (n,) + tuple(shape):
            want = (n,) + tuple(shape)
            raise ValueError(f"column {col!r} must be a scalar or have shape {want} (one value per agent), "
                             f"got shape {arr.shape}")
        return np.array(arr)

    def add_substance(self, name, diffusion, decay=0.0, spacing=10.0, initial=0.0, boundary=None,
                      solver="implicit", dt=None, decay_split=False, dirichlet_layer=False, unit=None):
        """Add a substance diffusing on a cell-centred grid over the box; returns it.

        ``diffusion`` µm²/min, ``decay`` 1/min, ``spacing`` the voxel edge (µm,
        must divide every box extent), ``initial`` a number, an array of the
        grid's shape or ``f(x, y, z)`` of voxel centres, ``boundary``
        ``bs.Neumann(flux)`` (default no-flux), ``bs.Dirichlet(value)`` or a
        dict per face (``"x-"``, ``"x+"``, ..., or ``"x"`` for both x faces);
        periodic in a periodic box.  ``solver`` "implicit" (default, stable
        for any step) or "explicit"; ``dt`` an optional diffusion step (min)
        so the substance takes several sub-steps per base step.

        PhysiCell's (BioFVM's) conventions, for models brought from it:
        ``decay_split=True`` applies decay inside each of the implicit
        solver's three sweeps (dt λ / 3 each, a first-order splitting; biosim
        otherwise decays exactly, ``c *= exp(-λ dt)``); ``dirichlet_layer=True``
        holds a Dirichlet value on the outer layer of voxels (BioFVM's
        Dirichlet nodes, set before each sweep and after the step; biosim
        otherwise holds it on the face itself, half a voxel further out).

        ``unit``: the concentration's unit (a string such as "mmHg"; None:
        none given), shown on colour bars and kept in run files and
        checkpoints.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"substance name must be a non-empty string, got {name!r}")
        if not name.isidentifier():  # it names datasets in run files and checkpoints
            raise ValueError(f"substance name must be a Python identifier (letters, digits, _), got {name!r}")
        if name in self.substances:
            raise ValueError(f"a substance named {name!r} exists already; substances are "
                             f"{', '.join(self.substances)}")
        unit = V.unit(f"substance {name!r}", unit)
        sub = Substance(self, name, diffusion, decay, spacing, initial, boundary, solver, dt, decay_split,
                        dirichlet_layer)
        sub.unit = unit  # shown on colour bars ("oxygen (mmHg)") and kept by run files and checkpoints
        self.substances[name] = sub
        return sub

    def substance(self, ref, who="substance"):
        """The Substance named ``ref`` (or ``ref`` itself if it is one of this
        simulation's), else a ValueError listing those that exist."""
        if isinstance(ref, Substance):
            if self.substances.get(ref.name) is ref:
                return ref
            raise ValueError(f"{who}: substance {ref.name!r} belongs to another simulation")
        if isinstance(ref, str) and ref in self.substances:
            return self.substances[ref]
        known = ", ".join(self.substances) or "none yet (add them with sim.add_substance)"
        raise ValueError(f"{who}: unknown substance {ref!r}; substances are {known}")

    def add_action(self, fn, every=1, local=False):
        """Run ``fn(sim)`` (plain Python on numpy views) at the start of every
        step whose number is a multiple of ``every``: phase 1 of the step.

        Under MPI an action sees the whole simulation: the agents of every
        rank are gathered onto every rank (in uid order) while it runs, and
        each rank keeps those in its block afterwards: a copy of every column
        of every agent per rank, each time it fires.  ``local=True`` skips
        that: the action runs on each rank's own agents (``sim.agents``),
        right for per-agent changes (a drug added at a time, cells marked
        by position); without MPI it makes no difference."""
        action = Action(fn, every, local)
        self.actions.append(action)
        return action

    def record(self, name, fn, every=1, unit=None):
        """Record the number ``fn(sim)`` on the state after every step that is a
        multiple of ``every`` (step 0 included), in ``unit`` (a string such as
        "µm" or "mmHg", written with the series and shown by the plots; None:
        none).  The series is kept in
        ``sim.records[name]`` (``.steps``, ``.times``, ``.values``) and written
        by HDF5 writers; read it back with ``open_run(path).series(name)``.
        Under MPI ``fn`` runs on rank 0 only, on the whole simulation gathered
        there; every rank receives the value."""
        if name in self.records:
            raise ValueError(f"a record named {name!r} exists already; records are {', '.join(self.records)}")
        rec = Record(name, fn, every, unit)
        self.records[name] = rec
        return rec

    def record_counts(self, every=1):
        """Record agent counts over time, every ``every`` steps: ``count_<population>``
        for each population and ``count_<population>_<state>`` for each state
        of the state columns its behaviours manage (``models.Infection``:
        susceptible, infected, recovered; ``models.CellCycle``: its phases).
        Names are made identifier-safe; populations and behaviours added later
        are picked up.  ``run()`` calls this with the smallest writer interval
        when writers exist, so every run file holds its counts."""
        every = Trigger(every).every
        self._count_every = every if self._count_every is None else min(every, self._count_every)
        self._sync_count_records()

    def _sync_count_records(self):
        safe = identifier
        for pop in self.populations.values():
            name = count_name(pop.name)
            if name not in self.records:
                self.record(name, lambda sim, code=pop.code: int(np.count_nonzero(sim.agents.type == code)),
                            self._count_every, "agents")
            for b in pop.behaviours:
                for col, labels in b.state_columns().items():
                    for value, label in enumerate(labels):
                        name = f"{count_name(pop.name)}_{safe(label)}"
                        rec = self.records.get(name)
                        if rec is not None and getattr(rec, "_counts", None) == (col, value):
                            continue
                        if rec is not None:
                            name = f"{count_name(pop.name)}_{safe(col)}_{safe(label)}"
                            if name in self.records:
                                continue

                        def count(sim, code=pop.code, col=col, value=value):
                            t = sim.agents
                            return int(np.count_nonzero((t.type == code) & (t[col] == value)))
                        self.record(name, count, self._count_every, "agents")._counts = (col, value)

    def profile(self):
        """A table of where the time went: wall time per phase of the step (s,
        ms per step, share) and per behaviour (grid rebuilds they caused count
        as neighbour search), from ``sim.timings`` and
        ``sim.behaviour_timings``, which are always collected."""
        steps = max(self.step - self._first_step, 1)
        total = sum(self.timings.values())
        lines = [f"biosim profile: {self.step - self._first_step} steps, {len(self.agents):,} agents now, "
                 f"{total:.3f} s in the step loop",
                 f"  {'phase':<28} {'seconds':>9} {'ms/step':>9} {'share':>7}"]
        host = self._host_work() if self.backend.on_device else set()
        for name, sec in self.timings.items():
            lines.append(f"  {name:<28} {sec:9.3f} {1e3 * sec / steps:9.3f} {sec / total if total else 0:7.1%}"
                         + ("  host" if name in host else ""))
            if name == "behaviours":
                for key, bsec in self.behaviour_timings.items():
                    lines.append(f"    {key:<26} {bsec:9.3f} {1e3 * bsec / steps:9.3f} "
                                 f"{bsec / total if total else 0:7.1%}" + ("  host" if key in host else ""))
        if host:
            lines.append(f"  ({self.device}: \"host\" marks work that runs on host copies of the columns)")
        return "\n".join(lines)

    def _host_work(self):
        """On a GPU backend: the phases and behaviours (profile keys) that run
        on the host copies of the columns, not on device kernels."""
        host = {"actions", "output"}
        for pop in self.populations.values():
            for b in pop.behaviours:
                if not b.device_ready:
                    host.add(f"{pop.name}.{b.label}")
        return host

    # -- checkpoints --------------------------------------------------------------
    def save_checkpoint(self, path):
        """Save everything needed to continue this simulation bit for bit (agent
        columns, substances, step, random streams, populations and their
        behaviours, mechanics, writers, actions, records) to ``path`` (HDF5,
        written atomically).  Behaviours, rules, actions and record functions
        are stored by import path: ones defined in ``__main__`` (the script) or
        as lambdas are refused with a message saying how to make them
        restorable.  See :mod:`biosim.io.checkpoint`.  Under MPI, rank 0
        saves the whole simulation (gathered from every rank); the file
        loads on any number of ranks, one included."""
        from .io.checkpoint import save

        dd = self._dd
        if dd is None:
            return save(self, path)
        from .io.checkpoint import state_of

        state_of(self)  # what cannot be saved is refused on every rank alike
        with dd.gathered(root=0):  # the whole simulation, saved by rank 0: it loads on any number of ranks
            result = save(self, path) if dd.rank == 0 else None
        return dd.comm.bcast(result)

    @classmethod
    def load_checkpoint(cls, path, allow=(), allow_outputs=()):
        """The Simulation saved by :meth:`save_checkpoint`; running it continues
        exactly as the saved one would have.  Loading imports only biosim's
        own modules and the modules named in ``allow`` (your model's modules,
        for rules, actions and record functions; pass only ones you trust);
        nothing in the file is evaluated or unpickled.  HDF5 writers continue
        their files after the checkpoint's step; they write only inside the
        checkpoint's own folder, or inside the folders (or files) you confirm in
        ``allow_outputs``: a checkpoint from elsewhere cannot choose files to
        write.  A run file that is not the checkpoint's run, or not a plain
        file as biosim writes it (links, external or virtual datasets), is
        refused before anything is written."""
        from .io.checkpoint import load

        return load(path, allow, allow_outputs)

    @classmethod
    def from_run(cls, path, snapshot=-1, allow=()):
        """A new Simulation starting from snapshot ``snapshot`` of a run written
        by HDF5Writer (what-if branches): the run's box, boundary, dt, seed,
        mechanics, populations with their behaviours, substances and every
        agent column of that snapshot, at its step.  No writers, actions or
        records are attached.  Behaviours from modules other than biosim's
        need ``allow`` as for :meth:`load_checkpoint`."""
        from .io.checkpoint import from_run

        return from_run(path, snapshot, allow)

    # -- neighbours -----------------------------------------------------------
    def _neighbour_grid(self, cutoff):
        """The uniform grid, rebuilt if stale or too fine for ``cutoff`` (µm).
        Rebuilding sorts the agent rows by grid cell."""
        g = self._grid
        if not self._grid_valid or g.cutoff is None or cutoff > g.cutoff:
            t0 = _time.perf_counter()
            self.check_state()  # what the grid and force kernels index with
            if not (np.isfinite(cutoff) and cutoff > 0):
                raise ValueError(f"the neighbour search range {cutoff!r} µm (from the largest diameter, "
                                 f"{self.agents.diameter.max()!r} µm, or the radius asked for) must be finite "
                                 f"and > 0")
            if self.boundary == "periodic" and np.any(2 * cutoff > self.box.length):
                raise ValueError(f"the periodic box edge {self.box.length.min()} µm must be at least twice "
                                 f"the interaction range {cutoff:g} µm (minimum image); cells grew too large "
                                 f"or the box is too small")
            dd = self._dd
            if dd is not None:
                dd.query(cutoff)
            g.build(self.agents, cutoff, getattr(self.mechanics, "split_occupancy", None),
                    None if dd is None else dd.n_global)
            self._grid_valid = True
            self.timings["neighbours"] += _time.perf_counter() - t0
        return g

    def check_state(self):
        """Raise ValueError, naming the column, the agent's uid and the value,
        if an agent's position is not finite, its diameter not finite and > 0
        µm, or its type code not one of the populations'.  Run before every
        neighbour-grid build (what the grid and force kernels index with), so
        a value poisoned by an action, a behaviour (a division that overflowed
        the volume) or a loaded file stops the run at the step it appears
        instead of spreading or crashing.  One vectorised pass."""
        t = self.agents
        n = len(t)
        ntypes = len(self.populations)
        if n == 0 or not self.backend.grid.count_invalid(t.col("position", False), t.col("diameter", False),
                                                          t.col("type", False), n, ntypes):
            return
        checks = (("diameter", ~(np.isfinite(t.diameter) & (t.diameter > 0)), "finite and > 0 (µm)"),
                  ("type", (t.type < 0) | (t.type >= ntypes),
                   f"a population's code, 0..{ntypes - 1} ({', '.join(self.populations)})"),
                  ("position", ~np.all(np.isfinite(t.position), axis=1), "finite (µm)"))
        for column, bad, allowed in checks:
            rows = np.flatnonzero(bad)
            if rows.size:
                i = int(rows[0])
                more = f" (and {rows.size - 1} more agents)" if rows.size > 1 else ""
                raise ValueError(f"agent uid {int(t.uid[i])} has {column} {t[column][i].tolist()!r} at step "
                                 f"{self.step}{more}: {column} must be {allowed}; an action, a behaviour or "
                                 f"the loaded file set it")

    def _interaction_cutoff(self, reach=None):
        """The neighbour grid's range (µm): the mechanics' and the neurites'
        (``reach``, when known; see Neurites.reach); None when nothing
        interacts."""
        if self._count() == 0:
            return None
        cutoff = None if self.mechanics is None else self.mechanics.cutoff(self._max_diameter())
        if reach is None and self.neurites is not None:
            reach = self.neurites.reach()
        if reach is not None:
            cutoff = reach if cutoff is None else max(cutoff, reach)
        return cutoff

    def _count(self):
        """Agents in the whole simulation (under MPI, counted at the step's start)."""
        return len(self.agents) if self._dd is None else self._dd.n_global

    def _max_diameter(self):
        """The largest diameter (µm) of the whole simulation: under MPI over
        every rank's own agents (kept current after behaviours that change
        diameters), so the grid's cutoff is the one process's."""
        if self._dd is not None:
            return self._dd.dmax
        return self.backend.max(self.agents.col("diameter", False), len(self.agents))

    def _column_max(self, col):
        """The largest value of a per-agent array over the whole simulation
        (under MPI a collective call: every rank must make it)."""
        dd = self._dd
        if dd is None:
            return self.backend.max(col, len(self.agents))
        return dd.allreduce_max(float(self.backend.max(col, dd.n_own)) if dd.n_own else -np.inf)

    def neighbours(self, radius):
        """CSR neighbour lists for the current state: ``(offsets, rows)`` such that
        ``rows[offsets[i]:offsets[i+1]]`` are the rows closer than ``radius``
        (µm) to row i.  May reorder rows (sorts them by grid cell)."""
        radius = V.positive("radius", radius)
        if self.boundary == "periodic" and np.any(2 * radius > self.box.length):
            raise ValueError(f"radius must be at most half the periodic box edge "
                             f"({self.box.length.min() / 2} µm), got {radius}")
        g = self._neighbour_grid(radius)
        return g.neighbour_lists(self.agents.position, radius)

    # -- the step ---------------------------------------------------------------
    def _check_units(self):
        """Warn (``bs.UnitWarning``, once per behaviour and parameter) where a
        value looks like a unit mistake: an event rate times the interval
        its behaviour runs over above 1 (rates are per minute), or a
        division diameter at or below the diameter of every agent the
        population holds at the first run() the behaviour is in (every cell
        divides at its first step)."""
        if self.rank != 0:
            return
        warned = self._unit_warned
        for pop in self.populations.values():
            for b in pop.behaviours:
                interval = b.every * self.dt
                for name, rate in b.event_rates().items():
                    x = rate * interval
                    key = (id(b), name)
                    if x > 1 and key not in warned:
                        warned.add(key)
                        V.unit_warning(f"{pop.name}.{type(b).__name__}: {name} = {rate:g} per min over its "
                                       f"interval of {interval:g} min expects {x:.3g} events, more than one "
                                       f"(rates are per minute: a probability per step p is a rate p / dt; a "
                                       f"rate per hour is / 60 per minute)", stacklevel=5)
                split = getattr(b, "division_diameter", None)
                key = (id(b), "division_diameter")
                if split is None or key in warned:
                    continue
                warned.add(key)  # checked at the first run() it is in (no columns read from a GPU after)
                rows = pop.rows
                if rows.size:
                    smallest = float(self.agents.diameter[rows].min())
                    if smallest >= split:
                        V.unit_warning(f"{pop.name}.{type(b).__name__}: division_diameter = {split:g} µm is at "
                                       f"or below the diameter of every {pop.name} agent (the smallest is "
                                       f"{smallest:g} µm): every cell divides at its first step, all in "
                                       f"lockstep; give a larger division diameter, or add the cells with a "
                                       f"spread of diameters", stacklevel=5)

    def _check_ready(self):
        self._check_units()
        if self.mechanics is not None:
            self.mechanics.prepare(self)  # e.g. an adhesion matrix against the populations
        cutoff = self._interaction_cutoff()
        if cutoff is not None and self.boundary == "periodic" and np.any(2 * cutoff > self.box.length):
            raise ValueError(f"the periodic box edge {self.box.length.min()} µm must be at least twice the "
                             f"interaction range {cutoff:g} µm (minimum image)")
        for w in self.writers:
            if not (hasattr(w, "write") and hasattr(w, "every")):
                raise TypeError(f"sim.writers must hold writers such as bs.io.HDF5Writer(path, every), got {w!r}")

    def _advance(self):
        """One step (phases 1-7); see :meth:`run`."""
        tm = self.timings
        clock = _time.perf_counter
        agents = self.agents
        dd = self._dd
        agents._in_step = True
        try:
            t0 = clock()
            firing = [a for a in self.actions if a.trigger.fires(self.step)]
            if dd is None or all(a.local for a in firing):
                self._run_actions(firing)
            else:  # the whole simulation on every rank while they run
                ex = dd.exchange_time
                with dd.gathered(changes=True):
                    self._run_actions(firing)
                tm["exchange"] += dd.exchange_time - ex
                t0 += dd.exchange_time - ex
            t1 = clock()
            tm["actions"] += t1 - t0
            if dd is not None:
                dd.begin_step()  # the aura
                t0, t1 = t1, clock()
                tm["exchange"] += t1 - t0
            self._grid_valid = False
            if self.neurites is not None:
                self.neurites.begin_step()
            cutoff = self._interaction_cutoff()
            if cutoff is not None and not self._per_agent_step():
                self._neighbour_grid(cutoff)  # timed as "neighbours"
            elif cutoff is not None:
                self.check_state()  # what the behaviours index with, as a build would have checked
            t1 = clock()
            nb = tm["neighbours"]  # grid rebuilds inside phases 3-4 count as neighbour search
            per = self.behaviour_timings
            for pop in self.populations.values():
                for index, b in sorted(enumerate(pop.behaviours), key=lambda ib: not ib[1].first):
                    if self.step % b.every == 0:
                        agents.begin_requests((pop.code + 1) * 2**20 + index)
                        tb, nbb = clock(), tm["neighbours"]
                        b.run(self, pop, b.every * self.dt)
                        if "position" in b.writes or "diameter" in b.writes:
                            self._grid_valid = False
                        if dd is not None and "diameter" in b.writes:
                            dd.diameters_changed()
                        key = f"{pop.name}.{b.label}"
                        per[key] = per.get(key, 0.0) + clock() - tb - (tm["neighbours"] - nbb)
            nrt = self.neurites
            if nrt is not None:
                nrt.discretize()
            t2 = clock()
            tm["behaviours"] += t2 - t1 - (tm["neighbours"] - nb)
            agents.begin_requests(0)
            nb = tm["neighbours"]
            if nrt is not None:
                nrt.forces()
            if self.mechanics is not None and self._count():
                self.mechanics.apply(self)
            if nrt is not None:
                nrt.move()
            t3 = clock()
            tm["mechanics"] += t3 - t2 - (tm["neighbours"] - nb)
            self._apply_boundary()
            if dd is not None:
                dd.moved_check()
            t4 = clock()
            tm["boundary"] += t4 - t3
            for sub in self.substances.values():
                sub.advance(self.dt, self.time)
            t5 = clock()
            tm["substances"] += t5 - t4
            born, _ = agents.commit()
            self.step += 1
            t6 = clock()
            tm["commit"] += t6 - t5
            if dd is not None:
                dd.end_step(born)  # the aura dropped, migration
                tm["exchange"] += clock() - t6
        finally:
            agents._in_step = False
            self._grid_valid = False

    def _per_agent_step(self):
        """True when every behaviour running this step reads only its own
        agent (``per_agent``): then no grid is built before them, only for
        the mechanics (one build a step instead of two when they move
        agents)."""
        return all(getattr(b, "per_agent", False) for pop in self.populations.values() for b in pop.behaviours
                   if self.step % b.every == 0)

    def _run_actions(self, firing):
        for a in firing:
            try:
                a.fn(self)
            except Exception as e:
                name = getattr(a.fn, "__qualname__", repr(a.fn))
                raise ActionError(f"action {name} failed at step {self.step} "
                                  f"(t = {self.time:g} min): {type(e).__name__}: {e}") from e

    @property
    def plane(self):
        """None, or the z (µm) of the plane every agent is kept in (a 2-D
        model in a slab of the box, e.g. a PhysiCell project with use_2D):
        the closed boundary sets z to it at the end of each step, as it
        clamps x and y to the box."""
        return self._plane

    @plane.setter
    def plane(self, z):
        if z is not None:
            z = V.real("plane", z)
            if self.boundary != "closed" or not self.box.lower[2] <= z <= self.box.upper[2]:
                raise ValueError(f"plane must be a z inside the box ({self.box.lower[2]}..{self.box.upper[2]} µm) "
                                 f"of a closed boundary; got {z!r} with boundary {self.boundary!r}")
        self._plane = z

    def _clamp_box(self):
        """(lower, upper) the closed boundary clamps to (the plane's z fixed)."""
        if self._plane is None:
            return self.box.lower, self.box.upper
        lo, hi = self.box.lower.copy(), self.box.upper.copy()
        lo[2] = hi[2] = self._plane
        return lo, hi

    def confine(self, position):
        """Apply the box's boundary to an (m, 3) position array in place
        (closed: clamp, and onto the plane if one is set; periodic: wrap;
        open: unchanged) and return it."""
        m = len(position)
        if self.boundary == "closed":
            FK.clamp_to_box(position, m, *self._clamp_box())
        elif self.boundary == "periodic":
            FK.wrap_into_box(position, m, self.box.lower, self.box.length)
        return position

    def _apply_boundary(self):
        t = self.agents
        n = len(t)
        if n == 0:
            return
        K = self.backend.forces
        if self.boundary == "closed":
            if self.neurites is not None and self.neurites.types:
                self.neurites.clamp(*self._clamp_box())  # not the elements' midpoints
            else:
                K.clamp_to_box(t.col("position"), n, *self._clamp_box())
        elif self.boundary == "periodic":
            K.wrap_into_box(t.col("position"), n, self.box.lower, self.box.length)
        else:
            out = self.backend.empty(n, np.bool_)
            if K.outside_box(t.col("position", False), n, self.box.lower, self.box.upper, out):
                t.request_deaths(t.take_column("uid", self.backend.nonzero(out, n)))

    def _write_output(self):
        t0 = _time.perf_counter()
        if self._count_every is not None:
            self._sync_count_records()  # populations or behaviours added by actions
        records = [rec for rec in self.records.values() if rec.trigger.fires(self.step)]
        writers = [w for w in self.writers if w.every and self.step % w.every == 0]
        dd = self._dd
        if dd is not None and (records or writers):
            # they see the whole simulation, gathered on rank 0 only: it samples the records and writes;
            # the other ranks receive the records' new values
            ex = dd.exchange_time
            with dd.gathered(root=0):
                if dd.rank == 0:
                    self._output(records, writers)
            sampled = dd.comm.bcast([(r._steps[-1], r._times[-1], r._values[-1]) if len(r) else None
                                     for r in records] if dd.rank == 0 else None, root=0)
            if dd.rank != 0:
                for rec, got in zip(records, sampled):
                    if got is not None and not (rec._steps and rec._steps[-1] == got[0]):
                        rec._add(*got)
            self.timings["exchange"] += dd.exchange_time - ex
            t0 += dd.exchange_time - ex
        else:
            self._output(records, writers)
        self.timings["output"] += _time.perf_counter() - t0

    def _output(self, records, writers):
        for rec in records:
            rec.sample(self)
        for w in writers:
            w.write(self)

    def run(self, steps=None, progress=False, until=None, max_steps=None):
        """Advance ``steps`` base steps, or, with ``until``, until
        ``until(sim)`` is true after a step (at most ``max_steps`` steps).
        One step is, in order:

        1. actions whose trigger fires (Python callbacks on numpy views; they
           may change columns, add or remove agents);
        2. neighbour search: agents are binned into a uniform grid whose cells
           cover the whole interaction range and put in the canonical order
           (by cell, then by uid); every ``reorder_every`` builds the rows
           themselves are permuted into it (in one process, when every
           behaviour of the step reads only its own agent, the mechanics
           build it instead, after them);
        3. behaviours, per population in order of creation, each in the order
           added, on steps that are multiples of their ``every``; the grid is
           rebuilt before the next neighbour query if one moved agents or
           changed diameters; then terminal neurite elements longer than
           their mechanics' ``max_length`` split (:mod:`biosim.neurites`);
        4. mechanics: pair forces from neighbours, then the capped position
           update (with neurites: their moves are computed from the state
           before it, the spheres move, then the neurites' point masses and
           every element's axis, length and tension follow);
        5. boundary condition (closed: clamp; periodic: wrap; open: agents
           outside are queued for removal);
        6. substances: sources queued by behaviours in this step are applied,
           then each substance diffuses (its solver, sub-stepped as needed)
           and decays;
        7. births and deaths are committed (deaths, then births ordered by
           parent uid, the requesting behaviour and request order; a mother
           that died in the step has no daughter); ``step += 1``;
        8. records whose trigger fires sample their value, then writers whose
           trigger fires write the new state (and the records so far).

        Before the first step, writers whose trigger fires on the current step
        write the initial state (once: a later ``run()`` continues the step
        count and appends).  ``progress=True`` shows a progress bar with the
        step, agent count and steps per second.  Writers are closed when
        ``run`` returns or fails, so other processes can open their files.

        ``until``: a function of the simulation returning true or false,
        checked after each step (after the records and writers), e.g.
        ``sim.run(until=lambda sim: len(sim.agents) >= 5000,
        max_steps=10_000)``; the run stops at the first step where it is
        true.  ``max_steps`` (a positive integer) is required with it, so a
        condition that never holds cannot run forever; reaching it warns.
        Under MPI ``until`` runs on rank 0 on the whole simulation gathered
        there (as records do: a gather every step) and every rank gets its
        answer.  ``sim.stop_reason`` then says why the run stopped.
        """
        if until is None and max_steps is not None:
            raise TypeError(f"max_steps goes with until=condition (got max_steps={max_steps!r} and no until); to "
                            f"run a number of steps, run(steps)")
        if until is not None:
            if not callable(until):
                raise TypeError(f"until must be a function of the simulation returning True to stop, such as "
                                f"lambda sim: len(sim.agents) >= 5000; got {until!r}")
            if steps is not None:
                raise TypeError(f"run takes steps or until=..., max_steps=..., not both (got steps={steps!r})")
            if max_steps is None:
                raise TypeError("max_steps is required with until: a positive integer, the most steps to run if "
                                "the condition never holds")
            steps = V.positive_int("max_steps", max_steps)
        elif steps is None:
            raise TypeError("run needs steps (a number of steps) or until=condition with max_steps=...")
        else:
            steps = V.positive_int("steps", steps, allow_zero=True)
        self._check_ready()
        end = self.step + steps
        self._run_end = end
        bar = None
        if progress and self.rank == 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, unit="step", desc="biosim", dynamic_ncols=True)
        intervals = [w.every for w in self.writers if getattr(w, "every", 0)]
        if intervals:
            self.record_counts(min(intervals))
        elif self._count_every is not None:
            self._sync_count_records()
        if self._dd is not None:
            self._dd.adopt()  # cut the box into blocks (first run), keep this rank's new agents
        try:
            for w in self._writers_here():
                if hasattr(w, "open"):
                    w.open(self)
            self._write_output()
            self.stop_reason = None
            while self.step < end:
                self._advance()
                self._write_output()
                if bar is not None:
                    bar.update(1)
                    if self.step % 10 == 0 or self.step == end:
                        bar.set_postfix(step=self.step, agents=len(self.agents), refresh=False)
                if until is not None and self._until(until):
                    self.stop_reason = (f"until: the condition held after step {self.step} "
                                        f"(t = {self.time:g} min)")
                    break
            if self.stop_reason is None:
                if until is not None:
                    self.stop_reason = (f"max_steps: {steps} steps ran (to step {self.step}, t = {self.time:g} "
                                        f"min) and the until condition never held")
                    warnings.warn(f"run(until=...): {self.stop_reason}; raise max_steps to run longer",
                                  RuntimeWarning, stacklevel=2)
                else:
                    self.stop_reason = f"steps: the {steps} steps asked for ran (to step {self.step})"
        except BaseException:
            for w in self._writers_here():  # release the files; the first error is the one to report
                if hasattr(w, "close"):
                    try:
                        w.close()
                    except Exception:
                        pass
            raise
        finally:
            if bar is not None:
                bar.close()
        if self._dd is not None:
            self._dd.whole()  # the grids current everywhere, as the script reads them after run()
        for w in self._writers_here():
            if hasattr(w, "close"):
                w.close()
        if self._dd is not None:
            self._dd.comm.Barrier()  # rank 0's files are complete before any rank reads them
        return self

    def _until(self, until):
        """The until condition's answer after this step (under MPI asked on
        rank 0 of the gathered simulation and broadcast)."""
        error = None
        answer = False
        dd = self._dd
        with contextlib.nullcontext() if dd is None else dd.gathered(root=0):
            if dd is None or dd.rank == 0:
                try:
                    answer = bool(until(self))
                except Exception as e:
                    error = e
        if dd is not None:
            answer, message = dd.comm.bcast((answer, None if error is None else f"{type(error).__name__}: {error}"))
        else:
            message = None if error is None else f"{type(error).__name__}: {error}"
        if message is not None:
            name = getattr(until, "__qualname__", repr(until))
            raise ActionError(f"run(until=...): the condition {name} failed after step {self.step} "
                              f"(t = {self.time:g} min): {message}") from error
        return answer

    def _writers_here(self):
        """The writers this process runs: all of them, or under MPI on rank 0
        (the others only gather)."""
        return self.writers if self.rank == 0 else ()
