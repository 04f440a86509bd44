"""Checkpoints: bit-identical restart in a new process, resume after a crash,
runs branched from snapshots, and refusing what cannot be restored."""
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import biosim as bs
from biosim import models
from biosim.io import CheckpointError

MODEL = textwrap.dedent('''
    """A model module for the checkpoint tests (restorable: rules, actions and
    record functions live at the top level of a module)."""
    import numpy as np
    import biosim as bs
    from biosim import models


    @bs.agent_rule(reads=("diameter",), writes=("age",), columns={"age": ("float64", 0.0)})
    def ageing(a, ctx):
        a.age += ctx.dt
        if a.age > 30.0 and ctx.uniform(0) < 0.01:
            a.die()


    def dose(sim):
        sim.substances["drug"].concentration[:2] += 0.5


    def mean_age(sim):
        return float(sim.agents["age"].mean()) if len(sim.agents) else 0.0


    def build(seed=3, out=None, checkpoint=None):
        sim = bs.Simulation(bs.Box.cube(120.0), dt=0.5, seed=seed,
                            mechanics=bs.SoftSphere(adhesion={("tumour", "tumour"): 0.4, ("tumour", "immune"): 0.1,
                                                              ("immune", "immune"): 0.2}))
        drug = sim.add_substance("drug", diffusion=200.0, decay=0.01, spacing=10.0,
                                 boundary=bs.Dirichlet(0.2))
        tumour = sim.add_agents("tumour", bs.init.ball(120, 20.0, (60, 60, 60), seed=1), diameter=9.0)
        tumour.behaviours += [models.GrowthDivision(growth_rate=40.0, division_diameter=11.0),
                              models.Apoptosis(rate=0.002), models.Secretion(drug, rate=1.0),
                              models.RandomWalk(diffusion=0.2), ageing]
        immune = sim.add_agents("immune", bs.init.uniform(40, sim.box, seed=2), diameter=7.0)
        immune.behaviours += [models.Chemotaxis(drug, speed=0.8), models.CellCycle.live(growth_rate=5.0)]
        sim.add_action(dose, every=20)
        sim.record("mean_age", mean_age, every=10)
        if out:
            sim.writers.append(bs.io.HDF5Writer(out, every=25))
        if checkpoint:
            sim.writers.append(bs.io.Checkpointer(checkpoint, every=50))
        return sim
''')


def _python(tmp_path, code, check=True):
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def _state(path):
    """Every column (rows ordered by uid) and substance of a checkpoint."""
    with h5py.File(path, "r") as f:
        order = np.argsort(f["agents"]["uid"][:])
        cols = {k: f["agents"][k][:][order] for k in f["agents"]}
        subs = {k: f["substances"][k][:] for k in f["substances"]}
    return cols, subs


@pytest.fixture
def model(tmp_path):
    (tmp_path / "ckmodel.py").write_text(MODEL)
    return tmp_path


@pytest.mark.slow
def test_restart_in_a_new_process_is_bit_identical(model):
    _python(model, """
        import ckmodel
        sim = ckmodel.build()
        sim.run(200)
        sim.save_checkpoint("straight.h5")
        sim = ckmodel.build()
        sim.run(100)
        sim.save_checkpoint("half.h5")
    """)
    _python(model, """
        import biosim as bs
        sim = bs.Simulation.load_checkpoint("half.h5", allow=["ckmodel"])
        assert sim.step == 100
        sim.run(100)
        sim.save_checkpoint("resumed.h5")
    """)
    a_cols, a_subs = _state(model / "straight.h5")
    b_cols, b_subs = _state(model / "resumed.h5")
    assert a_cols.keys() == b_cols.keys() and len(a_cols["uid"]) > 120
    for k in a_cols:
        np.testing.assert_array_equal(a_cols[k], b_cols[k], err_msg=k)
    for k in a_subs:
        np.testing.assert_array_equal(a_subs[k], b_subs[k], err_msg=k)
    assert a_subs["drug"].max() > 0.2  # secretion and dosing happened
    with h5py.File(model / "straight.h5") as f, h5py.File(model / "resumed.h5") as g:
        for name in f["records"]:
            np.testing.assert_array_equal(f["records"][name]["value"][:], g["records"][name]["value"][:])


@pytest.mark.slow
def test_resume_after_a_crash(model):
    (model / "killer.py").write_text(textwrap.dedent('''
        import os, signal

        def kill_at_130(sim):
            if sim.step == 130 and not os.path.exists("resumed.flag"):
                os.kill(os.getpid(), signal.SIGKILL)
    '''))
    r = _python(model, """
        import ckmodel, killer
        sim = ckmodel.build(out="run.h5", checkpoint="run.ckpt")
        sim.add_action(killer.kill_at_130, every=1)
        sim.run(200)
    """, check=False)
    assert r.returncode == -9
    run = bs.io.open_run(model / "run.h5")
    assert run.steps.tolist() == [0, 25, 50, 75, 100, 125]  # every snapshot before the kill
    (model / "resumed.flag").write_text("")
    env = dict(os.environ, PYTHONPATH=str(model))
    out = subprocess.run([sys.executable, "-m", "biosim", "resume", "run.ckpt", "--allow", "ckmodel", "--allow",
                          "killer", "--quiet"], cwd=model, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step 100 -> 200" in out.stdout
    run = bs.io.open_run(model / "run.h5")
    assert run.steps.tolist() == list(range(0, 201, 25))  # 125 written again, nothing twice
    # the same as a run that was never interrupted
    _python(model, """
        import ckmodel
        sim = ckmodel.build(out="straight.h5")
        sim.run(200)
    """)
    straight = bs.io.open_run(model / "straight.h5")
    for i in range(len(run)):
        a, b = run.agents(i), straight.agents(i)
        oa, ob = np.argsort(a["uid"]), np.argsort(b["uid"])
        for c in b:
            np.testing.assert_array_equal(a[c][oa], b[c][ob], err_msg=f"{c} at snapshot {i}")
        np.testing.assert_array_equal(run.substance("drug", i), straight.substance("drug", i))
    for name in straight.records:
        np.testing.assert_array_equal(run.series(name)["value"], straight.series(name)["value"], err_msg=name)
    # resuming a finished run does nothing
    out = subprocess.run([sys.executable, "-m", "biosim", "resume", "run.ckpt", "--allow", "ckmodel", "--allow",
                          "killer"], cwd=model, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "nothing to do" in out.stdout


def test_what_cannot_be_restored_is_refused_before_the_run(tmp_path):
    sim = bs.Simulation(bs.Box.cube(50.0), mechanics=None)
    pop = sim.add_agents("c", [[5.0, 5.0, 5.0]])

    @bs.agent_rule(writes=("diameter",))
    def local_rule(a, ctx):
        a.diameter += 0.1

    pop.behaviours += [local_rule]
    with pytest.raises(CheckpointError, match="agent rule .*local_rule is a lambda or a nested function"):
        sim.save_checkpoint(tmp_path / "c.h5")
    sim2 = bs.Simulation(bs.Box.cube(50.0), mechanics=None)
    sim2.add_agents("c", [[5.0, 5.0, 5.0]])
    sim2.add_action(lambda s: None, every=5)
    sim2.writers.append(bs.io.Checkpointer(tmp_path / "c.h5", every=10))
    with pytest.raises(CheckpointError, match="action .*lambda"):
        sim2.run(20)
    assert sim2.step == 0 and not (tmp_path / "c.h5").exists()  # refused before any step


def test_loading_imports_only_allowed_modules(model):
    _python(model, """
        import ckmodel
        sim = ckmodel.build()
        sim.run(2)
        sim.save_checkpoint("c.h5")
    """)
    sys.path.insert(0, str(model))
    try:
        with pytest.raises(CheckpointError, match="module 'ckmodel', which is not allowed.*allow=\\['ckmodel'\\]"):
            bs.Simulation.load_checkpoint(model / "c.h5")
        sim = bs.Simulation.load_checkpoint(model / "c.h5", allow=["ckmodel"])
        assert sim.step == 2 and list(sim.populations) == ["tumour", "immune"]
    finally:
        sys.path.remove(str(model))
        sys.modules.pop("ckmodel", None)


def test_damaged_or_foreign_files_give_clear_errors(tmp_path):
    sim = bs.Simulation(bs.Box.cube(50.0), seed=1, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(20, sim.box, seed=1))
    pop.behaviours += [models.RandomWalk(diffusion=1.0)]
    sim.save_checkpoint(tmp_path / "good.h5")
    data = (tmp_path / "good.h5").read_bytes()
    (tmp_path / "truncated.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged or truncated|not a biosim checkpoint"):
        bs.Simulation.load_checkpoint(tmp_path / "truncated.h5")
    (tmp_path / "noise.h5").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="not an HDF5 file"):
        bs.Simulation.load_checkpoint(tmp_path / "noise.h5")
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "run.h5", every=1))
    sim.run(1)
    with pytest.raises(CheckpointError, match="not a biosim checkpoint.*from_run"):
        bs.Simulation.load_checkpoint(tmp_path / "run.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(CheckpointError, match="not a biosim checkpoint"):
        bs.Simulation.load_checkpoint(tmp_path / "other.h5")
    with pytest.raises(FileNotFoundError):
        bs.Simulation.load_checkpoint(tmp_path / "missing.h5")
    back = bs.Simulation.load_checkpoint(tmp_path / "good.h5")
    assert len(back.agents) == 20 and back.step == 0


def test_branch_from_a_snapshot_of_a_run(tmp_path):
    sim = bs.Simulation(bs.Box.cube(100.0), dt=0.5, seed=4)
    oxygen = sim.add_substance("oxygen", diffusion=100.0, decay=0.01, spacing=10.0, initial=1.0,
                               boundary=bs.Dirichlet(1.0))
    pop = sim.add_agents("c", bs.init.ball(50, 15.0, (50, 50, 50), seed=1), diameter=8.0)
    pop.behaviours += [models.GrowthDivision(growth_rate=60.0, division_diameter=10.0),
                       models.Uptake(oxygen, rate=0.1), models.CellCycle.ki67_basic()]
    sim.agents.add_column("marker", np.float32, 1.5, inherit="split")
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "run.h5", every=10))
    sim.run(40)
    run = bs.io.open_run(tmp_path / "run.h5")
    branch = bs.Simulation.from_run(tmp_path / "run.h5", snapshot=2)
    assert branch.step == 20 and branch.time == 10.0
    snap = run.agents(2)
    t = branch.agents
    for c in snap:
        np.testing.assert_array_equal(t[c], snap[c], err_msg=c)
    np.testing.assert_array_equal(branch.substances["oxygen"].concentration, run.substance("oxygen", 2))
    assert [type(b).__name__ for b in branch.populations["c"].behaviours] == ["GrowthDivision", "Uptake",
                                                                              "CellCycle"]
    assert t.spec("marker").inherit == "split" and t.spec("marker").default == 1.5
    branch.run(20)
    assert len(branch.agents) > len(snap["uid"]) and t["uid"].max() >= snap["uid"].max()


def test_a_rule_defined_in_the_script_gets_a_clear_error(tmp_path):
    (tmp_path / "script.py").write_text(textwrap.dedent("""
        import biosim as bs

        @bs.agent_rule(writes=("diameter",))
        def swell(a, ctx):
            a.diameter += 0.1

        sim = bs.Simulation(bs.Box.cube(50.0), mechanics=None)
        pop = sim.add_agents("c", [[5.0, 5.0, 5.0]])
        pop.behaviours += [swell]
        try:
            sim.save_checkpoint("c.h5")
        except bs.io.CheckpointError as e:
            print("REFUSED", e)
    """))
    r = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "REFUSED agent rule 'swell' is defined in __main__" in r.stdout
    assert "move it into a module" in r.stdout and "allow=" in r.stdout
    assert not (tmp_path / "c.h5").exists()


def test_a_branch_of_a_2d_run_keeps_its_plane(tmp_path):
    sim = bs.Simulation(bs.Box([0, 0, 0], [100, 100, 20]), dt=0.1, seed=3)
    sim.plane = 10.0
    sim.add_agents("c", [[30.0, 30.0, 10.0], [40.0, 30.0, 10.0]], diameter=12.0)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "run.h5", every=2))
    sim.run(4)
    branch = bs.Simulation.from_run(tmp_path / "run.h5", snapshot=1)
    assert branch.plane == 10.0 and branch.step == 2
    branch.run(3)
    assert np.all(branch.agents.position[:, 2] == 10.0)


def test_a_substances_unit_survives_checkpoints_and_from_run(tmp_path):
    sim = bs.Simulation(bs.Box.cube(100.0), seed=2, mechanics=None)
    sim.add_substance("oxygen", diffusion=100.0, spacing=20.0, initial=38.0, unit="mmHg")
    sim.add_substance("plain", diffusion=100.0, spacing=20.0)
    sim.add_agents("cells", [[50.0, 50.0, 50.0]], diameter=8.0)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "r.h5", every=1))
    sim.run(2)
    sim.save_checkpoint(tmp_path / "c.h5")
    back = bs.Simulation.load_checkpoint(tmp_path / "c.h5")
    branch = bs.Simulation.from_run(tmp_path / "r.h5")
    for s in (back, branch):
        assert s.substances["oxygen"].unit == "mmHg" and s.substances["plain"].unit is None
