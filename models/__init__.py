"""The behaviour library: ``from biosim import models``.

Every behaviour is a small class with validated parameters (units in its
docstring) that runs as one numba pass over the agents of its population.
"""
from .growth import GrowthDivision
from .death import Apoptosis, Necrosis
from .motion import Motility, RandomWalk
from .chemistry import Chemotaxis, Secretion, Uptake
from .state import StateSwitch
from .cycle import CellCycle
from .volume import Volume
from .interactions import Damage, Interactions
from .attachments import Attachments
from .pressure import Pressure
from .physicell_rules import Rules
from .neurites import NeuriteBifurcation, NeuriteBranching, NeuriteElongation, NeuriteRetraction
from .epidemiology import INFECTED, RECOVERED, SUSCEPTIBLE, Infection, rate_from_probability

__all__ = ["GrowthDivision", "Apoptosis", "Necrosis", "RandomWalk", "Motility", "Secretion", "Uptake",
           "Chemotaxis", "StateSwitch", "CellCycle", "Volume", "Interactions", "Attachments", "Damage", "Pressure", "Rules",
           "NeuriteElongation", "NeuriteRetraction", "NeuriteBifurcation", "NeuriteBranching",
           "Infection", "rate_from_probability", "SUSCEPTIBLE", "INFECTED", "RECOVERED"]
