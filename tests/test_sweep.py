"""Parameter sweeps (issue 18): bs.sweep on any concurrent.futures
executor, its table, its folder, failures, bad input, biosim sweep."""
import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import biosim as bs
from biosim.sweep import SweepError

import sweep_models as M


def _one(rate, seed, steps):
    """The same run in this process: its count_cells record."""
    sim = M.growing(rate=rate, seed=seed)
    sim.run(steps)
    return sim.records["count_cells"].values


def test_a_sweep_runs_the_product_of_parameters_and_seeds_as_one_process_would():
    with ThreadPoolExecutor(2) as ex:
        df = bs.sweep(M.growing, {"rate": [0.01, 0.05], "cells": [10, 20]}, steps=20, seeds=2, executor=ex,
                      progress=False)
    assert len(df) == 2 * 2 * 2 * 5  # runs x recorded steps (0, 5, ..., 20)
    assert list(df.columns[:5]) == ["rate", "cells", "seed", "step", "time"]
    assert {"count_cells", "mean_x"} <= set(df.columns)
    run = df[(df.rate == 0.05) & (df.cells == 20) & (df.seed == 1)]
    np.testing.assert_array_equal(run["count_cells"].to_numpy(), _one(0.05, 1, 20))
    assert run["mean_x"].notna().sum() == 3  # recorded every 10 steps: NaN between
    assert df.attrs["failed"] == [] and df.attrs["parameters"] == ["rate", "cells"]


def test_the_default_executor_is_a_process_pool_with_the_same_results(tmp_path):
    df = bs.sweep(M.growing, [{"rate": 0.02}, {"rate": 0.04}], steps=10, seeds=[3], progress=False)
    for rate in (0.02, 0.04):
        np.testing.assert_array_equal(df[df.rate == rate]["count_cells"].to_numpy(), _one(rate, 3, 10))


def test_a_sweep_folder_keeps_each_run_and_a_rerun_skips_the_runs_done(tmp_path):
    with ThreadPoolExecutor(2) as ex:
        df = bs.sweep(M.growing, {"rate": [0.01, 0.03]}, steps=10, executor=ex, out=tmp_path, progress=False)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len([f for f in files if f.endswith(".json")]) == 2 and len([f for f in files if f.endswith(".h5")]) == 2
    run = bs.io.open_run(next(tmp_path.glob("*.h5")))
    assert run.steps[-1] == 10
    done = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert done["steps"] == 10 and "count_cells" in done["records"]

    class Refuse(ThreadPoolExecutor):
        def submit(self, *a, **kw):
            raise AssertionError("a finished run was submitted again")

    with Refuse(1) as ex:
        again = bs.sweep(M.growing, {"rate": [0.01, 0.03]}, steps=10, executor=ex, out=tmp_path, progress=False)
    assert again.equals(df)


def test_a_failed_run_is_reported_and_the_others_go_on(capsys):
    with ThreadPoolExecutor(2) as ex:
        df = bs.sweep(M.failing, {"rate": [0.01, 0.1, 0.02]}, steps=5, executor=ex, progress=False)
    assert sorted(df.rate.unique()) == [0.01, 0.02]
    (f,) = df.attrs["failed"]
    assert f["params"] == {"rate": 0.1} and f["seed"] == 0 and "rate 0.1 is too high" in f["error"]
    assert "rate 0.1 is too high" in capsys.readouterr().err
    with ThreadPoolExecutor(1) as ex:
        df = bs.sweep(M.not_a_simulation, [{}], steps=1, executor=ex, progress=False)
    assert "not a biosim Simulation" in df.attrs["failed"][0]["error"]


@pytest.mark.parametrize("kw, match", [
    ({"parameters": {"ratee": [1.0]}}, r"does not take parameter 'ratee'; it takes rate, cells, seed"),
    ({"parameters": {"seed": [1]}}, r"'seed' is not a parameter; give the seeds with seeds="),
    ({"parameters": {"rate": 0.1}}, r"parameters\['rate'\] must be a list of values"),
    ({"parameters": "rate"}, r"parameters must be a dict of lists"),
    ({"parameters": {"rate": [object()]}}, r"JSON-friendly"),
    ({"seeds": 0}, r"seeds must be an integer >= 1"),
    ({"seeds": [1, -2]}, r"every seed must be an int >= 0, got -2"),
    ({"model": lambda rate, seed: None}, r"cannot be sent to worker processes"),
    ({"model": M.growing, "steps": -1}, r"steps must be an integer >= 0"),
    ({"model": "growing"}, r"model must be a function"),
])
def test_bad_sweeps_are_refused_before_any_run(kw, match):
    args = {"model": M.growing, "parameters": {"rate": [0.01]}, "steps": 2, "seeds": 1, **kw}
    with pytest.raises((SweepError, ValueError, TypeError), match=match):
        bs.sweep(args.pop("model"), args.pop("parameters"), args.pop("steps"), executor=ThreadPoolExecutor(1),
                 progress=False, **args)


def test_biosim_sweep_runs_a_script_s_sweep(tmp_path):
    script = tmp_path / "my_sweep.py"
    script.write_text(textwrap.dedent("""
        import biosim as bs
        from biosim import models

        def model(rate, seed):
            sim = bs.Simulation(bs.Box.cube(50.0), dt=1.0, seed=seed, mechanics=None)
            pop = sim.add_agents("cells", bs.init.uniform(10, sim.box, seed=seed), diameter=5.0)
            pop.behaviours += [models.CellCycle(("G",), (1.0 / rate,))]
            sim.record_counts(every=4)
            return sim

        SWEEP = {"parameters": {"rate": [0.02, 0.08]}, "steps": 8, "seeds": 2}
    """))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "biosim", "sweep", str(script), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "4 runs done, 0 failed" in r.stdout
    import pandas as pd

    table = pd.read_csv(out / "sweep.csv")
    assert len(table) == 4 * 3 and set(table.seed) == {0, 1}
    bad = tmp_path / "bad_sweep.py"
    bad.write_text("def model(seed):\n    pass\n")
    r = subprocess.run([sys.executable, "-m", "biosim", "sweep", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0 and "defines no SWEEP dict" in r.stderr


def _reference():
    with ThreadPoolExecutor(2) as ex:
        return bs.sweep(M.growing, {"rate": [0.02, 0.04]}, steps=10, seeds=2, executor=ex, progress=False)


def test_a_dask_client_s_executor_runs_a_sweep():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        df = bs.sweep(M.growing, {"rate": [0.02, 0.04]}, steps=10, seeds=2, executor=client.get_executor(),
                      progress=False)
    assert df.equals(_reference()) and not df.attrs["failed"]


def test_mpi4py_futures_runs_a_sweep(tmp_path):
    pytest.importorskip("mpi4py")
    import shutil

    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("no mpiexec (pip install mpich)")
    script = tmp_path / "mpi_sweep.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import biosim as bs
        import sweep_models as M
        from mpi4py.futures import MPIPoolExecutor

        if __name__ == "__main__":
            with MPIPoolExecutor() as ex:
                df = bs.sweep(M.growing, {{"rate": [0.02, 0.04]}}, steps=10, seeds=2, executor=ex, progress=False)
            df.to_pickle(sys.argv[1])
    """))
    out = tmp_path / "df.pkl"
    r = subprocess.run([mpiexec, "-n", "3", sys.executable, "-m", "mpi4py.futures", str(script), str(out)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "NUMBA_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    import pandas as pd

    df = pd.read_pickle(out)
    ref = _reference()
    np.testing.assert_array_equal(df["count_cells"].to_numpy(), ref["count_cells"].to_numpy())
    np.testing.assert_array_equal(df["mean_x"].to_numpy(), ref["mean_x"].to_numpy())
