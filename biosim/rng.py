"""Counter-based random numbers keyed by (seed, agent uid, step, stream, k).

Use these from Python (numpy arrays of uids); numba kernels call the same
functions from :mod:`biosim.kernels.cpu.rng`, so a draw is the same number
wherever it is made.  Streams separate independent uses: each behaviour gets
its own stream id when it is attached to a population.
"""
import numpy as np

from .kernels.cpu import rng as _k


def _uids(uids):
    return np.ascontiguousarray(np.atleast_1d(uids), dtype=np.int64)


def uniform(seed, uids, step, stream, k=0):
    """Uniform draws on [0, 1), one per uid."""
    u = _uids(uids)
    out = np.empty(u.size)
    _k.uniform_array(int(seed), u, int(step), int(stream), int(k), out)
    return out


def normal(seed, uids, step, stream, k=0):
    """Standard normal draws, one per uid."""
    u = _uids(uids)
    out = np.empty(u.size)
    _k.normal_array(int(seed), u, int(step), int(stream), int(k), out)
    return out


def unit_vectors(seed, uids, step, stream, k=0):
    """Directions uniform on the unit sphere, shape (len(uids), 3)."""
    u = _uids(uids)
    out = np.empty((u.size, 3))
    _k.unit_vector_array(int(seed), u, int(step), int(stream), int(k), out)
    return out
