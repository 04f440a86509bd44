"""Coupling of cells with substances: secretion, uptake, chemotaxis."""
import numpy as np

from biosim import _validate as V
from biosim.behaviour import SubstanceBehaviour


def _cell_volume_fraction(sim, sub, rows):
    d = sim.agents.diameter[rows]
    return (np.pi / 6.0) * d * d * d / sub.voxel_volume


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

    def __init__(self, substance, rate, target=None, every=1):
        super().__init__(substance, every)
        self.rate = V.positive("rate", rate, allow_zero=True)
        self.target = None if target is None else V.positive("target", target, allow_zero=True)

    def run(self, sim, population, dt):
        rows = population.rows
        if rows.size == 0 or self.rate == 0:
            return
        sub = self._sub
        if self.target is None:
            sub.queue(rows, added=np.full(rows.size, self.rate * dt / sub.voxel_volume))
        else:
            s = self.rate * dt * _cell_volume_fraction(sim, sub, rows)
            sub.queue(rows, secretion=s, target=np.full(rows.size, self.target))


class Uptake(SubstanceBehaviour):
    """Cells consume a substance from their voxel: dc/dt = -U c per cell with
    U = rate (1/min) x cell volume / voxel volume (PhysiCell's uptake),
    integrated implicitly so concentrations never go negative.

    Parameters
    ----------
    substance : Substance or str
    rate : float, 1/min (>= 0)
    every : int, default 1
    """

    def __init__(self, substance, rate, every=1):
        super().__init__(substance, every)
        self.rate = V.positive("rate", rate, allow_zero=True)

    def run(self, sim, population, dt):
        rows = population.rows
        if rows.size == 0 or self.rate == 0:
            return
        self._sub.queue(rows, uptake=self.rate * dt * _cell_volume_fraction(sim, self._sub, rows))


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

    writes = ("position",)

    def __init__(self, substance, speed, every=1):
        super().__init__(substance, every)
        self.speed = V.real("speed", speed)

    def run(self, sim, population, dt):
        K = sim.backend.host.behaviours  # host kernels (no device twin yet)
        rows = population.rows
        if rows.size == 0 or self.speed == 0:
            return
        pos = sim.agents.position
        _, grad = self._sub.sample(pos[rows], gradient=True)
        K.move_along(pos, rows, grad, self.speed * dt)
