"""biosim's benchmark suite: ``biosim bench`` and the scripts in benchmarks/.

Scenarios (each defined in the docstring of its ``make_*`` function):

* ``circles``: FLAME GPU 2's circles model in 3D (:func:`make_circles`);
* ``mechanics``: neighbour search plus soft-sphere forces (:func:`make_mechanics`);
* ``proliferation``: BioDynaMo's cell-proliferation benchmark (:func:`make_proliferation`);
* ``epidemiology``: SIR by proximity, BioDynaMo's measles demo (:func:`make_sir`);
* ``clustering``: soma clustering with two diffusing substances (:func:`make_clustering`);
* ``physicell_template``: PhysiCell's template project in 3D (:func:`make_physicell_template`);
* neurons growing and branching (:func:`make_neurons`, ``benchmarks/bench_neurites.py``).

:func:`run_suite` runs them at chosen sizes and thread counts, each thread
count in a process of its own, against baselines measured in the same run
(numpy + scipy cKDTree for circles and mechanics; pyphysicell, when
installed, for physicell_template), and writes JSON and a plot.
"""
from ._common import _measure, _rss_bytes, _run_code, machine, measure_run
from .circles import (CIRCLES_RADIUS, CIRCLES_STRENGTH, circles_main, circles_reference, make_circles,
                      measure_circles, measure_circles_ckdtree)
from .diffusion import diffusion_main, measure_diffusion, measure_numpy_diffusion
from .mechanics import RANGE, main, make_mechanics, measure_ckdtree, measure_engine
from .neurites import make_neurons, measure_neurons, neurites_main
from .scenarios import (SCENARIOS, Scenario, make_clustering, make_physicell_template, make_proliferation,
                        measure_pyphysicell, measure_scenario, pyphysicell_available)
from .sir import BIODYNAMO_SIR_RATE, make_sir, measure_sir, sir_main
from .suite import plot_results, run_suite

__all__ = [
    "SCENARIOS", "Scenario", "run_suite", "plot_results", "machine", "measure_run", "measure_scenario",
    "make_circles", "make_mechanics", "make_proliferation", "make_sir", "make_clustering",
    "make_physicell_template", "circles_reference", "measure_circles", "measure_circles_ckdtree",
    "measure_engine", "measure_ckdtree", "measure_pyphysicell", "pyphysicell_available", "measure_sir",
    "measure_diffusion", "measure_numpy_diffusion", "main", "circles_main", "sir_main", "diffusion_main",
    "CIRCLES_RADIUS", "CIRCLES_STRENGTH", "RANGE", "BIODYNAMO_SIR_RATE", "make_neurons", "measure_neurons",
    "neurites_main",
]
