"""Behaviours: what the cells of a population do each step.

A behaviour is a small object holding validated parameters.  It declares the
agent columns it needs (created when it is attached to a population), whether
it moves agents, and runs as a vectorised numba pass over the agents of its
population (rows whose ``type`` is the population's code).

A behaviour with ``every=k`` runs on steps where ``step % k == 0`` with its
rates applied over its own interval ``k * dt`` (min).
"""
import numpy as np

from . import _validate as V


class Behaviour:
    """Base class of behaviours (see :mod:`biosim.models` for the library).

    Subclasses set ``columns`` (tuples ``(name, dtype, default, shape)``, or
    with a fifth item, the column's inheritance at division: "copy",
    "default" or "split", see ``AgentTable.add_column``),
    ``writes`` (names of columns they modify; ``"position"`` there makes the
    engine rebuild the neighbour grid before the next neighbour query) and
    implement :meth:`run`.
    """

    columns = ()
    writes = ()
    # whether run() keeps to device kernels on a GPU backend (else it works on
    # host copies of the columns it touches; the profile marks it "host")
    device_ready = False
    # run before the population's other behaviours whatever its place in the
    # list (models.Rules: it sets the per-cell values they read this step)
    first = False
    # reads no other agent than its own (see search_radius)
    per_agent = False

    def __init__(self, every=1):
        self.every = V.positive_int("every", every)
        self._stream = None

    @property
    def label(self):
        """Name in ``sim.behaviour_timings`` (the class name; a rule's name)."""
        return type(self).__name__

    @property
    def stream(self):
        """Random-number stream id, assigned when attached to a population."""
        return self._stream

    def attach(self, sim, population):
        """Called once when the behaviour joins ``population`` of ``sim``."""
        for name, dtype, default, shape, *inherit in self.columns:
            sim.agents.add_column(name, dtype, default, shape, *inherit)
        self._stream = sim._new_stream()

    def run(self, sim, population, dt):
        """Act on the agents of ``population`` over an interval ``dt`` (min)."""
        raise NotImplementedError

    def search_radius(self, sim):
        """How far (µm) :meth:`run` searches for neighbours on this state:
        0.0 when it reads no other agent, None when unknown (the default for
        behaviours written outside biosim).  Under MPI it sizes the aura of
        agents each rank receives from its neighbours (``biosim.parallel``).
        The class attribute ``per_agent = True`` says 0.0."""
        return 0.0 if self.per_agent else None

    def event_rates(self):
        """``{parameter: rate}``: the behaviour's event rates (per min; an
        event happens with probability about rate x interval).  The
        simulation warns (``bs.UnitWarning``) when one times the interval
        it runs over exceeds 1: a rate per step or per hour given as per
        minute.  Default: none."""
        return {}

    def max_move(self, sim, dt):
        """The farthest (µm) :meth:`run` moves an agent over an interval
        ``dt`` (min): 0.0 when it does not write positions, None when
        unknown.  Under MPI it sizes the aura's margin for movement."""
        return None if "position" in self.writes else 0.0

    def max_diameter(self, sim, dt):
        """The largest diameter (µm) :meth:`run` can give an agent over an
        interval ``dt`` (min), from the state at the step's start (the
        largest diameter is ``sim._max_diameter()``): 0.0 when it does not
        write diameters, None when unknown.  Under MPI a step whose
        behaviours all declare it, and their searches, needs no slack in
        its aura (the mechanics' range follows the largest diameter)."""
        return None if "diameter" in self.writes else 0.0

    def state_columns(self):
        """``{column: labels}`` for the integer state columns this behaviour
        manages (value k means ``labels[k]``); the simulation counts agents
        per state in them (see ``Simulation.record_counts``)."""
        return {}

    def parameters(self):
        """Constructor parameters (JSON-friendly)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def to_dict(self):
        cls = type(self)
        return {"class": f"{cls.__module__}.{cls.__qualname__}", "parameters": self.parameters(),
                "stream": self._stream}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"{type(self).__name__}({args})"


# death states of the int8 column ``death`` (PhysiCell's death phases; see
# models.Apoptosis and models.Necrosis with phases=True)
DEATH_STATES = ("live", "apoptotic", "necrotic_swelling", "necrotic_lysed")
DEATH_COLUMNS = (("death", np.int8, 0, (), "default"),  # the death state
                 ("death_age", np.float64, 0.0, (), "default"),  # min in that state
                 ("rupture_volume", np.float64, 0.0, (), "default"))  # µm³ (necrotic swelling)


def live_types(sim):
    """The ``type`` column as the behaviours of live cells see it: a dead
    cell (``death`` > 0, kept as an agent by a death model with phases)
    reads -1, so no population's behaviour acts on it.  Without a ``death``
    column, the type column itself."""
    t = sim.agents
    if "death" not in t:
        return t.col("type", False)
    B = sim.backend
    n = len(t)
    out = B.empty(max(n, 1), np.int32)
    B.behaviours.live_types(t.col("type", False), t.col("death", False), n, out)
    return out


def live_rows(sim, code):
    """Rows (int64, increasing) of the live cells of type ``code``."""
    return sim.backend.behaviours.where_equal(live_types(sim), len(sim.agents), code)


def uid_map(sim):
    """uid -> row (-1: no such agent) of the table as it is now, a host
    int64 array of ``agents.next_uid`` entries built in one parallel pass:
    constant-time lookups of the cells that columns name by uid (attack
    targets, attachments)."""
    t = sim.agents
    where = np.empty(t.next_uid, np.int64)
    sim.backend.host.behaviours.uid_rows(t.uid, len(t), where)
    return where


def ruled(behaviour, key):
    """The float column holding per-cell values of ``behaviour``'s parameter
    ``key`` (e.g. an Apoptosis' ``"rate"``) where ``models.Rules`` drives it
    for the behaviour's population, else None."""
    return getattr(behaviour, "_ruled", {}).get(key)


def ruled_values(sim, behaviour, key, rows):
    """The per-cell values of ``behaviour``'s parameter ``key`` at ``rows``
    (host float64, aligned with ``rows``) where ``models.Rules`` drives it,
    else None (use the behaviour's own value)."""
    column = ruled(behaviour, key)
    if column is None:
        return None
    return np.ascontiguousarray(sim.agents[column][sim.backend.to_host(rows)], dtype=np.float64)


class SubstanceBehaviour(Behaviour):
    """A behaviour that uses one substance, given as the Substance or its name
    and resolved when the behaviour is attached (unknown names are refused).
    With ``required=False`` the substance may be None (no substance)."""

    def __init__(self, substance, every=1, required=True):
        super().__init__(every)
        if substance is None and not required:
            pass
        elif not isinstance(substance, str) and not hasattr(substance, "concentration"):
            raise TypeError(f"substance must be a Substance (from sim.add_substance) or its name, got {substance!r}")
        self._substance_ref = substance
        self._sub = None

    def attach(self, sim, population):
        if self._substance_ref is not None:
            self._sub = sim.substance(self._substance_ref, who=type(self).__name__)
        super().attach(sim, population)

    def parameters(self):
        p = super().parameters()
        ref = self._substance_ref
        if ref is not None:
            p["substance"] = self._sub.name if self._sub is not None else (ref if isinstance(ref, str) else ref.name)
        return p


class BehaviourList(list):
    """The ``behaviours`` list of a population: validates and attaches each
    behaviour as it is added (``+=``, ``append``, ``extend``, ``insert``)."""

    def __init__(self, sim, population):
        super().__init__()
        self._sim = sim
        self._population = population

    def _accept(self, items):
        from .rules import RuleDefinition

        items = [b() if isinstance(b, RuleDefinition) else b for b in items]
        for b in items:
            if not isinstance(b, Behaviour):
                raise TypeError(f"behaviours of population {self._population.name!r} must be "
                                f"biosim Behaviour objects (e.g. models.GrowthDivision(...)), got "
                                f"{b!r} ({type(b).__name__})")
            if b._stream is not None:
                raise ValueError(f"behaviour {b!r} is already attached to a population; create a "
                                 f"new one for population {self._population.name!r}")
        return items

    def append(self, b):
        self.extend([b])

    def extend(self, items):
        for b in self._accept(items):  # each joins the list as it attaches: a later one sees the earlier ones
            b.attach(self._sim, self._population)
            super().append(b)

    def insert(self, i, b):
        (b,) = self._accept([b])
        b.attach(self._sim, self._population)
        super().insert(i, b)

    def __iadd__(self, items):
        self.extend(items)
        return self

    def __setitem__(self, i, v):
        raise TypeError("behaviours cannot be replaced once attached; build the list in order")


PLACEMENTS = ("centre", "physicell")  # where divide_rows puts mother and daughter


def divide_rows(sim, rows, stream, ratio_lo=1.0, ratio_hi=1.0, placement="centre"):
    """Divide the agents at ``rows`` (see ``models.GrowthDivision``): volume
    conserved, daughter/mother volume ratio U(lo, hi), a random axis, centre
    of mass kept (``placement="physicell"``: PhysiCell's, the daughter at
    +r along the axis, the mother at -r/2); mothers change in place,
    daughters are queued: every other
    column as its inheritance says (copied, reset to its default, or split in
    half between mother and daughter), ``parent`` = the mother's uid when that
    column exists."""
    B = sim.backend
    if not B.on_device:
        rows = np.ascontiguousarray(rows, dtype=np.int64)
    if rows.size == 0:
        return
    t = sim.agents
    m = rows.size
    dpos = B.empty((m, 3), np.float64)
    ddiam = B.empty(m, np.float64)
    B.behaviours.divide(rows, t.col("position"), t.col("diameter"), t.col("uid", False), sim.seed, sim.step, stream,
                        ratio_lo, ratio_hi, placement == "physicell", dpos, ddiam)
    daughters = t.take(rows)  # host copies of the mothers' rows (few)
    daughters["position"] = sim.confine(B.to_host(dpos))
    daughters["diameter"] = B.to_host(ddiam)
    rows = B.to_host(rows)
    for name in t.columns:  # each column's inheritance (AgentTable.add_column)
        spec = t.spec(name)
        if spec.inherit == "default":
            daughters[name] = np.broadcast_to(np.asarray(spec.default, dtype=spec.dtype),
                                              daughters[name].shape).copy()
        elif spec.inherit == "split":
            half = daughters[name] * 0.5
            t[name][rows] = half
            daughters[name] = half.copy()
    if "parent" in t:
        daughters["parent"] = daughters["uid"].copy()
    t.request_births(daughters["uid"], daughters)
