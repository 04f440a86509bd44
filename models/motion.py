"""Random motility, and PhysiCell's persistent, biased motility."""
import numpy as np

from biosim import _validate as V
from biosim.behaviour import Behaviour, SubstanceBehaviour, live_rows, live_types, ruled_values


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


class Motility(SubstanceBehaviour):
    """PhysiCell's cell motility (update_motility_vector with its standard
    chemotaxis): each live cell moves at ``speed`` along its motility
    vector, which it renews with probability dt / ``persistence_time`` per
    interval (always when the persistence time is below dt): the new
    direction is (1 - bias) r + bias d, normalised, r uniform on the sphere
    (on the circle when ``sim.plane`` is set: a 2-D model), d the unit
    gradient of ``substance`` times ``direction`` (+1 up the gradient, -1
    down; zero without a substance or where the gradient vanishes).  The
    vector is kept in the column ``motility_vector`` (µm/min).

    PhysiCell adds the vector to the velocity its Adams-Bashforth step
    integrates; here the cell moves vec x dt itself (the same for a vector
    held over consecutive steps).

    Parameters
    ----------
    speed : float
        µm/min (>= 0).
    persistence_time : float
        Mean time between direction changes, min (> 0).
    bias : float, default 0
        PhysiCell's migration_bias, 0 (random) to 1 (along the gradient).
    substance : Substance or str, optional
        The chemotactic substance.
    direction : {1, -1}, default 1
    every : int, default 1
    """

    columns = (("motility_vector", np.float64, 0.0, (3,), "default"),)
    writes = ("position", "motility_vector")
    device_ready = True

    def __init__(self, speed, persistence_time, bias=0.0, substance=None, direction=1, every=1):
        super().__init__(substance, every, required=False)
        self.speed = V.positive("speed", speed, allow_zero=True)
        self.persistence_time = V.positive("persistence_time", persistence_time, allow_inf=True)
        self.bias = V.positive("bias", bias, allow_zero=True)
        if self.bias > 1:
            raise ValueError(f"bias must be in [0, 1] (PhysiCell's migration_bias), got {bias!r}")
        if direction not in (1, -1):
            raise ValueError(f"direction must be 1 (up the gradient) or -1 (down), got {direction!r}")
        self.direction = int(direction)

    def run(self, sim, population, dt):
        t = sim.agents
        B = sim.backend
        rows = live_rows(sim, population.code)
        m = len(rows)
        if m == 0:
            return
        one = lambda x: np.array([float(x)])  # noqa: E731
        speed = ruled_values(sim, self, "speed", rows)
        bias = ruled_values(sim, self, "bias", rows)
        persistence = ruled_values(sim, self, "persistence_time", rows)
        if persistence is None:
            p_turn = one(min(1.0, dt / self.persistence_time))
        else:
            p_turn = np.minimum(1.0, dt / np.maximum(persistence, 1e-300))
        if self._sub is not None:
            _, grad = self._sub.sample_rows(rows, gradient=True)
            if self.direction < 0:
                grad = B.to_device(-B.to_host(grad))
        else:
            grad = B.zeros((1, 3), np.float64)
        B.behaviours.motility(rows, t.col("uid", False), sim.seed, sim.step, self.stream, p_turn,
                              one(self.speed) if speed is None else speed, one(self.bias) if bias is None else bias,
                              sim.plane is not None, grad, t.col("motility_vector"), t.col("position"), dt)
