"""Hostile files and poisoned state (issue 15): a shared checkpoint or run
file cannot write outside its folder, import its way out of the allow-list,
or crash the process; a poisoned column stops the run with a ValueError
naming the column, the agent and the value."""
import json
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


def _small(tmp, seed=1, run="run.h5", ck="ck.h5", steps=6):
    """A finished small run in folder ``tmp``: run file, checkpoint."""
    tmp.mkdir(parents=True, exist_ok=True)
    sim = bs.Simulation(bs.Box.cube(60.0), dt=0.5, seed=seed)
    pop = sim.add_agents("c", bs.init.uniform(30, sim.box, seed=seed), diameter=6.0)
    pop.behaviours += [models.RandomWalk(diffusion=1.0)]
    sim.writers += [bs.io.HDF5Writer(tmp / run, every=2), bs.io.Checkpointer(tmp / ck, every=4)]
    sim.run(steps)
    return tmp / run, tmp / ck


def _edit_state(ck, fn):
    with h5py.File(ck, "r+") as f:
        s = json.loads(f.attrs["state"])
        fn(s)
        f.attrs["state"] = json.dumps(s)


def _victim(tmp):
    v = tmp / "victim" / "bashrc"
    v.parent.mkdir(parents=True, exist_ok=True)
    v.write_text("echo hello\n")
    return v


# -- 1. no write outside the run -------------------------------------------------
def test_external_storage_in_the_run_file_is_refused_before_anything_is_written(tmp_path):
    run, ck = _small(tmp_path / "a")
    victim = _victim(tmp_path)
    # rebuild the run file with /agents/uid stored in an external file: the victim
    with h5py.File(run, "r") as src:
        attrs = dict(src.attrs)
        data = {k: src[k][:] for k in ("snapshots/step", "snapshots/time", "snapshots/count")}
        cols = {k: src["agents"][k][:] for k in src["agents"]}
    os.remove(run)
    with h5py.File(run, "w") as f:
        for k, v in attrs.items():
            f.attrs[k] = v
        for k, v in data.items():
            f.create_dataset(k, data=v, maxshape=(None,), chunks=True)
        for k, v in cols.items():
            if k == "uid":
                f.create_dataset("agents/uid", shape=v.shape, dtype=v.dtype,
                                 external=[(str(victim), 0, h5py.h5f.UNLIMITED)])
            else:
                f.create_dataset(f"agents/{k}", data=v, maxshape=(None,) + v.shape[1:], chunks=True)
        f.create_group("substances")
        f.create_group("series")
    before = victim.read_bytes()
    with pytest.raises(CheckpointError, match="external"):
        bs.Simulation.load_checkpoint(ck)
    r = subprocess.run([sys.executable, "-m", "biosim", "resume", str(ck), "--until", "12", "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "external" in r.stderr, r.stderr[-2000:]
    assert victim.read_bytes() == before


def test_writer_paths_outside_the_checkpoint_folder_need_the_users_confirmation(tmp_path):
    run, ck = _small(tmp_path / "a")
    other = tmp_path / "elsewhere"
    other.mkdir()

    def point_outside(s):
        for w in s["writers"]:
            if w["class"] == "HDF5Writer":
                w["path"], w["relpath"] = str(other / "run.h5"), None
    _edit_state(ck, point_outside)
    with pytest.raises(CheckpointError, match="outside the checkpoint's folder.*allow_outputs"):
        bs.Simulation.load_checkpoint(ck)
    r = subprocess.run([sys.executable, "-m", "biosim", "resume", str(ck), "--quiet"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode != 0 and "--allow-output" in r.stderr
    sim = bs.Simulation.load_checkpoint(ck, allow_outputs=[other])
    assert sim.writers[0].path == str((other / "run.h5").resolve())
    # a relative path that climbs out is no better
    _edit_state(ck, lambda s: s["writers"][0].update(relpath="../victim/bashrc"))
    with pytest.raises(CheckpointError, match="outside the checkpoint's folder"):
        bs.Simulation.load_checkpoint(ck)


def test_a_run_file_that_is_a_link_out_of_the_folder_is_refused(tmp_path):
    run, ck = _small(tmp_path / "a")
    victim = _victim(tmp_path)
    os.remove(run)
    os.symlink(victim, run)
    with pytest.raises(CheckpointError, match="a link to .*victim.*outside the checkpoint's folder"):
        bs.Simulation.load_checkpoint(ck)
    assert victim.read_text() == "echo hello\n"


def test_a_run_file_with_a_second_name_is_not_written_through(tmp_path):
    run, ck = _small(tmp_path / "a")
    os.link(run, tmp_path / "a" / "alias.h5")
    with pytest.raises(CheckpointError, match="hard links"):
        bs.Simulation.load_checkpoint(ck)


def test_a_checkpoint_cannot_replace_or_cut_another_run(tmp_path):
    run, ck = _small(tmp_path / "a", steps=10)
    other_run, _ = _small(tmp_path / "a", seed=7, run="other.h5", ck="other_ck.h5", steps=20)
    snaps = len(bs.io.open_run(other_run))
    # the checkpoint's HDF5 writer pointed at another simulation's run
    _edit_state(ck, lambda s: s["writers"][0].update(relpath="other.h5"))
    with pytest.raises(CheckpointError, match="not the run of this checkpoint"):
        bs.Simulation.load_checkpoint(ck)
    # its Checkpointer pointed at a run file: would replace it with a checkpoint
    _, ck2 = _small(tmp_path / "b", steps=10)
    (tmp_path / "b" / "run.h5").rename(tmp_path / "b" / "mine.h5")
    _small(tmp_path / "b", seed=1, run="theirs.h5", ck="unused.h5", steps=12)
    _edit_state(ck2, lambda s: s["writers"][1].update(relpath="theirs.h5"))
    with pytest.raises(CheckpointError, match="other than a biosim checkpoint"):
        bs.Simulation.load_checkpoint(ck2)
    assert len(bs.io.open_run(other_run)) == snaps
    assert len(bs.io.open_run(tmp_path / "b" / "theirs.h5")) == 7


def test_a_moved_folder_resumes_into_its_own_files(tmp_path):
    run, ck = _small(tmp_path / "a", steps=6)
    moved = tmp_path / "moved"
    os.rename(tmp_path / "a", moved)
    sim = bs.Simulation.load_checkpoint(moved / "ck.h5")
    assert [w.path for w in sim.writers] == [str((moved / "run.h5").resolve()), str((moved / "ck.h5").resolve())]
    sim.run(4)
    assert bs.io.open_run(moved / "run.h5").steps.tolist() == [0, 2, 4, 6, 8]


# -- 2 and 7. poisoned columns stop the run, naming the agent ----------------------
def _poisoned_sim(**kw):
    sim = bs.Simulation(bs.Box.cube(60.0), dt=kw.pop("dt", 0.5), seed=2, **kw)
    sim.add_agents("c", bs.init.uniform(40, sim.box, seed=3), diameter=6.0)
    return sim


@pytest.mark.parametrize("column, value", [("diameter", np.nan), ("diameter", np.inf), ("diameter", -3.0),
                                           ("diameter", 0.0), ("position", np.nan), ("position", -np.inf)])
def test_a_poisoned_column_written_by_an_action_is_named(column, value):
    sim = _poisoned_sim()
    victim = int(sim.agents.uid[7])

    def poison(s):
        if s.step == 3:
            row = int(np.flatnonzero(s.agents.uid == victim)[0])
            s.agents[column][row] = value
    sim.add_action(poison, every=1)
    with pytest.raises(ValueError, match=rf"agent uid {victim} has {column} .*at step 3.*must be") as e:
        sim.run(5)
    assert sim.step == 3
    assert "nan" in str(e.value) or "inf" in str(e.value) or str(value) in str(e.value)


def test_a_nan_position_does_not_spread_to_neighbours():
    # without mechanics the neighbour search of a behaviour builds the grid
    sim = bs.Simulation(bs.Box.cube(60.0), dt=0.5, seed=2, mechanics=None, boundary="periodic")
    pop = sim.add_agents("c", bs.init.uniform(200, sim.box, seed=3), diameter=6.0)
    pop.behaviours += [models.Infection(rate=0.5, radius=8.0)]
    sim.agents.position[3] = np.nan
    with pytest.raises(ValueError, match="has position .*nan"):
        sim.run(3)
    assert np.isfinite(np.delete(sim.agents.position, 3, axis=0)).all()


@pytest.mark.parametrize("model", [lambda: models.GrowthDivision(growth_rate=1e308, division_diameter=8.0),
                                   lambda: models.CellCycle.live(growth_rate=1e308)])
def test_an_overflowing_growth_rate_stops_with_a_named_diameter(model):
    sim = _poisoned_sim(dt=1.0)
    sim.populations["c"].behaviours += [model()]
    with pytest.raises(ValueError, match="has diameter (nan|inf).*finite and > 0"):
        sim.run(3)


def test_uid_and_type_are_read_only():
    sim = _poisoned_sim()
    with pytest.raises(ValueError, match="read-only"):
        sim.agents.type[0] = 5
    with pytest.raises(ValueError, match="read-only"):
        sim.agents.uid[0] = 0
    with pytest.raises(ValueError, match="column 'type' is read-only"):
        sim.agents["type"] = 3
    # differentiation still moves agents between populations
    sim.add_agents("d", [[1.0, 1.0, 1.0]])
    sim.populations["c"].behaviours += [models.StateSwitch(to="d", rate=100.0)]
    sim.run(1)
    assert (sim.agents.type == 1).all()


@pytest.mark.parametrize("column, value, match", [("diameter", np.nan, "has diameter nan"),
                                                  ("type", 5, "has type 5"),
                                                  ("uid", None, "duplicate uids")])
def test_poisoned_checkpoints_and_runs_are_refused_on_load(tmp_path, column, value, match):
    run, ck = _small(tmp_path / "a")
    for path in (ck, run):
        with h5py.File(path, "r+") as f:
            ds = f["agents"][column]
            if column == "uid":
                ds[1] = ds[0]
            else:
                ds[0] = value
    with pytest.raises(CheckpointError, match=match):
        bs.Simulation.load_checkpoint(ck)
    if column != "uid":  # the run's snapshot 0 holds the first rows
        with pytest.raises(CheckpointError, match=match):
            bs.Simulation.from_run(run, snapshot=0)


@pytest.mark.parametrize("key, value", [("step", 10.5), ("step", -5), ("step", 2**70), ("next_uid", "7"),
                                        ("grid_builds", None)])
def test_checkpoint_counters_are_checked(tmp_path, key, value):
    _, ck = _small(tmp_path / "a")
    _edit_state(ck, lambda s: s.update({key: value}))
    with pytest.raises(CheckpointError, match=key):
        bs.Simulation.load_checkpoint(ck)


def test_next_uid_below_the_live_uids_is_refused(tmp_path):
    _, ck = _small(tmp_path / "a")
    _edit_state(ck, lambda s: s.update(next_uid=0))
    with pytest.raises(CheckpointError, match="next_uid"):
        bs.Simulation.load_checkpoint(ck)


# -- 3. a full disk while saving a checkpoint -------------------------------------
CHECKPOINT_FULL = """
import glob, os, resource, signal, sys
import numpy as np
import biosim as bs
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # write() then fails with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
sim = bs.Simulation(bs.Box.cube(200.0), dt=0.1, seed=1)
sim.add_agents("c", bs.init.uniform(1000, sim.box, seed=1), diameter=5.0)
path = sys.argv[1]
sim.save_checkpoint(path)                               # about 50 kB: fits
sim.add_agents("c", bs.init.uniform(60000, sim.box, seed=2), diameter=5.0)
try:
    sim.save_checkpoint(path)                           # about 3 MB: does not
except bs.io.OutputError as e:
    left = glob.glob(os.path.join(os.path.dirname(path), ".checkpoint-*"))
    print("STOPPED", len(left), e)
    sys.exit(3)
"""


def test_a_full_disk_while_saving_a_checkpoint_is_an_output_error(tmp_path):
    script = tmp_path / "full.py"
    script.write_text(CHECKPOINT_FULL)
    path = tmp_path / "ck.h5"
    r = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 3, r.stderr[-2000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("STOPPED")][0]
    assert line.startswith("STOPPED 0 ") and str(path) in line and "previous checkpoint" in line
    assert len(bs.Simulation.load_checkpoint(path).agents) == 1000


# -- 4. the allow-list cannot be walked out of ------------------------------------
@pytest.mark.parametrize("fn, match", [
    ("biosim.io.checkpoint:os.system", "walks into module 'os'"),
    ("biosim.rules:inspect.builtins.exec", "walks into module"),
    ("biosim.cli:sys.exit", "walks into module 'sys'"),
    ("biosim.__main__:main", "__main__"),
    ("biosim:Simulation", "not a Python function"),
    ("biosim.io.checkpoint:json.dumps", "walks into module 'json'"),
    ("biosim.io.checkpoint:h5py.File", "walks into module 'h5py'"),
    ("biosim.io.checkpoint:tempfile", "walks into module"),
    ("biosim.io.checkpoint:np.save", "walks into module 'numpy'"),
    ("biosim.io.checkpoint:CheckpointError.mro", "not a Python function"),
])
def test_actions_must_be_functions_of_an_allowed_module(tmp_path, fn, match):
    _, ck = _small(tmp_path / "a")
    _edit_state(ck, lambda s: s["actions"].append({"fn": fn, "every": 1}))
    with pytest.raises(CheckpointError, match=match):
        bs.Simulation.load_checkpoint(ck)


def test_a_function_imported_into_an_allowed_module_is_not_its_own(tmp_path):
    (tmp_path / "mymodel.py").write_text("from os import system\n\ndef mine(sim):\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        _, ck = _small(tmp_path / "a")
        _edit_state(ck, lambda s: s["actions"].append({"fn": "mymodel:system", "every": 1}))
        with pytest.raises(CheckpointError, match="(defined in module|not a Python function)"):
            bs.Simulation.load_checkpoint(ck, allow=["mymodel"])
        _edit_state(ck, lambda s: s["actions"].__setitem__(-1, {"fn": "mymodel:mine", "every": 1}))
        assert bs.Simulation.load_checkpoint(ck, allow=["mymodel"]).actions[-1].fn.__name__ == "mine"
    finally:
        sys.path.remove(str(tmp_path))


def test_behaviours_must_be_behaviour_classes(tmp_path):
    _, ck = _small(tmp_path / "a")

    def swap(s):
        s["populations"][0]["behaviours"][0]["class"] = "biosim.io.checkpoint:CheckpointError"
    _edit_state(ck, swap)
    with pytest.raises(CheckpointError, match="not a biosim Behaviour class"):
        bs.Simulation.load_checkpoint(ck)


# -- 6. the displacement cap cannot overflow ---------------------------------------
@pytest.mark.parametrize("dt, damping", [(1e160, 1.0), (1.0, 1e-170), (1.0, 5e-324)])
def test_extreme_steps_still_move_overlapping_cells_by_the_cap(dt, damping):
    sim = bs.Simulation(bs.Box.cube(100.0), dt=dt, seed=1, mechanics=bs.SoftSphere(damping=damping))
    sim.add_agents("c", [[49.0, 50.0, 50.0], [51.0, 50.0, 50.0]], diameter=10.0)
    cap = sim.mechanics.max_displacement
    sim.run(1)
    x = np.sort(sim.agents.position[:, 0])
    assert x.tolist() == [49.0 - cap, 51.0 + cap]


def test_a_non_finite_force_is_an_error_naming_the_agents():
    sim = bs.Simulation(bs.Box.cube(100.0), dt=0.1, seed=1, mechanics=bs.SoftSphere(repulsion=1.7e308))
    sim.add_agents("c", [[45.0, 50.0, 50.0], [51.0, 50.0, 50.0]], diameter=10.0)
    with pytest.raises(ValueError, match="force on agent uid 0 .*not finite"):
        sim.run(1)
    assert np.isfinite(sim.agents.position).all()


# -- 8. integer columns do not wrap ------------------------------------------------
def test_integer_columns_refuse_values_they_cannot_hold():
    sim = _poisoned_sim()
    sim.agents.add_column("state", np.int8, 0)
    with pytest.raises(ValueError, match="column 'state' has dtype int8, which holds -128..127; got 257"):
        sim.add_agents("c", [[1.0, 1.0, 1.0]], state=257)
    with pytest.raises(ValueError, match="got 1000"):
        sim.populations["c"].behaviours += [models.StateSwitch(to=1000, rate=0.1, column="state")]
    sim.agents.add_column("flag", np.uint8, 0)
    sim.add_agents("c", [[1.0, 1.0, 1.0]], flag=200, state=np.uint8(3))
    with pytest.raises(ValueError, match="uint8, which holds 0..255; got -1"):
        sim.add_agents("c", [[1.0, 1.0, 1.0]], flag=-1)
    pop = sim.add_agents("e", [[2.0, 2.0, 2.0]], tag=np.array([7], dtype=np.uint16))
    assert sim.agents.spec("tag").dtype == np.uint16 and sim.agents["tag"][-1] == 7 and len(pop) == 1
    with pytest.raises(ValueError, match="float32, whose largest value"):
        sim.agents.add_column("f32", np.float32, 1e300)


# -- 9. unbounded work is refused up front -----------------------------------------
@pytest.mark.parametrize("kw, match", [(dict(diffusion=100.0, dt=1e-300), "sub-steps per step.*its dt"),
                                       (dict(diffusion=1e300, solver="explicit"), "stability limit"),
                                       (dict(diffusion=1e20), "loses all precision"),
                                       (dict(diffusion=1e100), "loses all precision")])
def test_substances_that_would_never_finish_or_lose_their_mass_are_refused(kw, match):
    sim = _poisoned_sim()
    with pytest.raises(ValueError, match=match):
        sim.add_substance("s", spacing=10.0, **kw)
    assert "s" not in sim.substances
    sim.add_substance("s", diffusion=1e5, spacing=10.0)  # a fast but sane one
    sim.run(1)


# -- 10. one live writer per file --------------------------------------------------
HOLDER = """
import os, sys, time
import biosim as bs
folder = sys.argv[1]

def wait(sim):
    if sim.step == 1:
        open(os.path.join(folder, "started"), "w").close()
        for _ in range(600):
            if os.path.exists(os.path.join(folder, "stop")):
                break
            time.sleep(0.05)

sim = bs.Simulation(bs.Box.cube(50.0), seed=1, mechanics=None)
sim.add_agents("c", [[10.0, 10.0, 10.0]])
sim.add_action(wait, every=1)
sim.writers.append(bs.io.HDF5Writer(os.path.join(folder, "run.h5"), every=1))
sim.run(3)
"""


def test_a_second_live_writer_of_a_file_is_refused(tmp_path):
    import time

    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    p = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):
            if (tmp_path / "started").exists() or p.poll() is not None:
                break
            time.sleep(0.05)
        assert (tmp_path / "started").exists(), p.stderr.read()[-2000:]
        sim = _poisoned_sim()
        sim.writers.append(bs.io.HDF5Writer(tmp_path / "run.h5", every=1))
        with pytest.raises(ValueError, match=rf"being written by another live writer \(process {p.pid}"):
            sim.run(2)
    finally:
        (tmp_path / "stop").touch()
        p.wait(timeout=600)
    assert p.returncode == 0
    assert len(bs.io.open_run(tmp_path / "run.h5")) == 4  # the first writer's run, intact
    # once it is done, the file is free again
    sim.run(2)
    assert len(bs.io.open_run(tmp_path / "run.h5")) == 3


def test_a_writer_and_a_checkpointer_on_one_path_are_refused(tmp_path):
    sim = _poisoned_sim()
    sim.writers += [bs.io.HDF5Writer(tmp_path / "x.h5", every=1), bs.io.Checkpointer(tmp_path / "x.h5", every=1)]
    with pytest.raises(ValueError, match="Checkpointer: .*x.h5.* another live writer"):
        sim.run(1)
    sim.writers.pop()
    sim.run(1)  # the lock was released when the run failed


# -- minor findings -----------------------------------------------------------------
def test_minor_findings_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="edge lengths .* must be finite"):
        bs.Box([-1e308] * 3, [1e308] * 3)
    sim = _poisoned_sim()
    with pytest.raises(ValueError, match="column name"):
        sim.add_agents("newcomers", [[1.0, 1.0, 1.0]], **{"two words": 1})
    assert "newcomers" not in sim.populations and len(sim.agents) == 40
    with pytest.raises(TypeError, match="diameter must be numbers"):
        sim.add_agents("c", [[1.0, 1.0, 1.0]], diameter=True)
    with pytest.raises(ValueError, match="path must be a file name"):
        bs.io.HDF5Writer("")
    with pytest.raises(TypeError, match="bytes"):
        bs.io.HDF5Writer(os.fsencode(tmp_path / "r.h5"))
    with pytest.raises(ValueError, match="position must be finite; row 1"):
        bs.neighbour_pairs([[1.0, 1.0, 1.0], [np.nan, 1.0, 1.0]], 2.0, bs.Box.cube(10.0))
    for name in ("a/b", "/agents/uid", ".", "x y"):
        with pytest.raises(ValueError, match="substance name must be a Python identifier"):
            sim.add_substance(name, diffusion=1.0)
    sim.agents._next_uid = 2**63 - 3
    with pytest.raises(ValueError, match="uids would pass 2\\*\\*63"):
        sim.add_agents("c", np.full((5, 3), 1.0))
    r = subprocess.run([sys.executable, "-m", "biosim", "demo", "--steps", "-1", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "--steps must be >= 0" in r.stderr and "Traceback" not in r.stderr


# -- 5. fuzzed checkpoints and run files give only clean errors ----------------------
FUZZ = r"""
import json, os, random, shutil, sys, traceback
import h5py, numpy as np
import biosim as bs
from biosim.io import CheckpointError

folder, kind, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
src = os.path.join(folder, "ck.h5" if kind == "checkpoint" else "run.h5")
data = open(src, "rb").read()
weird = [None, -1, 0, 2**70, 1e308, float("nan"), "x", [], {}, [1, 2], {"a": 1}, True, 10.5]
clean, escapes = 0, []


def mutate_json(rng, path):
    with h5py.File(path, "r+") as f:
        key = "state" if kind == "checkpoint" else "metadata"
        s = json.loads(f.attrs[key])
        node, leaf = s, None
        for _ in range(6):  # walk to a random container, replace one entry
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            leaf = rng.choice(keys)
            if isinstance(node[leaf], (dict, list)) and node[leaf] and rng.random() < 0.7:
                node = node[leaf]
            else:
                break
        if leaf is not None:
            node[leaf] = rng.choice(weird)
        f.attrs[key] = json.dumps(s)


def mutate_array(rng, path):
    with h5py.File(path, "r+") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        ds = f[rng.choice(names)]
        if ds.size:
            flat = ds[...].reshape(-1)
            k = rng.randrange(flat.size)
            flat[k] = rng.choice([-1, 0, 2**31, -2**31, 10**9]) if flat.dtype.kind in "iub" else \
                rng.choice([np.nan, np.inf, -1.0, 1e308, 0.0])
            ds[...] = flat.reshape(ds.shape)


for i in range(count):
    rng = random.Random(i)
    path = os.path.join(folder, f"mutant-{kind}.h5")
    how = i % 3
    if how == 0:  # flip bytes anywhere in the file
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        open(path, "wb").write(bytes(b))
    else:
        shutil.copyfile(src, path)
        try:
            (mutate_json if how == 1 else mutate_array)(rng, path)
        except Exception:
            continue
    try:
        if kind == "checkpoint":
            sim = bs.Simulation.load_checkpoint(path)
            sim.writers.clear()
            sim.run(2)
        else:
            run = bs.io.open_run(path)
            for j in range(len(run)):
                run.agents(j)
            bs.Simulation.from_run(path, -1).run(2)
        clean += 1
    except (CheckpointError, ValueError, FileNotFoundError):
        clean += 1
    except Exception as e:
        escapes.append(f"mutant {i} ({['bytes', 'json', 'array'][how]}): {type(e).__name__}: {e}"[:300])
print("CLEAN", clean, "ESCAPES", len(escapes))
print("\n".join(escapes[:20]))
"""


@pytest.mark.parametrize("kind", ["checkpoint", "run"])
def test_fuzzed_files_give_only_clean_errors(tmp_path, kind):
    _small(tmp_path / "a")
    script = tmp_path / "fuzz.py"
    script.write_text(FUZZ)
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "a"), kind, "240"], capture_output=True,
                       text=True, timeout=1200)
    assert r.returncode == 0, f"the fuzzer crashed (signal {-r.returncode}): {r.stdout[-1500:]} {r.stderr[-1500:]}"
    assert "ESCAPES 0" in r.stdout, r.stdout[-4000:]


def test_a_crowded_grid_cell_is_warned_about_once():
    import warnings

    sim = bs.Simulation(bs.Box.cube(100.0), dt=0.1, seed=1)
    sim.add_agents("c", np.full((600, 3), 50.0) + np.linspace(0, 1e-3, 600)[:, None], diameter=5.0)
    with pytest.warns(RuntimeWarning, match="holds 600 agents, .* times what fits"):
        sim.run(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim.run(1)  # once per simulation
        calm = bs.Simulation(bs.Box.cube(100.0), dt=0.1, seed=1)
        calm.add_agents("c", bs.init.uniform(2000, calm.box, seed=1), diameter=5.0)
        calm.run(2)


def test_a_file_that_crashes_the_hdf5_library_is_read_in_a_child_first(tmp_path, monkeypatch):
    from biosim.io import _probe

    run, ck = _small(tmp_path / "a")
    # stand-ins for a file that makes libhdf5 crash or hang: the child dies by a signal, or sleeps
    monkeypatch.setattr(_probe, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(CheckpointError, match="crashed the HDF5 library in a child process \\(SIGSEGV\\)"):
        bs.Simulation.load_checkpoint(ck)
    with pytest.raises(CheckpointError, match="crashed the HDF5 library"):
        bs.Simulation.from_run(run)
    monkeypatch.setattr(_probe, "_CHILD", "import time; time.sleep(30)")
    monkeypatch.setattr(_probe, "TIMEOUT_S", 1)
    with pytest.raises(CheckpointError, match="did not finish in 1 s"):
        bs.Simulation.load_checkpoint(ck)
    # a Python error in the child is no crash: the loader meets it itself
    monkeypatch.setattr(_probe, "_CHILD", "raise SystemExit(3)")
    assert len(bs.Simulation.load_checkpoint(ck).agents) == 30


def test_gather_buffers_are_sized_by_what_a_chunk_really_gathers(monkeypatch):
    """One crowded cell must not size every thread's buffers for all n agents:
    the exact need equals the most any chunk of the force loop gathers, and
    forces computed with buffers of exactly that size are the same bits."""
    from numba import njit

    from biosim.kernels.cpu import forces as K

    @njit
    def most_gathered(cell_start, dims, inv_h, cutoff, periodic, cols, buf):
        nx, ny, nz = dims[0], dims[1], dims[2]
        k, nxc, whole = K.x_chunks(nx, cutoff, inv_h, periodic[0])
        best = 0
        for item in range(ny * nz * nxc):
            row, x0, x1, empty = K.chunk_of(item, nxc, nx, cell_start)
            K.gather_blocks(x0, x1, row % ny, row // ny, nx, ny, nz, k, whole, periodic, cell_start, cols, buf[0],
                            buf[1], buf[2], buf[3], buf[3], buf[5].view(np.int64), True, False, 1.0,
                            np.ones(3), False, 0, buf[0:0])
            nb = nx if whole else x1 - x0 + 2 * k
            best = max(best, buf[5].view(np.int64)[nb])
        return best

    for boundary in ("closed", "periodic"):
        sim = bs.Simulation(bs.Box.cube(60.0), dt=0.1, seed=1, boundary=boundary)
        rng = np.random.default_rng(3)
        pos = np.concatenate([rng.uniform(0, 60, (400, 3)), 30.0 + rng.uniform(0, 0.5, (300, 3)),
                              59.9 - rng.uniform(0, 0.5, (200, 3))])
        sim.add_agents("c", pos, diameter=4.0)
        t = sim.agents
        grid = sim._neighbour_grid(sim.mechanics.cutoff(t.diameter.max()))
        cs, _, _, inv_h, dims, _, periodic, cutoff = grid.kernel_args()
        cols = grid.sorted_columns(t, 4)
        buf = np.zeros((6, len(t) * 27 + 64))
        need = K.gather_need(cs, dims, inv_h, cutoff, periodic)
        assert need == most_gathered(cs, dims, inv_h, cutoff, periodic, cols, buf) and 300 < need < len(t)
        with pytest.warns(RuntimeWarning, match="holds"):
            f1 = sim.mechanics.forces(sim).copy()
        monkeypatch.setattr(K, "EXACT_ROOM", 0)  # always the exact need
        f2 = sim.mechanics.forces(sim).copy()
        monkeypatch.undo()
        assert np.array_equal(f1, f2) and np.abs(f1).max() > 0


@pytest.mark.parametrize("mutate, match", [
    (lambda s: s.pop("boundary"), "state lacks 'boundary'"),
    (lambda s: s.update(dt="0.5"), r"state.dt must be number, got '0.5'"),
    (lambda s: s["columns"][0].update(shape=3), r"state.columns\[0\].shape must be list"),
    (lambda s: s["populations"][0]["behaviours"][0].update(stream=1.5), r"behaviours\[0\].stream must be integer"),
    (lambda s: s["writers"][0].update(every=None), r"state.writers\[0\].every must be integer"),
    (lambda s: s.update(box=[0, 1]), "state.box must be object"),
])
def test_the_checkpoint_state_is_checked_against_its_schema(tmp_path, mutate, match):
    _, ck = _small(tmp_path / "a")
    _edit_state(ck, mutate)
    with pytest.raises(CheckpointError, match=match):
        bs.Simulation.load_checkpoint(ck)
