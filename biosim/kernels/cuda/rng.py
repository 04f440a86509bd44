"""Counter-based random numbers on the GPU: the functions of
:mod:`biosim.kernels.cpu.rng` compiled for the GPU (the same source).

``uniform`` draws are the same bits as on the CPU (integer mixing, then one
exact multiplication).  ``normal`` and ``unit_vector`` go through
polynomials that NVVM compiles with fused multiply-adds, so they agree with
the CPU to about 1e-15 relative rather than bit for bit
(docs/guide/determinism.md).
"""
import numpy as np
from numba import cuda

from ..cpu.rng import normal, uniform, unit_vector
from ._launch import launch


@cuda.jit
def _uniform(seed, uids, step, stream, k, out):
    i = cuda.grid(1)
    if i < uids.size:
        out[i] = uniform(seed, uids[i], step, stream, k)


@cuda.jit
def _normal(seed, uids, step, stream, k, out):
    i = cuda.grid(1)
    if i < uids.size:
        out[i] = normal(seed, uids[i], step, stream, k)


@cuda.jit
def _unit_vector(seed, uids, step, stream, k, out):
    i = cuda.grid(1)
    if i < uids.size:
        x, y, z = unit_vector(seed, uids[i], step, stream, k)
        out[i, 0] = x
        out[i, 1] = y
        out[i, 2] = z


def _draw(kernel, seed, uids, step, stream, k, out):
    if uids.size:
        kernel[launch(uids.size)](np.int64(seed), uids, np.int64(step), np.int64(stream), np.int64(k), out)


def uniform_array(seed, uids, step, stream, k, out):
    """out[i] = uniform(seed, uids[i], step, stream, k) (device arrays)."""
    _draw(_uniform, seed, uids, step, stream, k, out)


def normal_array(seed, uids, step, stream, k, out):
    """out[i] = normal(seed, uids[i], step, stream, k) (device arrays)."""
    _draw(_normal, seed, uids, step, stream, k, out)


def unit_vector_array(seed, uids, step, stream, k, out):
    """out[i, :] = unit_vector(seed, uids[i], step, stream, k) (device arrays)."""
    _draw(_unit_vector, seed, uids, step, stream, k, out)
