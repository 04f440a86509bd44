"""Run a script once with 1 and once with 2 numba threads and compare runs."""
import os
import subprocess
import sys

import numpy as np

import biosim as bs


def run_script(tmp_path, script_text, threads, *args):
    """Write ``script_text`` and run it as ``script OUT.h5 *args`` in a
    subprocess with NUMBA_NUM_THREADS=threads; returns the Run."""
    script = tmp_path / "threads_script.py"
    script.write_text(script_text)
    path = tmp_path / f"threads{threads}_{'_'.join(map(str, args))}.h5"
    subprocess.run([sys.executable, str(script), str(path), *map(str, args)], check=True,
                   env=dict(os.environ, NUMBA_NUM_THREADS=str(threads)))
    return bs.io.open_run(path)


def runs_with_1_and_2_threads(tmp_path, script_text, *args):
    """``script_text`` run as ``script OUT.h5 *args`` in two subprocesses
    (NUMBA_NUM_THREADS 1 and 2); returns the two Runs."""
    return [run_script(tmp_path, script_text, threads, *args) for threads in (1, 2)]


def assert_bit_identical(a, b):
    """Every snapshot holds the same agents (matched by uid) with bit-equal
    columns, and the same substance grids."""
    assert len(a) == len(b) and len(a) > 0
    np.testing.assert_array_equal(a.steps, b.steps)
    for i in range(len(a)):
        x, y = a.agents(i), b.agents(i)
        ox, oy = np.argsort(x["uid"]), np.argsort(y["uid"])
        for c in x:
            np.testing.assert_array_equal(x[c][ox], y[c][oy], err_msg=f"column {c}, snapshot {i}")
        for name in a.substances:
            np.testing.assert_array_equal(a.substance(name, i), b.substance(name, i))
