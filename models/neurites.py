"""Neurite growth: elongation, retraction, bifurcation and side branching of
the terminal elements of a neurite population (see :mod:`biosim.neurites`).

Each runs as vectorised passes over the population's terminal elements;
random numbers come from the counter-based generator keyed by the element's
uid, the step and the behaviour's stream, and tree changes are applied in uid
order, so a run is the same for any thread count.  BioDynaMo's speeds are
µm/h at a step of 0.01 h: a BioDynaMo speed s is s / 60 µm/min here, and a
per-step probability p is a rate p / 0.6 per min.
"""
import numpy as np

from biosim import _validate as V
from biosim import rng
from biosim.behaviour import Behaviour, SubstanceBehaviour


def _check_population(sim, population, who):
    if sim.neurites is None or population.code not in sim.neurites.types:
        raise ValueError(f"{who} acts on neurite elements: population {population.name!r} is not a neurite "
                         f"population (make one with sim.add_neurites)")


def _firing(sim, rows, stream, rate, dt):
    """The rows that fire an event of ``rate`` per min over ``dt`` min
    (probability rate x dt, at most 1; draw 0 of each uid), in uid order."""
    t = sim.agents
    if rows.size:
        rows = rows[rng.uniform(sim.seed, t.uid[rows], sim.step, stream, 0) < min(rate * dt, 1.0)]
    return rows[np.argsort(t.uid[rows], kind="stable")]


class _NeuriteBehaviour(Behaviour):
    per_agent = True
    writes = ("position", "diameter")

    def attach(self, sim, population):
        _check_population(sim, population, type(self).__name__)
        super().attach(sim, population)


class NeuriteElongation(SubstanceBehaviour):
    """Terminal elements (growth cones) elongate at ``speed`` µm/min, only
    forward, along ``persistence`` x axis (the element's spring axis, µm, as
    BioDynaMo's demos weight it) + ``randomness`` x U(-1, 1)^3 +
    ``gradient_weight`` x the unit gradient of ``substance`` at the
    element's midpoint (a persistent random walk guided by a substance).
    Their diameter changes by ``diameter_rate`` µm/min (negative: growth
    cones thin as they grow); elements of diameter ``min_diameter`` µm or
    less stop growing.

    Parameters
    ----------
    speed : float
        µm/min (BioDynaMo's speed in µm/h / 60), > 0.
    substance : Substance or str, optional
        The guiding substance (needed when gradient_weight is not 0).
    persistence, randomness, gradient_weight : float
        Weights of the three directions (>= 0); defaults 1, 0, 0.
    diameter_rate : float, default 0
        µm/min (BioDynaMo's change per step / 0.6); a negative rate needs
        min_diameter > 0.
    min_diameter : float, default 0
        µm: elements this thin or thinner do not grow.
    every : int, default 1
    """

    per_agent = True
    writes = ("position", "diameter")

    def __init__(self, speed, substance=None, persistence=1.0, randomness=0.0, gradient_weight=0.0,
                 diameter_rate=0.0, min_diameter=0.0, every=1):
        self.speed = V.positive("speed", speed)
        self.persistence = V.positive("persistence", persistence, allow_zero=True)
        self.randomness = V.positive("randomness", randomness, allow_zero=True)
        self.gradient_weight = V.positive("gradient_weight", gradient_weight, allow_zero=True)
        if self.gradient_weight and substance is None:
            raise ValueError(f"gradient_weight={gradient_weight!r} needs the guiding substance (substance=...)")
        super().__init__(substance, every, required=False)
        self.diameter_rate = V.real("diameter_rate", diameter_rate)
        self.min_diameter = V.positive("min_diameter", min_diameter, allow_zero=True)
        if self.diameter_rate < 0 and self.min_diameter == 0:
            raise ValueError(f"diameter_rate={diameter_rate!r} thins growing elements: give min_diameter > 0 "
                             f"(µm) at which they stop, so no diameter reaches 0")
        if self.persistence == self.randomness == self.gradient_weight == 0:
            raise ValueError("persistence, randomness and gradient_weight are all 0: no direction to grow in")

    def attach(self, sim, population):
        _check_population(sim, population, type(self).__name__)
        super().attach(sim, population)

    def max_move(self, sim, dt):
        """µm: a tip's distal point moves by speed x dt."""
        return self.speed * dt

    def run(self, sim, population, dt):
        t = sim.agents
        rows = sim.neurites.terminal_rows(population)
        rows = rows[t.diameter[rows] > self.min_diameter]
        if rows.size == 0:
            return
        grad = np.zeros((0, 3))
        if self.gradient_weight:
            _, grad = self._sub.sample_rows(rows, gradient=True)
        direction = sim.neurites.tip_directions(rows, grad, self.stream, self.persistence, self.randomness,
                                                self.gradient_weight)
        sim.neurites._elongate_rows(rows, np.full(rows.size, self.speed * dt), direction, self.diameter_rate * dt,
                                    self.min_diameter)


class NeuriteRetraction(_NeuriteBehaviour):
    """Terminal elements retract at ``speed`` µm/min (BioDynaMo's
    RetractTerminalEnd: shorten keeping the tension; an element that
    reaches its mother merges with it, or is removed at a branch point or
    at the soma), so a retracting neurite is taken back, element by
    element, to the soma.

    Parameters
    ----------
    speed : float
        µm/min, > 0.
    every : int, default 1
    """

    def __init__(self, speed, every=1):
        super().__init__(every)
        self.speed = V.positive("speed", speed)

    def max_move(self, sim, dt):
        """µm: a tip's distal point moves back by speed x dt."""
        return self.speed * dt

    def run(self, sim, population, dt):
        rows = sim.neurites.terminal_rows(population)
        if rows.size:
            rows = rows[np.argsort(sim.agents.uid[rows], kind="stable")]
            sim.neurites._retract_rows(rows, np.full(rows.size, self.speed * dt))


class NeuriteBifurcation(_NeuriteBehaviour):
    """Terminal elements bifurcate at ``rate`` per min (probability rate x
    dt per step): two daughters of ``length`` µm, 60° apart in a random
    plane through the axis (BioDynaMo's Bifurcate()), of the element's
    diameter.  Only elements thicker than ``min_diameter`` µm and longer
    than ``min_length`` µm bifurcate.

    Parameters
    ----------
    rate : float
        Per min (BioDynaMo's per-step probability / 0.6), >= 0.
    length : float, default 1.0
        µm, the daughters' length.
    min_diameter, min_length : float, default 0
    every : int, default 1
    """

    def __init__(self, rate, length=1.0, min_diameter=0.0, min_length=0.0, every=1):
        super().__init__(every)
        self.rate = V.positive("rate", rate, allow_zero=True)
        self.length = V.positive("length", length)
        self.min_diameter = V.positive("min_diameter", min_diameter, allow_zero=True)
        self.min_length = V.positive("min_length", min_length, allow_zero=True)

    def max_move(self, sim, dt):
        """µm: the new daughters reach ``length`` past the tip."""
        return self.length

    def event_rates(self):
        return {"rate": self.rate}

    def run(self, sim, population, dt):
        t = sim.agents
        rows = sim.neurites.terminal_rows(population)
        long_enough = sim.neurites.length(rows) > self.min_length
        rows = _firing(sim, rows[(t.diameter[rows] > self.min_diameter) & long_enough],
                       self.stream, self.rate, dt)
        if rows.size == 0 and sim._dd is None:  # under MPI the tree operation is a collective call
            return
        N = sim.neurites
        ul, ur = N.random_pair(rows, rng.uniform(sim.seed, t.uid[rows], sim.step, self.stream, 1))
        m = rows.size
        N._bifurcate_rows(rows, np.full(m, self.length), t.diameter[rows].copy(), t.diameter[rows].copy(), ul, ur)


class NeuriteBranching(_NeuriteBehaviour):
    """Terminal elements grow a side branch at ``rate`` per min: the element
    is split at its middle and the new proximal half grows a daughter of
    ``length`` µm and ``diameter`` µm (default the element's) along a random
    perpendicular of its axis plus the axis (BioDynaMo's pyramidal-cell
    demo).  Only elements thicker than ``min_diameter`` µm and of branch
    order below ``max_branch_order`` branch.

    Parameters
    ----------
    rate : float
        Per min, >= 0.
    diameter : float, optional
        µm, the branches' diameter.
    length : float, default 1.0
    min_diameter : float, default 0
    max_branch_order : int, optional
        Elements of this branch order or higher do not branch (1: only the
        main shaft branches, as in the demo).
    every : int, default 1
    """

    def __init__(self, rate, diameter=None, length=1.0, min_diameter=0.0, max_branch_order=None, every=1):
        super().__init__(every)
        self.rate = V.positive("rate", rate, allow_zero=True)
        self.diameter = None if diameter is None else V.positive("diameter", diameter)
        self.length = V.positive("length", length)
        self.min_diameter = V.positive("min_diameter", min_diameter, allow_zero=True)
        self.max_branch_order = (None if max_branch_order is None
                                 else V.positive_int("max_branch_order", max_branch_order))

    def max_move(self, sim, dt):
        """µm: the new branches reach ``length`` from their elements."""
        return self.length

    def event_rates(self):
        return {"rate": self.rate}

    def run(self, sim, population, dt):
        t = sim.agents
        rows = sim.neurites.terminal_rows(population)
        keep = t.diameter[rows] > self.min_diameter
        if self.max_branch_order is not None:
            keep &= t["branch_order"][rows] < self.max_branch_order
        rows = _firing(sim, rows[keep], self.stream, self.rate, dt)
        if rows.size == 0 and sim._dd is None:  # under MPI the tree operation is a collective call
            return
        from biosim.neurites import _perpendiculars

        a = sim.neurites.axis(rows)
        w = _perpendiculars(a / sim.neurites.length(rows)[:, None], rng.uniform(sim.seed, t.uid[rows], sim.step,
                                                                                self.stream, 1))
        v = w + a
        d = t.diameter[rows].copy() if self.diameter is None else np.full(rows.size, self.diameter)
        sim.neurites._branch_rows(rows, d, v / np.linalg.norm(v, axis=1)[:, None], np.full(rows.size, self.length))
