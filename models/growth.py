"""Growth and division."""
import numbers

import numpy as np

from biosim import _validate as V
from biosim.behaviour import PLACEMENTS, SubstanceBehaviour, divide_rows, live_rows, live_types


class GrowthDivision(SubstanceBehaviour):
    """Cells grow in volume at ``growth_rate`` µm³/min until their diameter
    reaches ``division_diameter`` µm, then divide.

    At division volume is conserved: the daughter/mother volume ratio is
    ``volume_ratio`` (1.0: a 50/50 split) or, given a range ``(lo, hi)``, drawn
    from U(lo, hi) as BioDynaMo's U(0.9, 1.1).  The two cells are placed along
    a random axis, their centres the mother's radius apart, the centre of mass
    unchanged.  The mother keeps her uid; the daughter gets a new one and
    records the mother's in the ``parent`` column (-1 for founders) and copies
    every other column from her.

    Parameters
    ----------
    growth_rate : float
        Volume growth rate, µm³/min (>= 0).
    division_diameter : float
        Diameter (µm) at which a cell divides.
    volume_ratio : float or (float, float), default 1.0
        Daughter/mother volume ratio, or a range to draw it from.
    every : int, default 1
        Run every ``every`` steps (growth over ``every * dt``).
    substance : Substance or str, optional
        With ``threshold``: growth slows below ``threshold`` of this
        substance, in proportion, growth_rate x min(1, c / threshold) at the
        cell centre (oxygen-limited proliferation).
    threshold : float, optional
        Concentration (> 0) at and above which growth runs at full rate.
    placement : {"centre", "physicell"}, default "centre"
        Where the two cells go: as above, or PhysiCell's (the daughter at +r
        along the axis, the mother moved by -r/2).
    """

    per_agent = True

    columns = (("parent", np.int64, -1, ()),)

    device_ready = True
    writes = ("diameter", "position", "parent")

    def max_diameter(self, sim, dt):
        """Cells below the division diameter gain at most growth_rate x dt
        µm³; the others keep theirs (µm)."""
        d = float(sim._max_diameter())
        if not np.isfinite(d) or d <= 0:
            return None
        grown = np.cbrt(min(d, self.division_diameter) ** 3 + 6.0 / np.pi * self.growth_rate * dt)
        return max(d, float(grown)) * (1.0 + 1e-9)  # (the cube root's rounding)

    def max_move(self, sim, dt):
        """A dividing mother of diameter d moves d/2 x q/(1 + q) (q the
        daughter/mother volume ratio; PhysiCell's placement: d/4), d at
        most :meth:`max_diameter` (µm)."""
        d = self.max_diameter(sim, dt)
        if d is None:
            return 0.5 * max(self.division_diameter, float(sim._max_diameter()))
        hi = self._ratio[1]
        return d * (0.25 if self.placement == "physicell" else 0.5 * hi / (1.0 + hi))

    def __init__(self, growth_rate, division_diameter, volume_ratio=1.0, every=1, substance=None,
                 threshold=None, placement="centre"):
        if (substance is None) != (threshold is None):
            raise ValueError(f"give both substance and threshold for substance-limited growth, or neither; "
                             f"got substance={substance!r}, threshold={threshold!r}")
        super().__init__(substance, every, required=False)
        self.threshold = None if threshold is None else V.positive("threshold", threshold)
        self.placement = V.choice("placement", placement, PLACEMENTS)
        self.growth_rate = V.positive("growth_rate", growth_rate, allow_zero=True)
        self.division_diameter = V.positive("division_diameter", division_diameter)
        if isinstance(volume_ratio, numbers.Real):
            lo = hi = V.positive("volume_ratio", volume_ratio)
        else:
            try:
                lo, hi = volume_ratio
            except (TypeError, ValueError):
                raise TypeError(f"volume_ratio must be a number or a (low, high) pair, got {volume_ratio!r}") from None
            lo = V.positive("volume_ratio[0]", lo)
            hi = V.positive("volume_ratio[1]", hi)
            if hi < lo:
                raise ValueError(f"volume_ratio must be (low, high) with low <= high, got {volume_ratio!r}")
        self.volume_ratio = lo if lo == hi else [lo, hi]
        self._ratio = (lo, hi)

    def run(self, sim, population, dt):
        t = sim.agents
        n = len(t)
        if n == 0:
            return
        B = sim.backend
        factor = B.full(n, 1.0)
        if self._sub is not None:  # c / threshold clipped to [0, 1] at the population's cells
            rows = live_rows(sim, population.code)
            B.behaviours.limit_factor(rows, self._sub.sample_rows(rows), self.threshold, factor)
        flag = B.empty(n, np.bool_)
        count = B.behaviours.grow(live_types(sim), population.code, t.col("diameter"), n,
                                  self.growth_rate * dt, factor, self.division_diameter, flag)
        if count == 0:
            return
        divide_rows(sim, B.nonzero(flag, n), self.stream, *self._ratio, placement=self.placement)
