"""Read an untrusted HDF5 file in a child process first.

libhdf5 is C: a crafted or corrupted file can crash it (a fuzzed run file
did, inside the library, in the adversarial review of issue 15), and a crash
takes the whole Python process with it, losing the user's session.  Before
``load_checkpoint``, ``from_run`` or ``biosim resume`` read a file, a child
process opens it and reads what the loader will read; only if the child
comes back alive is the file read here.  A Python exception in the child
is not a crash: the parent then meets the same error and reports it cleanly.
"""
import os
import signal
import subprocess
import sys

# what the loaders read: every attribute, every dataset of a checkpoint; the
# index, the metadata and one snapshot's rows of a run file
_CHILD = r"""
import sys
import h5py
import numpy as np

path, kind, snapshot = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    f = h5py.File(path, "r")
except OSError:
    f = h5py.File(path, "r", swmr=True)
with f:
    def visit(name, obj):
        for key in obj.attrs:
            obj.attrs[key]
        if isinstance(obj, h5py.Dataset) and kind == "checkpoint":
            obj[()]
    for key in f.attrs:
        f.attrs[key]
    f.visititems(visit)
    if kind == "run" and "snapshots" in f and "agents" in f:
        counts = f["snapshots"]["count"][:]
        for name in ("step", "time"):
            f["snapshots"][name][:]
        if len(counts):
            i = snapshot % len(counts)
            a = int(np.sum(counts[:i], dtype=np.float64))
            b = a + int(counts[i])
            for ds in f["agents"].values():
                ds[a:b]
            if "substances" in f:
                for ds in f["substances"].values():
                    if ds.shape[0] > i:
                        ds[i]
"""

TIMEOUT_S = 300


def probe(path, kind, snapshot=-1):
    """Raise ValueError if reading ``path`` ("checkpoint" or "run", with
    ``snapshot`` the snapshot a run is read at) crashes or hangs a child
    process; return None if the child survives, whatever it raised."""
    try:
        r = subprocess.run([sys.executable, "-c", _CHILD, os.fspath(path), kind, str(int(snapshot))],
                           capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ValueError(f"reading {os.fspath(path)!r} did not finish in {TIMEOUT_S} s in a child process: "
                         f"the file is damaged or crafted; it was not opened here") from None
    if r.returncode < 0:
        try:
            name = signal.Signals(-r.returncode).name
        except ValueError:
            name = f"signal {-r.returncode}"
        raise ValueError(f"reading {os.fspath(path)!r} crashed the HDF5 library in a child process ({name}): "
                         f"the file is damaged or crafted; it was not opened here")
