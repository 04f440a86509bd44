"""PhysiCell's standard volume model: cells as nuclear and cytoplasmic,
solid and fluid compartments that relax towards their targets, so that a
cell halved at division grows back."""
import math

import numpy as np

from biosim import _validate as V
from biosim.behaviour import DEATH_STATES, Behaviour

COMPARTMENTS = ("nuclear_solid", "nuclear_fluid", "cytoplasmic_solid", "cytoplasmic_fluid")


class Volume(Behaviour):
    """PhysiCell's standard volume model (standard_volume_update_function),
    one explicit Euler step per interval dt (min):

    * fluid F += dt r_f (f* V - F), shared between nucleus and cytoplasm as
      the nuclear volume was;
    * nuclear solid N_s += dt r_N (N_s* - N_s);
    * cytoplasmic solid C_s += dt r_C (C_s* - C_s), C_s* = (C:N ratio) N_s*;
    * calcified fraction += dt r_calc (1 - calcified fraction);

    then the cell's ``volume`` (µm³) is the sum of the four compartments
    and its ``diameter`` that of the sphere of that volume.  The targets
    come from ``total`` and ``nuclear`` (µm³) and ``fluid_fraction``: the
    nuclear solid target is nuclear x (1 - f*), the cytoplasmic one
    (total - nuclear) x (1 - f*).  The defaults are PhysiCell's MCF-7 values
    (phenotype.cpp): 2494 µm³ (a diameter of 16.8 µm), 540 µm³ of nucleus,
    fluid fraction 0.75, r_f = 3/60, r_C = 0.27/60, r_N = 0.33/60 per min.

    Columns (µm³, float64): ``nuclear_solid``, ``nuclear_fluid``,
    ``cytoplasmic_solid``, ``cytoplasmic_fluid`` and ``volume``, each split in
    half between mother and daughter at division (so a divided cell grows
    back to its targets), and ``calcified_fraction`` (copied).  A cell that
    has no volume yet (``volume`` 0: a founder, or an agent added later)
    starts from its diameter, its sphere's volume split in the targets'
    proportions; give founders ``diameter=Volume().diameter`` to start them
    at the target volume.

    Dead cells kept by ``Apoptosis(phases=True)`` or
    ``Necrosis(phases=True)`` follow their death model's targets and rates
    (apoptotic cells shrink, necrotic ones swell, then lyse).

    Use it with a cycle that divides without growing (``CellCycle``
    without ``growth_rate``), not with ``GrowthDivision`` (which sets the
    diameter from its own growth).  The explicit step is stable for
    dt x rate < 1 (PhysiCell runs it every 6 min: 0.3 for the fluid).

    Parameters
    ----------
    total : float, default 2494.0
        Target total volume, µm³ (> 0).
    nuclear : float, default 540.0
        Target nuclear volume, µm³ (> 0, below ``total``).
    fluid_fraction : float, default 0.75
        Target fluid fraction, in [0, 1].
    fluid_change_rate : float, default 3/60
        r_f, 1/min (>= 0).
    cytoplasmic_biomass_change_rate : float, default 0.27/60
        r_C, 1/min (>= 0).
    nuclear_biomass_change_rate : float, default 0.33/60
        r_N, 1/min (>= 0).
    calcification_rate : float, default 0
        1/min (>= 0).
    every : int, default 1
    """

    per_agent = True

    device_ready = True
    columns = tuple((name, np.float64, 0.0, (), "split") for name in COMPARTMENTS + ("volume",)) + (
        ("calcified_fraction", np.float64, 0.0, (), "copy"),)
    writes = COMPARTMENTS + ("volume", "calcified_fraction", "diameter")

    def __init__(self, total=2494.0, nuclear=540.0, fluid_fraction=0.75, fluid_change_rate=3.0 / 60.0,
                 cytoplasmic_biomass_change_rate=0.27 / 60.0, nuclear_biomass_change_rate=0.33 / 60.0,
                 calcification_rate=0.0, every=1):
        super().__init__(every)
        self.total = V.positive("total", total)
        self.nuclear = V.positive("nuclear", nuclear)
        if not self.nuclear < self.total:
            raise ValueError(f"nuclear must be below total (µm³), got nuclear={nuclear!r}, total={total!r}")
        self.fluid_fraction = V.positive("fluid_fraction", fluid_fraction, allow_zero=True)
        if self.fluid_fraction > 1.0:
            raise ValueError(f"fluid_fraction must be in [0, 1], got {fluid_fraction!r}")
        self.fluid_change_rate = V.positive("fluid_change_rate", fluid_change_rate, allow_zero=True)
        self.cytoplasmic_biomass_change_rate = V.positive("cytoplasmic_biomass_change_rate",
                                                          cytoplasmic_biomass_change_rate, allow_zero=True)
        self.nuclear_biomass_change_rate = V.positive("nuclear_biomass_change_rate", nuclear_biomass_change_rate,
                                                      allow_zero=True)
        self.calcification_rate = V.positive("calcification_rate", calcification_rate, allow_zero=True)

    @property
    def diameter(self):
        """Diameter (µm) of a sphere of the target total volume."""
        return (6.0 * self.total / math.pi) ** (1.0 / 3.0)

    def targets(self):
        """The kernel's parameter tuple: (target nuclear solid µm³, target
        cytoplasmic : nuclear solid ratio, target fluid fraction, fluid,
        nuclear and cytoplasmic biomass rates, calcification rate; 1/min)."""
        solid = 1.0 - self.fluid_fraction
        ns = self.nuclear * solid
        ratio = (self.total - self.nuclear) / self.nuclear
        return (ns, ratio, self.fluid_fraction, self.fluid_change_rate, self.nuclear_biomass_change_rate,
                self.cytoplasmic_biomass_change_rate, self.calcification_rate)

    def table(self, population):
        """The kernel's (4, 7) float64 parameter table, one row per death
        state (``biosim.behaviour.DEATH_STATES``): row 0 is
        :meth:`targets` (live cells), the others come from the population's
        death models with phases (``Apoptosis``, ``Necrosis``:
        ``volume_parameters()``), PhysiCell's defaults where it has none."""
        from .death import Apoptosis, Necrosis

        rows = {0: self.targets(), **Apoptosis(0.0).volume_parameters(), **Necrosis().volume_parameters()}
        for b in population.behaviours:
            if getattr(b, "phases", False) and hasattr(b, "volume_parameters"):
                rows.update(b.volume_parameters())
        return np.array([rows[s] for s in range(len(DEATH_STATES))], dtype=np.float64)

    def run(self, sim, population, dt):
        t = sim.agents
        n = len(t)
        if n == 0:
            return
        B = sim.backend
        table = self.table(population)
        if B.on_device:  # sent once, again only when a parameter changes
            key = table.tobytes()
            if getattr(self, "_device_key", None) != key:
                self._device_table, self._device_key = B.to_device(table), key
            table = self._device_table
        has_death = "death" in t
        B.behaviours.volume_update(
            t.col("type", False), population.code, n, dt, table, self.nuclear / self.total,
            t.col("death", False) if has_death else B.zeros(1, np.int8), has_death,
            *(t.col(c) for c in COMPARTMENTS), t.col("calcified_fraction"), t.col("volume"), t.col("diameter"))
