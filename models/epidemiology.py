"""Infection by proximity: SIR and SIRS epidemics among moving agents."""
import numpy as np

from biosim import _validate as V
from biosim.behaviour import Behaviour

SUSCEPTIBLE, INFECTED, RECOVERED = 0, 1, 2


def rate_from_probability(probability, interval):
    """The rate (1/min) whose probability of at least one event over
    ``interval`` minutes is ``probability``: -ln(1 - p) / interval.

    BioDynaMo's epidemiology demo gives per-step probabilities at dt = 60 min;
    ``rate_from_probability(0.285, 60.0)`` is its infection rate per contact."""
    p = V.positive("probability", probability, allow_zero=True)
    if p >= 1.0:
        raise ValueError(f"probability must be in [0, 1) to convert to a finite rate, got {probability!r}")
    interval = V.positive("interval", interval)
    return float(-np.log1p(-p) / interval)


class Infection(Behaviour):
    """SIR / SIRS by proximity (BioDynaMo's epidemiology demo, in rates).

    Each agent of the population has a state in the column ``column``:
    ``SUSCEPTIBLE`` (0), ``INFECTED`` (1) or ``RECOVERED`` (2).  Over an
    interval dt (min), all from the states at the interval's start, so the
    result does not depend on the order agents are visited:

    * a susceptible agent with k infected agents (of any population) closer
      than ``radius`` µm becomes infected with probability
      1 - exp(-rate k dt): ``rate`` per contact per minute;
    * an infected agent recovers with probability 1 - exp(-recovery dt);
    * a recovered agent becomes susceptible again with probability
      1 - exp(-immunity_loss dt) (SIRS; 0 gives SIR).

    In a well-mixed population of density rho (agents/µm³) this is the SIR
    model S' = -beta S I / N, I' = beta S I / N - gamma I with
    beta = rho (4/3) pi radius^3 (1 - exp(-rate dt)) / dt and
    gamma = recovery (see examples/epidemiology_sir.py).

    BioDynaMo's demo infects with probability p per step if at least one
    infected agent is near, and passes its ``infection_radius`` to a search
    that takes a squared radius: its measles parameters (radius 10.51,
    p = 0.285, dt = 1 h) are radius sqrt(10.51) = 3.24 µm and rate
    ``rate_from_probability(0.285, 60)`` here.  With one infected contact the
    two rules agree; with k > 1 this one is the per-contact (mass-action) form.

    Parameters
    ----------
    rate : float
        Infection rate per infected contact, 1/min (>= 0).
    radius : float
        Contact distance between centres, µm (> 0).
    recovery : float, default 0
        Recovery rate, 1/min (>= 0).
    immunity_loss : float, default 0
        Rate at which recovered agents become susceptible again, 1/min.
    column : str, default "state"
        The state column (created as int8, default susceptible; an existing
        integer column is used as it is).
    every : int, default 1
    search : {"auto", "pull", "push"}
        How contacts are found (same result, bit for bit): "pull", every
        susceptible agent searches its neighbourhood; "push", every infected
        agent finds the susceptible agents near it; "auto" searches from
        whichever group is smaller at that step.
    inherit : {"copy", "default"}
        At division (by another behaviour), daughters copy the mother's state
        ("copy": an infected mother has an infected daughter) or are born
        susceptible ("default").
    """

    device_ready = True

    STATES = ("susceptible", "infected", "recovered")

    def event_rates(self):
        return {"rate": self.rate, "recovery": self.recovery, "immunity_loss": self.immunity_loss}

    def __init__(self, rate, radius, recovery=0.0, immunity_loss=0.0, column="state", every=1, search="auto",
                 inherit="copy"):
        super().__init__(every)
        self.inherit = V.choice("inherit", inherit, ("copy", "default"))
        self.search = V.choice("search", search, ("auto", "pull", "push"))
        self._k = np.zeros(0, dtype=np.int32)
        self.rate = V.positive("rate", rate, allow_zero=True)
        self.radius = V.positive("radius", radius)
        self.recovery = V.positive("recovery", recovery, allow_zero=True)
        self.immunity_loss = V.positive("immunity_loss", immunity_loss, allow_zero=True)
        if not isinstance(column, str) or not column:
            raise TypeError(f"column must be a column name, got {column!r}")
        if column in ("uid", "type", "position", "diameter"):
            raise ValueError(f"column {column!r} is a core column; the infection state needs its own column")
        self.column = column

    def state_columns(self):
        return {self.column: self.STATES}

    def attach(self, sim, population):
        t = sim.agents
        if self.column in t:
            spec = t.spec(self.column)
            if spec.dtype.kind not in "iu" or spec.shape != ():
                raise ValueError(f"Infection: column {self.column!r} exists with dtype {spec.dtype} and shape "
                                 f"{spec.shape}; the state column must hold one integer per agent")
        else:
            t.add_column(self.column, np.int8, SUSCEPTIBLE)
        t.spec(self.column).inherit = self.inherit
        if sim.boundary == "periodic" and np.any(2 * self.radius > sim.box.length):
            raise ValueError(f"Infection: radius {self.radius} µm must be at most half the periodic box edge "
                             f"({sim.box.length.min() / 2} µm)")
        super().attach(sim, population)

    def search_radius(self, sim):
        return self.radius

    def run(self, sim, population, dt):
        t = sim.agents
        n = len(t)
        if n == 0:
            return
        p_contact = -np.expm1(-self.rate * dt)
        p_recover = -np.expm1(-self.recovery * dt)
        p_lose = -np.expm1(-self.immunity_loss * dt)
        B = sim.backend
        if B.on_device:  # one thread per agent, pulling from its neighbourhood (same pairs, same draws)
            grid = sim._neighbour_grid(self.radius)
            _, cell_start, order, lower, inv_h, dims, length, periodic, _ = grid.device_args()
            K = B.behaviours
            state = t.col(self.column)
            old = t.dev_scratch((n,), state.dtype)
            K.copy(state, n, old)
            types, uid = t.col("type", False), t.col("uid", False)
            if p_contact > 0:
                K.infection_pull(types, population.code, uid, old, state, t.col("position", False), n, cell_start,
                                 order, lower, inv_h, dims, length, periodic, self.radius, p_contact, sim.seed,
                                 sim.step, self.stream)
            if p_recover > 0 or p_lose > 0:
                K.recovery_step(types, population.code, uid, old, state, n, p_recover, p_lose, sim.seed, sim.step,
                                self.stream)
            return
        K = B.behaviours
        grid = sim._neighbour_grid(self.radius)  # may reorder rows: read columns after
        cell_start, order, lower, inv_h, dims, length, periodic, _ = grid.kernel_args()
        walk = (cell_start, order, lower, inv_h, dims, length, periodic, self.radius)
        state = t[self.column]
        old = state.copy()
        code = population.code
        if p_contact > 0:
            counts = np.zeros(2, dtype=np.int64)
            K.count_equal(old, n, INFECTED, counts[:1])
            K.count_equal(old, n, SUSCEPTIBLE, counts[1:])
            search = self.search
            if search == "auto":
                search = "push" if counts[0] < counts[1] else "pull"
            if counts[0] == 0 or counts[1] == 0:
                pass
            elif search == "pull":
                K.infection_pull(t.type, code, t.uid, old, state, t.position, n, *walk, p_contact, sim.seed,
                                 sim.step, self.stream)
            else:
                sources = np.flatnonzero(old == INFECTED)
                offsets = np.zeros(sources.size + 1, dtype=np.int64)
                empty = np.empty(0, dtype=np.int64)
                K.susceptible_contacts(sources, t.type, code, old, t.position, *walk, offsets, False, empty)
                np.cumsum(offsets, out=offsets)
                targets = np.empty(offsets[-1], dtype=np.int64)
                K.susceptible_contacts(sources, t.type, code, old, t.position, *walk, offsets, True, targets)
                if targets.size:
                    if self._k.size < n:
                        self._k = np.zeros(t.capacity, dtype=np.int32)
                    K.infect_targets(targets, self._k, t.uid, state, p_contact, sim.seed, sim.step, self.stream)
        if p_recover > 0 or p_lose > 0:
            K.recovery_step(t.type, code, t.uid, old, state, n, p_recover, p_lose, sim.seed, sim.step, self.stream)
