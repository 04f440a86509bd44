"""PhysiCell's cell-cell interactions: phagocytosis, attack, fusion and
transformation, as one array pass per population and step."""
import math
import re

import numpy as np

from biosim import _validate as V
from biosim.behaviour import Behaviour, live_rows, ruled, uid_map

DEAD_KEYS = ("apoptotic", "necrotic")  # phagocytosis of dead cells by their death state
COMPARTMENTS = ("nuclear_solid", "nuclear_fluid", "cytoplasmic_solid", "cytoplasmic_fluid")


class Interactions(Behaviour):
    """PhysiCell's standard cell-cell interactions
    (standard_cell_cell_interactions) of a population's live cells with
    every agent closer than ``reach`` x (r_i + r_j) (PhysiCell's adhesion
    range, 1.25 x the summed radii).  Each interval dt, with one
    counter-based draw per (cell, neighbour, event) and the probability
    1 - exp(-rate dt) (or PhysiCell's rate x dt with
    ``probability="linear"``):

    * **phagocytosis**: a cell eats one neighbour per interval: a dead one
      (kept by ``Apoptosis``/``Necrosis`` with ``phases=True``) at the rate
      for its state (keys ``"apoptotic"``, ``"necrotic"``), a live one at
      the rate for its population.  The eater gains the prey's volume
      (with ``models.Volume``: its fluid into the cytoplasmic fluid, its
      solids into the cytoplasmic solid, then digested as the eater relaxes
      to its targets; without it, the sphere volumes add) and the columns
      named in ``conserved`` (added); the prey is removed.
    * **fusion**: a cell fuses with one live neighbour per interval at the
      rate for its population: the volumes (each compartment) and the
      ``conserved`` columns add, the position becomes the volume-weighted
      mean, ``nuclei`` (a column this option adds, 1 per cell) adds; the
      other cell is removed.
    * **attack**: a cell not attacking starts attacking one live neighbour
      at the rate for its population times the neighbour's immunogenicity
      to this population (column ``immunogenicity_to_<name>``, 1 where it
      does not exist; rules "immunogenicity to <name>" set it); while it
      holds the target (column
      ``attack_target``: the target's uid, -1 for none) it adds
      ``attack_damage_rate`` x dt to the target's ``damage`` column (and
      to its own ``damage_delivered``, dt to ``attack_time``) every
      interval, and lets go with probability dt / ``attack_duration`` or
      when the target is dead or gone.  Death from damage is the target's
      (e.g. a rule that raises its apoptosis with ``damage``).
    * **transformation**: a cell becomes a cell of another population at
      the rate given for it (the first success in the order given).

    Which cell gets a target that several claim does not depend on the
    thread count, the row order or the backend: claims are granted in the
    order of the claimant's uid, eating before fusing, and a cell consumed
    or consuming in an interval is not consumed again in it.

    Parameters
    ----------
    phagocytosis : dict, optional
        {population name, ``"apoptotic"`` or ``"necrotic"``: rate, 1/min}.
    attack : dict, optional
        {population name: rate, 1/min}.
    fusion : dict, optional
        {population name: rate, 1/min}.
    transformation : dict, optional
        {population name: rate, 1/min}.
    attack_damage_rate : float, default 1
        Damage per minute of attack (>= 0; PhysiCell's default).
    attack_duration : float, default 30
        Mean duration of an attack, min (> 0).
    conserved : sequence of str, default ()
        Float columns added from the consumed cell to the eater or fused cell.
    reach : float, default 1.25
        Interaction range over the summed radii (> 0).
    probability : {"exact", "linear"}, default "exact"
    every : int, default 1
    """

    device_ready = False  # host arrays (a GPU run copies the columns it touches)

    def event_rates(self):
        return {f"{kind}[{target!r}]": rate for kind in ("phagocytosis", "attack", "fusion", "transformation")
                for target, rate in getattr(self, kind).items()}

    def __init__(self, phagocytosis=None, attack=None, fusion=None, transformation=None, attack_damage_rate=1.0,
                 attack_duration=30.0, conserved=(), reach=1.25, probability="exact", every=1):
        super().__init__(every)
        self.phagocytosis = _rates("phagocytosis", phagocytosis)
        self.attack = _rates("attack", attack)
        self.fusion = _rates("fusion", fusion)
        self.transformation = _rates("transformation", transformation)
        for key in DEAD_KEYS:
            for name, table in (("attack", self.attack), ("fusion", self.fusion),
                                ("transformation", self.transformation)):
                if key in table:
                    raise ValueError(f"Interactions: {name} names {key!r}, a death state; only phagocytosis "
                                     f"takes dead cells")
        self.attack_damage_rate = V.positive("attack_damage_rate", attack_damage_rate, allow_zero=True)
        self.attack_duration = V.positive("attack_duration", attack_duration, allow_inf=True)
        if isinstance(conserved, str) or not all(isinstance(c, str) for c in conserved):
            raise TypeError(f"conserved must be a sequence of column names, got {conserved!r}")
        self.conserved = list(conserved)
        self.reach = V.positive("reach", reach)
        self.probability = V.choice("probability", probability, V.PROBABILITIES)

    @property
    def columns(self):
        cols = []
        if self.attack:
            cols += [("attack_target", np.int64, -1, (), "default"), ("damage", np.float64, 0.0, ()),
                     ("damage_delivered", np.float64, 0.0, (), "default"),
                     ("attack_time", np.float64, 0.0, (), "default")]
        if self.fusion:
            cols += [("nuclei", np.int32, 1, ())]
        return tuple(cols)

    @property
    def writes(self):
        return tuple(c[0] for c in self.columns) + COMPARTMENTS + ("volume", "diameter", "position", "type") \
            + tuple(self.conserved)

    def attach(self, sim, population):
        names = list(sim.populations)
        for what, table in (("phagocytosis", self.phagocytosis), ("attack", self.attack),
                            ("fusion", self.fusion), ("transformation", self.transformation)):
            for key in table:
                if key not in sim.populations and not (what == "phagocytosis" and key in DEAD_KEYS):
                    extra = ", or 'apoptotic', 'necrotic'" if what == "phagocytosis" else ""
                    raise ValueError(f"Interactions: {what} names {key!r}, not a population; populations are "
                                     f"{', '.join(names)}{extra} (create one with sim.add_agents(name, []))")
        if population.name in self.transformation:
            raise ValueError(f"Interactions: population {population.name!r} cannot transform into itself")
        for c in self.conserved:
            if c not in sim.agents:
                raise ValueError(f"Interactions: conserved column {c!r} does not exist; columns are "
                                 f"{', '.join(sim.agents.columns)}")
            spec = sim.agents.spec(c)
            if spec.dtype.kind != "f":
                raise ValueError(f"Interactions: conserved column {c!r} must be a float column, not {spec.dtype}")
        super().attach(sim, population)
        if self.attack and sim.mechanics is not None:  # PhysiCell holds an attacker to its target by a spring
            from .attachments import register_springs

            register_springs(sim)

    def _probabilities(self, sim, what, table, names, rows, dt, expected=False):
        """Probabilities over dt of the entries ``names`` of ``table`` (0 where
        not named), (1, len(names)); or (len(rows), len(names)) where
        ``models.Rules`` drives an entry per cell (key ``"what:name"``).
        With ``expected``: the expected counts, rate x dt, instead."""
        columns = [ruled(self, f"{what}:{k}") for k in names]
        rates = np.array([[table.get(k, 0.0) for k in names]], dtype=np.float64).reshape(1, len(names))
        if any(c is not None for c in columns):
            rates = np.repeat(rates, rows.size, axis=0)
            for j, c in enumerate(columns):
                if c is not None:
                    rates[:, j] = sim.agents[c][rows]
        if expected:
            return np.ascontiguousarray(rates * dt, dtype=np.float64)
        return np.ascontiguousarray(V.event_probability(rates * dt, self.probability), dtype=np.float64)

    def search_radius(self, sim):
        return self.reach * float(sim._max_diameter())

    def run(self, sim, population, dt):
        t = sim.agents
        if len(t) == 0:
            return
        K = sim.backend.host.behaviours
        if self.attack:
            self._continue_attacks(sim, population, dt, K)
        search = self.search_radius(sim)
        grid = sim._neighbour_grid(search)  # may reorder rows: read columns after
        cell_start, order, lower, inv_h, dims, length, periodic, _ = grid.kernel_args()
        rows = np.ascontiguousarray(sim.backend.to_host(live_rows(sim, population.code)), dtype=np.int64)
        m = rows.size
        if m == 0:
            return
        pops = sorted(sim.populations, key=lambda k: sim.populations[k].code)  # in type-code order
        p_dead = self._probabilities(sim, "phagocytosis", self.phagocytosis, DEAD_KEYS, rows, dt)
        p_phag = self._probabilities(sim, "phagocytosis", self.phagocytosis, pops, rows, dt)
        p_fuse = self._probabilities(sim, "fusion", self.fusion, pops, rows, dt)
        x_attack = self._probabilities(sim, "attack", self.attack, pops, rows, dt, expected=True)
        column = immunogenicity_column(population.name)  # the targets' immunogenicity to this population
        immunogenicity = t[column] if self.attack and column in t else np.ones(1)
        names = list(self.transformation)
        p_transform = self._probabilities(sim, "transformation", self.transformation, names, rows, dt)
        codes = np.array([sim.populations[k].code for k in names], dtype=np.int32)
        has_death = "death" in t
        death = t["death"] if has_death else np.zeros(1, np.int8)
        attack_target = t["attack_target"] if self.attack else np.full(len(t), 0, np.int64)
        eat, fuse, attack = (np.empty(m, np.int64) for _ in range(3))
        transform = np.empty(m, np.int32)
        K.interaction_proposals(rows, t.type, death, has_death, t.uid, t.position, t.diameter, attack_target,
                                cell_start, order, lower, inv_h, dims, length, periodic, search, self.reach, p_dead,
                                p_phag, p_fuse, x_attack, immunogenicity, self.probability == "linear", p_transform,
                                codes, sim.seed, sim.step, self.stream, eat, fuse, attack, transform)
        if self.attack:
            new = attack >= 0
            t["attack_target"][rows[new]] = t.uid[attack[new]]
        consumed = self._consume(sim, K, rows, eat, fuse)
        tr = transform >= 0
        if tr.any():
            keep = tr & ~np.isin(rows, consumed)
            for code in np.unique(transform[keep]):
                t.set_type(rows[keep & (transform == code)], int(code))

    def _continue_attacks(self, sim, population, dt, K):
        """Damage from the attacks held, in the attackers' uid order; attacks
        end with probability dt / attack_duration, or when the target is
        dead or gone."""
        t = sim.agents
        target = t["attack_target"]
        rows = np.flatnonzero((target >= 0) & (t.type == population.code))
        if rows.size == 0:
            return
        rows = rows[np.argsort(t.uid[rows], kind="stable")]
        uid = t.uid
        trow = uid_map(sim)[target[rows]]
        alive = trow >= 0
        if "death" in t:
            alive &= t["death"][trow] == 0
            alive &= t["death"][rows] == 0
        target[rows[~alive]] = -1
        rows, trow = rows[alive], trow[alive]
        amount = self.attack_damage_rate * dt
        np.add.at(t["damage"], trow, amount)
        t["damage_delivered"][rows] += amount
        t["attack_time"][rows] += dt
        p_end = float(V.event_probability(dt / self.attack_duration, self.probability))
        if p_end > 0 and rows.size:
            flag = np.empty(rows.size, np.bool_)
            K.mark_below(rows, uid, np.zeros(rows.size), 1.0, np.array([p_end]), sim.seed, sim.step, self.stream, flag)
            target[rows[flag]] = -1

    def _consume(self, sim, K, rows, eat, fuse):
        """Grant the eat and fuse claims canonically, move the volumes and
        conserved columns, remove the consumed cells; returns their rows."""
        t = sim.agents
        e, f = eat >= 0, fuse >= 0
        if not (e.any() or f.any()):
            return np.empty(0, np.int64)
        actors = np.concatenate([rows[e], rows[f]])
        targets = np.concatenate([eat[e], fuse[f]])
        kind = np.concatenate([np.zeros(e.sum(), np.int8), np.ones(f.sum(), np.int8)])
        order = np.lexsort((kind, t.uid[actors]))
        actors, targets, kind = actors[order], targets[order], kind[order]
        ok = np.empty(actors.size, np.bool_)
        K.resolve_claims(actors, targets, len(t), ok)
        actors, targets, kind = actors[ok], targets[ok], kind[ok]
        has_volume = "volume" in t
        for k in (0, 1):  # eating, then fusing; each actor at most once per kind
            a, b = actors[kind == k], targets[kind == k]
            if a.size == 0:
                continue
            va, vb = _volumes(t, a, has_volume), _volumes(t, b, has_volume)
            if k == 1:  # fusion: the volume-weighted mean position (minimum image on periodic axes)
                d = t.position[b] - t.position[a]
                if sim.boundary == "periodic":
                    d -= sim.box.length * np.round(d / sim.box.length)
                t.position[a] += (vb / (va + vb))[:, None] * d
                sim.confine(t.position)
                if "nuclei" in t:
                    t["nuclei"][a] += t["nuclei"][b]
            if has_volume:
                if k == 0:  # the prey's fluid to the cytoplasmic fluid, its solids to the cytoplasmic solid
                    t["cytoplasmic_fluid"][a] += t["nuclear_fluid"][b] + t["cytoplasmic_fluid"][b]
                    t["cytoplasmic_solid"][a] += t["nuclear_solid"][b] + t["cytoplasmic_solid"][b]
                else:
                    for c in COMPARTMENTS:
                        t[c][a] += t[c][b]
                t["volume"][a] = sum(t[c][a] for c in COMPARTMENTS)
            t.diameter[a] = np.cbrt((va + vb) / (math.pi / 6.0))
            for c in self.conserved:
                t[c][a] += t[c][b]
        t.request_deaths(t.uid[targets])
        return targets


def immunogenicity_column(attacker):
    """The float column of each cell's immunogenicity to the attackers of
    population ``attacker`` (PhysiCell's immunogenicities; 1 where absent):
    ``immunogenicity_to_<name>``, other characters than letters, digits
    and _ made _."""
    return "immunogenicity_to_" + re.sub(r"\W+", "_", attacker).strip("_")


def _volumes(t, rows, has_volume):
    """Cell volumes (µm³): the ``volume`` column where set, else the sphere's."""
    sphere = math.pi / 6.0 * t.diameter[rows] ** 3
    if not has_volume:
        return sphere
    v = t["volume"][rows]
    return np.where(v > 0, v, sphere)


def _rates(name, table):
    """A validated {name: rate} dict (rates 1/min, finite, >= 0)."""
    if table is None:
        return {}
    if not isinstance(table, dict) or not all(isinstance(k, str) for k in table):
        raise TypeError(f"{name} must be a dict {{population name: rate (1/min)}}, got {table!r}")
    return {k: V.positive(f"{name}[{k!r}]", v, allow_zero=True) for k, v in table.items()}


class Damage(Behaviour):
    """PhysiCell's cell integrity (Cell_Integrity::advance_damage): each
    interval dt, damage = (damage + dt x damage_rate) / (1 + dt x
    repair_rate), in the float column ``damage`` (also what
    ``Interactions``' attacks add to), for every cell of the population,
    dead ones included.

    Parameters
    ----------
    damage_rate : float, default 0
        Damage per minute (>= 0).
    repair_rate : float, default 0
        1/min (>= 0).
    every : int, default 1
    """

    per_agent = True

    columns = (("damage", np.float64, 0.0, ()),)
    writes = ("damage",)
    device_ready = True

    def __init__(self, damage_rate=0.0, repair_rate=0.0, every=1):
        super().__init__(every)
        self.damage_rate = V.positive("damage_rate", damage_rate, allow_zero=True)
        self.repair_rate = V.positive("repair_rate", repair_rate, allow_zero=True)

    def run(self, sim, population, dt):
        t = sim.agents
        if len(t) and (self.damage_rate > 0 or self.repair_rate > 0):
            sim.backend.behaviours.damage_step(t.col("type", False), population.code, len(t), dt, self.damage_rate,
                                               self.repair_rate, t.col("damage"))
