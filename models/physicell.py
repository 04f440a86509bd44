"""PhysiCell projects on biosim: ``bs.physicell.load("config/PhysiCell_settings.xml")``.

Reads a PhysiCell 1.14 settings file (its documented schema: domain, overall
times, options, microenvironment_setup, cell_definitions, initial_conditions,
cell_rules, user_parameters) and builds a ready :class:`biosim.Simulation`
with one population per cell definition and PhysiCell's conventions turned
on (rate x dt probabilities, BioFVM's decay splitting and Dirichlet layer,
PhysiCell's division geometry, potentials and Adams-Bashforth update).
What biosim cannot express yet is listed in one warning naming the XML
elements.
"""
import csv
import io
import math
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from biosim import Box, Dirichlet, PhysiCellForce, Simulation

from .attachments import COLUMN as ATTACHED, Attachments
from .chemistry import Secretion, Uptake
from .cycle import CellCycle
from .death import Apoptosis, Necrosis
from .interactions import Damage, Interactions
from .motion import Motility
from .physicell_rules import Rules
from .volume import Volume

# PhysiCell's cycle model codes (PhysiCell_constants.h) -> CellCycle preset
CYCLE_MODELS = {0: "ki67_advanced", 1: "ki67_basic", 2: "flow_cytometry", 5: "live", 6: "flow_cytometry_separated"}
FACES = {"xmin": "x-", "xmax": "x+", "ymin": "y-", "ymax": "y+", "zmin": "z-", "zmax": "z+"}
MAX_CELLS_CSV_BYTES = 1 << 30


class PhysiCellError(ValueError):
    """A PhysiCell project biosim cannot read (names the file and element)."""


@dataclass
class Project:
    """A PhysiCell project read by :func:`read`: the simulation and what
    running it needs."""

    simulation: Simulation
    settings: Path
    root: Path
    max_time: float  # min
    save_interval: float  # min, PhysiCell's full_data interval
    output: Path  # PhysiCell's <save><folder>, inside the project
    unsupported: list = field(default_factory=list)  # the XML elements biosim could not express


def load(settings_xml, seed=None, number_of_cells=None):
    """A ready :class:`biosim.Simulation` from a PhysiCell 1.14 settings file
    (``config/PhysiCell_settings.xml``); see :func:`read`."""
    return read(settings_xml, seed, number_of_cells).simulation


def read(settings_xml, seed=None, number_of_cells=None):
    """Read a PhysiCell project: a :class:`Project` with the Simulation.

    ``seed`` overrides ``<options><random_seed>`` (0 when it says
    ``system_clock``); ``number_of_cells`` overrides
    ``<user_parameters><number_of_cells>`` (the template's cells of each
    type, placed when no cells CSV is enabled).  Files the settings name
    (rules CSV, cells CSV) are looked up relative to the project root (the
    folder above ``config/``) as PhysiCell does, then relative to the
    settings file's folder; they must lie inside the project."""
    path = Path(settings_xml)
    if not path.is_file():
        raise FileNotFoundError(f"PhysiCell settings file {str(path)!r} does not exist (or is not a file)")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise PhysiCellError(f"{path}: not a PhysiCell settings file (XML does not parse: {e})") from None
    if root.tag != "PhysiCell_settings":
        raise PhysiCellError(f"{path}: not a PhysiCell settings file (the root element is <{root.tag}>, not "
                             f"<PhysiCell_settings>)")
    return _Reader(path, root, seed, number_of_cells).project()


class _Reader:
    def __init__(self, path, root, seed, number_of_cells):
        self.path = path
        self.number_of_cells = number_of_cells
        self.custom_values = {}  # {definition: {column: value}} from <custom_data>
        self.xml = root
        here = path.resolve().parent
        self.root = here.parent if here.name == "config" else here
        self.seed = seed
        self.unsupported = []

    # -- small helpers -----------------------------------------------------------------------
    def fail(self, where, message):
        raise PhysiCellError(f"{self.path}: {where}: {message}")

    def node(self, parent, tag, where, required=True):
        n = parent.find(tag)
        if n is None and required:
            self.fail(where, f"missing <{tag}>")
        return n

    def number(self, parent, tag, where, default=None, positive=False, nonneg=False):
        n = parent.find(tag) if parent is not None else None
        if n is None or n.text is None or not n.text.strip():
            if default is None:
                self.fail(where, f"missing <{tag}>")
            return float(default)
        try:
            x = float(n.text.strip())
        except ValueError:
            self.fail(f"{where}<{tag}>", f"{n.text.strip()!r} is not a number")
        if not math.isfinite(x) or (positive and x <= 0) or (nonneg and x < 0):
            allowed = "finite and > 0" if positive else "finite and >= 0" if nonneg else "finite"
            self.fail(f"{where}<{tag}>", f"{n.text.strip()!r}; it must be {allowed}")
        return x

    def rate(self, n, where):
        """The element's text as a rate (finite, >= 0)."""
        try:
            x = float((n.text or "").strip())
        except ValueError:
            self.fail(where, f"{n.text!r} is not a number")
        if not (math.isfinite(x) and x >= 0):
            self.fail(where, f"{n.text.strip()!r}; a rate must be finite and >= 0")
        return x

    def flag(self, parent, tag, default=False):
        n = parent.find(tag) if parent is not None else None
        if n is None or n.text is None:
            return default
        return n.text.strip().lower() in ("true", "1", "yes")

    def enabled(self, n):
        return n is not None and n.get("enabled", "true").strip().lower() in ("true", "1", "yes")

    def file(self, folder, filename, where):
        """A file the settings name, inside the project."""
        rel = Path((folder or ".").strip()) / (filename or "").strip()
        for base in (self.root, self.path.resolve().parent):
            p = (base / rel).resolve()
            if p.is_file():
                if self.root not in p.parents:
                    self.fail(where, f"{str(rel)!r} lies outside the project folder {str(self.root)!r}")
                return p
        self.fail(where, f"names {str(rel)!r}, which does not exist (looked in {self.root} and "
                         f"{self.path.resolve().parent})")

    # -- the project ----------------------------------------------------------------------------
    def project(self):
        self.read_domain()
        self.read_overall()
        sim = self.simulation()
        self.read_substrates(sim)
        defs = self.read_definitions(sim)
        rules = self.read_rules(sim)
        self.add_behaviours(sim, defs, rules)
        self.read_cells(sim, defs)
        if self.unsupported:
            warnings.warn(f"{self.path}: biosim cannot express these parts of the PhysiCell project yet (the "
                          f"simulation runs without them): " + "; ".join(self.unsupported), stacklevel=3)
        save = self.xml.find("save")
        out = (save.findtext("folder") or "output").strip() if save is not None else "output"
        output = (self.root / out).resolve()
        if self.root not in output.parents and output != self.root:
            self.fail("<save><folder>", f"{out!r} lies outside the project folder")
        interval = self.number(save.find("full_data") if save is not None else None, "interval", "<save><full_data>",
                               default=60.0, positive=True)
        return Project(sim, self.path, self.root, self.max_time, interval, output, self.unsupported)

    def read_domain(self):
        d = self.node(self.xml, "domain", "<PhysiCell_settings>")
        w = "<domain>"
        lo = np.array([self.number(d, f"{a}_min", w) for a in "xyz"])
        hi = np.array([self.number(d, f"{a}_max", w) for a in "xyz"])
        h = np.array([self.number(d, f"d{a}", w, positive=True) for a in "xyz"])
        self.use_2d = self.flag(d, "use_2D")
        if np.any(hi[:2] <= lo[:2]) or (not self.use_2d and hi[2] <= lo[2]):
            self.fail(w, f"each max must exceed its min (min {lo.tolist()}, max {hi.tolist()})")
        if h[0] != h[1] or (not self.use_2d and h[0] != h[2]):
            self.fail(w, f"dx, dy, dz = {h.tolist()}: biosim's substance grids have cubic voxels (equal dx, dy"
                         f"{'' if self.use_2d else ', dz'})")
        if self.use_2d:  # a slab one voxel thick around the mid-plane
            mid = 0.5 * (lo[2] + hi[2])
            lo[2], hi[2] = mid - 0.5 * h[0], mid + 0.5 * h[0]
        self.lower, self.upper, self.spacing = lo, hi, float(h[0])
        ext = hi - lo
        if np.any(np.abs(ext / self.spacing - np.round(ext / self.spacing)) > 1e-9):
            self.fail(w, f"the domain's extents {ext.tolist()} µm must be whole numbers of voxels of "
                         f"{self.spacing} µm")

    def read_overall(self):
        o = self.node(self.xml, "overall", "<PhysiCell_settings>")
        w = "<overall>"
        self.max_time = self.number(o, "max_time", w, positive=True)
        self.dt_diffusion = self.number(o, "dt_diffusion", w, default=0.01, positive=True)
        self.dt_mechanics = self.number(o, "dt_mechanics", w, default=0.1, positive=True)
        self.dt_phenotype = self.number(o, "dt_phenotype", w, default=6.0, positive=True)
        k = self.dt_phenotype / self.dt_mechanics
        if abs(k - round(k)) > 1e-9 or round(k) < 1:
            self.fail(w, f"dt_phenotype {self.dt_phenotype} min must be a whole multiple of dt_mechanics "
                         f"{self.dt_mechanics} min")
        self.every = int(round(k))

    def simulation(self):
        opts = self.xml.find("options")
        seed = self.seed
        if seed is None:
            text = (opts.findtext("random_seed") if opts is not None else None) or "0"
            if text.strip().lower() == "system_clock":
                seed = 0
                self.unsupported.append("<options><random_seed> system_clock (biosim runs are reproducible: "
                                        "seed 0; pass seed=)")
            else:
                try:
                    seed = int(float(text))
                except ValueError:
                    self.fail("<options><random_seed>", f"{text.strip()!r} is not an integer")
        wall = 100.0 if self.flag(opts, "virtual_wall_at_domain_edge") else 0.0  # PhysiCell's wall strength
        box = Box(self.lower, self.upper)
        sim = Simulation(box, boundary="closed", dt=self.dt_mechanics, seed=seed,
                         mechanics=PhysiCellForce(max_displacement=float("inf"), wall=wall))
        if self.use_2d:
            sim.plane = 0.5 * (self.lower[2] + self.upper[2])
        return sim

    # -- substrates ------------------------------------------------------------------------------
    def read_substrates(self, sim):
        self.substances = {}  # PhysiCell name -> biosim name
        me = self.xml.find("microenvironment_setup")
        if me is None:
            return
        for k, v in enumerate(me.findall("variable")):
            name = v.get("name")
            w = f"<microenvironment_setup><variable name={name!r}>"
            if not name:
                self.fail(w, "a <variable> without a name")
            ident = re.sub(r"\W+", "_", name).strip("_") or f"substrate_{k}"
            if ident[0].isdigit():
                ident = "s_" + ident
            pp = self.node(v, "physical_parameter_set", w)
            diffusion = self.number(pp, "diffusion_coefficient", w, nonneg=True)
            decay = self.number(pp, "decay_rate", w, nonneg=True)
            initial = self.number(v, "initial_condition", w, default=0.0)
            boundary = self.dirichlet(v, w)
            sim.add_substance(ident, diffusion=diffusion, decay=decay, spacing=self.spacing, initial=initial,
                              boundary=boundary, solver="implicit", dt=self.dt_diffusion, decay_split=True,
                              dirichlet_layer=True)
            self.substances[name] = ident
        opts = me.find("options")
        if opts is not None:
            for tag in ("initial_condition", "dirichlet_nodes"):
                if self.enabled(opts.find(tag)):
                    self.unsupported.append(f"<microenvironment_setup><options><{tag}> (a file of values)")

    def dirichlet(self, v, w):
        """biosim's boundary for a substrate: PhysiCell's global Dirichlet
        condition, or its per-face options (z faces never in 2-D)."""
        g = v.find("Dirichlet_boundary_condition")
        if not self.enabled(g) or g is None:
            return None
        value = self.number(v, "Dirichlet_boundary_condition", w)
        faces = {f: value for f in FACES}
        opts = v.find("Dirichlet_options")
        if opts is not None:
            for b in opts.findall("boundary_value"):
                face = b.get("ID", "")
                if face not in FACES:
                    self.fail(f"{w}<Dirichlet_options>", f"boundary_value ID {face!r}; allowed: "
                                                         f"{', '.join(FACES)}")
                faces[face] = float(b.text) if self.enabled(b) else None
        out = {FACES[f]: Dirichlet(x) for f, x in faces.items() if x is not None
               and not (self.use_2d and f.startswith("z"))}
        return out or None

    # -- cell definitions ------------------------------------------------------------------------
    def read_definitions(self, sim):
        cds = self.node(self.xml, "cell_definitions", "<PhysiCell_settings>")
        nodes = cds.findall("cell_definition")
        if not nodes:
            self.fail("<cell_definitions>", "no <cell_definition>")
        by_name = {}
        for n in nodes:
            name = n.get("name")
            if not name:
                self.fail("<cell_definitions>", "a <cell_definition> without a name")
            if name in by_name:
                self.fail("<cell_definitions>", f"two cell definitions are named {name!r}")
            by_name[name] = n
        self.definitions = by_name
        self.ids = {}
        for k, (name, n) in enumerate(by_name.items()):
            try:
                self.ids[int(n.get("ID", k))] = name
            except ValueError:
                self.fail(f"<cell_definition name={name!r}>", f"ID {n.get('ID')!r} is not an integer")
            parent = n.get("parent_type")
            if parent is not None and parent not in by_name:
                self.fail(f"<cell_definition name={name!r}>", f"parent_type {parent!r} is not a cell definition; "
                                                             f"definitions are {', '.join(by_name)}")
            sim.add_agents(name, [])
        return by_name

    def find(self, name, path):
        """Element ``path`` of definition ``name`` or of its parent_type chain."""
        seen = set()
        while name is not None and name not in seen:
            seen.add(name)
            n = self.definitions[name].find(path)
            if n is not None:
                return n
            name = self.definitions[name].get("parent_type")
        return None

    def read_rules(self, sim):
        cr = self.xml.find("cell_rules")
        if cr is None:
            return None
        out = []
        for rs in cr.findall("rulesets/ruleset"):
            if not self.enabled(rs):
                continue
            fmt = rs.get("format", "csv").lower()
            version = float(rs.get("version", "3") or 3)
            if fmt != "csv" or version < 3.0:
                self.fail("<cell_rules><ruleset>", f"format {fmt!r} version {version}: biosim reads CSV version 3 "
                                                  f"rules (PhysiCell 1.14 refuses older ones too)")
            out.append(self.file(rs.findtext("folder"), rs.findtext("filename"), "<cell_rules><ruleset>"))
        return out

    def add_behaviours(self, sim, defs, rule_files):
        rules = [Rules(p, substances=self.substances) for p in rule_files or []]
        for rs in rules:
            for r in rs._rules:
                if r["cell type"] not in defs:
                    raise PhysiCellError(f"Rules: {r['where']}: cell type {r['cell type']!r} is not a population; "
                                         f"populations are {', '.join(defs)} (the cell definitions)")
        rule_rows = [r for rs in rules for r in rs.source]
        driven = {(r[0], r[3]) for r in rule_rows}
        uses_damage = any(r[1] in ("damage", "total attack time", "total damage delivered", "attacking")
                          for r in rule_rows)
        names = list(defs)
        for name in names:
            w = f"<cell_definition name={name!r}>"
            pop = sim.populations[name]
            B = []
            volume = self.volume(name, w)
            if volume is not None:
                B.append(volume)
            cyc = self.cycle(name, w)
            if cyc is not None:
                B.append(cyc)
            B += self.death(name, w)
            B += self.secretion(name, w, driven)
            B += self.motility(name, w)
            inter = self.interactions(name, w, driven, names)
            if inter is not None:
                B.append(inter)
            ci = self.find(name, "phenotype/cell_integrity")
            dr = self.number(ci, "damage_rate", w, default=0.0, nonneg=True)
            rr = self.number(ci, "damage_repair_rate", w, default=0.0, nonneg=True)
            if dr > 0 or rr > 0 or uses_damage:
                B.append(Damage(dr, rr, every=self.every))
            self.custom(sim, name, w)
            pop.behaviours += B
            if self.find(name, "phenotype/intracellular") is not None:
                self.unsupported.append(f"{w}<phenotype><intracellular> (PhysiBoSS, SBML, dFBA)")
        self.mechanics(sim, names)
        for name in names:
            for path, r in zip(rule_files or [], rules):
                if any(row[0] == name for row in r.source):  # the file again: errors name its lines
                    sim.populations[name].behaviours += [Rules(path, substances=self.substances,
                                                               every=self.every)]

    def volume(self, name, w):
        v = self.find(name, "phenotype/volume")
        if v is None:
            return None
        w = f"{w}<volume>"
        return Volume(total=self.number(v, "total", w, 2494.0, positive=True),
                      nuclear=self.number(v, "nuclear", w, 540.0, positive=True),
                      fluid_fraction=self.number(v, "fluid_fraction", w, 0.75, nonneg=True),
                      fluid_change_rate=self.number(v, "fluid_change_rate", w, 0.05, nonneg=True),
                      cytoplasmic_biomass_change_rate=self.number(v, "cytoplasmic_biomass_change_rate", w, 0.0045,
                                                                  nonneg=True),
                      nuclear_biomass_change_rate=self.number(v, "nuclear_biomass_change_rate", w, 0.0055,
                                                              nonneg=True),
                      calcification_rate=self.number(v, "calcification_rate", w, 0.0, nonneg=True),
                      every=self.every)

    def cycle(self, name, w):
        c = self.find(name, "phenotype/cycle")
        if c is None:
            return None
        try:
            code = int(c.get("code", "5"))
        except ValueError:
            self.fail(f"{w}<cycle>", f"code {c.get('code')!r} is not an integer")
        if code not in CYCLE_MODELS:
            self.fail(f"{w}<cycle>", f"code {code} ({c.get('name')!r}) is not a cycle model biosim has; codes are "
                                     + ", ".join(f"{k} ({v})" for k, v in CYCLE_MODELS.items()))
        preset = getattr(CellCycle, CYCLE_MODELS[code])()
        k = len(preset.phases)
        durations, fixed = list(preset.durations), list(preset.fixed)
        for i, x, f in self.phase_values(c, "phase_transition_rates", "rate", "start_index", "rate from", w, k):
            durations[i], fixed[i] = (math.inf if x == 0 else 1.0 / x), f
        for i, x, f in self.phase_values(c, "phase_durations", "duration", "index", "duration of", w, k):
            durations[i], fixed[i] = (x if x > 0 else 1e-9), f
        return CellCycle(preset.phases, durations, fixed=fixed, divide_after=preset.divide_after, every=self.every,
                         placement="physicell", probability="linear")

    def phase_values(self, cycle, tag, item, index, what, w, k):
        """(phase index, value, fixed_duration) of each <item> of <cycle><tag>
        (phases 0..k-1, values finite and >= 0)."""
        out = []
        block = cycle.find(tag)
        for e in block.findall(item) if block is not None else []:
            try:
                i, x = int(e.get(index, "0")), float(e.text)
            except (TypeError, ValueError):
                i, x = -1, math.nan
            if not (0 <= i < k) or not math.isfinite(x) or x < 0:
                self.fail(f"{w}<cycle><{tag}>", f"{what} phase {e.get(index, '0')} = {e.text!r}; phases are "
                                                f"0..{k - 1}, {item}s finite and >= 0")
            out.append((i, x, e.get("fixed_duration", "false").strip().lower() == "true"))
        return out

    def death(self, name, w):
        d = self.find(name, "phenotype/death")
        out = []
        if d is None:
            return out
        for m in d.findall("model"):
            code = m.get("code", "")
            mname = (m.get("name") or "").lower()
            ww = f"{w}<death><model name={m.get('name')!r}>"
            rate = self.number(m, "death_rate", ww, nonneg=True)
            p = m.find("parameters")
            durations = [float(x.text) for x in m.findall("phase_durations/duration")]
            if not durations:
                durations = [1.0 / float(x.text) if float(x.text) > 0 else math.inf
                             for x in m.findall("phase_transition_rates/rate")]

            def par(tag, default):
                return self.number(p, tag, ww, default, nonneg=True)

            if code == "100" or mname == "apoptosis":
                out.append(Apoptosis(rate, every=self.every, probability="linear", phases=True,
                                     duration=durations[0] if durations and durations[0] > 0 else 516.0,
                                     cytoplasmic_biomass_change_rate=par("cytoplasmic_biomass_change_rate", 1 / 60),
                                     nuclear_biomass_change_rate=par("nuclear_biomass_change_rate", 0.35 / 60),
                                     fluid_change_rate=par("unlysed_fluid_change_rate", 3 / 60),
                                     calcification_rate=par("calcification_rate", 0.0)))
            elif code == "101" or mname == "necrosis":
                lysed = durations[1] if len(durations) > 1 and durations[1] > 0 else 86400.0
                out.append(Necrosis(rate=rate, every=self.every, probability="linear", phases=True,
                                    lysed_duration=lysed,
                                    relative_rupture_volume=par("relative_rupture_volume", 2.0) or 2.0,
                                    unlysed_fluid_change_rate=par("unlysed_fluid_change_rate", 0.67 / 60),
                                    lysed_fluid_change_rate=par("lysed_fluid_change_rate", 0.05 / 60),
                                    cytoplasmic_biomass_change_rate=par("cytoplasmic_biomass_change_rate",
                                                                        0.0032 / 60),
                                    nuclear_biomass_change_rate=par("nuclear_biomass_change_rate", 0.013 / 60),
                                    calcification_rate=par("calcification_rate", 0.0042 / 60)))
            else:
                self.unsupported.append(f"{ww} (code {code}: only apoptosis 100 and necrosis 101)")
        return out

    def secretion(self, name, w, driven):
        s = self.find(name, "phenotype/secretion")
        out = []
        if s is None:
            return out
        for sub in s.findall("substrate"):
            pname = sub.get("name")
            ww = f"{w}<secretion><substrate name={pname!r}>"
            if pname not in self.substances:
                self.fail(ww, f"{pname!r} is not a substrate; substrates are {', '.join(self.substances) or 'none'}")
            ident = self.substances[pname]
            rate = self.number(sub, "secretion_rate", ww, 0.0, nonneg=True)
            target = self.number(sub, "secretion_target", ww, 1.0, nonneg=True)
            uptake = self.number(sub, "uptake_rate", ww, 0.0, nonneg=True)
            export = self.number(sub, "net_export_rate", ww, 0.0, nonneg=True)
            ruled = {kind for kind in ("secretion", "uptake", "export", "secretion target")
                     if (name, f"{pname} {kind}") in driven}
            if rate > 0 or ruled & {"secretion", "secretion target"}:  # kept at rate 0 when a rule drives it
                out.append(Secretion(ident, rate, target=target, every=1))
            if uptake > 0 or "uptake" in ruled:
                out.append(Uptake(ident, uptake, every=1))
            if export > 0 or "export" in ruled:
                out.append(Secretion(ident, export, every=1))
        return out

    def motility(self, name, w):
        m = self.find(name, "phenotype/motility")
        opts = m.find("options") if m is not None else None
        if m is None or not self.flag(opts, "enabled"):
            return []
        w = f"{w}<motility>"
        speed = self.number(m, "speed", w, 1.0, nonneg=True)
        persistence = self.number(m, "persistence_time", w, 1.0, positive=True)
        bias = self.number(m, "migration_bias", w, 0.5, nonneg=True)
        if bias > 1:
            self.fail(f"{w}<migration_bias>", f"{bias}; it must be in [0, 1]")
        substance, direction = None, 1
        chemo = opts.find("chemotaxis")
        if chemo is not None and self.flag(chemo, "enabled"):
            pname = (chemo.findtext("substrate") or "").strip()
            if pname not in self.substances:
                self.fail(f"{w}<chemotaxis><substrate>", f"{pname!r} is not a substrate; substrates are "
                                                         f"{', '.join(self.substances) or 'none'}")
            substance = self.substances[pname]
            direction = -1 if self.number(chemo, "direction", w, 1.0) < 0 else 1
        adv = opts.find("advanced_chemotaxis")
        if adv is not None and self.flag(adv, "enabled"):  # PhysiCell then uses it instead of <chemotaxis>
            sens = {}
            for e in adv.findall("chemotactic_sensitivities/chemotactic_sensitivity"):
                pname = (e.get("substrate") or "").strip()
                where = f"{w}<advanced_chemotaxis><chemotactic_sensitivity substrate={pname!r}>"
                if pname not in self.substances:
                    self.fail(where, f"{pname!r} is not a substrate; substrates are "
                                     f"{', '.join(self.substances) or 'none'}")
                try:
                    value = float((e.text or "").strip())
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    self.fail(where, f"{e.text!r} is not a finite number")
                sens[self.substances[pname]] = value
            if sens:
                return [Motility(speed, persistence, bias=bias, sensitivities=sens,
                                 normalize_each=self.flag(adv, "normalize_each_gradient"))]
        return [Motility(speed, persistence, bias=bias if substance is not None else 0.0, substance=substance,
                         direction=direction)]

    def interactions(self, name, w, driven, names):
        ci = self.find(name, "phenotype/cell_interactions")
        ct = self.find(name, "phenotype/cell_transformations")
        ww = f"{w}<cell_interactions>"
        phag, attack, fusion, trans = {}, {}, {}, {}
        if ci is not None:
            phag["apoptotic"] = self.number(ci, "apoptotic_phagocytosis_rate", ww, 0.0, nonneg=True)
            phag["necrotic"] = self.number(ci, "necrotic_phagocytosis_rate", ww, 0.0, nonneg=True)
            if self.number(ci, "other_dead_phagocytosis_rate", ww, 0.0, nonneg=True) > 0:
                self.unsupported.append(f"{ww}<other_dead_phagocytosis_rate> (biosim's dead cells are apoptotic "
                                        f"or necrotic)")
            for tag, table, item in (("live_phagocytosis_rates", phag, "phagocytosis_rate"),
                                     ("attack_rates", attack, "attack_rate"),
                                     ("fusion_rates", fusion, "fusion_rate")):
                for r in ci.findall(f"{tag}/{item}"):
                    if r.get("name") in names:
                        table[r.get("name")] = self.rate(r, f"{ww}<{tag}><{item} name={r.get('name')!r}>")
        if ct is not None:
            for r in ct.findall("transformation_rates/transformation_rate"):
                if r.get("name") in names and r.get("name") != name:
                    trans[r.get("name")] = self.rate(r, f"{w}<cell_transformations><transformation_rate "
                                                        f"name={r.get('name')!r}>")
        rated = any(v > 0 for t in (phag, attack, fusion, trans) for v in t.values())
        ruled = any(cell == name and re.match(r"(attack|phagocyt|fuse to|transform to)", b) for cell, b in driven)
        if not (rated or ruled):
            return None
        keep = (lambda t: t) if ruled else (lambda t: {k: v for k, v in t.items() if v > 0})
        return Interactions(phagocytosis=keep(phag) or None, attack=keep(attack) or None,
                            fusion=keep(fusion) or None, transformation=keep(trans) or None,
                            attack_damage_rate=self.number(ci, "attack_damage_rate", ww, 1.0, nonneg=True),
                            attack_duration=self.number(ci, "attack_duration", ww, 30.0, positive=True),
                            conserved=self.conserved(name), probability="linear")

    def conserved(self, name):
        c = self.find(name, "custom_data")
        if c is None:
            return ()
        return tuple(self.column(x.tag) for x in c if x.get("conserved", "false").strip().lower() == "true")

    def column(self, tag):
        return re.sub(r"\W+", "_", tag).strip("_")

    def custom(self, sim, name, w):
        c = self.find(name, "custom_data")
        if c is None:
            return
        for x in c:
            col = self.column(x.tag)
            if not col.isidentifier():
                self.fail(f"{w}<custom_data><{x.tag}>", "the name makes no column name")
            try:
                value = float((x.text or "0").strip())
            except ValueError:
                self.unsupported.append(f"{w}<custom_data><{x.tag}> (not a number: {x.text!r})")
                continue
            if col not in sim.agents:
                sim.agents.add_column(col, np.float64, value)
            self.custom_values.setdefault(name, {})[col] = value

    def mechanics(self, sim, names):
        """PhysiCell's potentials: repulsion sqrt(c_i c_j), adhesion
        sqrt(a_i aff_ij a_j aff_ji), reach lam_i r_i + lam_j r_j; one value
        for all cells where the definitions agree (the fastest kernel), the
        pair table where only adhesion differs, else values per population."""
        adh, rep, reach, aff, springs = {}, {}, {}, {}, {}
        for name in names:
            m = self.find(name, "phenotype/mechanics")
            w = f"<cell_definition name={name!r}><mechanics>"
            adh[name] = self.number(m, "cell_cell_adhesion_strength", w, 0.4, nonneg=True)
            rep[name] = self.number(m, "cell_cell_repulsion_strength", w, 10.0, nonneg=True)
            reach[name] = self.number(m, "relative_maximum_adhesion_distance", w, 1.25, positive=True)
            if reach[name] < 1.0:
                self.fail(f"{w}<relative_maximum_adhesion_distance>", f"{reach[name]!r}; it must be >= 1 (a "
                          f"multiple of the sum of radii)")
            found = m.findall("cell_adhesion_affinities/cell_adhesion_affinity") if m is not None else []
            aff[name] = {r.get("name"): self.rate(r, f"{w}<cell_adhesion_affinity name={r.get('name')!r}>")
                         for r in found}
            springs[name] = (self.number(m, "attachment_rate", w, 0.0, nonneg=True),
                             self.number(m, "detachment_rate", w, 0.0, nonneg=True),
                             self.number(m, "maximum_number_of_attachments", w, 12.0, nonneg=True),
                             self.number(m, "attachment_elastic_constant", w, 0.01, nonneg=True))
        self.attachments(sim, names, springs, aff)
        pair = np.array([[math.sqrt(aff[a].get(b, 1.0) * aff[b].get(a, 1.0)) for b in names] for a in names])
        old = sim.mechanics  # same class, same columns: only the parameters change
        kw = {"max_displacement": old.max_displacement, "wall": old.wall}
        if len(set(rep.values())) == 1 and len(set(reach.values())) == 1:
            matrix = np.array([[math.sqrt(adh[a] * adh[b]) for b in names] for a in names]) * pair
            sim.mechanics = PhysiCellForce(repulsion=rep[names[0]], adhesion_range=reach[names[0]],
                                           adhesion=matrix if len(names) > 1 else float(matrix[0, 0]), **kw)
        else:
            sim.mechanics = PhysiCellForce(repulsion=rep, adhesion=adh, adhesion_range=reach,
                                           affinity=None if np.all(pair == 1.0) else pair, **kw)

    def attachments(self, sim, names, springs, aff):
        """PhysiCell's spring attachments (every mechanics step) for every cell
        definition, when one of them attaches and the project leaves
        ``<options><disable_automated_spring_adhesions>`` off."""
        if not any(v[0] > 0 for v in springs.values()):
            return
        if self.flag(self.xml.find("options"), "disable_automated_spring_adhesions"):
            return
        most = []
        for name in names:
            n = springs[name][2]
            if n != int(n) or n < 1:
                self.fail(f"<cell_definition name={name!r}><mechanics><maximum_number_of_attachments>",
                          f"{n!r}; it must be a whole number >= 1")
            most.append(int(n))
        sim.agents.add_column(ATTACHED, np.int64, -1, (max(most),), "default")  # slots for the most of any type
        for name, n in zip(names, most):
            rate, off, _, k = springs[name]
            sim.populations[name].behaviours += [Attachments(
                attachment_rate=rate, detachment_rate=off, max_attachments=n, elastic_constant=k,
                affinity={b: v for b, v in aff[name].items() if b in sim.populations}, probability="linear")]

    # -- cells -------------------------------------------------------------------------------------
    def read_cells(self, sim, defs):
        ic = self.xml.find("initial_conditions/cell_positions")
        if ic is not None and self.enabled(ic):
            if ic.get("type", "csv").lower() != "csv":
                self.fail("<initial_conditions><cell_positions>", f"type {ic.get('type')!r}; biosim reads csv")
            path = self.file(ic.findtext("folder"), ic.findtext("filename"), "<initial_conditions><cell_positions>")
            self.cells_csv(sim, path)
            return
        n = self.xml.findtext("user_parameters/number_of_cells")
        if self.number_of_cells is not None:
            n = str(self.number_of_cells)
        if n is not None:
            try:
                count = int(float(n))
            except ValueError:
                self.fail("<user_parameters><number_of_cells>", f"{n.strip()!r} is not an integer")
            if count < 0:
                self.fail("<user_parameters><number_of_cells>", f"{count}; it must be >= 0")
            rng = np.random.default_rng(sim.seed)
            lo, hi = self.lower.copy(), self.upper.copy()
            for name in defs:  # the template's setup_tissue: count cells of each type, uniform in the domain
                pos = lo + (hi - lo) * rng.random((count, 3))
                if self.use_2d:
                    pos[:, 2] = 0.5 * (lo[2] + hi[2])
                self.place(sim, name, pos, None, {})

    def place(self, sim, name, pos, volume, extra):
        vol = self.find(name, "phenotype/volume")
        v = volume if volume is not None else np.full(len(pos), self.number(vol, "total", "<volume>", 2494.0,
                                                                            positive=True))
        d = np.cbrt(6.0 * v / math.pi)
        cols = {k: np.full(len(pos), x) for k, x in self.custom_values.get(name, {}).items()}
        cols.update(extra)
        sim.add_agents(name, pos, diameter=d, **cols)

    def cells_csv(self, sim, path):
        if path.stat().st_size > MAX_CELLS_CSV_BYTES:
            raise PhysiCellError(f"{path}: larger than {MAX_CELLS_CSV_BYTES} bytes")
        text = path.read_text(encoding="utf-8-sig")
        rows = [r for r in csv.reader(io.StringIO(text)) if r and any(x.strip() for x in r)]
        if not rows:
            return
        header = None
        if rows[0][0].strip().lower() == "x":
            header = [h.strip() for h in rows[0]]
            rows = rows[1:]
            need = ["x", "y", "z", "type"]
            if [h.lower() for h in header[:4]] != need:
                raise PhysiCellError(f"{path}, line 1: the header must start with x,y,z,type, got "
                                     f"{','.join(header[:4])}")
        pops = sim.populations
        by_type = {}
        for k, r in enumerate(rows, start=2 if header else 1):
            if len(r) < 4:
                raise PhysiCellError(f"{path}, line {k}: {len(r)} fields; a cell needs x,y,z,type")
            try:
                xyz = [float(r[0]), float(r[1]), float(r[2])]
            except ValueError:
                raise PhysiCellError(f"{path}, line {k}: position {r[:3]} is not three numbers") from None
            t = r[3].strip()
            if t not in pops:
                try:
                    t = self.ids[int(float(t))]
                except (ValueError, KeyError):
                    raise PhysiCellError(f"{path}, line {k}: cell type {r[3].strip()!r} is neither a cell "
                                         f"definition's name nor its ID; definitions are "
                                         + ", ".join(f"{v} ({i})" for i, v in self.ids.items())) from None
            if self.use_2d:
                xyz[2] = 0.5 * (self.lower[2] + self.upper[2])
            by_type.setdefault(t, []).append((xyz, r[4:], k))
        extras = header[4:] if header else []
        for name, items in by_type.items():
            pos = np.array([i[0] for i in items])
            volume, cols = None, {}
            for j, h in enumerate(extras):
                try:
                    vals = np.array([float(i[1][j]) if j < len(i[1]) and i[1][j].strip() else np.nan
                                     for i in items])
                except ValueError:
                    raise PhysiCellError(f"{path}: column {h!r} holds a value that is not a number") from None
                if h == "volume":
                    if np.any(~(vals > 0)):
                        raise PhysiCellError(f"{path}: column 'volume' must hold volumes > 0 (µm³)")
                    volume = vals
                elif h.startswith("custom:"):
                    col = self.column(h[7:])
                    if col in sim.agents:
                        cols[col] = np.where(np.isnan(vals), sim.agents.spec(col).default, vals)
                else:
                    self.unsupported.append(f"{path.name}: column {h!r} (only volume and custom: columns)")
            self.place(sim, name, pos, volume, cols)
