"""biosim: agent-based simulation of cell biology.

    import biosim as bs
    sim = bs.Simulation(box=bs.Box.cube(400.0), boundary="closed", dt=0.1, seed=42)

Units: µm and minutes.  ``bs.models`` (the behaviour library) and ``bs.viz``
load on first use.
"""
__version__ = "0.1.0"

from . import _cache

_cache.configure_numba()  # one per-user numba cache, set before any kernel module loads

from . import init, io, rng  # noqa: E402
from .agents import AgentTable  # noqa: E402
from .behaviour import Behaviour  # noqa: E402
from .mechanics import BioDynaMoForce, Mechanics, PhysiCellForce, SoftSphere  # noqa: E402
from .neurites import NeuriteMechanics  # noqa: E402
from .rules import agent_rule  # noqa: E402
from .simulation import Population, Simulation, Trigger  # noqa: E402
from .space import Box, neighbour_pairs  # noqa: E402
from .substances import Dirichlet, Neumann, Substance  # noqa: E402
from .sweep import sweep  # noqa: E402
from ._validate import UnitWarning  # noqa: E402

__all__ = [
    "AgentTable", "Behaviour", "BioDynaMoForce", "Box", "Dirichlet", "Mechanics", "NeuriteMechanics", "Neumann",
    "PhysiCellForce", "Population", "Simulation", "SoftSphere", "Substance", "Trigger", "UnitWarning", "init", "io",
    "agent_rule", "neighbour_pairs", "rng", "sweep",
]


def __getattr__(name):
    if name in ("models", "viz", "physicell"):
        import importlib

        # bs.physicell (PhysiCell projects) builds models: it lives with them, in biosim.models.physicell
        return importlib.import_module("biosim.models.physicell" if name == "physicell" else f"biosim.{name}")
    raise AttributeError(f"module 'biosim' has no attribute {name!r}")
