"""One simulation on several MPI ranks (biosim.parallel): ``mpiexec -n R``
runs of the examples equal one process bit for bit (every agent column in
uid order, every substance grid, every record, the run files), checkpoints
move between rank counts, and bad decompositions or a failing rank stop
every rank with the error instead of hanging."""
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import biosim as bs

pytest.importorskip("mpi4py")
HERE = Path(__file__).parent
EXAMPLES = HERE.parent / "examples"
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
if MPIEXEC is None:
    pytest.skip("no mpiexec (pip install mpich)", allow_module_level=True)
ENV = {**os.environ, "NUMBA_NUM_THREADS": "1"}  # ranks x threads within the 2 cores here


def launch(ranks, *args, cwd, ok=True, timeout=600, grid=None):
    """Run a script on ``ranks`` ranks (``grid``: the ranks along x, y and z,
    such as "2x2x1"; default: the grid the decomposition chooses)."""
    cmd = [sys.executable, *map(str, args)]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    env = ENV if grid is None else {**ENV, "BIOSIM_RANK_GRID": grid}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)
    if ok:
        assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-3000:]
    return r


def final_state(ranks, script, *args, cwd, grid=None):
    """The whole final state of every Simulation ``script`` ran (mpi_driver.py)."""
    out = Path(cwd) / f"state-{ranks}-{grid}.npz"
    launch(ranks, HERE / "mpi_driver.py", out, script, *args, cwd=cwd, grid=grid)
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def assert_identical(a, b):
    assert sorted(a) == sorted(b)
    differ = [k for k in a if not (a[k].shape == b[k].shape and np.array_equal(a[k], b[k], equal_nan=True))]
    assert not differ, f"{len(differ)} of {len(a)} arrays differ: {differ[:8]}"


def assert_same_run_files(p, q):
    a, b = bs.io.open_run(p), bs.io.open_run(q)
    assert list(a.steps) == list(b.steps) and len(a.steps) > 1
    for i in range(len(a.steps)):
        x, y = a.agents(i), b.agents(i)
        ox, oy = np.argsort(x["uid"]), np.argsort(y["uid"])
        assert sorted(x) == sorted(y)
        for k in x:
            np.testing.assert_array_equal(x[k][ox], y[k][oy], err_msg=f"snapshot {i}, column {k}")
        for s in a.substances:
            np.testing.assert_array_equal(a.substance(s, i), b.substance(s, i), err_msg=f"snapshot {i}, {s}")
    assert a.records == b.records
    for name in a.records:
        sa, sb = a.series(name), b.series(name)
        for k in ("step", "value"):
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=name)


# (script, arguments): each example at a size of seconds, large enough that every rank holds agents
EXAMPLE_RUNS = {
    "spheroid": ("spheroid.py", 40, 350, "out.h5"),  # growth and division: daughters' uids
    "soma_clustering": ("soma_clustering.py", 400, 60),  # secretion, diffusion, chemotaxis
    "tumour_spheroid": ("tumour_spheroid.py", 150, 2, "out.h5"),  # oxygen with Dirichlet faces, necrosis
    "cancer_immune": ("cancer_immune.py", 100, 20, 2, "out"),  # attack, rules, motility, actions
    "physicell_template": ("physicell_template.py", 100, 2, "out"),  # PhysiCell's phenotype
    "epidemiology_sir": ("epidemiology_sir.py", 300, 60, 1, ""),  # periodic box, no mechanics, records
    "cell_sorting": ("cell_sorting.py", 200, 200),  # adhesion per pair of types, records between runs
    "physicell_rules": ("physicell_rules.py", 20, 2, "out"),  # contact and pressure signals
    "custom_rule": ("custom_rule.py", 20, 200),  # a compiled agent rule with a neighbour loop
    "compare_mechanics": ("compare_mechanics.py", 60, 200),  # three force laws
    "pyramidal_cell": ("pyramidal_cell.py", 100, "out"),  # neurites: growth, branching, SWC
}


# also on 4 ranks (2 x 2 x 1 blocks in their cubic boxes): division, substances, a periodic box
ON_FOUR = {"spheroid", "soma_clustering", "epidemiology_sir"}


@pytest.mark.parametrize("name", sorted(EXAMPLE_RUNS))
def test_every_example_on_2_and_3_ranks_equals_one_process_bit_for_bit(name, tmp_path):
    script, *args = EXAMPLE_RUNS[name]
    runs = {}
    for ranks in (1, 2, 3, 4) if name in ON_FOUR else (1, 2, 3):
        cwd = tmp_path / f"r{ranks}"
        cwd.mkdir()
        runs[ranks] = final_state(ranks, EXAMPLES / script, *args, cwd=cwd)
        assert any(k.endswith("/agents/uid") and v.size for k, v in runs[ranks].items())
    for ranks in runs:
        assert_identical(runs[1], runs[ranks])
    files = [p.relative_to(tmp_path / "r1") for p in (tmp_path / "r1").rglob("*.h5")]
    for f in files:  # the run files rank 0 wrote hold the same snapshots and records
        if f.name.endswith((".neurites.h5", ".substances.h5")):  # ParaView sidecars of neurites and substances
            assert_same_datasets(tmp_path / "r1" / f, tmp_path / "r3" / f)
        else:
            assert_same_run_files(tmp_path / "r1" / f, tmp_path / "r3" / f)


def assert_same_datasets(p, q):
    import h5py

    with h5py.File(p, "r") as a, h5py.File(q, "r") as b:
        names = []
        a.visit(lambda k: names.append(k) if isinstance(a[k], h5py.Dataset) else None)
        assert names and sorted(names) == sorted(k for k in names if k in b)
        for k in names:
            np.testing.assert_array_equal(a[k][()], b[k][()], err_msg=k)


# both solvers, every kind of face (Dirichlet by a function of time, Neumann flux, BioFVM's Dirichlet
# layers, periodic), secretion, uptake and chemotaxis: each rank advances its own x-planes of the grids
SUBSTANCES = """
import sys
import biosim as bs
from biosim import models

periodic = sys.argv[1] == "periodic"
sim = bs.Simulation(bs.Box((0, 0, 0), (300, 160, 120)), boundary="periodic" if periodic else "closed", dt=0.5,
                    seed=9)
if periodic:
    faces = dict(a=None, b=None, c=None)
else:
    faces = dict(a={"x-": bs.Dirichlet(lambda x, y, z, t: 1.0 + 0.01 * y + 0.001 * t), "x+": bs.Neumann(0.3),
                    "y": bs.Dirichlet(2.0)},
                 b={"x+": bs.Dirichlet(lambda x, y, z, t: 0.02 * z), "x-": bs.Neumann(-0.1), "z-": bs.Dirichlet(1.0)},
                 c=bs.Dirichlet(3.0))
a = sim.add_substance("a", diffusion=400.0, decay=0.02, spacing=10.0, initial=lambda x, y, z: 0.01 * x,
                      solver="explicit", boundary=faces["a"])
b = sim.add_substance("b", diffusion=1000.0, decay=0.05, spacing=20.0, initial=5.0, boundary=faces["b"],
                      dt=0.1)
extra = {} if periodic else dict(decay_split=True, dirichlet_layer=True)
c = sim.add_substance("c", diffusion=50.0, decay=0.1, spacing=10.0, initial=0.0, boundary=faces["c"], **extra)
cells = sim.add_agents("cells", bs.init.uniform(300, sim.box, seed=3), diameter=10.0)
cells.behaviours += [models.Secretion(a, rate=0.5, target=4.0), models.Uptake(b, rate=0.2),
                     models.Secretion(c, rate=0.1, target=1.0), models.Chemotaxis(a, speed=2.0),
                     models.RandomWalk(diffusion=1.0)]
sim.run(int(sys.argv[2]))
"""


@pytest.mark.parametrize("box", ["closed", "periodic"])
def test_substance_grids_advanced_plane_by_plane_on_2_and_3_ranks_equal_one_process(box, tmp_path):
    (tmp_path / "model.py").write_text(SUBSTANCES)
    runs = {ranks: final_state(ranks, tmp_path / "model.py", box, 12, cwd=tmp_path) for ranks in (1, 2, 3)}
    grid = runs[1]["0/substances/a"]
    assert grid.shape == (30, 16, 12) and np.ptp(grid) > 0.5  # the sources and faces shaped the grid
    assert_identical(runs[1], runs[2])
    assert_identical(runs[1], runs[3])


def test_substance_grids_on_blocks_cut_along_y_and_z_and_on_2x2_ranks_equal_one_process(tmp_path):
    # the explicit solver's ghost layers across y and z faces, the implicit solver's y and z lines
    # passed from rank to rank (periodic ones broadcast along their line of ranks), a corner of 4 blocks
    (tmp_path / "model.py").write_text(SUBSTANCES)
    for box, grids in (("closed", ("1x2x1", "2x2x1")), ("periodic", ("1x1x2", "2x1x2"))):
        one = final_state(1, tmp_path / "model.py", box, 12, cwd=tmp_path)
        for grid in grids:
            ranks = int(np.prod([int(v) for v in grid.split("x")]))
            assert_identical(one, final_state(ranks, tmp_path / "model.py", box, 12, cwd=tmp_path, grid=grid))


# every scenario of `biosim bench` at a small size (a few thousand agents, 20 steps)
BENCH = """
import sys
from biosim.bench.scenarios import SCENARIOS

for name in sorted(SCENARIOS):
    SCENARIOS[name].make(int(sys.argv[1]), seed=3).run(int(sys.argv[2]))
"""


def test_every_bench_scenario_on_2_3_and_2x2_ranks_equals_one_process(tmp_path):
    from biosim.bench.scenarios import SCENARIOS

    (tmp_path / "bench.py").write_text(BENCH)
    runs = {ranks: final_state(ranks, tmp_path / "bench.py", 3000, 20, cwd=tmp_path) for ranks in (1, 2, 3)}
    assert sum(k.endswith("/agents/uid") for k in runs[1]) == len(SCENARIOS)
    assert_identical(runs[1], runs[2])
    assert_identical(runs[1], runs[3])
    assert_identical(runs[1], final_state(4, tmp_path / "bench.py", 3000, 20, cwd=tmp_path, grid="2x2x1"))


# neurons in a box long along x, their trees crossing the ranks' faces: growth, bifurcation and side
# branches (behaviours and an agent rule), discretisation, then retraction and somata culled by an
# action (their subtrees go, across ranks); the SWC written under MPI; tree operations between runs
NEURONS = """
import sys
import numpy as np
import biosim as bs
from biosim import models


@bs.agent_rule(reads=("length", "branch_order"))
def fork(a, ctx):
    if a.length > 6.0 and a.branch_order == 1:
        a.bifurcate()


def cull(sim):
    if sim.step == 60:
        t = sim.agents
        t.remove(np.sort(t.uid[t.type == sim.populations["soma"].code])[::7])


sim = bs.Simulation(bs.Box((0, 0, 0), (900, 150, 150)), dt=0.6, seed=5, mechanics=bs.BioDynaMoForce())
rng = np.random.default_rng(3)
somata = sim.add_agents("soma", np.c_[rng.uniform(330, 570, 40), rng.uniform(20, 130, (40, 2))], diameter=10.0)
d = rng.normal(size=(40, 3)) * [3.0, 1.0, 1.0]  # mostly along x, across the faces
axons = sim.add_neurites(somata, d, name="axon", mechanics=bs.NeuriteMechanics(max_length=8.0))
dend = sim.add_neurites(somata, -d, name="dendrite", swc_type=3)
axons.behaviours += [models.NeuriteElongation(speed=1.5, persistence=1.0, randomness=0.5),
                     models.NeuriteBifurcation(rate=0.02, min_length=2.0),
                     models.NeuriteBranching(rate=0.01, max_branch_order=2), fork]
dend.behaviours += [models.NeuriteElongation(speed=1.0, persistence=1.0, randomness=0.8)]
sim.run(40)
dend.behaviours.append(models.NeuriteRetraction(speed=2.0))
sim.add_action(cull, every=20)
sim.run(40)
lines = bs.io.write_swc(sim, "neurons.swc")
t = sim.agents
rows = sim.neurites.rows()
across = int(np.sum(~np.isin(t["mother"][rows], t.uid)))  # own elements whose mother another rank owns
refused = 0
if sim.ranks > 1:
    across = sim._dd.comm.allreduce(across)
    try:
        sim.neurites.elongate(t.uid[rows[:1]], 1.0, (1, 0, 0))
    except RuntimeError as e:
        refused = int("between runs" in str(e))
    try:
        sim.add_neurites(somata, (1, 0, 0))
    except RuntimeError as e:
        refused += int("before the first run()" in str(e))
    refused = sim._dd.comm.allreduce(refused)
with sim.gathered():
    somata = int(np.sum(sim.agents.type == sim.populations["soma"].code))
    elements = sim.neurites.rows().size
if sim.rank == 0:
    print(f"NEURONS somata {somata} elements {elements} swc {lines} across {across} refused {refused}")
"""


def test_neurons_whose_trees_cross_the_ranks_faces_equal_one_process(tmp_path):
    (tmp_path / "neurons.py").write_text(NEURONS)
    runs, out = {}, {}
    for ranks in (1, 2, 3):
        cwd = tmp_path / f"r{ranks}"
        cwd.mkdir()
        r = launch(ranks, HERE / "mpi_driver.py", cwd / "state.npz", tmp_path / "neurons.py", cwd=cwd)
        with np.load(cwd / "state.npz") as z:
            runs[ranks] = {k: z[k] for k in z.files}
        words = next(line for line in r.stdout.splitlines() if line.startswith("NEURONS")).split()[1:]
        out[ranks] = dict(zip(words[::2], map(int, words[1::2])))
    assert out[1]["somata"] == 40 - 6 and out[1]["elements"] > 500 and out[1]["swc"] > 500
    for ranks in (2, 3):
        assert_identical(runs[1], runs[ranks])
        assert (tmp_path / "r1" / "neurons.swc").read_bytes() == (tmp_path / f"r{ranks}" / "neurons.swc").read_bytes()
        assert out[ranks]["across"] > 10 and out[ranks]["refused"] == 2 * ranks  # trees do cross the faces
        assert {k: v for k, v in out[ranks].items() if k not in ("across", "refused")} == \
            {k: v for k, v in out[1].items() if k not in ("across", "refused")}


# a behaviour that does not declare how far it moves agents (no max_move): at step 3 it pushes
# the agents within 20 µm of the box's wall at x = 0 (argv "wall") or of the middle (argv "middle",
# where 2 ranks share a face) 30 µm along x
JUMP = """
import sys
import numpy as np
import biosim as bs
from biosim.behaviour import Behaviour

class Jump(Behaviour):
    writes = ("position",)

    def search_radius(self, sim):
        return 0.0

    def run(self, sim, population, dt):
        if sim.step == 3:
            x = sim.agents.position[:, 0]
            x[np.abs(x - (0.0 if sys.argv[1] == "wall" else 200.0)) < 20.0] += 30.0

sim = bs.Simulation(bs.Box.cube(400.0), dt=0.1, seed=4)
cells = sim.add_agents("cells", bs.init.uniform(800, sim.box, seed=1), diameter=8.0)
cells.behaviours += [Jump()]
sim.run(6)
"""


def test_a_large_move_far_from_every_shared_face_is_allowed_and_one_near_a_face_stops_every_rank(tmp_path):
    (tmp_path / "jump.py").write_text(JUMP)
    runs = {ranks: final_state(ranks, tmp_path / "jump.py", "wall", cwd=tmp_path) for ranks in (1, 2)}
    assert_identical(runs[1], runs[2])
    r = launch(2, tmp_path / "jump.py", "middle", cwd=tmp_path, ok=False)
    assert r.returncode != 0 and "DecompositionError" in r.stderr and "margin of the MPI aura" in r.stderr


WIDE = """
import numpy as np
import biosim as bs
from biosim import models

sim = bs.Simulation(bs.Box.cube(400.0), dt=0.1, seed=5, mechanics=bs.SoftSphere())
cells = sim.add_agents("cells", bs.init.uniform(800, sim.box, seed=2), diameter=8.0)
cells.behaviours += [models.RandomWalk(diffusion=2.0)]  # declares its reach and moves: no slack on the aura
counts = []
sim.add_action(lambda s: counts.append(int(s.neighbours(60.0)[0][-1])), every=3)  # 60 µm: far past the aura
sim.run(7)
assert len(counts) == 3 and min(counts) > 0, counts
"""


def test_an_action_searching_wider_than_the_aura_sees_the_whole_simulation_and_runs(tmp_path):
    """The aura of a step whose searches cannot widen has no slack, but an
    action that sees the whole simulation may search any radius."""
    (tmp_path / "wide.py").write_text(WIDE)
    assert_identical(final_state(1, tmp_path / "wide.py", cwd=tmp_path),
                     final_state(2, tmp_path / "wide.py", cwd=tmp_path))


MODEL = """
import sys
import numpy as np
import biosim as bs
from biosim import models

def build(n=300):
    sim = bs.Simulation(bs.Box.cube(240.0), dt=0.1, seed=5)
    oxygen = sim.add_substance("oxygen", diffusion=100.0, decay=0.01, spacing=20.0, initial=10.0)
    cells = sim.add_agents("cells", bs.init.ball(n, 60.0, (120.0, 120.0, 120.0), seed=2), diameter=9.0)
    cells.behaviours += [models.GrowthDivision(growth_rate=60.0, division_diameter=10.0),
                         models.Uptake(oxygen, rate=0.1), models.RandomWalk(diffusion=0.2)]
    sim.record("mean_x", mean_x, every=5)
    return sim


def mean_x(sim):  # math.fsum: exactly rounded, so the same whatever the rows' order
    import math
    return math.fsum(sim.agents.position[:, 0]) / len(sim.agents)
"""


def test_run_until_a_condition_on_the_whole_simulation_stops_every_rank_at_the_one_process_step(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "until.py").write_text(textwrap.dedent("""
        import model
        sim = model.build()
        sim.run(until=lambda s: len(s.agents) >= 420, max_steps=500)
        said = sim._dd.comm.allgather((sim.step, sim.stop_reason)) if sim._dd is not None else [None]
        if sim.rank == 0:  # every rank stopped at the same step, for the same reason
            print("STOP", sim.step, sim.stop_reason, "SAME" if len(set(said)) == 1 else "DIFFERENT")
    """))
    runs, said = {}, {}
    for ranks in (1, 2):
        cwd = tmp_path / f"r{ranks}"
        cwd.mkdir()
        (cwd / "model.py").write_text(MODEL)
        r = launch(ranks, HERE / "mpi_driver.py", cwd / "s.npz", tmp_path / "until.py", cwd=cwd)
        with np.load(cwd / "s.npz") as z:
            runs[ranks] = {k: z[k] for k in z.files}
        said[ranks] = sorted(set(line for line in r.stdout.splitlines() if line.startswith("STOP")))
    assert_identical(runs[1], runs[2])
    assert said[1] == said[2] and len(said[2]) == 1 and "until: the condition held" in said[1][0]
    assert said[1][0].endswith("SAME")
    assert 0 < int(said[1][0].split()[1]) < 500


# growing neurons whose trees cross the ranks' faces (see NEURONS), for the checkpoint test
NEURON_MODEL = """
import numpy as np
import biosim as bs
from biosim import models


def build():
    sim = bs.Simulation(bs.Box((0, 0, 0), (900, 150, 150)), dt=0.6, seed=5, mechanics=bs.BioDynaMoForce())
    rng = np.random.default_rng(3)
    somata = sim.add_agents("soma", np.c_[rng.uniform(330, 570, 40), rng.uniform(20, 130, (40, 2))], diameter=10.0)
    axons = sim.add_neurites(somata, rng.normal(size=(40, 3)) * [3.0, 1.0, 1.0], name="axon",
                             mechanics=bs.NeuriteMechanics(max_length=8.0))
    axons.behaviours += [models.NeuriteElongation(speed=1.5, persistence=1.0, randomness=0.5),
                         models.NeuriteBifurcation(rate=0.02, min_length=2.0),
                         models.NeuriteBranching(rate=0.01, max_branch_order=2)]
    return sim
"""


@pytest.mark.parametrize("model", ["cells", "neurons"])
def test_checkpoints_saved_on_2_ranks_continue_on_1_and_3_ranks_as_one_uninterrupted_process(model, tmp_path):
    (tmp_path / "model.py").write_text(MODEL if model == "cells" else NEURON_MODEL)
    (tmp_path / "first.py").write_text(textwrap.dedent("""
        import sys
        import model
        sim = model.build()
        sim.run(20)
        sim.save_checkpoint(sys.argv[1])
    """))
    (tmp_path / "second.py").write_text(textwrap.dedent("""
        import sys
        import biosim as bs
        sim = bs.Simulation.load_checkpoint(sys.argv[1], allow=["model", "__main__"])
        sim.run(20)
    """))
    (tmp_path / "whole.py").write_text(textwrap.dedent("""
        import model
        model.build().run(40)
    """))
    launch(2, "first.py", "ck.h5", cwd=tmp_path)
    whole = final_state(1, tmp_path / "whole.py", cwd=tmp_path)
    for ranks in (1, 3):
        cont = final_state(ranks, tmp_path / "second.py", "ck.h5", cwd=tmp_path)
        assert_identical(whole, cont)


def test_a_rank_local_action_runs_on_each_ranks_own_agents_with_the_one_process_result(tmp_path):
    (tmp_path / "model.py").write_text(MODEL + textwrap.dedent("""
        def mark(sim):  # a per-agent change: the same wherever each agent is
            t = sim.agents
            t["diameter"][t.position[:, 0] < 100.0] *= 0.99
            seen.append(len(t))

        seen = []
        if __name__ == "__main__":
            sim = build()
            sim.add_action(mark, every=3, local=True)
            sim.run(30)
            open(f"seen-{sim.rank}.txt", "w").write(str(seen[0]))
    """))
    one = final_state(1, tmp_path / "model.py", cwd=tmp_path)
    two = final_state(2, tmp_path / "model.py", cwd=tmp_path)
    assert_identical(one, two)
    launch(2, "model.py", cwd=tmp_path)
    sizes = [int((tmp_path / f"seen-{r}.txt").read_text()) for r in (0, 1)]
    assert sum(sizes) == 300 and min(sizes) > 0  # at step 0, each rank its own agents


def test_records_and_writers_gather_on_rank_0_only_and_every_rank_gets_the_records(tmp_path):
    # a record that also notes how many agents its rank holds when it is sampled: only rank 0
    # samples (the whole simulation); every rank ends with rank 0's values, those of one process
    (tmp_path / "model.py").write_text(MODEL + textwrap.dedent("""
        import json

        held = []

        def count(sim):
            held.append(len(sim.agents))
            return float(len(sim.agents))

        if __name__ == "__main__":
            sim = build()
            sim.record("count", count, every=5)
            sim.writers.append(bs.io.HDF5Writer(f"run-{sim.ranks}.h5", every=10))
            sim.run(30)
            json.dump({"held": held, "mean_x": sim.records["mean_x"].values.tolist(),
                       "count": sim.records["count"].values.tolist(), "own": len(sim.agents)},
                      open(f"seen-{sim.ranks}-{sim.rank}.json", "w"))
    """))
    import json

    launch(1, "model.py", cwd=tmp_path)
    launch(3, "model.py", cwd=tmp_path)
    one = json.loads((tmp_path / "seen-1-0.json").read_text())
    ranks = [json.loads((tmp_path / f"seen-3-{r}.json").read_text()) for r in range(3)]
    assert len(one["count"]) == 7 and one["count"][-1] > 300  # steps 0, 5, .., 30; the cells divided
    for r, seen in enumerate(ranks):
        assert seen["mean_x"] == one["mean_x"] and seen["count"] == one["count"]
        assert seen["held"] == (one["held"] if r == 0 else [])  # sampled on rank 0, from the whole simulation
    assert sum(seen["own"] for seen in ranks) == one["own"] and min(seen["own"] for seen in ranks) > 0
    assert_same_run_files(tmp_path / "run-1.h5", tmp_path / "run-3.h5")


def test_the_output_benchmark_prints_each_ranks_phases_memory_and_bytes(tmp_path):
    r = launch(2, HERE.parent / "benchmarks" / "mpi_output.py", "--agents", "3000", "--steps", "10", cwd=tmp_path)
    rows = [line for line in r.stdout.splitlines() if line.startswith("rank ")]  # printed by rank 0, in order
    assert [row.split(":")[0] for row in rows] == ["rank 0 of 2, to step 12", "rank 1 of 2, to step 12"]
    sent = [float(re.search(r"sent (\d+) MB", row).group(1)) for row in rows]
    assert all("ms/step" in row and "peak RSS" in row for row in rows) and min(sent) >= 0
    assert not list(tmp_path.iterdir())  # the run file went to a temporary folder


def test_a_decomposition_that_cannot_hold_is_refused_on_every_rank_with_the_numbers(tmp_path):
    (tmp_path / "thin.py").write_text(textwrap.dedent("""
        import biosim as bs
        from biosim.parallel import DecompositionError
        sim = bs.Simulation(bs.Box((0, 0, 0), (30, 30, 30)), seed=1)
        sim.add_agents("cells", bs.init.uniform(50, sim.box, seed=1), diameter=10.0)
        try:
            sim.run(5)
        except DecompositionError as e:
            open(f"refused-{sim.rank}.txt", "w").write(str(e))
    """))
    launch(3, "thin.py", cwd=tmp_path, timeout=300)  # every rank raised: none waits for the others
    for r in range(3):
        why = (tmp_path / f"refused-{r}.txt").read_text()
        assert "into 3 blocks" in why and "30 x 30 x 30 µm" in why and "2 x 2 x 2 cells" in why and "px <= 2" in why
    (tmp_path / "uncaught.py").write_text("import thin\n")  # raised unhandled: mpiexec fails, saying why
    (tmp_path / "thin.py").write_text((tmp_path / "thin.py").read_text().replace("except DecompositionError",
                                                                                 "except KeyError"))
    r = launch(3, "uncaught.py", cwd=tmp_path, ok=False, timeout=300)
    assert r.returncode != 0 and "DecompositionError" in r.stderr and "into 3 blocks" in r.stderr


def test_a_failing_rank_stops_every_rank_and_the_snapshots_so_far_stay_readable(tmp_path):
    (tmp_path / "fail.py").write_text(textwrap.dedent("""
        import biosim as bs
        sim = bs.Simulation(bs.Box.cube(200.0), seed=1)
        sim.add_agents("cells", bs.init.uniform(200, sim.box, seed=1), diameter=10.0)
        sim.writers.append(bs.io.HDF5Writer("run.h5", every=5))

        def boom(sim):
            if sim.step == 12 and sim.rank == 1:
                raise RuntimeError("rank 1 gives up")
        sim.add_action(boom, every=1, local=True)
        sim.run(30)
    """))
    r = launch(2, "fail.py", cwd=tmp_path, ok=False, timeout=300)
    assert r.returncode != 0 and "rank 1 gives up" in r.stderr
    run = bs.io.open_run(tmp_path / "run.h5")
    assert list(run.steps)[:3] == [0, 5, 10]
    assert len(run.agents(-1)["uid"]) == 200


def test_comm_must_be_a_communicator():
    with pytest.raises(TypeError, match="comm must be an mpi4py communicator"):
        bs.Simulation(bs.Box.cube(100.0), comm="world")


def test_one_rank_or_comm_self_is_one_process(tmp_path):
    (tmp_path / "self.py").write_text(textwrap.dedent("""
        from mpi4py import MPI
        import biosim as bs
        sim = bs.Simulation(bs.Box.cube(100.0), comm=MPI.COMM_SELF)
        open(f"rank-{MPI.COMM_WORLD.Get_rank()}.txt", "w").write(f"{sim._dd is not None} {sim.ranks}")
    """))
    launch(2, "self.py", cwd=tmp_path)
    assert [(tmp_path / f"rank-{r}.txt").read_text() for r in (0, 1)] == ["False 1"] * 2


def test_bench_ranks_runs_each_rank_count_under_mpiexec_with_the_exchange_phase(tmp_path):
    from biosim.bench import run_suite

    res = run_suite("proliferation", agents="3000", ranks="1,2", weak=True, steps=3, out=None, plot=False)
    runs = res["scenarios"]["proliferation"]["runs"]
    assert [r["ranks"] for r in runs] == [1, 2] and [r["agents"] for r in runs] == [3000, 6000]
    assert runs[0]["exchange_bytes_per_step"] == 0 and runs[1]["exchange_bytes_per_step"] > 0
    assert [r["rank_grid"] for r in runs] == ["", "2x1x1"]  # one process; two slabs along x
    assert runs[1]["ms_per_step"]["exchange"] > 0 and 0 < runs[1]["efficiency"]
    with pytest.raises(ValueError, match="one thread count per rank"):
        run_suite("proliferation", agents="3000", ranks="1,2", threads="1,2", out=None)


class _Comm:
    """Enough of a communicator for choosing the grid of ranks (no MPI)."""

    def __init__(self, size):
        self.size = size

    def Get_rank(self):
        return 0

    def Get_size(self):
        return self.size

    def Split(self, color, key):
        return None


def _grid_of(ranks, edges, boundary="closed", grid=None, monkeypatch=None):
    from biosim import parallel

    monkeypatch.setattr(parallel, "_abort_on_error", lambda: None)
    monkeypatch.setattr(parallel.Decomposition, "GRID", grid)
    monkeypatch.delenv("BIOSIM_RANK_GRID", raising=False)
    sim = bs.Simulation(bs.Box((0, 0, 0), edges), boundary=boundary, seed=1)
    sim.add_agents("cells", bs.init.uniform(200, sim.box, seed=1), diameter=10.0)
    dd = parallel.Decomposition(sim, _Comm(ranks))
    dd.dmax = 10.0
    dd._balance(everywhere=True)
    return tuple(int(d) for d in dd.dims), dd


@pytest.mark.parametrize("ranks, edges, boundary, grid", [
    (2, (400, 400, 400), "closed", (2, 1, 1)),  # one cut: slabs
    (3, (400, 400, 400), "closed", (3, 1, 1)),
    (4, (400, 400, 400), "closed", (2, 2, 1)),  # each rank shares 2 half faces, not 2 whole ones
    (8, (400, 400, 400), "periodic", (2, 2, 2)),
    (2, (200, 800, 400), "closed", (1, 2, 1)),  # the cut across the longest edge is the smallest
    (4, (400, 400, 10), "closed", (2, 2, 1)),  # a 2-D model one cell thick is never cut along z
    (4, (30, 30, 800), "closed", (1, 1, 4)),  # only z holds 4 cells of the interaction range
])
def test_the_grid_of_ranks_is_the_one_with_the_least_aura_among_those_that_fit(ranks, edges, boundary, grid,
                                                                                monkeypatch):
    got, dd = _grid_of(ranks, edges, boundary, monkeypatch=monkeypatch)
    assert got == grid
    cutoff = dd._cutoff()
    for a in range(3):  # along a cut axis every block at least one interaction range thick
        assert len(dd.bounds[a]) == grid[a] + 1 and dd.bounds[a][0] == 0 and dd.bounds[a][-1] == edges[a]
        assert grid[a] == 1 or np.diff(dd.bounds[a]).min() >= cutoff * (1 - 1e-12)
    counts = np.bincount(dd.owner(dd.sim.agents.position), minlength=ranks)
    assert counts.sum() == 200 and counts.min() > 0


def test_the_block_face_is_the_lattice_face_nearest_an_equal_split(monkeypatch):
    """Two slabs along x: 91 agents in the first lattice cell, 20 in one
    cell in the middle, 89 in the last.  Cutting before the middle cell
    leaves 91 | 109, after it 111 | 89: the nearer split is taken."""
    from biosim import parallel

    monkeypatch.setattr(parallel, "_abort_on_error", lambda: None)
    monkeypatch.setattr(parallel.Decomposition, "GRID", (2, 1, 1))
    sim = bs.Simulation(bs.Box((0, 0, 0), (400, 400, 400)), boundary="closed", seed=1)
    x = np.repeat([5.0, 200.0, 395.0], [91, 20, 89])
    rng = np.random.default_rng(2)
    sim.add_agents("cells", np.column_stack([x, rng.uniform(0, 400, (x.size, 2))]), diameter=10.0)
    dd = parallel.Decomposition(sim, _Comm(2))
    dd.dmax = 10.0
    dd._balance(everywhere=True)
    assert 180 < dd.bounds[0][1] <= 200
    assert np.bincount(dd.owner(sim.agents.position), minlength=2).tolist() == [91, 109]


def test_a_grid_of_ranks_set_by_the_user_is_used_or_refused_with_the_numbers(monkeypatch):
    from biosim.parallel import DecompositionError

    assert _grid_of(2, (400, 400, 400), grid="1x2x1", monkeypatch=monkeypatch)[0] == (1, 2, 1)
    assert _grid_of(4, (400, 400, 400), grid=(1, 2, 2), monkeypatch=monkeypatch)[0] == (1, 2, 2)
    with pytest.raises(DecompositionError, match=r"'2x2'.*product is the 2 ranks"):
        _grid_of(2, (400, 400, 400), grid="2x2", monkeypatch=monkeypatch)
    with pytest.raises(DecompositionError, match=r"z edge of 30 µm into 3 blocks .* it holds 2; .*now 1 x 1 x 3"):
        _grid_of(3, (400, 400, 30), grid="1x1x3", monkeypatch=monkeypatch)
