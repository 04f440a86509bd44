"""Random motility."""
import numpy as np

from biosim import _validate as V
from biosim.behaviour import Behaviour, live_types


class RandomWalk(Behaviour):
    """Random motility, one of two kinds:

    * ``diffusion`` (µm²/min): Brownian motion, each coordinate moves by
      sqrt(2 D dt) N(0, 1) per interval, so the mean squared displacement
      grows as 6 D t;
    * ``speed`` (µm/min): a fresh direction uniform on the sphere each
      interval, moving ``speed * dt`` µm (BioDynaMo's SIR agents).

    Parameters
    ----------
    diffusion : float, optional
    speed : float, optional
    every : int, default 1
    """

    writes = ("position",)
    device_ready = True

    def __init__(self, diffusion=None, speed=None, every=1):
        super().__init__(every)
        if (diffusion is None) == (speed is None):
            raise ValueError(f"give exactly one of diffusion (µm²/min) or speed (µm/min); got "
                             f"diffusion={diffusion!r}, speed={speed!r}")
        self.diffusion = None if diffusion is None else V.positive("diffusion", diffusion, allow_zero=True)
        self.speed = None if speed is None else V.positive("speed", speed, allow_zero=True)

    def run(self, sim, population, dt):
        t = sim.agents
        n = len(t)
        if n == 0:
            return
        K = sim.backend.behaviours
        args = (live_types(sim), population.code, t.col("uid", False), t.col("position"), n, sim.seed, sim.step,
                self.stream)
        if self.diffusion is not None:
            K.brownian_move(*args, np.sqrt(2.0 * self.diffusion * dt))
        else:
            K.directed_move(*args, self.speed * dt)
