"""Uniform-grid neighbour search: binning, a stable parallel counting sort,
row gathers and the 27-cell stencil walk.

Grid description passed to every kernel (all float64/int64 arrays of 3):
``lower`` (µm), ``inv_h`` (1/µm, inverse cell edge), ``dims`` (cells per
axis), ``length`` (box edge, µm), ``periodic`` (1 where the axis wraps), and
``cutoff`` (µm, the search radius).  Cells are at least ``cutoff`` wide in y
and z and a fraction of it in x.  They are numbered x-fastest:
``c = ix + dims[0] * (iy + dims[1] * iz)``, so a row of x-cells is contiguous
in a cell-sorted table.  Indices are clamped on non-periodic axes (monotone,
so agents outside the box still sort next to their neighbours) and wrapped
on periodic ones.

The search visits the 3 x 3 rows of cells around an agent's (y, z) cell; in
each row it takes only the x-cells within sqrt(cutoff^2 - gy^2 - gz^2) of the
agent, where gy, gz are lower bounds of the distance to the row, and skips
rows farther than the cutoff.  That visits about 60% of the candidates of a
plain 27-cell stencil.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def axis_index(x, lower, inv_h, dims, periodic):
    i = np.int64(np.floor((x - lower) * inv_h))
    if periodic:
        i = i % dims
    elif i < 0:
        i = 0
    elif i >= dims:
        i = dims - 1
    return i


@njit(cache=True, inline="always")
def cell_coords(pos, i, lower, inv_h, dims, periodic):
    ix = axis_index(pos[i, 0], lower[0], inv_h[0], dims[0], periodic[0])
    iy = axis_index(pos[i, 1], lower[1], inv_h[1], dims[1], periodic[1])
    iz = axis_index(pos[i, 2], lower[2], inv_h[2], dims[2], periodic[2])
    return ix, iy, iz


@njit(cache=True, inline="always")
def stencil_axis(c, dims, periodic):
    """First cell (unwrapped) and count of the cells next to ``c`` on one axis;
    cell k of the run is ``(lo + k) % dims``."""
    if periodic:
        if dims >= 3:
            return c - 1 + dims, 3
        return 0, dims
    lo = c - 1 if c > 0 else 0
    hi = c + 1 if c + 1 < dims else dims - 1
    return lo, hi - lo + 1


@njit(cache=True, inline="always")
def row_gap(v, lower, inv_h, c, lo, k, dims, periodic):
    """Lower bound (µm) of the distance from coordinate ``v`` (in cell ``c``) to
    any agent in cell ``lo + k`` of the stencil on this axis."""
    if periodic:
        if dims < 3:
            return 0.0
        rel = k - 1
    else:
        rel = lo + k - c
    if rel == 0:
        return 0.0
    h = 1.0 / inv_h
    if rel < 0:
        g = (v - lower) - c * h
    else:
        g = (c + 1) * h - (v - lower)
    return g if g > 0.0 else 0.0


@njit(cache=True, inline="always")
def x_segments(x, w, lower, inv_h, nx, periodic):
    """Cells [a1, b1) and [a2, b2) of a row holding every agent within ``w`` µm
    of ``x`` along the x axis (the second range is empty unless it wraps)."""
    lo = np.int64(np.floor((x - w - lower) * inv_h))
    hi = np.int64(np.floor((x + w - lower) * inv_h))
    if periodic:
        cnt = hi - lo + 1
        if cnt >= nx:
            return 0, nx, 0, 0
        a = lo % nx
        c1 = min(cnt, nx - a)
        return a, a + c1, 0, cnt - c1
    if lo < 0:
        lo = 0
    elif lo > nx - 1:
        lo = nx - 1
    if hi < 0:
        hi = 0
    elif hi > nx - 1:
        hi = nx - 1
    return lo, hi + 1, 0, 0


@njit(cache=True, inline="always")
def min_image(d, length, periodic):
    if periodic:
        return d - length * np.rint(d / length)
    return d


@njit(cache=True, parallel=True)
def assign_cells(pos, n, lower, inv_h, dims, periodic, cell):
    for i in prange(n):
        ix, iy, iz = cell_coords(pos, i, lower, inv_h, dims, periodic)
        cell[i] = ix + dims[0] * (iy + dims[1] * iz)


@njit(cache=True, parallel=True)
def counting_sort(cell, n, counts, cell_start, order):
    """Stable counting sort of rows by ``cell[:n]``.

    ``counts`` is (nchunks, ncells) scratch; the output (``order``, the rows
    in sorted order, and ``cell_start`` with ``ncells + 1`` offsets) is the
    unique stable order, so it does not depend on ``nchunks``.  Returns the
    number of rows that move (0: the table is already sorted).
    """
    nchunks, ncells = counts.shape
    chunk = (n + nchunks - 1) // nchunks
    for c in prange(nchunks):
        for k in range(ncells):
            counts[c, k] = 0
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            counts[c, cell[i]] += 1
    # exclusive prefix, cell-major then chunk
    total = 0
    for k in range(ncells):
        cell_start[k] = total
        for c in range(nchunks):
            m = counts[c, k]
            counts[c, k] = total
            total += m
    cell_start[ncells] = total
    moved = 0
    for c in prange(nchunks):
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            k = cell[i]
            j = counts[c, k]
            order[j] = i
            counts[c, k] = j + 1
            if j != i:
                moved += 1
    return moved


@njit(cache=True, parallel=True)
def gather_rows(src, order, n, dst):
    """dst[i, :] = src[order[i], :] for i < n (2D arrays of any dtype)."""
    m = src.shape[1]
    for i in prange(n):
        j = order[i]
        for k in range(m):
            dst[i, k] = src[j, k]


@njit(cache=True, parallel=True)
def copy_rows(src, n, dst):
    m = src.shape[1]
    for i in prange(n):
        for k in range(m):
            dst[i, k] = src[i, k]


@njit(cache=True, inline="always")
def _visit_run(pos, order, i, s, e, xi, yi, zi, length, periodic, r2max, fill, out, w):
    """Rows j = order[s:e], j != i, closer than sqrt(r2max): counted from
    ``w`` on, and written to ``out[w...]`` when ``fill``.  Returns the new ``w``."""
    for q in range(s, e):
        j = order[q]
        if j == i:
            continue
        dx = min_image(pos[j, 0] - xi, length[0], periodic[0])
        dy = min_image(pos[j, 1] - yi, length[1], periodic[1])
        dz = min_image(pos[j, 2] - zi, length[2], periodic[2])
        if dx * dx + dy * dy + dz * dz < r2max:
            if fill:
                out[w] = j
            w += 1
    return w


@njit(cache=True, parallel=True)
def neighbour_lists(pos, n, cell_start, order, lower, inv_h, dims, length, periodic, cutoff, radius,
                    offsets, fill, nbr):
    """CSR neighbour lists (cell members are rows ``order[cell_start[c]:
    cell_start[c+1]]``): rows j != i closer than
    ``radius`` (µm, at most the grid's ``cutoff``).  With ``fill`` false,
    writes counts into ``offsets[1:]`` only; with ``fill`` true, ``offsets``
    must hold the prefix sums and the rows are written into ``nbr`` in
    traversal order."""
    r2max = radius * radius
    nx = dims[0]
    for i in prange(n):
        xi = pos[i, 0]
        yi = pos[i, 1]
        zi = pos[i, 2]
        cx, cy, cz = cell_coords(pos, i, lower, inv_h, dims, periodic)
        loy, cnty = stencil_axis(cy, dims[1], periodic[1])
        loz, cntz = stencil_axis(cz, dims[2], periodic[2])
        w = offsets[i] if fill else 0
        for oz in range(cntz):
            iz = (loz + oz) % dims[2]
            gz = row_gap(zi, lower[2], inv_h[2], cz, loz, oz, dims[2], periodic[2])
            for oy in range(cnty):
                iy = (loy + oy) % dims[1]
                gy = row_gap(yi, lower[1], inv_h[1], cy, loy, oy, dims[1], periodic[1])
                w2 = radius * radius - gy * gy - gz * gz
                if w2 < 0.0:
                    continue
                a1, b1, a2, b2 = x_segments(xi, np.sqrt(w2), lower[0], inv_h[0], nx, periodic[0])
                base = nx * (iy + dims[1] * iz)
                for seg in range(2):
                    if seg == 0:
                        s = cell_start[base + a1]
                        e = cell_start[base + b1]
                    else:
                        if b2 <= a2:
                            break
                        s = cell_start[base + a2]
                        e = cell_start[base + b2]
                    w = _visit_run(pos, order, i, s, e, xi, yi, zi, length, periodic, r2max, fill, nbr, w)
        if not fill:
            offsets[i + 1] = w
