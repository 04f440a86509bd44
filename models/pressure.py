"""PhysiCell's mechanical signals: simple pressure and contacts by type."""
import numpy as np

from biosim.behaviour import Behaviour


def contact_signals(sim, code, reach=1.25, pressure=None, counts=None):
    """PhysiCell's simple pressure and contact counts for the agents of type
    ``code``, written at their rows (the others are left as they are):

    * ``pressure`` (n,) float64: sum over neighbours closer than
      R = r_i + r_j of (1 - d/R)^2 / 0.027288820670331, dimensionless (about
      1 for a cell packed among equal cells, PhysiCell's scale);
    * ``counts`` (n, ntypes + 2) float64, or None: neighbours closer than
      ``reach`` x R (PhysiCell's adhesion range) per population (type code
      order, dead ones included), then the live ones and the dead ones
      (``death`` column non-zero).

    Arrays where the backend's kernels use them (device arrays on a GPU);
    ``pressure`` None allocates one.  Returns (pressure, counts)."""
    t = sim.agents
    n = len(t)
    B = sim.backend
    if pressure is None:
        pressure = B.zeros((max(n, 1),), np.float64)
    if n == 0:
        return pressure, counts
    dmax = float(sim._max_diameter())
    search = dmax * (reach if counts is not None else 1.0)
    grid = sim._neighbour_grid(search)  # may reorder rows: read columns after
    if B.on_device:
        _, cell_start, order, lower, inv_h, dims, length, periodic, _ = grid.device_args()
    else:
        cell_start, order, lower, inv_h, dims, length, periodic, _ = grid.kernel_args()
    has_death = "death" in t
    death = t.col("death", False) if has_death else B.zeros((1,), np.int8)
    ncount = counts is not None
    out = counts if ncount else B.zeros((1, 1), np.float64)
    B.behaviours.contacts(t.col("type", False), code, n, death, has_death, t.col("position", False),
                          t.col("diameter", False), cell_start, order, lower, inv_h, dims, length, periodic, search,
                          float(reach), pressure, out, ncount)
    return pressure, counts


class Pressure(Behaviour):
    """PhysiCell's simple pressure in the float column ``pressure``
    (dimensionless): for each cell of the population, the sum over its
    neighbours closer than R = r_i + r_j of (1 - d/R)^2 / 0.027288820670331
    (PhysiCell's ``state.simple_pressure``, about 1 for a cell in a packing of
    equal cells at PhysiCell's equilibrium spacing, 0 for a cell alone),
    computed before the step's mechanics.  What a rule or a behaviour reads
    for contact inhibition (``models.Rules``' signal ``pressure``).

    Parameters
    ----------
    every : int, default 1
    """

    columns = (("pressure", np.float64, 0.0, (), "default"),)
    writes = ("pressure",)
    device_ready = True

    def search_radius(self, sim):
        return float(sim._max_diameter())

    def run(self, sim, population, dt):
        t = sim.agents
        if len(t):
            contact_signals(sim, population.code, pressure=t.col("pressure"))
