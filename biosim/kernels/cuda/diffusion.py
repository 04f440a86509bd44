"""Diffusion-decay on the GPU: the twins of the solvers of
:mod:`biosim.kernels.cpu.diffusion`.

* ``ftcs_step``: one thread per voxel, the CPU module's ``_ftcs_voxel``
  compiled for the GPU (the same 7-point stencil and face terms);
* ``lod_lines``: one thread per grid line of a sweep, the Thomas
  recurrences of the CPU's ``_solve_block`` along the line, in place;
* ``apply_sources``: one thread per touched voxel, the per-voxel sums of
  the queued sources (summed on the host in the canonical order: by
  queueing call, then uid) applied as the CPU applies them;
* ``scale``: exact decay.

No floating-point atomics: every voxel and every line is computed by one
thread alone, so two runs give the same bits; against the CPU the values
agree to rounding (NVVM fuses multiply-adds; the CPU's interior loop groups
the stencil's sums differently).
"""
from numba import cuda

from ..cpu import diffusion as _cpu
from ._launch import launch, portable

_ftcs_voxel = portable(_cpu._ftcs_voxel)


@cuda.jit
def _ftcs(c, out, a, D, h, dt, btype, bflux, dval_x, dval_y, dval_z):
    t = cuda.grid(1)
    nx, ny, nz = c.shape
    if t < nx * ny * nz:
        i = t // (ny * nz)
        j = (t // nz) % ny
        k = t % nz
        out[i, j, k] = _ftcs_voxel(c, i, j, k, a, D, h, dt, btype, bflux, dval_x, dval_y, dval_z)


def ftcs_step(c, out, D, h, dt, btype, bflux, dval_x, dval_y, dval_z):
    """One explicit 7-point step of dc/dt = D lap(c) from ``c`` into ``out``
    (device grids; the boundary arrays as device arrays too)."""
    size = c.shape[0] * c.shape[1] * c.shape[2]
    _ftcs[launch(size)](c, out, D / (h * h), float(D), float(h), float(dt), btype, bflux, dval_x, dval_y, dval_z)


@cuda.jit
def _lod_lines(c3, r, cp, inv, zz, vr, zden, periodic, add_lo, add_hi):
    t = cuda.grid(1)
    A, n, B = c3.shape
    if t >= A * B:
        return
    ia = t // B
    ib = t % B
    lo = add_lo[ia, ib]
    hi = add_hi[ia, ib]
    if n == 1:
        c3[ia, 0, ib] = (c3[ia, 0, ib] + lo + hi) * inv[0]
        return
    c3[ia, 0, ib] = (c3[ia, 0, ib] + lo) * inv[0]
    c3[ia, n - 1, ib] += hi
    for p in range(1, n):
        c3[ia, p, ib] = (c3[ia, p, ib] + r * c3[ia, p - 1, ib]) * inv[p]
    for p in range(n - 2, -1, -1):
        c3[ia, p, ib] -= cp[p] * c3[ia, p + 1, ib]
    if periodic:
        fac = (c3[ia, 0, ib] + vr * c3[ia, n - 1, ib]) / zden
        for p in range(n):
            c3[ia, p, ib] -= fac * zz[p]


def lod_sweep(c3, r, cp, inv, zz, vr, zden, periodic, add_lo, add_hi):
    """Solve (1 - r d2) x = c along the middle axis of ``c3`` (A, n, B) in
    place, one thread per line (see the CPU twin; device arrays)."""
    A, _, B = c3.shape
    _lod_lines[launch(A * B)](c3, float(r), cp, inv, zz, float(vr), float(zden), bool(periodic), add_lo, add_hi)


@cuda.jit
def _apply_sources(flat, voxels, m, added, s_dt, sc_dt, u_dt, used0, used1, used2, used3, n):
    q = cuda.grid(1)
    if q < m:
        v = voxels[q]
        num = flat[v]
        den = 1.0
        if used0:
            num += added[q] / n
        if used2:
            num += sc_dt[q] / n
        if used1:
            den += s_dt[q] / n
        if used3:
            den += u_dt[q] / n
        flat[v] = num / den


def apply_sources(flat, voxels, added, s_dt, sc_dt, u_dt, used, n):
    """At each voxel ``voxels[q]`` (distinct): c <- (c + A + S c* dt) /
    (1 + (S + U) dt), the terms given per touched voxel (q), each divided by
    ``n`` (see the CPU twin, which takes them per voxel of the grid)."""
    m = voxels.size
    if m:
        _apply_sources[launch(m)](flat, voxels, int(m), added, s_dt, sc_dt, u_dt, bool(used[0]), bool(used[1]),
                                  bool(used[2]), bool(used[3]), float(n))


@cuda.jit
def _scale(flat, size, factor):
    i = cuda.grid(1)
    if i < size:
        flat[i] *= factor


def scale(flat, factor):
    """flat *= factor (a 1D view of a device grid)."""
    if flat.size:
        _scale[launch(flat.size)](flat, int(flat.size), float(factor))
