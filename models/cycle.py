"""Cell cycle models: phases with durations, division at the end of the cycle."""
import numpy as np

from biosim import _validate as V
from biosim.behaviour import PLACEMENTS, Behaviour, divide_rows, live_types, ruled, ruled_values


class CellCycle(Behaviour):
    """A cycle of phases, as PhysiCell's cycle models: each phase has a mean
    duration (min) and is left either after exactly that time (``fixed``) or
    stochastically, with probability 1 - exp(-dt / duration) per interval
    (exponentially distributed time, PhysiCell's transition rate
    1 / duration).  Leaving phase k enters phase k + 1 (the last returns to
    the first); leaving ``divide_after`` divides the cell (volume conserved,
    random axis, as GrowthDivision) and both cells start the next phase.

    The phase is the int8 column ``column`` (the index into ``phases``;
    founders start in phase 0 unless given, e.g. ``sim.add_agents(...,
    phase=k)``) and the time spent in it the float column ``<column>_age``
    (min).  ``sim.record_counts`` counts cells per phase.

    Presets with PhysiCell's parameters (PhysiCell_standard_models.cpp):
    ``CellCycle.flow_cytometry()``, ``.flow_cytometry_separated()``,
    ``.ki67_basic()``, ``.ki67_advanced()``, ``.live()``.

    Parameters
    ----------
    phases : sequence of str
        Phase names, in cycle order.
    durations : sequence of float
        Mean time in each phase, min (> 0; ``inf`` arrests the cell there).
    fixed : bool or sequence of bool, default False
        Fixed durations (deterministic) or exponential ones (stochastic), for
        all phases or per phase.
    divide_after : str, default the last phase
        The phase at whose end cells divide (None: they never divide).
    growth_rate : float, default 0
        Volume growth in every phase, µm³/min; without it, cells halve at
        each division.
    column : str, default "phase"
    placement : {"centre", "physicell"}, default "centre"
        Where the two cells go at division: centres the mother's radius
        apart, the centre of mass kept; or PhysiCell's (the daughter at +r
        along the axis, the mother moved by -r/2).
    probability : {"exact", "linear"}, default "exact"
        The chance of leaving a stochastic phase in an interval dt:
        1 - exp(-dt / duration), exact for an exponential time in the phase;
        or PhysiCell's dt / duration (capped at 1), which lengthens a 60-min
        phase by 5% at dt = 6 min.
    every : int, default 1
    """

    per_agent = True

    device_ready = True

    def __init__(self, phases, durations, fixed=False, divide_after="", growth_rate=0.0, column="phase",
                 every=1, placement="centre", probability="exact"):
        super().__init__(every)
        self.probability = V.choice("probability", probability, V.PROBABILITIES)
        self.placement = V.choice("placement", placement, PLACEMENTS)
        if not isinstance(phases, (list, tuple)) or not all(isinstance(p, str) and p for p in phases):
            raise TypeError(f"phases must be a sequence of phase names (non-empty strings), got {phases!r}")
        phases = tuple(phases)
        if not 1 <= len(phases) <= 127:
            raise ValueError(f"phases must name 1 to 127 phases, got {len(phases)}")
        if len(set(phases)) != len(phases):
            raise ValueError(f"phase names must be unique, got {phases!r}")
        if not isinstance(durations, (list, tuple, np.ndarray)) or len(durations) != len(phases):
            raise ValueError(f"durations must give one duration (min) per phase ({len(phases)}), got {durations!r}")
        self.phases = list(phases)
        self.durations = [V.positive(f"durations[{k}] ({phases[k]})", d, allow_inf=True)
                          for k, d in enumerate(durations)]
        if isinstance(fixed, (bool, np.bool_)):
            fixed = [bool(fixed)] * len(phases)
        elif not isinstance(fixed, (list, tuple)) or len(fixed) != len(phases) or not all(
                isinstance(f, (bool, np.bool_)) for f in fixed):
            raise ValueError(f"fixed must be True/False or one bool per phase ({len(phases)}), got {fixed!r}")
        self.fixed = [bool(f) for f in fixed]
        if divide_after == "":
            divide_after = phases[-1]
        if divide_after is not None and divide_after not in phases:
            raise ValueError(f"divide_after must be one of the phases {', '.join(phases)} (or None), "
                             f"got {divide_after!r}")
        self.divide_after = divide_after
        self.growth_rate = V.positive("growth_rate", growth_rate, allow_zero=True)
        if not isinstance(column, str) or not column.isidentifier():
            raise TypeError(f"column must be a column name, got {column!r}")
        if column in ("uid", "type", "position", "diameter"):
            raise ValueError(f"column {column!r} is a core column; the phase needs its own column")
        self.column = column

    def event_rates(self):  # leaving a phase: 1 / its duration
        return {f"1 / durations[{k}] ({p})": 1.0 / d for k, (p, d) in
                enumerate(zip(self.phases, self.durations)) if 0 < d < np.inf and not self.fixed[k]}

    @property
    def columns(self):
        return ((self.column, np.int8, 0, ()), (f"{self.column}_age", np.float64, 0.0, ()))

    @property
    def writes(self):
        return (self.column, f"{self.column}_age") + (("diameter", "position") if self.divide_after else ()) \
            + (("diameter",) if self.growth_rate > 0 else ())

    def state_columns(self):
        return {self.column: tuple(self.phases)}

    def mean_cycle_time(self):
        """Mean time (min) from entering phase 0 to returning to it."""
        return float(sum(self.durations))

    # -- PhysiCell's standard cycle models ------------------------------------
    @classmethod
    def flow_cytometry(cls, **kw):
        """G0/G1 -> S -> G2/M, stochastic, mean 308.6, 480.8, 300.3 min
        (rates 0.00324, 0.00208, 0.00333 /min); division after G2/M."""
        return cls(("G0G1", "S", "G2M"), (1 / 0.00324, 1 / 0.00208, 1 / 0.00333), **kw)

    @classmethod
    def flow_cytometry_separated(cls, **kw):
        """G0/G1 -> S -> G2 -> M, stochastic (rates 0.00335, 0.00208, 0.00417,
        0.0167 /min); division after M."""
        return cls(("G0G1", "S", "G2", "M"), (1 / 0.00335, 1 / 0.00208, 1 / 0.00417, 1 / 0.0167), **kw)

    @classmethod
    def ki67_basic(cls, **kw):
        """Ki67- (stochastic, mean 4.59 h) -> Ki67+ (fixed 15.5 h); division
        after Ki67+."""
        return cls(("Ki67neg", "Ki67pos"), (4.59 * 60, 15.5 * 60), fixed=(False, True), **kw)

    @classmethod
    def ki67_advanced(cls, **kw):
        """Ki67- (stochastic, mean 3.62 h) -> Ki67+ premitotic (fixed 13 h) ->
        Ki67+ postmitotic (fixed 2.5 h); division after the premitotic phase."""
        return cls(("Ki67neg", "Ki67pos_premitotic", "Ki67pos_postmitotic"), (3.62 * 60, 13.0 * 60, 2.5 * 60),
                   fixed=(False, True, True), divide_after="Ki67pos_premitotic", **kw)

    @classmethod
    def live(cls, **kw):
        """One phase left at rate 0.0432 / h (MCF10A's net birth rate) by
        dividing."""
        return cls(("live",), (60 / 0.0432,), **kw)

    def run(self, sim, population, dt):
        t = sim.agents
        n = len(t)
        if n == 0:
            return
        k = len(self.phases)
        durations, p_leave = self._tables(sim, population, n, dt)
        nxt = ((np.arange(k) + 1) % k).astype(np.int8)
        divide_at = np.array([p == self.divide_after for p in self.phases])
        B = sim.backend
        if B.on_device:  # the same kernel on the device; phases out of range are counted there
            flag = B.empty(n, np.bool_)
            count, bad = B.behaviours.cell_cycle(
                live_types(sim), population.code, t.col("uid", False), t.col(self.column),
                t.col(f"{self.column}_age"), n, dt, durations, np.array(self.fixed), p_leave, nxt, divide_at,
                sim.seed, sim.step, self.stream, t.col("diameter"), self.growth_rate * dt, flag)
            if bad:
                self._check_phases(t, population, k)
            if self.divide_after is not None and count:
                divide_rows(sim, B.nonzero(flag, n), self.stream ^ 0x5EED, placement=self.placement)
            return
        flag = np.empty(n, dtype=np.bool_)
        phase = t[self.column]
        self._check_phases(t, population, k)
        B.behaviours.cell_cycle(live_types(sim), population.code, t.uid, phase, t[f"{self.column}_age"], n, dt,
                                durations, np.array(self.fixed), p_leave, nxt, divide_at, sim.seed, sim.step,
                                self.stream, t.diameter, self.growth_rate * dt, flag)
        if self.divide_after is not None and flag.any():
            divide_rows(sim, np.flatnonzero(flag), self.stream ^ 0x5EED, placement=self.placement)

    def _tables(self, sim, population, n, dt):
        """(durations, p_leave), each (1, phases), or (n, phases) where
        ``models.Rules`` drives a phase's exit rate per cell ("exit:k": the
        duration is 1/rate, inf for rate 0)."""
        durations = np.array([self.durations], dtype=np.float64)
        ruled_phases = [j for j in range(len(self.phases)) if ruled(self, f"exit:{j}") is not None]
        if ruled_phases:
            rows = sim.backend.to_host(sim.backend.rows_of_type(sim.agents, population.code))
            durations = np.repeat(durations, n, axis=0)
            for j in ruled_phases:
                rate = np.asarray(ruled_values(sim, self, f"exit:{j}", rows))
                with np.errstate(divide="ignore"):
                    durations[rows, j] = np.where(rate > 0, 1.0 / rate, np.inf)
        return durations, np.ascontiguousarray(V.event_probability(dt / durations, self.probability))

    def _check_phases(self, t, population, k):
        """A ValueError naming a value of the phase column that is no phase index."""
        mine = t[self.column][t.type == population.code]
        if mine.size and (mine.min() < 0 or mine.max() >= k):
            bad = mine[(mine < 0) | (mine >= k)][0]
            raise ValueError(f"CellCycle: column {self.column!r} holds {bad}, not a phase index 0..{k - 1} "
                             f"({', '.join(self.phases)})")
