"""PhysiCell's spring attachments (dynamic_spring_attachments and the
standard elastic contact): cells attach to neighbours at a rate, detach at
a rate, and each attachment pulls the two cells together as a spring of
zero rest length during the mechanics step."""
import math

import numpy as np

from biosim import _validate as V
from biosim.behaviour import Behaviour, uid_map

COLUMN = "attached"  # the uids of the cells a cell is attached to, -1 for an empty slot
DEFAULT_ELASTIC_CONSTANT = 0.01  # PhysiCell's attachment_elastic_constant, 1/min
KEY = "springs"  # the simulation's force term (see spring_forces)


class Attachments(Behaviour):
    """PhysiCell's spring attachments for the live cells of a population.

    Each interval dt (PhysiCell runs them every mechanics step: keep
    ``every=1``), with counter-based draws and the probability 1 - exp(-x)
    (or PhysiCell's x, capped at 1, with ``probability="linear"``):

    * each attachment ends with x = ``detachment_rate`` dt, or when either
      cell is dead or gone (on both sides);
    * a cell holding fewer than ``max_attachments`` attaches to each live
      neighbour closer than ``reach`` x (r_i + r_j) that has room too, with
      x = ``attachment_rate`` x affinity[neighbour's population] x dt.

    Attachments are mutual and kept in the column ``attached`` (the
    partners' uids, -1 for an empty slot; a daughter starts with none).
    During the mechanics step each pulls the two cells together at
    sqrt(k_i aff_ij k_j aff_ji) (x_j - x_i) µm/min (PhysiCell's zero rest
    length), k the ``elastic_constant`` of each cell's population
    (PhysiCell's default 0.01 /min for a population without Attachments)
    and aff_ij the affinity of i's population for j's (default 1).  So does
    the attack a cell holds (``models.Interactions``), as in PhysiCell,
    while it lasts.

    Which attachments form when several compete for the last slots does
    not depend on the thread count, the row order or the backend: the rows
    of the population are resolved in uid order, each with its candidates
    in the order of their draws.

    Parameters
    ----------
    attachment_rate : float, default 0
        1/min (>= 0).
    detachment_rate : float, default 0
        1/min (>= 0).
    max_attachments : int, default 12
        At most this many attachments per cell (>= 1).  The column has as
        many slots as the largest of the populations' Attachments added
        first; a later one may not ask for more.
    elastic_constant : float, default 0.01
        k, 1/min (>= 0).
    affinity : dict, optional
        {population name: affinity >= 0} of this population's cells for
        others' (default 1 for every population).
    reach : float, default 1.25
        Attachment range over the summed radii (> 0; PhysiCell's adhesion
        range).
    probability : {"exact", "linear"}, default "exact"
    every : int, default 1
    """

    device_ready = False  # host arrays (a GPU run copies the columns it touches)

    def event_rates(self):
        return {"attachment_rate": self.attachment_rate, "detachment_rate": self.detachment_rate}

    def __init__(self, attachment_rate=0.0, detachment_rate=0.0, max_attachments=12, elastic_constant=0.01,
                 affinity=None, reach=1.25, probability="exact", every=1):
        super().__init__(every)
        self.attachment_rate = V.positive("attachment_rate", attachment_rate, allow_zero=True)
        self.detachment_rate = V.positive("detachment_rate", detachment_rate, allow_zero=True)
        if isinstance(max_attachments, bool) or not isinstance(max_attachments, (int, np.integer)) \
                or max_attachments < 1:
            raise ValueError(f"max_attachments must be an integer >= 1, got {max_attachments!r}")
        self.max_attachments = int(max_attachments)
        self.elastic_constant = V.positive("elastic_constant", elastic_constant, allow_zero=True)
        if affinity is None:
            affinity = {}
        if not isinstance(affinity, dict) or not all(isinstance(k, str) for k in affinity):
            raise TypeError(f"affinity must be a dict {{population name: value}}, got {affinity!r}")
        self.affinity = {k: V.positive(f"affinity[{k!r}]", v, allow_zero=True) for k, v in affinity.items()}
        self.reach = V.positive("reach", reach)
        self.probability = V.choice("probability", probability, V.PROBABILITIES)

    @property
    def columns(self):
        return ((COLUMN, np.int64, -1, (self.max_attachments,), "default"),)

    @property
    def writes(self):
        return (COLUMN,)

    def attach(self, sim, population):
        for name in self.affinity:
            if name not in sim.populations:
                raise ValueError(f"Attachments: affinity names {name!r}, not a population; populations are "
                                 f"{', '.join(sim.populations)}")
        t = sim.agents
        if COLUMN in t and t.spec(COLUMN).shape[0] < self.max_attachments:
            raise ValueError(f"Attachments: max_attachments {self.max_attachments} of population "
                             f"{population.name!r} exceeds the {t.spec(COLUMN).shape[0]} slots of column "
                             f"{COLUMN!r} made by an earlier population's Attachments; add the population with "
                             f"the most attachments first")
        if COLUMN in t:  # made by an earlier population's Attachments, with at least as many slots
            self._stream = sim._new_stream()
        else:
            super().attach(sim, population)
        register_springs(sim)

    def search_radius(self, sim):
        return self.reach * float(sim._max_diameter())

    def run(self, sim, population, dt):
        t = sim.agents
        n = len(t)
        if n == 0:
            return
        K = sim.backend.host.behaviours
        rows = np.flatnonzero(t.type[:n] == population.code)
        if rows.size == 0:
            return
        names = sorted(sim.populations, key=lambda k: sim.populations[k].code)  # in type-code order
        p_attach = np.array([float(V.event_probability(self.attachment_rate * self.affinity.get(k, 1.0) * dt,
                                                       self.probability)) for k in names])
        p_detach = float(V.event_probability(self.detachment_rate * dt, self.probability))
        grid = None
        if p_attach.max() > 0:
            search = self.search_radius(sim)
            grid = sim._neighbour_grid(search)  # may reorder rows: read the columns after it
        rows = np.flatnonzero(t.type[:n] == population.code)
        attached = t[COLUMN]
        has_death = "death" in t
        death = t["death"] if has_death else np.zeros(1, np.int8)
        if grid is None:
            cand = np.full((rows.size, 1), -1, np.int64)
        else:
            cell_start, order, lower, inv_h, dims, length, periodic, _ = grid.kernel_args()
            live = rows if not has_death else rows[death[rows] == 0]
            cand_live = np.empty((live.size, self.max_attachments), np.int64)
            K.attach_proposals(live, t.type, death, has_death, t.uid, t.position, t.diameter, attached, cell_start,
                               order, lower, inv_h, dims, length, periodic, search, self.reach, p_attach, sim.seed,
                               sim.step, self.stream, cand_live)
            cand = np.full((rows.size, self.max_attachments), -1, np.int64)
            cand[np.searchsorted(rows, live)] = cand_live
        by_uid = np.argsort(t.uid[rows], kind="stable")
        max_slots = np.array([_max_slots(sim, k, t.spec(COLUMN).shape[0]) for k in names], dtype=np.int64)
        K.update_attachments(rows[by_uid], np.ascontiguousarray(cand[by_uid]), t.type, death, has_death, t.uid,
                             uid_map(sim), attached, max_slots, p_detach, sim.seed, sim.step, self.stream)


def _max_slots(sim, name, width):
    """The most attachments a cell of population ``name`` may hold: its
    Attachments' max_attachments, else every slot of the column."""
    for b in sim.populations[name].behaviours:
        if isinstance(b, Attachments):
            return b.max_attachments
    return width


def register_springs(sim):
    """Make the mechanics step add the springs of attachments and attacks
    (:func:`spring_forces`) to the pair forces."""
    sim.force_terms[KEY] = spring_forces


def stiffness(sim):
    """(ntypes, ntypes) sqrt(k_i aff_ij k_j aff_ji) of the populations
    (1/min): k and aff from each population's Attachments, PhysiCell's
    defaults (0.01, 1) where it has none."""
    names = sorted(sim.populations, key=lambda k: sim.populations[k].code)
    k = np.full(len(names), DEFAULT_ELASTIC_CONSTANT)
    aff = np.ones((len(names), len(names)))
    for a, name in enumerate(names):
        for b in sim.populations[name].behaviours:
            if isinstance(b, Attachments):
                k[a] = b.elastic_constant
                aff[a] = [b.affinity.get(other, 1.0) for other in names]
    return np.sqrt(np.outer(k, k) * aff * aff.T)


def spring_forces(sim, force):
    """Add the springs of zero rest length of every attachment (column
    ``attached``) and of every attack held (column ``attack_target``) to the
    pair forces ``force`` (n, 3), µm/min, before the position update."""
    t = sim.agents
    n = len(t)
    attaching = COLUMN in t
    attacking = "attack_target" in t
    if n == 0 or not (attaching or attacking):
        return
    B = sim.backend
    K = B.host.behaviours
    table = stiffness(sim)
    box = sim.box
    periodic = np.array([sim.boundary == "periodic"] * 3)
    host = B.to_host(force) if B.on_device else force
    touched = False
    where = None
    if attaching and (t[COLUMN][:n] >= 0).any():
        where = uid_map(sim)
        K.spring_velocities(n, t.type, t.position, t[COLUMN], where, table, box.length, periodic, host)
        touched = True
    if attacking:
        target = t["attack_target"][:n]
        rows = np.flatnonzero(target >= 0)
        if rows.size:
            where = uid_map(sim) if where is None else where
            trow = where[target[rows]]
            there = trow >= 0
            rows, trow = rows[there], trow[there]
            order = np.argsort(t.uid[rows], kind="stable")
            K.attack_springs(rows[order], trow[order], t.type, t.position, table, box.length, periodic, host)
            touched = touched or rows.size > 0
    if B.on_device and touched:
        force.copy_to_device(np.ascontiguousarray(host))
