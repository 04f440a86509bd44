"""HDF5 output: round trip, triggers, appending, crash safety, bad input."""
import json
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

import biosim as bs
from biosim import models


def small_sim(seed=1, n=50):
    sim = bs.Simulation(bs.Box.cube(200.0), dt=0.1, seed=seed)
    pop = sim.add_agents("tumour", bs.init.ball(n, 30.0, (100, 100, 100), seed=seed), diameter=10.0,
                         energy=np.linspace(0, 1, n).astype(np.float32))
    pop.behaviours += [models.GrowthDivision(growth_rate=300.0, division_diameter=12.0),
                       models.Apoptosis(rate=0.01), models.RandomWalk(diffusion=0.5)]
    return sim


def test_snapshots_are_bit_exact_and_complete(tmp_path):
    sim = small_sim()
    path = tmp_path / "run.h5"
    live = {}

    def keep(s):
        live[s.step] = {c: s.agents[c].copy() for c in s.agents.columns}

    sim.writers.append(bs.io.HDF5Writer(path, every=5))
    sim.add_action(keep, every=5)
    sim.run(20)
    keep(sim)
    run = bs.io.open_run(path)
    np.testing.assert_array_equal(run.steps, [0, 5, 10, 15, 20])
    np.testing.assert_allclose(run.times, run.steps * 0.1)
    assert run.populations == ["tumour"]
    assert set(run.columns) == set(sim.agents.columns)
    for i, step in enumerate(run.steps):
        snap = run.agents(i)
        # actions run at the start of a step: the state they see is the state written after the previous
        for c, arr in live[step].items():
            assert snap[c].dtype == arr.dtype
            np.testing.assert_array_equal(snap[c], arr)
    assert run.agents(-1)["uid"].size == len(sim.agents)
    meta = run.metadata
    assert meta["seed"] == 1 and meta["dt"] == 0.1 and meta["boundary"] == "closed"
    assert meta["mechanics"]["class"] == "SoftSphere"
    assert [b["class"] for b in meta["populations"]["tumour"]["behaviours"]] == [
        "biosim.models.growth.GrowthDivision", "biosim.models.death.Apoptosis", "biosim.models.motion.RandomWalk"]
    with h5py.File(path, "r") as f:  # closed after run(): plain readers work
        json.loads(f.attrs["metadata"])


def test_every_50_over_1000_steps_gives_21_snapshots_and_later_runs_append(tmp_path):
    sim = bs.Simulation(bs.Box.cube(50.0), mechanics=None)
    sim.add_agents("a", [[1.0, 2.0, 3.0]], diameter=1.0)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "r.h5", every=50))
    sim.run(1000)
    assert len(bs.io.open_run(tmp_path / "r.h5")) == 21
    sim.run(120)
    run = bs.io.open_run(tmp_path / "r.h5")
    np.testing.assert_array_equal(run.steps, np.arange(0, 1101, 50))
    assert sim.step == 1120 and sim.time == pytest.approx(112.0)


def test_columns_added_mid_run_are_written(tmp_path):
    sim = bs.Simulation(bs.Box.cube(50.0), mechanics=None)
    sim.add_agents("a", [[1.0, 2.0, 3.0]], diameter=1.0)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "r.h5", every=1))

    def add(s):
        if s.step == 2:
            s.agents.add_column("late", np.int32, 7)
    sim.add_action(add)
    sim.run(4)
    run = bs.io.open_run(tmp_path / "r.h5")
    assert run.agents(0)["late"].tolist() == [7]  # earlier snapshots read the default
    assert run.agents(-1)["late"].tolist() == [7]


def test_empty_population_and_snapshot_indexing(tmp_path):
    sim = bs.Simulation(bs.Box.cube(50.0), mechanics=None)
    sim.add_agents("a", np.zeros((0, 3)))
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "r.h5", every=1))
    sim.run(2)
    run = bs.io.open_run(tmp_path / "r.h5")
    assert run.agents(-1)["position"].shape == (0, 3)
    with pytest.raises(IndexError, match="3 snapshots"):
        run.agents(3)
    with pytest.raises(ValueError, match="step 7"):
        run.index(7)
    assert run.index(2) == 2


def test_bad_paths_and_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        bs.io.HDF5Writer(tmp_path / "missing" / "r.h5")
    with pytest.raises(ValueError, match="every"):
        bs.io.HDF5Writer(tmp_path / "r.h5", every=0)
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        bs.io.open_run(tmp_path / "nope.h5")
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        bs.io.open_run(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ValueError, match="not a biosim run"):
        bs.io.open_run(other)
    good = tmp_path / "good.h5"
    sim = small_sim(n=5)
    sim.writers.append(bs.io.HDF5Writer(good, every=1))
    sim.run(3)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="trunc.h5"):
        bs.io.open_run(trunc)


KILL_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, biosim as bs
    from biosim import models
    sim = bs.Simulation(bs.Box.cube(200.0), dt=0.1, seed=4)
    pop = sim.add_agents("t", bs.init.ball(300, 40.0, (100, 100, 100), seed=1), diameter=10.0)
    pop.behaviours += [models.GrowthDivision(growth_rate=400.0, division_diameter=12.0),
                       models.RandomWalk(diffusion=1.0)]
    class Tell:
        every = 1
        def open(self, sim): pass
        def close(self): pass
        def write(self, sim):
            print(sim.step, len(sim.agents), flush=True)
    sim.writers += [bs.io.HDF5Writer(sys.argv[1], every=1), Tell()]
    sim.run(100000)
""")


@pytest.mark.slow
def test_sigkill_leaves_every_completed_snapshot_readable(tmp_path):
    script = tmp_path / "victim.py"
    script.write_text(KILL_SCRIPT)
    rng = np.random.default_rng(0)
    for k, delay in enumerate(rng.uniform(0.05, 1.5, 5)):
        path = tmp_path / f"killed{k}.h5"
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        lines = []
        # wait for the first snapshot (compilation), then a random extra time
        lines.append(proc.stdout.readline())
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate()
        # only lines the victim finished: the kill may cut its last report short
        lines = ("".join(lines) + rest).split("\n")[:-1]
        done = [tuple(map(int, ln.split())) for ln in lines if ln.strip()]
        assert done, "the victim wrote nothing"
        run = bs.io.open_run(path)
        # every snapshot reported complete is there, with its agent count
        assert len(run) >= len(done)
        for i, (step, count) in enumerate(done):
            assert run.steps[i] == step
            snap = run.agents(i)
            assert snap["uid"].size == count and np.isfinite(snap["position"]).all()
        last = run.agents(-1)
        assert len(np.unique(last["uid"])) == last["uid"].size


def test_xdmf_sidecar_opens_in_vtk(tmp_path):
    pytest.importorskip("vtkmodules.vtkIOXdmf2")
    import xdmf_reader
    from vtkmodules.util.numpy_support import vtk_to_numpy

    sim = small_sim(n=30)
    path = tmp_path / "side.h5"
    sim.writers.append(bs.io.HDF5Writer(path, every=10))
    sim.run(30)
    run = bs.io.open_run(path)
    xmf = tmp_path / "side.xmf"
    assert xmf.exists()
    for i, out in xdmf_reader.snapshots(xmf, run):
        grid = out if out.IsA("vtkPointSet") else out.GetBlock(0)
        pos = vtk_to_numpy(grid.GetPoints().GetData())
        np.testing.assert_array_equal(pos, run.agents(i)["position"])
        diam = vtk_to_numpy(grid.GetPointData().GetArray("diameter"))
        np.testing.assert_array_equal(diam, run.agents(i)["diameter"])


def test_recorded_series_are_kept_and_written(tmp_path):
    sim = small_sim(n=20)
    rec = sim.record("mean_diameter", lambda s: s.agents.diameter.mean(), every=2)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "s.h5", every=5))
    sim.run(9)
    sim.record("cells", lambda s: len(s.agents), every=3)  # added between runs
    sim.run(3)
    np.testing.assert_array_equal(rec.steps, [0, 2, 4, 6, 8, 10, 12])
    run = bs.io.open_run(tmp_path / "s.h5")
    assert run.records == ("cells", "count_tumour", "mean_diameter")  # counts recorded by default
    counts = run.series("count_tumour")
    assert counts["step"].tolist() == [0, 5, 10]  # with the writer's interval
    assert counts["value"].tolist() == [len(run.agents(i)["uid"]) for i in range(len(run))]
    s = run.series("mean_diameter")
    np.testing.assert_array_equal(s["step"], rec.steps)
    np.testing.assert_array_equal(s["value"], rec.values)
    np.testing.assert_allclose(s["time"], rec.steps * 0.1)
    assert run.series("cells")["step"].tolist() == [9, 12]
    assert run.series("cells")["value"][-1] == len(sim.agents)
    with pytest.raises(KeyError, match="series are cells, count_tumour, mean_diameter"):
        run.series("volume")
    with pytest.raises(ValueError, match="exists already"):
        sim.record("cells", len)
    with pytest.raises(ValueError, match="record name"):
        sim.record("two words", len)
    sim.record("bad", lambda s: "many")
    with pytest.raises(TypeError, match="record 'bad'.*number"):
        sim.run(1)


DISK_FULL = """
import resource, signal, sys
import biosim as bs
from biosim import models
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # write() then fails with EFBIG, like a full disk
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sim = bs.Simulation(bs.Box.cube(200.0), dt=0.1, seed=1)
pop = sim.add_agents("c", bs.init.ball(3000, 60.0, (100, 100, 100), seed=1), diameter=5.0)
pop.behaviours += [models.RandomWalk(diffusion=1.0)]
sim.writers.append(bs.io.HDF5Writer(sys.argv[1], every=1))
try:
    sim.run(400)
except bs.io.OutputError as e:
    print("STOPPED", sim.step, e)
    sys.exit(3)
"""


def test_a_full_disk_stops_the_run_with_a_clear_message_and_keeps_earlier_snapshots(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "full.py"
    script.write_text(DISK_FULL)
    path = tmp_path / "full.h5"
    r = subprocess.run([sys.executable, str(script), str(path), str(3 * 2**20)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 3, r.stderr[-2000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("STOPPED")][0]
    assert str(path) in line and "file-size limit" in line and "stay readable" in line
    run = bs.io.open_run(path)
    assert 3 <= len(run) < 400
    for i in range(len(run)):
        snap = run.agents(i)
        assert len(snap["uid"]) == 3000 and snap["position"].shape == (3000, 3)


def frames_run(tmp_path):
    sim = bs.Simulation(bs.Box.cube(200.0), dt=0.1, seed=4, mechanics=bs.BioDynaMoForce())
    cells = sim.add_agents("cells", bs.init.uniform(20, sim.box, seed=1), diameter=8.0,
                           energy=np.linspace(0, 1, 20).astype(np.float32))
    sim.add_agents("debris", bs.init.uniform(5, sim.box, seed=2), diameter=4.0)
    cells.behaviours += [models.GrowthDivision(growth_rate=300.0, division_diameter=9.0)]
    sim.agents.add_column("polarity", np.float64, 0.0, (3,))
    sim.agents.add_column("signals", np.float32, 0.0, (2,))
    sim.record_counts(every=3)
    sim.record("mean_diameter", lambda s: float(np.mean(s.agents.diameter)), every=5)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "f.h5", every=10))
    sim.run(30)
    return bs.io.open_run(tmp_path / "f.h5")


def test_a_snapshot_as_a_data_frame_one_row_per_agent_in_uid_order(tmp_path):
    run = frames_run(tmp_path)
    a = run.agents(-1)
    order = np.argsort(a["uid"])
    df = run.frame(-1)
    assert len(df) == len(a["uid"]) > 25  # divisions happened
    assert list(df.columns[:5]) == ["uid", "population", "x", "y", "z"]
    np.testing.assert_array_equal(df["uid"], a["uid"][order])
    np.testing.assert_array_equal(df[["x", "y", "z"]].to_numpy(), a["position"][order])
    np.testing.assert_array_equal(df[["polarity_x", "polarity_y", "polarity_z"]].to_numpy(), a["polarity"][order])
    np.testing.assert_array_equal(df[["signals_0", "signals_1"]].to_numpy(), a["signals"][order])
    np.testing.assert_array_equal(df["energy"], a["energy"][order])
    assert df["population"].dtype == "category" and list(df["population"].cat.categories) == ["cells", "debris"]
    assert (df["population"] == "debris").sum() == 5
    np.testing.assert_array_equal(df["population"].cat.codes, a["type"][order])
    # columns limit what is read; the same indices and errors as agents(i)
    assert list(run.frame(0, columns=["uid", "diameter"]).columns) == ["uid", "diameter"]
    assert len(run.frame(0)) == 25
    with pytest.raises(IndexError, match="out of range: this run has 4 snapshots"):
        run.frame(4)
    with pytest.raises(TypeError, match="snapshot index must be an integer"):
        run.frame(1.0)
    with pytest.raises(KeyError, match="no column 'nope'"):
        run.frame(0, columns=["nope"])


def test_every_recorded_series_as_one_data_frame_with_nan_where_a_series_skipped_a_step(tmp_path):
    run = frames_run(tmp_path)
    df = run.series_frame()
    assert list(df.columns) == ["step", "time", "count_cells", "count_debris", "mean_diameter"]
    assert df["step"].tolist() == [0, 3, 5, 6, 9, 10, 12, 15, 18, 20, 21, 24, 25, 27, 30]
    np.testing.assert_allclose(df["time"], df["step"] * 0.1)
    s = run.series("mean_diameter")
    np.testing.assert_array_equal(df.set_index("step").loc[s["step"], "mean_diameter"], s["value"])
    assert df.set_index("step")["mean_diameter"].isna().sum() == 15 - 7
    assert df["count_debris"].dropna().eq(5).all() and df.set_index("step").loc[5].isna()["count_cells"]
    assert run.units == {"count_cells": "agents", "count_debris": "agents", "mean_diameter": ""}
    with h5py.File(tmp_path / "f.h5", "a") as f:  # a unit that is not a short string is read as none
        f["series/count_cells"].attrs["unit"] = np.arange(5)
        f["series/count_debris"].attrs["unit"] = b"\xff\xfe"
        f["series/mean_diameter"].attrs["unit"] = "x" * 41
    assert set(bs.io.open_run(tmp_path / "f.h5").units.values()) == {""}
    empty = bs.io.open_run(tmp_path / "f.h5")
    empty.records = ()
    assert list(empty.series_frame().columns) == ["step", "time"] and len(empty.series_frame()) == 0


def test_a_snapshot_as_anndata_with_positions_in_obsm_spatial(tmp_path):
    anndata = pytest.importorskip("anndata")
    run = frames_run(tmp_path)
    ad = run.to_anndata(-1)
    df = run.frame(-1)
    assert isinstance(ad, anndata.AnnData) and ad.n_obs == len(df) and ad.n_vars == 0
    np.testing.assert_array_equal(ad.obsm["spatial"], df[["x", "y", "z"]].to_numpy())
    assert ad.obs_names.tolist() == [str(u) for u in df["uid"]]
    assert ad.obs["population"].dtype == "category" and "x" not in ad.obs
    assert ad.uns["biosim"]["step"] == 30 and ad.uns["biosim"]["space_unit"] == "µm"
    small = run.to_anndata(0, columns=["diameter"])
    assert list(small.obs.columns) == ["uid", "diameter"] and small.obsm["spatial"].shape == (25, 3)
    with pytest.raises(IndexError):
        run.to_anndata(9)


def test_the_paraview_sidecar_holds_every_substance_grid_as_image_data_over_time(tmp_path):
    pytest.importorskip("vtkmodules.vtkIOXdmf2")
    import xdmf_reader
    from vtkmodules.util.numpy_support import vtk_to_numpy

    sim = bs.Simulation(bs.Box((10.0, 20.0, 30.0), (130.0, 100.0, 90.0)), dt=0.5, seed=2, mechanics=None)
    cells = sim.add_agents("cells", bs.init.uniform(40, sim.box, seed=1), diameter=8.0)
    a = sim.add_substance("oxygen", diffusion=100.0, decay=0.01, spacing=20.0,
                          initial=lambda x, y, z: x + 10 * y + 100 * z)  # distinct along each axis
    sim.add_substance("signal", diffusion=50.0, spacing=10.0, initial=0.0)
    cells.behaviours += [models.Uptake(a, rate=0.5), models.Secretion(sim.substances["signal"], rate=3.0)]
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "s.h5", every=5))
    sim.run(10)
    run = bs.io.open_run(tmp_path / "s.h5")
    for i, out in xdmf_reader.snapshots(tmp_path / "s.xmf", run):
        blocks = {out.GetMetaData(b).Get(out.NAME()).split("[")[0]: out.GetBlock(b)  # VTK adds "[k]"
                  for b in range(out.GetNumberOfBlocks())}
        assert sorted(blocks) == ["agents", "oxygen", "signal"]
        np.testing.assert_array_equal(vtk_to_numpy(blocks["agents"].GetPoints().GetData()),
                                      run.agents(i)["position"])
        for name, spacing in (("oxygen", 20.0), ("signal", 10.0)):
            img = blocks[name]
            grid = run.substance(name, i)
            nx, ny, nz = grid.shape
            assert img.GetDimensions() == (nx + 1, ny + 1, nz + 1)
            np.testing.assert_allclose(img.GetOrigin(), (10.0, 20.0, 30.0))
            np.testing.assert_allclose(img.GetSpacing(), (spacing,) * 3)
            cells_vtk = vtk_to_numpy(img.GetCellData().GetArray(name))
            # VTK's cell (i, j, k) is entry i + nx (j + ny k): the voxel whose centre is lower + (i + 1/2) h
            np.testing.assert_array_equal(cells_vtk.reshape(nz, ny, nx).transpose(2, 1, 0), grid)
            box = [0.0] * 6
            img.GetCellBounds(1 + nx * (2 + ny * 1), box)  # voxel (1, 2, 1)
            np.testing.assert_allclose(box, [10 + spacing, 10 + 2 * spacing, 20 + 2 * spacing, 20 + 3 * spacing,
                                             30 + spacing, 30 + 2 * spacing])
    assert run.substance("signal", -1).max() > 0 and i == 2
