"""Initial placements: (n, 3) float64 position arrays in µm.

Each takes a ``seed`` for numpy's PCG64 generator, so a placement is the same
on every machine and thread count.
"""
import numpy as np

from . import _validate as V
from .space import Box


def _rng(seed):
    return np.random.default_rng(V.seed(seed))


def uniform(n, box, seed=0):
    """``n`` points uniform in ``box`` (a Box, or an edge length for a cube at
    the origin)."""
    n = V.positive_int("n", n, allow_zero=True)
    if not isinstance(box, Box):
        box = Box.cube(box)
    return box.lower + _rng(seed).random((n, 3)) * box.length


def ball(n, radius, center=(0.0, 0.0, 0.0), seed=0):
    """``n`` points uniform inside a ball of ``radius`` µm around ``center``."""
    n = V.positive_int("n", n, allow_zero=True)
    radius = V.positive("radius", radius)
    c = V.vector3("center", center)
    rng = _rng(seed)
    d = rng.standard_normal((n, 3))
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-300)
    r = radius * np.cbrt(rng.random(n))
    return c + d * r[:, None]


def sphere_surface(n, radius, center=(0.0, 0.0, 0.0), seed=0):
    """``n`` points uniform on a sphere of ``radius`` µm around ``center``."""
    n = V.positive_int("n", n, allow_zero=True)
    radius = V.positive("radius", radius)
    c = V.vector3("center", center)
    d = _rng(seed).standard_normal((n, 3))
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-300)
    return c + radius * d


def grid(shape, spacing, origin=(0.0, 0.0, 0.0)):
    """A regular lattice of ``shape`` = (nx, ny, nz) points (or one int for a
    cube), ``spacing`` µm apart, the first at ``origin``; x varies fastest."""
    if np.ndim(shape) == 0:
        shape = (shape, shape, shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be an int or three ints (nx, ny, nz), got {shape!r}")
    nx, ny, nz = (V.positive_int(f"shape[{k}]", s, allow_zero=True) for k, s in enumerate(shape))
    spacing = V.positive("spacing", spacing)
    o = V.vector3("origin", origin)
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    pts = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1).astype(np.float64)
    return o + spacing * pts
