"""PhysiCell's rules grammar: a CSV v3 file of Hill-function rules mapping
each cell's signals (substances, pressure, contacts, damage, ...) to its
behaviours (death rates, interactions, custom columns), compiled to one
numba pass per population and step."""
import csv
import io
import math
import os
import re

import numpy as np

from biosim.behaviour import Behaviour, DEATH_STATES

from .interactions import immunogenicity_column
from .pressure import contact_signals

FIELDS = ("cell type", "signal", "direction", "behavior", "max_response", "half_max", "hill_power", "applies_to_dead")
DIRECTIONS = ("increases", "decreases")

# What biosim's rules can drive, and PhysiCell's behaviours it does not drive
# yet (refused with a clear message rather than ignored).
SUPPORTED_BEHAVIOURS = ("apoptosis", "necrosis", "cycle entry", "exit from cycle phase <k>", "<substance> secretion",
                        "<substance> export", "<substance> uptake", "<substance> secretion target",
                        "migration speed", "migration bias", "migration persistence time", "attack <type>",
                        "phagocytose <type>", "phagocytose apoptotic cell", "phagocytose necrotic cell",
                        "phagocytose dead cell", "fuse to <type>", "transform to <type>", "cell-cell adhesion",
                        "cell-cell repulsion", "relative maximum adhesion distance",
                        "chemotactic response to <substance>", "immunogenicity to <type>", "custom:<column>")
_NOT_YET = (r"cell-cell adhesion elastic constant", r"adhesive affinity to .+",
            r"cell-(BM|membrane) (adhesion|repulsion)", r"is[_ ]movable|movable",
            r"damage rate", r"damage repair rate", r"phagocytose other dead cell",
            r"cell attachment rate", r"cell detachment rate", r"maximum number of cell attachments",
            r"attack damage rate", r"attack duration", r"asymmetric division to .+")
SUPPORTED_SIGNALS = ("<substance>", "<substance> gradient", "grad(<substance>)", "gradient of <substance>",
                     "pressure", "volume", "contact with <type>", "contact with cell type <k>",
                     "contact with live cell", "contact with dead cell", "damage", "total attack time",
                     "total damage delivered", "attacking", "dead", "apoptotic", "necrotic", "time",
                     "custom:<column>")


class Rules(Behaviour):
    """PhysiCell's cell behaviour rules (the "rules CSV", version 3) for the
    population it is added to.

    Each row ``cell type, signal, increases|decreases, behavior,
    max_response, half_max, hill_power, applies_to_dead`` makes a signal
    raise a behaviour towards ``max_response`` (or lower it towards it) with
    a Hill function; the rows of one behaviour combine as PhysiCell's
    multivariate Hill formula::

        SU = sum over increasing signals of (s / half_max)^hill_power
        U  = base + (max - base) SU / (1 + SU)
        SD = the same over decreasing signals
        value = U + (min - U) SD / (1 + SD)

    where ``base`` is the behaviour's own parameter (e.g. the rate of the
    population's ``models.Apoptosis``: so add ``Rules`` after the
    behaviours it drives), ``max`` the largest ``max_response`` of its
    increasing rows and ``min`` the smallest of its decreasing rows (each
    with the base when both directions occur), as PhysiCell combines them.  Each step, before the population's other
    behaviours, one numba pass evaluates every rule of the population for
    every cell and writes the values to per-cell float columns
    ``rule_<behaviour>`` (e.g. ``rule_apoptosis``, ``rule_attack_tumour``)
    that the driven behaviour reads instead of its parameter.  A dead cell
    (``death`` column) uses only the rows with ``applies_to_dead`` = 1 and
    keeps its values where none applies.  Rows for other cell types are
    checked (the type must be a population) and left to their own
    population's ``Rules``.

    Signals: a substance's name (its concentration at the cell),
    ``"<substance> gradient"`` (also ``grad(<substance>)``, ``gradient of
    <substance>``: the gradient's norm), ``pressure`` (PhysiCell's simple
    pressure, see ``models.Pressure``), ``volume`` (µm³: the ``volume``
    column, else the sphere's), ``contact with <type>`` / ``contact with
    cell type <k>`` / ``contact with live cell`` / ``contact with dead cell``
    (neighbours within 1.25 x the summed radii), ``damage``, ``total attack
    time``, ``total damage delivered``, ``attacking`` (the columns of
    ``models.Damage`` and ``models.Interactions``), ``dead``, ``apoptotic``,
    ``necrotic``, ``time`` (min), ``custom:<column>`` (any numeric column).

    Behaviours: ``apoptosis`` and ``necrosis`` (the rates of
    ``models.Apoptosis``/``models.Necrosis``, 1/min), ``cycle entry`` and
    ``exit from cycle phase <k>`` (the exit rate of ``models.CellCycle``'s
    phase 0 or k, 1/min: 1 / its duration), ``<substance> secretion``,
    ``<substance> export``, ``<substance> uptake`` (the rates of
    ``models.Secretion`` with a target, without one, and ``models.Uptake``),
    ``migration speed``,
    ``migration bias``, ``migration persistence time`` (``models.Motility``),
    ``attack <type>``,
    ``phagocytose <type>``, ``phagocytose apoptotic cell``, ``phagocytose
    necrotic cell``, ``phagocytose dead cell`` (both), ``fuse to <type>``,
    ``transform to <type>`` (the rates of ``models.Interactions``, which must
    name the entry: its value is the base), ``custom:<column>`` (sets a float
    column; base: the column's default).  PhysiCell's other behaviours
    (secretion targets, chemotactic response, adhesion, ...) are refused
    with a message saying so: biosim's rules do not drive them yet.

    Malformed rows are refused with the file, the line and the field (where
    PhysiCell warns and skips them).

    Parameters
    ----------
    source : str, os.PathLike or sequence of rows
        The CSV file (lines starting with ``//`` are comments), or rows of
        eight fields.
    every : int, default 1
    substances : dict, optional
        {name in the rules: biosim substance name} for substances whose
        PhysiCell names are not identifiers (``bs.physicell.load`` passes
        it).
    """

    device_ready = False  # host copies of the columns it reads (the signals), one numba pass
    first = True

    def __init__(self, source, every=1, substances=None):
        super().__init__(every)
        if substances is not None and (not isinstance(substances, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in substances.items())):
            raise TypeError(f"Rules: substances must be a dict {{name in the rules: substance name}}, got "
                            f"{substances!r}")
        self.substances = dict(substances or {})
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Rules: the rules file {path!r} does not exist (or is not a file)")
            with open(path, encoding="utf-8-sig", newline="") as f:
                text = f.read()
            self._origin = path
            rows = _read_csv(text, path)
        else:
            try:
                raw = [list(r) for r in source]
            except TypeError:
                raise TypeError(f"Rules: source must be a rules CSV path or a sequence of rows of 8 fields, got "
                                f"{source!r}") from None
            self._origin = "rules"
            rows = [(f"rules row {k}", [str(x).strip() for x in r]) for k, r in enumerate(raw)]
        self._rules = _parse(rows)
        self.source = [r["fields"] for r in self._rules]  # what a checkpoint stores: the rows themselves

    def parameters(self):
        return {"source": self.source, "every": self.every, "substances": self.substances}

    # -- attaching: signals, behaviours, columns ------------------------------------------
    def attach(self, sim, population):
        pops = sim.populations
        for r in self._rules:
            if r["cell type"] not in pops:
                raise ValueError(f"Rules: {r['where']}: cell type {r['cell type']!r} is not a population; "
                                 f"populations are {', '.join(pops)} (create every population before adding "
                                 f"Rules)")
        mine = [r for r in self._rules if r["cell type"] == population.name]
        self._signals = []  # distinct signal specs, in first-use order
        behaviours = {}  # behaviour name -> [rules]
        for r in mine:
            spec = _signal(sim, r["signal"], r["where"], self.substances)
            if spec not in self._signals:
                self._signals.append(spec)
            r["signal_index"] = self._signals.index(spec)
            behaviours.setdefault(r["behavior"], []).append(r)
        self._behaviours = []
        for name, rules in behaviours.items():
            where = rules[0]["where"]
            targets, base, rate = _behaviour(sim, population, name, where, self.substances)
            for r in rules:
                if rate and r["max_response"] < 0:
                    raise ValueError(f"Rules: {r['where']}: max_response {r['max_response']!r} for {name!r}, a "
                                     f"rate, must be >= 0")
                if name == "relative maximum adhesion distance" and r["max_response"] < 1:
                    raise ValueError(f"Rules: {r['where']}: max_response {r['max_response']!r} for {name!r} must "
                                     f"be >= 1 (a multiple of the contact distance)")
                if name == "migration bias" and r["max_response"] > 1:
                    raise ValueError(f"Rules: {r['where']}: max_response {r['max_response']!r} for {name!r} must "
                                     f"be in [0, 1]")
            # PhysiCell's parse_csv_rule_v3: the largest response of the increasing rows (and the base if
            # one decreases) is the maximum, the smallest of the decreasing rows (and the base) the minimum
            up = [r["max_response"] for r in rules if r["direction"] == "increases"]
            down = [r["max_response"] for r in rules if r["direction"] == "decreases"]
            column = targets[0][2] if targets and targets[0][0] is None else _column_name(name)
            self._behaviours.append({"name": name, "base": base, "max": max(up + [base] * bool(down) or [base]),
                                     "min": min(down + [base] * bool(up) or [base]), "column": column,
                                     "targets": targets, "rules": rules})
        super().attach(sim, population)
        t = sim.agents
        for b in self._behaviours:
            if b["column"] not in t:
                t.add_column(b["column"], np.float64, b["base"], (), "copy")
            for beh, key, _ in b["targets"]:
                if beh is not None:
                    beh.__dict__.setdefault("_ruled", {})[key] = b["column"]
        self._tables()

    @property
    def writes(self):
        return tuple(b["column"] for b in getattr(self, "_behaviours", ()))

    def _tables(self):
        """The rule set as arrays for the Hill pass (rules ordered by behaviour,
        then as in the file)."""
        bs = self._behaviours
        self._base = np.array([b["base"] for b in bs], dtype=np.float64)
        self._max = np.array([b["max"] for b in bs], dtype=np.float64)
        self._min = np.array([b["min"] for b in bs], dtype=np.float64)
        rules = [(k, r) for k, b in enumerate(bs) for r in b["rules"]]
        self._r_beh = np.array([k for k, _ in rules], dtype=np.int64)
        self._r_sig = np.array([r["signal_index"] for _, r in rules], dtype=np.int64)
        self._r_up = np.array([r["direction"] == "increases" for _, r in rules], dtype=np.bool_)
        self._r_half = np.array([r["half_max"] for _, r in rules], dtype=np.float64)
        self._r_hill = np.array([r["hill_power"] for _, r in rules], dtype=np.float64)
        self._r_dead = np.array([r["applies_to_dead"] for _, r in rules], dtype=np.bool_)

    # -- each step ---------------------------------------------------------------------------
    def search_radius(self, sim):
        """Contact and pressure signals search 1.25 x the largest diameter
        (the largest summed radii, like PhysiCell's), or only it (pressure)."""
        kinds = {sp[0] for sp in self._signals}
        if "contact" in kinds:
            return 1.25 * float(sim._max_diameter())
        return float(sim._max_diameter()) if "pressure" in kinds else 0.0

    def run(self, sim, population, dt):
        if not self._behaviours:
            return
        t = sim.agents
        B = sim.backend
        rows, signals = self.signals(sim, population)
        m = rows.size
        if m == 0:
            return
        dead = t["death"][rows] != 0 if "death" in t else np.zeros(m, np.bool_)
        out = np.empty((m, len(self._behaviours)))
        for k, b in enumerate(self._behaviours):
            out[:, k] = t[b["column"]][rows]
        B.host.behaviours.hill_rules(signals, dead, self._base, self._max, self._min, self._r_beh, self._r_sig,
                                     self._r_up, self._r_half, self._r_hill, self._r_dead, out)
        for k, b in enumerate(self._behaviours):
            t[b["column"]][rows] = out[:, k]

    def signals(self, sim, population):
        """(rows, signals): the rows of the population's agents (host int64,
        increasing) and the (len(rows), number of signals) matrix of its
        rules' signals there, in the order of their first use."""
        t = sim.agents
        B = sim.backend
        contacts = pressure = None
        if any(sp[0] in ("contact", "pressure") for sp in self._signals):
            want = any(sp[0] == "contact" for sp in self._signals)
            counts = B.zeros((max(len(t), 1), len(sim.populations) + 2), np.float64) if want else None
            p, c = contact_signals(sim, population.code, 1.25, counts=counts)  # may regrid: rows after
            pressure = B.to_host(p)
            contacts = B.to_host(c) if want else None
        rows = np.ascontiguousarray(B.to_host(B.rows_of_type(t, population.code)), dtype=np.int64)
        m = rows.size
        s = np.empty((m, max(len(self._signals), 1)))
        if m == 0:
            return rows, s
        for k, sp in enumerate(self._signals):
            kind = sp[0]
            if kind == "substance":
                s[:, k] = B.to_host(sim.substances[sp[1]].sample_rows(B.to_device(rows)))
            elif kind == "gradient":
                _, g = sim.substances[sp[1]].sample_rows(B.to_device(rows), gradient=True)
                s[:, k] = np.linalg.norm(B.to_host(g), axis=1)
            elif kind == "pressure":
                s[:, k] = pressure[rows]
            elif kind == "contact":
                s[:, k] = contacts[rows, sp[1]]
            elif kind == "volume":
                s[:, k] = t["volume"][rows] if "volume" in t else math.pi / 6.0 * t.diameter[rows] ** 3
            elif kind == "column":
                s[:, k] = t[sp[1]][rows]
            elif kind == "attacking":
                s[:, k] = t["attack_target"][rows] >= 0
            elif kind == "death":
                d = t["death"][rows] if "death" in t else np.zeros(m, np.int8)
                s[:, k] = np.isin(d, sp[1])
            elif kind == "time":
                s[:, k] = sim.time
        return rows, s


def _read_csv(text, path):
    """(where, fields) for every rule line of a rules CSV (comments, blank
    lines and a header line skipped)."""
    out = []
    for k, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("//"):
            continue
        fields = [f.strip() for f in next(csv.reader(io.StringIO(stripped)))]
        if k == 1 and fields and fields[0].lower() in ("cell type", "cell_type", "celltype"):
            continue  # a header row
        out.append((f"{path}, line {k}", fields))
    return out


def _parse(rows):
    """Validated rules (dicts) from (where, fields) pairs."""
    rules, seen = [], {}
    for where, fields in rows:
        if len(fields) != len(FIELDS):
            hint = (" (9 fields is PhysiCell's v2 format, with a base value: drop it, the base is the "
                    "behaviour's own parameter)" if len(fields) == 9 else "")
            raise ValueError(f"Rules: {where}: {len(fields)} fields; a CSV v3 rule has {len(FIELDS)}: "
                             f"{', '.join(FIELDS)}{hint}")
        for name, value in zip(FIELDS, fields):
            if value == "":
                raise ValueError(f"Rules: {where}: field {name!r} is empty")
        r = {"where": where, "fields": list(fields), "cell type": fields[0], "signal": fields[1],
             "behavior": fields[3]}
        direction = fields[2].lower()
        if direction not in DIRECTIONS:
            raise ValueError(f"Rules: {where}: field 'direction' is {fields[2]!r}; allowed: increases, decreases")
        r["direction"] = direction
        for name, value in zip(FIELDS[4:7], fields[4:7]):
            try:
                x = float(value)
            except ValueError:
                raise ValueError(f"Rules: {where}: field {name!r} is {value!r}, not a number") from None
            if not math.isfinite(x) or (name != "max_response" and x <= 0):
                allowed = "finite" if name == "max_response" else "finite and > 0"
                raise ValueError(f"Rules: {where}: field {name!r} is {value!r}; it must be {allowed}")
            r[name] = x
        dead = fields[7].lower()
        if dead not in ("0", "1", "true", "false"):
            raise ValueError(f"Rules: {where}: field 'applies_to_dead' is {fields[7]!r}; allowed: 0, 1, true, false")
        r["applies_to_dead"] = dead in ("1", "true")
        key = (r["cell type"], r["signal"], r["behavior"])
        if key in seen:
            raise ValueError(f"Rules: {where}: {r['signal']!r} already drives {r['behavior']!r} of "
                             f"{r['cell type']!r} ({seen[key]}); one row per signal and behaviour")
        seen[key] = where
        rules.append(r)
    return rules


def _signal(sim, name, where, aliases):
    """The spec of signal ``name``: (kind, argument)."""
    pops = sim.populations
    t = sim.agents
    if aliases.get(name, name) in sim.substances:
        return ("substance", aliases.get(name, name))
    m = re.fullmatch(r"(.+) gradient|grad\((.+)\)|gradient of (.+)", name)
    if m:
        sub = next(g for g in m.groups() if g is not None)
        sub = aliases.get(sub, sub)
        if sub in sim.substances:
            return ("gradient", sub)
    if name == "pressure":
        return ("pressure", None)
    if name == "volume":
        return ("volume", None)
    m = re.fullmatch(r"contact with (.+)", name)
    if m:
        what = m.group(1)
        ntypes = len(pops)
        if what in pops:
            return ("contact", pops[what].code)
        k = re.fullmatch(r"cell type (\d+)", what)
        if k and int(k.group(1)) < ntypes:
            return ("contact", int(k.group(1)))
        if what in ("live cell", "live cells"):
            return ("contact", ntypes)
        if what in ("dead cell", "dead cells"):
            return ("contact", ntypes + 1)
        if what in ("basement membrane", "BM"):
            raise ValueError(f"Rules: {where}: signal {name!r} is PhysiCell's, but biosim has no basement "
                             f"membrane yet")
    columns = {"damage": "damage", "total attack time": "attack_time", "total damage delivered": "damage_delivered"}
    if name in columns or name == "attacking":
        col = "attack_target" if name == "attacking" else columns[name]
        if col not in t:
            raise ValueError(f"Rules: {where}: signal {name!r} reads the column {col!r}, which models.Damage or "
                             f"models.Interactions(attack=...) adds; give a population one before adding Rules")
        return ("attacking", None) if name == "attacking" else ("column", col)
    if name in ("dead", "is dead"):
        return ("death", (1, 2, 3))
    if name in ("apoptotic", "is_apoptotic"):
        return ("death", (DEATH_STATES.index("apoptotic"),))
    if name in ("necrotic", "is_necrotic"):
        return ("death", (DEATH_STATES.index("necrotic_swelling"), DEATH_STATES.index("necrotic_lysed")))
    if name in ("time", "current time", "global time"):
        return ("time", None)
    m = re.fullmatch(r"custom: ?(.+)", name)
    if m:
        col = m.group(1)
        if col not in t or t.spec(col).dtype.kind not in "biuf" or t.spec(col).shape != ():
            raise ValueError(f"Rules: {where}: signal {name!r} needs a numeric column {col!r} (one value per "
                             f"agent); add it with sim.agents.add_column")
        return ("column", col)
    if re.fullmatch(r"(intracellular|internalized) .+|immunogenicity to .+", name):
        raise ValueError(f"Rules: {where}: signal {name!r} is PhysiCell's, but biosim does not model it yet")
    raise ValueError(f"Rules: {where}: unknown signal {name!r}; signals are {', '.join(SUPPORTED_SIGNALS)} "
                     f"(substances: {', '.join(sim.substances) or 'none'}; populations: {', '.join(pops)})")


def _find(population, cls_name):
    found = [b for b in population.behaviours if type(b).__name__ == cls_name]
    return found[0] if found else None


def _behaviour(sim, population, name, where, aliases):
    """(targets, base value, is a rate) of behaviour ``name`` for
    ``population``; targets are (behaviour object, parameter key, None) or,
    for a custom column, (None, None, column)."""
    pops = sim.populations
    for cls_name, key, param in (("Apoptosis", "apoptosis", "rate"), ("Necrosis", "necrosis", "rate"),
                                 ("Motility", "migration speed", "speed"), ("Motility", "migration bias", "bias"),
                                 ("Motility", "migration persistence time", "persistence_time")):
        if name == key:
            b = _find(population, cls_name)
            if b is None:
                raise ValueError(f"Rules: {where}: behaviour {name!r} drives models.{cls_name}'s {param}, which "
                                 f"population {population.name!r} does not have; add models.{cls_name}({param}=...)"
                                 f" (the base value) before Rules")
            return [(b, param, None)], float(getattr(b, param)), True
    key = getattr(sim.mechanics, "RULE_KEYS", {}).get(name)
    if name in ("cell-cell adhesion", "cell-cell repulsion", "relative maximum adhesion distance"):
        if key is None:
            raise ValueError(f"Rules: {where}: behaviour {name!r} sets PhysiCellForce's value per cell, but the "
                             f"simulation's mechanics is {sim.mechanics!r}; use mechanics=bs.PhysiCellForce(...)")
        try:
            base = sim.mechanics.value(key, population.name)
        except ValueError as e:
            raise ValueError(f"Rules: {where}: behaviour {name!r}: {e}") from None
        return [(None, None, sim.mechanics.rule_column(key, population.name))], float(base), True
    m = re.fullmatch(r"immunogenicity to (cell type (\d+)|.+)", name)
    if m and (m.group(1) in pops or (m.group(2) is not None and int(m.group(2)) < len(pops))):
        attacker = m.group(1) if m.group(2) is None else next(p for p in pops if pops[p].code == int(m.group(2)))
        column = immunogenicity_column(attacker)
        t = sim.agents
        if column not in t:
            t.add_column(column, np.float64, 1.0)
        return [(None, None, column)], 1.0, True
    m = re.fullmatch(r"chemotactic (?:response|sensitivity) to (.+)", name)
    if m and aliases.get(m.group(1), m.group(1)) in sim.substances:
        sub = aliases.get(m.group(1), m.group(1))
        b = _find(population, "Motility")
        if b is None or sub not in (b.sensitivities or {}):
            raise ValueError(f"Rules: {where}: behaviour {name!r} drives models.Motility's sensitivity to {sub!r} "
                             f"(PhysiCell's advanced chemotaxis), which population {population.name!r} does not "
                             f"have; add models.Motility(..., sensitivities={{{sub!r}: base value}}) before Rules")
        return [(b, f"sensitivity:{sub}", None)], float(b.sensitivities[sub]), False
    m = re.fullmatch(r"(.+) secretion (?:target|saturation density)", name)
    if m and aliases.get(m.group(1), m.group(1)) in sim.substances:
        sub = aliases.get(m.group(1), m.group(1))
        found = [b for b in population.behaviours if type(b).__name__ == "Secretion" and b._sub is not None
                 and b._sub.name == sub and b.target is not None]
        if not found:
            raise ValueError(f"Rules: {where}: behaviour {name!r} drives models.Secretion({sub!r}, rate, target)'s "
                             f"target, which population {population.name!r} does not have; add it (its target is "
                             f"the base value) before Rules")
        return [(found[0], "target", None)], float(found[0].target), True
    m = re.fullmatch(r"(.+) (secretion|export|uptake)", name)
    if m and aliases.get(m.group(1), m.group(1)) in sim.substances:
        sub = aliases.get(m.group(1), m.group(1))
        cls_name = "Uptake" if m.group(2) == "uptake" else "Secretion"
        found = [b for b in population.behaviours if type(b).__name__ == cls_name and b._sub is not None
                 and b._sub.name == sub and (cls_name == "Uptake" or (b.target is None) == (m.group(2) == "export"))]
        if not found:
            what = {"secretion": f"Secretion({sub!r}, rate, target)", "export": f"Secretion({sub!r}, rate)",
                    "uptake": f"Uptake({sub!r}, rate)"}[m.group(2)]
            raise ValueError(f"Rules: {where}: behaviour {name!r} drives models.{what}'s rate, which population "
                             f"{population.name!r} does not have; add it (its rate is the base value) before Rules")
        return [(found[0], "rate", None)], float(found[0].rate), True
    m = re.fullmatch(r"cycle entry|exit from cycle phase (\d+)", name)
    if m:
        k = int(m.group(1) or 0)
        b = _find(population, "CellCycle")
        if b is None:
            raise ValueError(f"Rules: {where}: behaviour {name!r} drives models.CellCycle's exit rate of phase {k}, "
                             f"which population {population.name!r} does not have; add a models.CellCycle (its "
                             f"durations give the base rates) before Rules")
        if k >= len(b.phases):
            raise ValueError(f"Rules: {where}: behaviour {name!r}: the population's CellCycle has phases 0..."
                             f"{len(b.phases) - 1} ({', '.join(b.phases)})")
        return [(b, f"exit:{k}", None)], 1.0 / b.durations[k], True
    m = re.fullmatch(r"custom: ?(.+)", name)
    if m:
        col = m.group(1)
        t = sim.agents
        if col not in t or t.spec(col).dtype.kind != "f" or t.spec(col).shape != ():
            raise ValueError(f"Rules: {where}: behaviour {name!r} sets a float column {col!r} (one value per "
                             f"agent), which does not exist; add it with sim.agents.add_column({col!r}, "
                             f"'float64', base value)")
        return [(None, None, col)], float(t.spec(col).default), False
    if name in ("phagocytose apoptotic cell", "phagocytose necrotic cell", "phagocytose dead cell",
                "phagocytosis of dead cell", "phagocytosis of dead cells"):
        what, keys = "phagocytosis", (["apoptotic"] if "apoptotic" in name else ["necrotic"] if "necrotic" in name
                                      else ["apoptotic", "necrotic"])
    else:
        m = re.fullmatch(r"(attack|phagocytose|fuse to|transform to) (cell type (\d+)|.+)", name)
        if not m or not (m.group(2) in pops or (m.group(3) is not None and int(m.group(3)) < len(pops))):
            if any(re.fullmatch(p, name) for p in _NOT_YET):
                raise ValueError(f"Rules: {where}: behaviour {name!r} is PhysiCell's, but biosim's rules do not "
                                 f"drive it yet; they drive {', '.join(SUPPORTED_BEHAVIOURS)}")
            raise ValueError(f"Rules: {where}: unknown behaviour {name!r}; biosim's rules drive "
                             f"{', '.join(SUPPORTED_BEHAVIOURS)} (populations: {', '.join(pops)})")
        target = m.group(2) if m.group(3) is None else next(p for p in pops if pops[p].code == int(m.group(3)))
        what = {"attack": "attack", "phagocytose": "phagocytosis", "fuse to": "fusion",
                "transform to": "transformation"}[m.group(1)]
        keys = [target]
    b = _find(population, "Interactions")
    table = getattr(b, what, None) if b is not None else None
    missing = [k for k in keys if table is None or k not in table]
    if missing:
        raise ValueError(f"Rules: {where}: behaviour {name!r} drives models.Interactions' {what} of "
                         f"{missing[0]!r}; give population {population.name!r} "
                         f"models.Interactions({what}={{{missing[0]!r}: base rate}}) before Rules")
    if len({table[k] for k in keys}) > 1:
        raise ValueError(f"Rules: {where}: behaviour {name!r} drives the phagocytosis of apoptotic and necrotic "
                         f"cells, whose base rates differ ({table['apoptotic']} and {table['necrotic']} 1/min); "
                         f"use 'phagocytose apoptotic cell' and 'phagocytose necrotic cell'")
    return [(b, f"{what}:{k}", None) for k in keys], float(table[keys[0]]), True


def _column_name(behaviour):
    """The per-cell column of a rule-driven behaviour: rule_<name> with
    every run of other characters than letters, digits and _ made one _."""
    return "rule_" + re.sub(r"\W+", "_", behaviour).strip("_").lower()
