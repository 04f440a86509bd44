"""Cell death."""
import numpy as np

from biosim import _validate as V
from biosim.behaviour import Behaviour, SubstanceBehaviour


class Apoptosis(Behaviour):
    """Each cell dies at ``rate`` per minute: over an interval dt it is removed
    with probability 1 - exp(-rate dt) (at the end of the step).

    Parameters
    ----------
    rate : float
        Death rate, 1/min (>= 0).
    every : int, default 1
    probability : {"exact", "linear"}, default "exact"
        1 - exp(-rate dt), or PhysiCell's rate x dt (capped at 1).
    """

    device_ready = True

    def __init__(self, rate, every=1, probability="exact"):
        super().__init__(every)
        self.rate = V.positive("rate", rate, allow_zero=True)
        self.probability = V.choice("probability", probability, V.PROBABILITIES)

    def run(self, sim, population, dt):
        t = sim.agents
        n = len(t)
        if n == 0 or self.rate == 0:
            return
        p = float(V.event_probability(self.rate * dt, self.probability))
        B = sim.backend
        flag = B.empty(n, np.bool_)
        uid = t.col("uid", False)
        if B.behaviours.mark_random(t.col("type", False), population.code, uid, n, sim.seed, sim.step, self.stream,
                                    p, flag):
            rows = B.nonzero(flag, n)
            t.request_deaths(t.take_column("uid", rows))


class Necrosis(SubstanceBehaviour):
    """Cells where ``substance`` is below ``threshold`` die at ``rate`` per
    minute (probability 1 - exp(-rate dt) per interval), e.g. in the hypoxic
    core of a spheroid.

    Parameters
    ----------
    substance : Substance or str
    threshold : float, concentration (>= 0)
    rate : float, 1/min (>= 0)
    every : int, default 1
    """

    device_ready = True

    def __init__(self, substance, threshold, rate, every=1):
        super().__init__(substance, every)
        self.threshold = V.positive("threshold", threshold, allow_zero=True)
        self.rate = V.positive("rate", rate, allow_zero=True)

    def run(self, sim, population, dt):
        if self.rate == 0:
            return
        B = sim.backend
        t = sim.agents
        rows = B.rows_of_type(t, population.code)
        m = len(rows)
        if m == 0:
            return
        flag = B.empty(m, np.bool_)
        if B.behaviours.mark_below(rows, t.col("uid", False), self._sub.sample_rows(rows), self.threshold,
                                   -np.expm1(-self.rate * dt), sim.seed, sim.step, self.stream, flag):
            t.request_deaths(t.take_column("uid", B.take(rows, B.nonzero(flag, m))))
