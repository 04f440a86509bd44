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
    """

    device_ready = True

    def __init__(self, rate, every=1):
        super().__init__(every)
        self.rate = V.positive("rate", rate, allow_zero=True)

    def run(self, sim, population, dt):
        t = sim.agents
        n = len(t)
        if n == 0 or self.rate == 0:
            return
        p = -np.expm1(-self.rate * dt)
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

    def __init__(self, substance, threshold, rate, every=1):
        super().__init__(substance, every)
        self.threshold = V.positive("threshold", threshold, allow_zero=True)
        self.rate = V.positive("rate", rate, allow_zero=True)

    def run(self, sim, population, dt):
        rows = population.rows
        if rows.size == 0 or self.rate == 0:
            return
        t = sim.agents
        c = self._sub.sample(t.position[rows])
        flag = np.empty(rows.size, dtype=np.bool_)
        K = sim.backend.host.behaviours  # substances are sampled on the host
        if K.mark_below(rows, t.uid, c, self.threshold, -np.expm1(-self.rate * dt), sim.seed, sim.step,
                        self.stream, flag):
            t.request_deaths(t.uid[rows[flag]])
