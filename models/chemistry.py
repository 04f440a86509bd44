"""Coupling of cells with substances: secretion, uptake, chemotaxis."""
import numpy as np

from biosim import _validate as V
from biosim.behaviour import SubstanceBehaviour, live_rows, ruled, ruled_values

DEAD_UPTAKE = 0.1  # the share of its uptake a dead cell keeps (PhysiCell's Cell::start_death)


def _volume_fraction(sim, sub, rows, scale):
    """scale x cell volume / voxel volume of the agents at ``rows``."""
    B = sim.backend
    out = B.empty(len(rows), np.float64)
    B.behaviours.volume_fraction(rows, sim.agents.col("diameter", False), scale, sub.voxel_volume, out)
    return out


class Secretion(SubstanceBehaviour):
    """Cells release a substance into their voxel.

    * ``target=None``: each cell adds ``rate`` (amount per minute) to its
      voxel: the concentration rises by rate dt / voxel volume (PhysiCell's
      net export).
    * with ``target``: PhysiCell's secretion towards a saturation density,
      dc/dt = S (target - c) per cell with S = rate (1/min) x cell volume /
      voxel volume, integrated implicitly (never overshoots the target).

    Parameters
    ----------
    substance : Substance or str
    rate : float (amount/min, or 1/min with a target; >= 0)
    target : float, optional (concentration units, >= 0)
    every : int, default 1
    """

    per_agent = True

    device_ready = True

    def __init__(self, substance, rate, target=None, every=1):
        super().__init__(substance, every)
        self.rate = V.positive("rate", rate, allow_zero=True)
        self.target = None if target is None else V.positive("target", target, allow_zero=True)

    def run(self, sim, population, dt):
        if self.rate == 0 and ruled(self, "rate") is None:
            return
        rows = live_rows(sim, population.code)
        if len(rows) == 0:
            return
        sub = self._sub
        rates = ruled_values(sim, self, "rate", rows)  # per cell where models.Rules drives the rate
        targets = ruled_values(sim, self, "target", rows)  # and the target
        target = self.target if targets is None else targets
        if self.target is None:
            sub.queue(rows, added=(self.rate if rates is None else rates) * dt / sub.voxel_volume)
        elif rates is None:
            sub.queue(rows, secretion=_volume_fraction(sim, sub, rows, self.rate * dt), target=target)
        else:
            s = sim.backend.to_host(_volume_fraction(sim, sub, rows, dt)) * rates
            sub.queue(rows, secretion=s, target=target)


class Uptake(SubstanceBehaviour):
    """Cells consume a substance from their voxel: dc/dt = -U c per cell with
    U = rate (1/min) x cell volume / voxel volume (PhysiCell's uptake),
    integrated implicitly so concentrations never go negative.  Dead cells
    kept by a death model with phases take up a tenth of the rate, as
    PhysiCell's do (secretion, chemotaxis and every other behaviour of live
    cells skip them).

    Parameters
    ----------
    substance : Substance or str
    rate : float, 1/min (>= 0)
    every : int, default 1
    """

    per_agent = True

    device_ready = True

    def __init__(self, substance, rate, every=1):
        super().__init__(substance, every)
        self.rate = V.positive("rate", rate, allow_zero=True)

    def run(self, sim, population, dt):
        if self.rate == 0 and ruled(self, "rate") is None:
            return
        B = sim.backend
        t = sim.agents
        rows = B.rows_of_type(t, population.code)
        if len(rows):
            rates = ruled_values(sim, self, "rate", rows)  # per cell where models.Rules drives the rate
            if rates is None:
                u = _volume_fraction(sim, self._sub, rows, self.rate * dt)
            else:
                u = B.to_device(B.to_host(_volume_fraction(sim, self._sub, rows, dt)) * rates)
            if "death" in t:  # dead cells keep a tenth of their uptake (PhysiCell's start_death)
                B.behaviours.scale_dead(rows, t.col("death", False), DEAD_UPTAKE, u)
            self._sub.queue(rows, uptake=u)


class Chemotaxis(SubstanceBehaviour):
    """Cells move up (or, with ``speed < 0``, down) the substance's gradient:
    ``|speed| * dt`` µm per interval along the unit gradient sampled
    (trilinearly) at the cell centre; no move where the gradient vanishes.
    The displacement scales with dt (BioDynaMo's moves gradient x speed per
    step, whatever the step).

    Parameters
    ----------
    substance : Substance or str
    speed : float, µm/min (negative: chemorepulsion)
    every : int, default 1
    """

    per_agent = True

    writes = ("position",)

    def max_move(self, sim, dt):
        return abs(self.speed) * dt
    device_ready = True

    def __init__(self, substance, speed, every=1):
        super().__init__(substance, every)
        self.speed = V.real("speed", speed)

    def run(self, sim, population, dt):
        if self.speed == 0:
            return
        B = sim.backend
        rows = live_rows(sim, population.code)
        if len(rows):
            _, grad = self._sub.sample_rows(rows, gradient=True)
            B.behaviours.move_along(sim.agents.col("position"), rows, grad, self.speed * dt)
