"""Diffusion-decay on the GPU: the twins of the solvers of
:mod:`biosim.kernels.cpu.diffusion`.

* ``ftcs_step``: one thread per voxel, the CPU module's ``_ftcs_voxel``
  compiled for the GPU (the same 7-point stencil and face terms);
* ``lod_lines``: one thread per grid line of a sweep, the Thomas
  recurrences of the CPU's ``_solve_block`` along the line, in place;
* ``apply_sources``: one thread per touched voxel, the per-voxel sums of
  the queued sources (summed on the host in the canonical order: by
  queueing call, then uid) applied as the CPU applies them;
* ``scale``: exact decay;
* ``sample``, ``voxel_of``: the CPU module's ``trilinear_flat``,
  ``gradient_flat`` and ``voxel_index`` compiled for the GPU, one thread
  per agent;
* ``canonical_source_sums``: the sources queued by agents summed per voxel
  in the canonical order (by queueing call, then uid) without float
  atomics: a histogram of the entries per voxel, a scan, a scatter, an
  insertion sort of each voxel's run by key (the neighbour grid's own
  kernels), then one thread per touched voxel adding its run in order:
  the same additions in the same order as the CPU, so the same bits.

No floating-point atomics: every voxel and every line is computed by one
thread alone, so two runs give the same bits; against the CPU the values
agree to rounding (NVVM fuses multiply-adds; the CPU's interior loop groups
the stencil's sums differently).
"""
import numpy as np
from numba import cuda

from ..cpu import diffusion as _cpu
from . import grid as _grid
from ._launch import exclusive_scan, fill, launch, nonzero, portable, t3

_ftcs_voxel = portable(_cpu._ftcs_voxel)
trilinear_flat = portable(_cpu.trilinear_flat)
gradient_flat = portable(_cpu.gradient_flat)
voxel_index = portable(_cpu.voxel_index)


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
    ``n`` (as the CPU twin)."""
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


@cuda.jit
def _sample(f, nx, ny, nz, lower, h, periodic, pos, rows, m, value, grad, want_gradient):
    q = cuda.grid(1)
    if q < m:
        p = rows[q]
        x = pos[p, 0]
        y = pos[p, 1]
        z = pos[p, 2]
        value[q] = trilinear_flat(f, nx, ny, nz, lower, h, x, y, z, periodic)
        if want_gradient:
            gx, gy, gz = gradient_flat(f, nx, ny, nz, lower, h, x, y, z, periodic)
            grad[q, 0] = gx
            grad[q, 1] = gy
            grad[q, 2] = gz


def sample(c, lower, h, periodic, pos, rows, value, grad, want_gradient):
    """Trilinear value (and with ``want_gradient`` the gradient) of the
    device grid ``c`` at ``pos[rows]`` (see the CPU twin; values agree to
    rounding: NVVM fuses the interpolation's multiply-adds)."""
    m = rows.size
    if m:
        nx, ny, nz = c.shape
        _sample[launch(m)](c.reshape(c.size), int(nx), int(ny), int(nz), t3(lower), float(h), bool(periodic), pos,
                           rows, int(m), value, grad, bool(want_gradient))


@cuda.jit
def _voxel_of(pos, rows, m, lower, h, nx, ny, nz, out):
    q = cuda.grid(1)
    if q < m:
        p = rows[q]
        out[q] = voxel_index(pos[p, 0], pos[p, 1], pos[p, 2], lower, h, nx, ny, nz)


def voxel_of(pos, rows, lower, h, shape, out):
    """Flat voxel index of each agent at ``rows`` (clamped into the grid;
    the CPU's integers exactly)."""
    m = rows.size
    if m:
        _voxel_of[launch(m)](pos, rows, int(m), t3(lower), float(h), int(shape[0]), int(shape[1]), int(shape[2]),
                             out)


@cuda.jit
def _source_keys(rows, m, uid, call, key):
    q = cuda.grid(1)
    if q < m:
        key[q] = (call << 40) | uid[rows[q]]


def source_keys(rows, uid, call, key):
    """key[q] = call << 40 | uid[rows[q]]: an entry's place among the sources
    of its voxel (the queueing call, then the agent's uid)."""
    m = rows.size
    if m:
        _source_keys[launch(m)](rows, int(m), uid, int(call), key)


@cuda.jit
def _scaled_copy(src, m, factor, dst):
    q = cuda.grid(1)
    if q < m:
        dst[q] = src[q] * factor


def scaled_copy(src, factor, dst):
    """dst = src * factor (float64 device arrays; factor 1 copies exactly)."""
    m = src.size
    if m:
        _scaled_copy[launch(m)](src, int(m), float(factor), dst)


@cuda.jit
def _touched(start, nvox, flag):
    v = cuda.grid(1)
    if v < nvox:
        flag[v] = start[v + 1] > start[v]


@cuda.jit
def _sum_runs(voxels, nt, start, perm, values, used0, used1, used2, used3, out):
    t = cuda.grid(1)
    if t < nt:
        v = voxels[t]
        s = start[v]
        e = start[v + 1]
        for term in range(4):
            if used0 if term == 0 else (used1 if term == 1 else (used2 if term == 2 else used3)):
                acc = 0.0
                for a in range(s, e):
                    acc += values[term, perm[a]]
                out[term, t] = acc


def canonical_source_sums(vox, key, values, used, nvox, counts, start):
    """Per-voxel sums of queued source terms in the canonical order.

    ``vox[q]`` is entry q's voxel, ``key[q]`` its order within the voxel
    (distinct keys), ``values[t, q]`` its term t (added, S dt, S c* dt,
    U dt; those with ``used[t]``); ``counts`` and ``start`` int64 device
    scratch of nvox + 1 entries.  Returns (voxels, sums): the touched voxels
    (increasing) and a (4, len(voxels)) device array of their sums, each
    added from 0 in key order (the CPU twin's additions)."""
    m = int(vox.size)
    nvox = int(nvox)
    fill(counts, 0, nvox + 1)
    _grid._histogram[launch(m)](vox, m, counts)
    exclusive_scan(counts, nvox + 1, start)
    _grid._copy_i64[launch(nvox + 1)](start, nvox + 1, counts)  # the scatter's cursors
    perm = cuda.device_array(m, dtype=np.int64)
    skey = cuda.device_array(m, dtype=np.int64)
    _grid._scatter[launch(m)](vox, key, m, counts, perm, skey)
    _grid._uid_order_within_cells[launch(nvox)](start, nvox, perm, skey)
    flag = cuda.device_array(nvox, dtype=np.bool_)
    _touched[launch(nvox)](start, nvox, flag)
    voxels = nonzero(flag, nvox)
    nt = int(voxels.size)
    sums = cuda.device_array((4, max(nt, 1)), dtype=np.float64)
    if nt:
        _sum_runs[launch(nt)](voxels, nt, start, perm, values, *(bool(u) for u in used), sums)
    return voxels, sums


@cuda.jit
def _set_term(terms, k, m, src, value, use_src, factor):
    q = cuda.grid(1)
    if q < m:
        terms[k, q] = (src[q] if use_src else value) * factor


def set_term(terms, k, src, factor=1.0):
    """terms[k, :] = src * factor: ``src`` a float64 device array of one
    entry per agent, or a number (multiplying by 1 copies exactly)."""
    m = terms.shape[1]
    if m:
        if hasattr(src, "copy_to_host"):
            _set_term[launch(m)](terms, int(k), int(m), src, 0.0, True, float(factor))
        else:
            _set_term[launch(m)](terms, int(k), int(m), terms[k], float(src), False, float(factor))  # src unread



@cuda.jit
def _nonzero_flags(a, n, flag):
    i = cuda.grid(1)
    if i < n:
        flag[i] = a[i] != 0.0


def nonzero_values(a, n):
    """Indices i < n where a[i] != 0, increasing (an int64 device array)."""
    flag = cuda.device_array(max(int(n), 1), dtype=np.bool_)
    if n:
        _nonzero_flags[launch(n)](a, int(n), flag)
    return nonzero(flag, n)


@cuda.jit
def _take_divided(a, rows, m, divisor, out):
    q = cuda.grid(1)
    if q < m:
        out[q] = a[rows[q]] / divisor


def take_divided(a, rows, divisor, out):
    """out[q] = a[rows[q]] / divisor (a division: the CPU's bits)."""
    m = rows.size
    if m:
        _take_divided[launch(m)](a, rows, int(m), float(divisor), out)


@cuda.jit
def _set_layer(c, axis, side, values):
    t = cuda.grid(1)
    nx, ny, nz = c.shape
    if axis == 0:
        if t < ny * nz:
            c[0 if side == 0 else nx - 1, t // nz, t % nz] = values[t // nz, t % nz]
    elif axis == 1:
        if t < nx * nz:
            c[t // nz, 0 if side == 0 else ny - 1, t % nz] = values[t // nz, t % nz]
    elif t < nx * ny:
        c[t // ny, t % ny, 0 if side == 0 else nz - 1] = values[t // ny, t % ny]


def set_layers(c, faces, dval):
    """The outer voxel layer of each face in ``faces`` set to its values (see
    the CPU twin; ``dval`` device arrays (2, a, b) per axis)."""
    nx, ny, nz = c.shape
    for f in faces:
        axis, side = divmod(int(f), 2)
        size = (ny * nz, nx * nz, nx * ny)[axis]
        _set_layer[launch(size)](c, axis, side, dval[axis][side])
