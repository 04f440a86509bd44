"""Mechanics: sphere-sphere forces between neighbours and the position update.

Choose one with ``Simulation(mechanics=...)``:

* :class:`SoftSphere` (the default): linear repulsion with adhesion, explicit
  Euler of velocity = force / damping.
* :class:`PhysiCellForce`: PhysiCell's quadratic potentials and its
  second-order Adams-Bashforth position update.
* :class:`BioDynaMoForce`: BioDynaMo's default sphere force and its
  mass-weighted displacement with adherence threshold.
* ``None``: no mechanics.

Forces here are velocity-like: with ``damping=1`` (SoftSphere) a force of 1
moves a cell 1 µm/min.  Every law has a finite reach, and the neighbour grid
is always built with a cutoff that covers it for the largest diameter present,
so no interacting pair is ever dropped.  Displacements are capped at
``max_displacement`` µm per step.
"""
import numpy as np
from numba import get_num_threads

from . import _validate as V
from .kernels.cpu import forces as K


class Mechanics:
    """Base class: a pair-force law plus a position update."""

    kernel = None  # key into biosim.kernels.cpu.forces.FORCE_KERNELS

    def __init__(self, max_displacement):
        self.max_displacement = V.positive("max_displacement", max_displacement, allow_inf=True)

    # subclasses define: _params() -> (p0, p1, p2), reach (a, b), update
    def reach(self):
        """(a, b): the force vanishes beyond a * (d_i + d_j) / 2 + b µm."""
        raise NotImplementedError

    def cutoff(self, max_diameter):
        """Interaction range (µm) for the largest diameter present."""
        a, b = self.reach()
        return a * float(max_diameter) + b

    def columns(self):
        """Extra agent columns this law needs: (name, dtype, default, shape)."""
        return ()

    def parameters(self):
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def to_dict(self):
        return {"class": type(self).__name__, "parameters": self.parameters()}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"{type(self).__name__}({args})"

    def forces(self, sim):
        """Total pair force on every agent, (n, 3) (a scratch array: use it
        before anything else uses the table's scratch)."""
        t = sim.agents
        n = len(t)
        grid = sim._neighbour_grid(self.cutoff(t.diameter.max()))
        force = t.scratch((n, 3), np.float64)
        kernel = K.FORCE_KERNELS[self.kernel, bool(grid.periodic.any())]
        args = grid.kernel_args()
        room = K.gather_capacity(grid.cell_start, grid.dims, grid.inv_h, grid.cutoff, n)
        buf = np.empty((get_num_threads(), 4, room))
        kernel(np.array(self._params(), dtype=np.float64), t.position, t.diameter, t.uid, n,
               *args, sim.seed, sim.step, buf, force)
        return force

    def apply(self, sim):
        """Compute forces and move the agents (phase 4 of the step)."""
        if len(sim.agents) == 0:
            return
        self.update(sim, self.forces(sim))


class SoftSphere(Mechanics):
    """Linear soft spheres with short-range adhesion (the default mechanics).

    With contact distance s = (d_i + d_j) / 2 and centre distance r, the force
    pushing the two cells apart is::

        F(r) = repulsion * (1 - r / s)                 for r < s
             - adhesion  * (1 - r / (adhesion_range s)) for r < adhesion_range s

    so an isolated pair rests at r* = s (repulsion - adhesion) /
    (repulsion - adhesion / adhesion_range).  Positions follow velocity =
    force / damping (explicit Euler), capped at ``max_displacement``.

    Parameters
    ----------
    repulsion : float, default 2.0
        Force at full overlap before adhesion (µm/min with damping 1).
    adhesion : float, default 0.4
        Adhesive force at full overlap (same units); 0 disables adhesion.
    adhesion_range : float, default 1.25
        Reach of adhesion as a multiple of the contact distance (>= 1).
    damping : float, default 1.0
        Drag coefficient: velocity (µm/min) = force / damping.
    max_displacement : float, default 3.0
        Cap on the displacement per step, µm.
    """

    kernel = "soft_sphere"

    def __init__(self, repulsion=2.0, adhesion=0.4, adhesion_range=1.25, damping=1.0,
                 max_displacement=3.0):
        super().__init__(max_displacement)
        self.repulsion = V.positive("repulsion", repulsion, allow_zero=True)
        self.adhesion = V.positive("adhesion", adhesion, allow_zero=True)
        self.adhesion_range = V.positive("adhesion_range", adhesion_range)
        if self.adhesion_range < 1.0:
            raise ValueError(f"adhesion_range must be >= 1 (a multiple of the contact distance), "
                             f"got {adhesion_range!r}")
        self.damping = V.positive("damping", damping)

    def _params(self):
        return self.repulsion, self.adhesion, self.adhesion_range

    def reach(self):
        return (self.adhesion_range if self.adhesion > 0 else 1.0), 0.0

    def equilibrium_distance(self, d1, d2):
        """Rest distance (µm) of an isolated pair of diameters d1, d2."""
        s = 0.5 * (d1 + d2)
        if self.adhesion == 0:
            return s
        return s * (self.repulsion - self.adhesion) / (self.repulsion - self.adhesion / self.adhesion_range)

    def update(self, sim, force):
        t = sim.agents
        K.overdamped_update(t.position, force, len(t), sim.dt / self.damping, self.max_displacement)


class PhysiCellForce(Mechanics):
    """PhysiCell's potentials (PhysiCell_cell.cpp, ``add_potentials``) with its
    Adams-Bashforth position update.

    With R = r_i + r_j (sum of radii) and S = adhesion_range * R::

        v(r) = repulsion (1 - r/R)^2 for r < R  -  adhesion (1 - r/S)^2 for r < S

    along the centre line (µm/min; PhysiCell's sqrt(c_i c_j) with equal cells).
    Positions: x += dt (1.5 v - 0.5 v_prev) (``previous_velocity`` column).
    PhysiCell caps nothing: pass ``max_displacement=float("inf")`` to match it.

    Parameters
    ----------
    repulsion : float, default 10.0
        PhysiCell's cell_cell_repulsion_strength (µm/min).
    adhesion : float, default 0.4
        PhysiCell's cell_cell_adhesion_strength (µm/min).
    adhesion_range : float, default 1.25
        relative_maximum_adhesion_distance (multiple of R, >= 1).
    max_displacement : float, default 3.0
        Cap on the displacement per step, µm.
    """

    kernel = "physicell"

    def __init__(self, repulsion=10.0, adhesion=0.4, adhesion_range=1.25, max_displacement=3.0):
        super().__init__(max_displacement)
        self.repulsion = V.positive("repulsion", repulsion, allow_zero=True)
        self.adhesion = V.positive("adhesion", adhesion, allow_zero=True)
        self.adhesion_range = V.positive("adhesion_range", adhesion_range)
        if self.adhesion_range < 1.0:
            raise ValueError(f"adhesion_range must be >= 1, got {adhesion_range!r}")

    def _params(self):
        return self.repulsion, self.adhesion, self.adhesion_range

    def reach(self):
        return (self.adhesion_range if self.adhesion > 0 else 1.0), 0.0

    def columns(self):
        return (("previous_velocity", np.float64, 0.0, (3,)),)

    def equilibrium_distance(self, d1, d2):
        R = 0.5 * (d1 + d2)
        if self.adhesion == 0:
            return R
        a, b = np.sqrt(self.repulsion), np.sqrt(self.adhesion)
        return (a - b) / (a / R - b / (self.adhesion_range * R))

    def update(self, sim, force):
        t = sim.agents
        K.adams_bashforth_update(t.position, force, t["previous_velocity"], len(t), sim.dt,
                                 self.max_displacement)


class BioDynaMoForce(Mechanics):
    """BioDynaMo's default sphere force (src/core/interaction_force.cc) with its
    displacement rule.

    Each radius is inflated by ``radius_inflation``; with overlap
    delta = r_i + r_j - r and rr = r_i r_j / (r_i + r_j)::

        F = repulsion * delta - attraction * sqrt(rr * delta)   for delta > 0

    Coincident centres get a random force in U(-3, 3)^3 (counter-based, equal
    and opposite).  Displacement per step = F dt / (density * volume), applied
    only when |F| > adherence, capped at ``max_displacement`` (3 µm).  The
    neighbour search covers the force's whole reach, (d_i + d_j)/2 + 2
    radius_inflation, unlike BioDynaMo, whose search stops at the largest
    diameter.

    BioDynaMo's time unit is the hour: a run with its default dt = 0.01 h is
    dt = 0.6 min here, and ``density`` plays the same role per minute.

    Parameters
    ----------
    repulsion : float, default 2.0   (BioDynaMo's k)
    attraction : float, default 1.0  (BioDynaMo's gamma)
    radius_inflation : float, default 1.5 (µm)
    density : float, default 1.0     (mass per µm³)
    adherence : float, default 0.0   (force threshold below which cells stay put)
    max_displacement : float, default 3.0 (µm per step)
    """

    kernel = "biodynamo"

    def __init__(self, repulsion=2.0, attraction=1.0, radius_inflation=1.5, density=1.0,
                 adherence=0.0, max_displacement=3.0):
        super().__init__(max_displacement)
        self.repulsion = V.positive("repulsion", repulsion, allow_zero=True)
        self.attraction = V.positive("attraction", attraction, allow_zero=True)
        self.radius_inflation = V.positive("radius_inflation", radius_inflation, allow_zero=True)
        self.density = V.positive("density", density)
        self.adherence = V.positive("adherence", adherence, allow_zero=True)

    def _params(self):
        return self.repulsion, self.attraction, self.radius_inflation

    def reach(self):
        return 1.0, 2.0 * self.radius_inflation

    def equilibrium_distance(self, d1, d2):
        """Rest distance (µm) of an isolated pair (F = 0 with delta > 0)."""
        ri, rj = 0.5 * d1 + self.radius_inflation, 0.5 * d2 + self.radius_inflation
        rr = ri * rj / (ri + rj)
        delta = rr * (self.attraction / self.repulsion) ** 2 if self.repulsion > 0 else 0.0
        return ri + rj - delta

    def update(self, sim, force):
        t = sim.agents
        K.mass_update(t.position, force, t.diameter, len(t), sim.dt, self.density, self.adherence,
                      self.max_displacement)


MECHANICS = {c.__name__: c for c in (SoftSphere, PhysiCellForce, BioDynaMoForce)}
