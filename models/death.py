"""Cell death: removal at once, or PhysiCell's death phases (the dead cell
stays in the tissue in a death state until its last phase ends)."""
import math

import numpy as np

from biosim import _validate as V
from biosim.behaviour import (DEATH_COLUMNS, DEATH_STATES, Behaviour, SubstanceBehaviour, live_rows, live_types,
                              ruled, ruled_values)

APOPTOTIC, NECROTIC_SWELLING, NECROTIC_LYSED = (DEATH_STATES.index(s) for s in DEATH_STATES[1:])


class _DeathPhases:
    """What Apoptosis and Necrosis share with ``phases=True``: the death
    columns (``death``: the state, see ``DEATH_STATES``; ``death_age``: min
    in it; ``rupture_volume``: µm³), counted per state by
    ``sim.record_counts``, and one kernel pass that enters live cells into
    the model's first state and advances those already in its states."""

    @property
    def columns(self):
        return DEATH_COLUMNS if self.phases else ()

    @property
    def writes(self):
        return tuple(c[0] for c in DEATH_COLUMNS) if self.phases else ()

    def state_columns(self):
        return {"death": DEATH_STATES} if self.phases else {}

    def event_rates(self):
        return {"rate": self.rate}

    def _probability(self, sim, rows, dt):
        """The probability of death over dt: one value, or one per row of
        ``rows`` where ``models.Rules`` drives the rate (its column)."""
        rates = ruled_values(sim, self, "rate", rows)
        if rates is None:
            return np.array([float(V.event_probability(self.rate * dt, self.probability))])
        return sim.backend.to_device(np.asarray(V.event_probability(rates * dt, self.probability), dtype=np.float64))

    def _remove_at_once(self, sim, population, dt, gate=None):
        """``phases=False``: request the removal of the live cells that die
        over dt (where the values ``gate(rows)`` returns, if given, are below
        its threshold: (values, threshold))."""
        if self.rate == 0 and ruled(self, "rate") is None:
            return
        B = sim.backend
        t = sim.agents
        if gate is None and ruled(self, "rate") is None:  # one draw per agent, one pass over the table
            n = len(t)
            flag = B.empty(max(n, 1), np.bool_)
            p = float(V.event_probability(self.rate * dt, self.probability))
            if n and B.behaviours.mark_random(live_types(sim), population.code, t.col("uid", False), n, sim.seed,
                                              sim.step, self.stream, p, flag):
                t.request_deaths(t.take_column("uid", B.nonzero(flag, n)))
            return
        rows = live_rows(sim, population.code)
        m = len(rows)
        if m == 0:
            return
        values, threshold = gate(rows) if gate is not None else (B.full(m, 0.0), math.inf)
        flag = B.empty(m, np.bool_)
        if B.behaviours.mark_below(rows, t.col("uid", False), values, threshold, self._probability(sim, rows, dt),
                                   sim.seed, sim.step, self.stream, flag):
            t.request_deaths(t.take_column("uid", B.take(rows, B.nonzero(flag, m))))

    def _advance(self, sim, rows, dt, state, probability, values, threshold, duration, relative_rupture):
        """Enter and advance the model's states over ``rows`` (the
        population's, dead ones included; ``values`` the substance there or
        None); request the removal of cells whose last phase ended."""
        B = sim.backend
        t = sim.agents
        m = len(rows)
        if m == 0:
            return
        gated = values is not None
        dummy = B.empty(1, np.float64)
        has_volume = "volume" in t
        remove = B.empty(m, np.bool_)
        if B.behaviours.death_phases(
                rows, t.col("uid", False), gated, values if gated else dummy, threshold, probability, sim.seed,
                sim.step, self.stream, state, dt, duration, relative_rupture, t.col("death"), t.col("death_age"),
                t.col("volume", False) if has_volume else dummy, has_volume, t.col("diameter", False),
                t.col("rupture_volume"), remove):
            t.request_deaths(t.take_column("uid", B.take(rows, B.nonzero(remove, m))))


class Apoptosis(_DeathPhases, Behaviour):
    """Each live cell dies at ``rate`` per minute: over an interval dt it
    dies with probability 1 - exp(-rate dt) (or PhysiCell's rate x dt).

    * ``phases=False`` (default): the cell is removed at the end of the step.
    * ``phases=True``: PhysiCell's apoptosis.  The cell stays in the tissue
      as an apoptotic cell (``death`` column = 1) for ``duration`` min
      (fixed; the step of death counts), still pushing its neighbours but
      no longer cycling, moving or secreting (every behaviour of live cells
      skips it; it takes up a tenth of its uptake), then is removed.  With
      ``models.Volume`` it shrinks: every target volume goes to 0 and the
      compartments relax at this model's rates (PhysiCell's apoptosis
      parameters).  Cells already apoptotic keep advancing with ``rate=0``.

    Parameters
    ----------
    rate : float
        Death rate, 1/min (>= 0).
    every : int, default 1
    probability : {"exact", "linear"}, default "exact"
        1 - exp(-rate dt), or PhysiCell's rate x dt (capped at 1).
    phases : bool, default False
        Keep the dying cell as an apoptotic agent (see above).
    duration : float, default 516
        Time in the apoptotic state before removal, min (> 0; PhysiCell's
        8.6 h).
    cytoplasmic_biomass_change_rate, nuclear_biomass_change_rate, fluid_change_rate : float
        The volume model's rates in the apoptotic state, 1/min (>= 0;
        PhysiCell's 1/60, 0.35/60 and 3/60).
    calcification_rate : float, default 0
        1/min (>= 0).
    """

    per_agent = True

    device_ready = True

    def __init__(self, rate, every=1, probability="exact", phases=False, duration=8.6 * 60.0,
                 cytoplasmic_biomass_change_rate=1.0 / 60.0, nuclear_biomass_change_rate=0.35 / 60.0,
                 fluid_change_rate=3.0 / 60.0, calcification_rate=0.0):
        super().__init__(every)
        self.rate = V.positive("rate", rate, allow_zero=True)
        self.probability = V.choice("probability", probability, V.PROBABILITIES)
        self.phases = V.boolean("phases", phases)
        self.duration = V.positive("duration", duration, allow_inf=True)
        self.cytoplasmic_biomass_change_rate = V.positive(
            "cytoplasmic_biomass_change_rate", cytoplasmic_biomass_change_rate, allow_zero=True)
        self.nuclear_biomass_change_rate = V.positive("nuclear_biomass_change_rate", nuclear_biomass_change_rate,
                                                      allow_zero=True)
        self.fluid_change_rate = V.positive("fluid_change_rate", fluid_change_rate, allow_zero=True)
        self.calcification_rate = V.positive("calcification_rate", calcification_rate, allow_zero=True)

    def volume_parameters(self):
        """{death state: the volume model's parameter row} (see
        ``models.Volume.targets``): every target 0, this model's rates."""
        return {APOPTOTIC: (0.0, 0.0, 0.0, self.fluid_change_rate, self.nuclear_biomass_change_rate,
                            self.cytoplasmic_biomass_change_rate, self.calcification_rate)}

    def run(self, sim, population, dt):
        if self.phases:
            rows = sim.backend.rows_of_type(sim.agents, population.code)
            self._advance(sim, rows, dt, APOPTOTIC, self._probability(sim, rows, dt), None, math.inf, self.duration,
                          1.0)
        else:
            self._remove_at_once(sim, population, dt)


class Necrosis(_DeathPhases, SubstanceBehaviour):
    """Live cells die of necrosis at ``rate`` per minute (probability
    1 - exp(-rate dt) per interval, or PhysiCell's rate x dt); with a
    ``substance``, only where it is below ``threshold`` (e.g. the hypoxic
    core of a spheroid).

    * ``phases=False`` (default): the cell is removed at the end of the step.
    * ``phases=True``: PhysiCell's necrosis.  The cell stays as a necrotic
      cell: it swells (``death`` = 2; with ``models.Volume`` its fluid
      fraction target is 1 and its solids degrade) until its volume reaches
      ``relative_rupture_volume`` x its volume at death, then lyses
      (``death`` = 3; the fluid leaves) and is removed after
      ``lysed_duration`` min.  Dead cells do nothing else (see
      ``Apoptosis``).  Without ``models.Volume`` a swelling cell keeps its
      diameter and never lyses.

    Parameters
    ----------
    substance : Substance or str, optional
        None: a constant rate everywhere (PhysiCell's necrosis rate).
    threshold : float
        Concentration below which cells may die (>= 0; required with a
        substance).
    rate : float, 1/min (>= 0)
    every : int, default 1
    probability : {"exact", "linear"}, default "exact"
    phases : bool, default False
    lysed_duration : float, default 86400
        Time lysed before removal, min (> 0; PhysiCell's 60 days).
    relative_rupture_volume : float, default 2
        Volume at lysis over the volume at death (> 0).
    unlysed_fluid_change_rate, lysed_fluid_change_rate : float
        1/min (>= 0; PhysiCell's 0.67/60 and 0.05/60).
    cytoplasmic_biomass_change_rate, nuclear_biomass_change_rate, calcification_rate : float
        1/min (>= 0; PhysiCell's 0.0032/60, 0.013/60 and 0.0042/60).
    """

    per_agent = True

    device_ready = True

    def __init__(self, substance=None, threshold=None, rate=0.0, every=1, probability="exact", phases=False,
                 lysed_duration=60 * 24 * 60.0, relative_rupture_volume=2.0,
                 unlysed_fluid_change_rate=0.67 / 60.0, lysed_fluid_change_rate=0.05 / 60.0,
                 cytoplasmic_biomass_change_rate=0.0032 / 60.0, nuclear_biomass_change_rate=0.013 / 60.0,
                 calcification_rate=0.0042 / 60.0):
        super().__init__(substance, every, required=False)
        if substance is not None and threshold is None:
            raise ValueError("Necrosis: a threshold (concentration, >= 0) is required with a substance")
        self.threshold = None if threshold is None else V.positive("threshold", threshold, allow_zero=True)
        self.rate = V.positive("rate", rate, allow_zero=True)
        self.probability = V.choice("probability", probability, V.PROBABILITIES)
        self.phases = V.boolean("phases", phases)
        self.lysed_duration = V.positive("lysed_duration", lysed_duration, allow_inf=True)
        self.relative_rupture_volume = V.positive("relative_rupture_volume", relative_rupture_volume,
                                                  allow_inf=True)
        for name, value in (("unlysed_fluid_change_rate", unlysed_fluid_change_rate),
                            ("lysed_fluid_change_rate", lysed_fluid_change_rate),
                            ("cytoplasmic_biomass_change_rate", cytoplasmic_biomass_change_rate),
                            ("nuclear_biomass_change_rate", nuclear_biomass_change_rate),
                            ("calcification_rate", calcification_rate)):
            setattr(self, name, V.positive(name, value, allow_zero=True))

    def volume_parameters(self):
        """{death state: the volume model's parameter row}: swelling (fluid
        fraction target 1) and lysed (target 0), solids to 0."""
        rates = (self.nuclear_biomass_change_rate, self.cytoplasmic_biomass_change_rate, self.calcification_rate)
        return {NECROTIC_SWELLING: (0.0, 0.0, 1.0, self.unlysed_fluid_change_rate) + rates,
                NECROTIC_LYSED: (0.0, 0.0, 0.0, self.lysed_fluid_change_rate) + rates}

    def run(self, sim, population, dt):
        if self.phases:
            rows = sim.backend.rows_of_type(sim.agents, population.code)
            values = self._sub.sample_rows(rows) if self._sub is not None and len(rows) else None
            self._advance(sim, rows, dt, NECROTIC_SWELLING, self._probability(sim, rows, dt), values,
                          self.threshold or 0.0, self.lysed_duration, self.relative_rupture_volume)
        else:
            gate = (lambda rows: (self._sub.sample_rows(rows), self.threshold)) if self._sub is not None else None
            self._remove_at_once(sim, population, dt, gate)
