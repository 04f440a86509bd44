"""Random motility, and PhysiCell's persistent, biased motility."""
import numpy as np

from biosim import _validate as V
from biosim.behaviour import Behaviour, SubstanceBehaviour, live_rows, live_types, ruled, ruled_values


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

    per_agent = True

    writes = ("position",)
    device_ready = True

    def __init__(self, diffusion=None, speed=None, every=1):
        super().__init__(every)
        if (diffusion is None) == (speed is None):
            raise ValueError(f"give exactly one of diffusion (µm²/min) or speed (µm/min); got "
                             f"diffusion={diffusion!r}, speed={speed!r}")
        self.diffusion = None if diffusion is None else V.positive("diffusion", diffusion, allow_zero=True)
        self.speed = None if speed is None else V.positive("speed", speed, allow_zero=True)

    def max_move(self, sim, dt):
        if self.speed is not None:
            return self.speed * dt
        return 9.0 * np.sqrt(2.0 * self.diffusion * dt)  # per coordinate: beyond 9 sigma once in 4e18 draws

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

    PhysiCell's advanced chemotaxis instead (``sensitivities``): d is the
    unit vector of sum_k s_k grad c_k over the substances named, each
    gradient first made a unit vector with ``normalize_each=True``
    (PhysiCell's advanced_chemotaxis_function_normalized).  Rules on
    "chemotactic response to X" set s_X per cell.

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
    sensitivities : dict, optional
        {substance name: sensitivity} (finite, any sign: negative moves
        down that gradient); not with ``substance``.
    normalize_each : bool, default False
        Make each gradient a unit vector before weighting it.
    every : int, default 1
    """

    per_agent = True

    columns = (("motility_vector", np.float64, 0.0, (3,), "default"),)
    writes = ("position", "motility_vector")
    device_ready = True

    def __init__(self, speed, persistence_time, bias=0.0, substance=None, direction=1, sensitivities=None,
                 normalize_each=False, every=1):
        super().__init__(substance, every, required=False)
        if sensitivities is not None:
            if substance is not None:
                raise ValueError("give substance= (one gradient) or sensitivities= (PhysiCell's advanced "
                                 "chemotaxis), not both")
            if not isinstance(sensitivities, dict) or not sensitivities \
                    or not all(isinstance(k, str) for k in sensitivities):
                raise TypeError(f"sensitivities must be a non-empty dict {{substance name: sensitivity}}, got "
                                f"{sensitivities!r}")
            sensitivities = {k: V.real(f"sensitivities[{k!r}]", v) for k, v in sensitivities.items()}
        self.sensitivities = sensitivities
        self.normalize_each = bool(normalize_each)
        self._subs = []
        self.speed = V.positive("speed", speed, allow_zero=True)
        self.persistence_time = V.positive("persistence_time", persistence_time, allow_inf=True)
        self.bias = V.positive("bias", bias, allow_zero=True)
        if self.bias > 1:
            raise ValueError(f"bias must be in [0, 1] (PhysiCell's migration_bias), got {bias!r}")
        if direction not in (1, -1):
            raise ValueError(f"direction must be 1 (up the gradient) or -1 (down), got {direction!r}")
        self.direction = int(direction)

    def attach(self, sim, population):
        self._subs = [sim.substance(k, who="Motility") for k in self.sensitivities or ()]
        super().attach(sim, population)

    def _gradient(self, sim, rows):
        """The chemotactic direction before normalising, (m, 3) (or (1, 3)
        zeros without chemotaxis), where the backend's kernels live."""
        B = sim.backend
        if self._sub is not None:
            _, grad = self._sub.sample_rows(rows, gradient=True)
            return B.to_device(-B.to_host(grad)) if self.direction < 0 else grad
        if not self._subs:
            return B.zeros((1, 3), np.float64)
        total = np.zeros((len(rows), 3))
        for sub in self._subs:
            g = B.to_host(sub.sample_rows(rows, gradient=True)[1])
            if self.normalize_each:
                norm = np.sqrt((g * g).sum(axis=1, keepdims=True))
                g = np.divide(g, norm, out=np.zeros_like(g), where=norm > 0)
            s = ruled_values(sim, self, f"sensitivity:{sub.name}", rows)
            total += (self.sensitivities[sub.name] if s is None else s[:, None]) * g
        return B.to_device(total)

    def max_move(self, sim, dt):
        column = ruled(self, "speed")  # speeds set per cell by models.Rules (the whole simulation's largest)
        speed = self.speed if column is None else max(self.speed, sim._column_max(sim.agents.col(column, False)))
        return abs(speed) * dt

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
        grad = self._gradient(sim, rows)
        B.behaviours.motility(rows, t.col("uid", False), sim.seed, sim.step, self.stream, p_turn,
                              one(self.speed) if speed is None else speed, one(self.bias) if bias is None else bias,
                              sim.plane is not None, grad, t.col("motility_vector"), t.col("position"), dt)
