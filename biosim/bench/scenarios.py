"""The scenarios of ``biosim bench``: each is defined by its ``make_*``
function (a fresh :class:`~biosim.Simulation` of N agents, seeded) and
described in that function's docstring, so the numbers compare across
machines and versions."""
import math

import numpy as np

from ._common import measure_run
from .circles import make_circles, measure_circles_ckdtree
from .mechanics import make_mechanics, measure_ckdtree
from .sir import BIODYNAMO_SIR_RATE, make_sir


# -- proliferation (BioDynaMo) --------------------------------------------------
PROLIFERATION_SPACING = 20.0       # µm between lattice points
PROLIFERATION_DIVIDE = 32.0        # µm, division diameter
PROLIFERATION_GROWTH = 3000.0 / 60.0   # µm³/min (BioDynaMo: 3000 µm³/h)
PROLIFERATION_DT = 0.6             # min (BioDynaMo's default 0.01 h)


def _sphere_volume(d):
    return math.pi / 6.0 * d ** 3


def make_proliferation(n, seed=1):
    """BioDynaMo's cell-proliferation benchmark (demo/cell_division, the
    PPoPP 2023 "cell proliferation" run): cells on a cubic lattice of
    spacing 20 µm (the first N points of a k x k x k lattice, k =
    ceil(N^(1/3))) grow at 3000 µm³/h and divide at 32 µm
    (``GrowthDivision``, daughter/mother volume ratio U(0.9, 1.1), random
    axis), pushed apart by BioDynaMo's force (``BioDynaMoForce``: k = 2,
    gamma = 1, radius inflation 1.5 µm, mass 1 for a 30 µm cell,
    displacement capped at 3 µm), dt = 0.01 h (0.6 min), in a closed box
    with a 50 µm margin around the lattice.

    One change from BioDynaMo's demo, where every cell starts at 30 µm so
    none divides for the first 100 steps and then all divide together:
    initial diameters are drawn from U(25.4, 32) µm (from a fresh daughter
    to the division size), so a steady 0.3% of the cells divide in every
    step and a short measurement sees growth, division and mechanics in
    their long-run proportions."""
    import biosim as bs
    from biosim import models

    k = max(1, math.ceil(n ** (1.0 / 3.0) - 1e-9))
    idx = np.arange(n)
    lattice = np.stack([idx % k, (idx // k) % k, idx // (k * k)], axis=1) * PROLIFERATION_SPACING
    margin = 50.0
    box = bs.Box(-margin * np.ones(3), (k - 1) * PROLIFERATION_SPACING + margin * np.ones(3))
    density = 60.0 / _sphere_volume(30.0)  # mass 1 for a 30 µm cell, BioDynaMo's time unit is the hour
    sim = bs.Simulation(box, boundary="closed", dt=PROLIFERATION_DT, seed=seed,
                        mechanics=bs.BioDynaMoForce(density=density))
    rng = np.random.default_rng(seed + 1)
    d_min = (0.5 * _sphere_volume(PROLIFERATION_DIVIDE) * 6.0 / math.pi) ** (1.0 / 3.0)
    diameter = rng.uniform(d_min, PROLIFERATION_DIVIDE, n)
    cells = sim.add_agents("cells", lattice, diameter=diameter)
    cells.behaviours += [models.GrowthDivision(growth_rate=PROLIFERATION_GROWTH,
                                               division_diameter=PROLIFERATION_DIVIDE, volume_ratio=(0.9, 1.1))]
    return sim


# -- clustering (BioDynaMo's soma clustering) -------------------------------------
def make_clustering(n, seed=1):
    """BioDynaMo's soma clustering as in examples/soma_clustering.py, scaled at
    constant density: N/2 cells of each of two types (diameter 10 µm)
    uniform in a closed cube of edge 250 (N / 2000)^(1/3) µm rounded to a
    multiple of the 10 µm voxel; each type secretes its own substance (10
    per minute per cell) and moves up its gradient at 1 µm/min, with a
    random walk (D = 0.5 µm²/min); two substances (D = 500 µm²/min, decay
    0.01 /min, 10 µm voxels, implicit solver); ``SoftSphere(repulsion=2,
    adhesion=0.4)``; dt = 0.1 min."""
    import biosim as bs
    from biosim import models

    edge = 10.0 * max(2, round(25.0 * (n / 2000.0) ** (1.0 / 3.0)))
    box = bs.Box.cube(edge)
    sim = bs.Simulation(box, boundary="closed", dt=0.1, seed=seed, mechanics=bs.SoftSphere(repulsion=2.0, adhesion=0.4))
    subs = [sim.add_substance(f"substance_{k}", diffusion=500.0, decay=0.01, spacing=10.0) for k in range(2)]
    pos = bs.init.uniform(n, box, seed=seed + 1)
    half = n // 2
    for k, rows in enumerate((pos[:half], pos[half:])):
        cells = sim.add_agents(f"type_{k}", rows, diameter=10.0)
        cells.behaviours += [models.Secretion(subs[k], rate=10.0), models.Chemotaxis(subs[k], speed=1.0),
                             models.RandomWalk(diffusion=0.5)]
    return sim


# -- PhysiCell's template project in 3D ------------------------------------------
PHYSICELL_DOMAIN = 500.0           # µm, half edge
PHYSICELL_VOXEL = 20.0             # µm
PHYSICELL_DT = (0.01, 0.1, 6.0)    # min: diffusion, mechanics, phenotype
PHYSICELL_VOLUME = 2494.0          # µm³, PhysiCell's default cell
PHYSICELL_CYCLE_RATE = 0.00072     # 1/min, the "live" cycle model
PHYSICELL_APOPTOSIS = 5.31667e-05  # 1/min
PHYSICELL_SUBSTRATE = (1e5, 10.0)  # µm²/min, 1/min: the template's "substrate"
PHYSICELL_STEPS = 600              # mechanics steps in the 60 simulated minutes


def _physicell_positions(n, seed):
    rng = np.random.default_rng(seed + 1)
    return -PHYSICELL_DOMAIN + 2.0 * PHYSICELL_DOMAIN * rng.random((n, 3))


def make_physicell_template(n, seed=1):
    """PhysiCell's template project (sample_projects/template, 1.14) in 3D:
    the domain [-500, 500]^3 µm; one substrate (D = 10^5 µm²/min, decay 10
    /min, initial 0, no-flux faces) on 20 µm voxels (50^3) solved by the
    implicit LOD method at dt = 0.01 min; N cells of PhysiCell's default
    type (volume 2494 µm³, diameter 16.8 µm) uniform at random, with
    PhysiCell's potentials (``PhysiCellForce``: repulsion 10, adhesion 0.4,
    adhesion reach 1.25 R, Adams-Bashforth, uncapped as PhysiCell, and its
    virtual wall at the domain edge) at dt = 0.1 min and the full phenotype
    every 6 min as PhysiCell runs it: the standard volume model
    (``models.Volume``, MCF-7 targets), the "live" cycle (division at
    0.00072 /min, PhysiCell's division geometry, rate x dt probabilities),
    apoptosis at 5.31667e-05 /min with its phases (cells shrink for 8.6 h
    before removal) and necrosis with its phases (rate 0, as the template).
    The base step is the mechanics step, so the 60 simulated minutes of the
    issue are 600 steps.  The same work as pyphysicell's step, cell for
    cell (its phenotype is always the full one)."""
    import biosim as bs
    from biosim import models

    dt_diff, dt_mech, dt_pheno = PHYSICELL_DT
    sim = bs.Simulation(bs.Box.cube(2 * PHYSICELL_DOMAIN, lower=-PHYSICELL_DOMAIN), boundary="closed",
                        dt=dt_mech, seed=seed, mechanics=bs.PhysiCellForce(max_displacement=float("inf"), wall=100.0))
    sim.add_substance("substrate", diffusion=PHYSICELL_SUBSTRATE[0], decay=PHYSICELL_SUBSTRATE[1],
                      spacing=PHYSICELL_VOXEL, dt=dt_diff, solver="implicit", decay_split=True, dirichlet_layer=True)
    d = (6.0 * PHYSICELL_VOLUME / math.pi) ** (1.0 / 3.0)
    cells = sim.add_agents("default", _physicell_positions(n, seed), diameter=d)
    every = round(dt_pheno / dt_mech)
    cells.behaviours += [models.Volume(every=every),
                         models.CellCycle.live(every=every, probability="linear", placement="physicell"),
                         models.Apoptosis(PHYSICELL_APOPTOSIS, every=every, probability="linear", phases=True),
                         models.Necrosis(rate=0.0, every=every, probability="linear", phases=True)]
    return sim


def pyphysicell_available():
    """(True, version) when the optional ``pyphysicell`` baseline is installed
    (``pip install biosim[physicell]``), else (False, why)."""
    try:
        import pyphysicell
    except Exception as e:  # not installed, or its kernels failed to load
        return False, f"pyphysicell is not installed ({type(e).__name__}: {e}); pip install 'biosim[physicell]'"
    return True, pyphysicell.__version__


def _pyphysicell_model(minutes):
    import pyphysicell as pc

    L = PHYSICELL_DOMAIN
    m = pc.Model()
    m.domain = pc.Domain(-L, L, -L, L, -L, L, PHYSICELL_VOXEL, PHYSICELL_VOXEL, PHYSICELL_VOXEL, use_2D=False)
    m.time = pc.Time(*PHYSICELL_DT, max_time=minutes)
    m.substrates = [pc.Substrate("substrate", diffusion_coefficient=PHYSICELL_SUBSTRATE[0],
                                 decay_rate=PHYSICELL_SUBSTRATE[1])]
    m.cell_types = [pc.CellType(
        "default", ID=0, cycle=pc.Cycle(code=5, name="live", transition_rates={(0, 0): PHYSICELL_CYCLE_RATE}),
        deaths={"apoptosis": pc.DeathModel(code=100, name="apoptosis", death_rate=PHYSICELL_APOPTOSIS,
                                           phase_durations={0: 516.0}),
                "necrosis": pc.DeathModel(code=101, name="necrosis", death_rate=0.0,
                                          phase_durations={0: 0.0, 1: 86400.0})})]
    return m


def measure_pyphysicell(n, steps):
    """The physicell_template scenario in pyphysicell (a reimplementation of
    PhysiCell 1.14.2 with C++ kernels): ``steps`` mechanics steps of 0.1 min,
    so 600 steps are the 60 simulated minutes.  Threads: PHYSICELL_THREADS
    (set from NUMBA_NUM_THREADS by the suite).  Set-up is not timed."""
    import time

    import pyphysicell as pc

    minutes = steps * PHYSICELL_DT[1]
    sim = pc.Simulation(_pyphysicell_model(minutes), seed=0)
    sim.add_cells(_physicell_positions(n, 1), "default")
    t0 = time.perf_counter()
    sim.run(until=minutes)
    wall = time.perf_counter() - t0
    return {"agents": n, "steps": steps, "seconds": wall, "updates_per_s": n * steps / wall,
            "cells_end": int(sim.cells.n), "version": pc.__version__}


def measure_scenario(name, n, steps, repeat=1):
    """Run scenario ``name`` at ``n`` agents in this process (see
    :func:`biosim.bench._common.measure_run`) and return its result dict."""
    sc = SCENARIOS[name]
    sim, result = measure_run(lambda m: sc.make(m), n, steps, repeat, warm=min(sc.warm, n))
    result["scenario"] = name
    return result


class Scenario:
    """One benchmark scenario, ``title`` in a few words: ``make(n, seed)`` builds it; ``agents`` and
    ``steps`` are the sizes ``biosim bench`` runs by default; ``baseline``
    names a function of :mod:`biosim.bench` that times the same work in
    another implementation (``(n, steps) -> dict``), ``baseline_note`` says
    where its physics differs; ``reference`` is a
    published figure to print next to the result; ``targets`` are the
    issue's goals for this machine, as (description, N, threads, key, bound)
    with key one of updates_per_s, speedup_efficiency, baseline_ratio,
    bytes_per_agent, seconds.  ``bytes_per_agent`` is a generous estimate
    of the peak memory per agent (1.5x what was measured), used to refuse
    sizes this machine cannot hold before anything runs."""

    def __init__(self, name, title, make, agents, steps, baseline=None, baseline_label=None, baseline_steps=None,
                 baseline_note=None, reference=None, targets=(), warm=2000, bytes_per_agent=200.0):
        self.name = name
        self.title = title
        self.make = make
        self.agents = tuple(agents)
        self.steps = steps
        self.baseline = baseline
        self.baseline_label = baseline_label
        self.baseline_steps = baseline_steps
        self.baseline_note = baseline_note
        self.reference = reference
        self.targets = tuple(targets)
        self.warm = warm
        self.bytes_per_agent = bytes_per_agent

    @property
    def doc(self):
        return self.make.__doc__


M = 1_000_000
SCENARIOS = {
    "circles": Scenario(
        "circles", "FLAME GPU 2's circles model in 3D (neighbour search and interaction)",
        make_circles, (M,), 10, baseline="measure_circles_ckdtree", baseline_label="numpy + cKDTree",
        baseline_steps=3, bytes_per_agent=180.0,
        reference="FLAME GPU 2 on a V100: 2.65e8 agent-updates/s (3.77 ms/step at 10^6)",
        targets=(("10 M agent-updates/s with 2 threads at 10^6", M, 2, "updates_per_s", 10e6),
                 ("30x numpy + cKDTree at 10^6", M, 2, "baseline_ratio", 30.0),
                 ("85% parallel efficiency 1 -> 2 threads at 10^6", M, 2, "efficiency", 0.85),
                 ("at most 150 bytes per agent at 10^7", 10 * M, None, "bytes_per_agent", 150.0))),
    "mechanics": Scenario(
        "mechanics", "neighbour search plus soft-sphere mechanics, density 1, range 1.5",
        make_mechanics, (M,), 10, baseline="measure_ckdtree", baseline_label="numpy + cKDTree",
        baseline_steps=3, warm=1000, bytes_per_agent=180.0,
        targets=(("25 M agent-updates/s with 2 threads at 10^6", M, 2, "updates_per_s", 25e6),
                 ("30x numpy + cKDTree at 10^6", M, 2, "baseline_ratio", 30.0))),
    "proliferation": Scenario(
        "proliferation", "BioDynaMo's cell proliferation (growth, division, mechanics)",
        make_proliferation, (M,), 10, bytes_per_agent=250.0,
        reference="BioDynaMo (PPoPP 2023): 12.6 M agents, "
        "500 iterations on a 72-core server",
        targets=(("85% parallel efficiency 1 -> 2 threads at 10^6", M, 2, "efficiency", 0.85),)),
    "epidemiology": Scenario(
        "epidemiology", "SIR by proximity, BioDynaMo's measles demo scaled",
        make_sir, (M,), 20, warm=3000, bytes_per_agent=230.0,
        reference=f"BioDynaMo on 2 cores (10.05 M agents): {BIODYNAMO_SIR_RATE / 1e6:.2f} M agent-updates/s"),
    "clustering": Scenario("clustering", "soma clustering with two diffusing substances", make_clustering,
                           (100_000,), 20, bytes_per_agent=650.0),
    "physicell_template": Scenario(
        "physicell_template", "PhysiCell's template project in 3D, 60 simulated minutes",
        make_physicell_template, (10_000,), PHYSICELL_STEPS, baseline="measure_pyphysicell",
        baseline_label="pyphysicell", baseline_steps=PHYSICELL_STEPS, bytes_per_agent=400.0,
        baseline_note="the same physics as pyphysicell (PhysiCell 1.14.2): domain, substrate with BioFVM's "
                      "conventions, time steps, force law with the virtual wall, Adams-Bashforth update, volume "
                      "model, cycle, division geometry, death with phases; the random draws differ",
        reference="PhysiCell 1.14 on this kind of machine, 2 threads: about 45 s at 10^4 cells, 610 s at 10^5",
        targets=(("10x pyphysicell with 2 threads at 10^5 (pyphysicell measured 169 s)", 100_000, 2,
                  "baseline_ratio", 10.0),
                 ("3x pyphysicell with 2 threads at 10^4 (pyphysicell measured 26 s)", 10_000, 2,
                  "baseline_ratio", 3.0))),
}
