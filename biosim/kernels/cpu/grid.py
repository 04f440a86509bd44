"""Uniform-grid neighbour search: binning, the canonical sort (by cell, then
by uid: a parallel counting sort and a sort of each cell by uid), row gathers
and the 27-cell stencil walk.

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
import math

import numpy as np
from numba import njit, prange

_MAGIC = 4503599627370496.0  # 2^52: above it every float64 is an integer


@njit(cache=True, inline="always")
def rint(x):
    """x rounded to the nearest integer, ties to even (numpy's rint) with
    plain float additions, so that it compiles for the GPU too."""
    a = abs(x)
    if not a < _MAGIC:  # an integer already (or NaN, infinite)
        return x
    return math.copysign((a + _MAGIC) - _MAGIC, x)


@njit(cache=True, inline="always")
def ffloor(x):
    """The largest integer <= x, as a float (any finite x; no integer
    conversion to overflow), compiled alike for the CPU and the GPU (where
    ``math.floor`` returns a float, not an integer)."""
    r = rint(x)
    return r - 1.0 if r > x else r


@njit(cache=True, inline="always")
def axis_index(x, lower, inv_h, dims, periodic):
    """Cell index of coordinate ``x`` (µm) on one axis: floor((x - lower) *
    inv_h), clamped to [0, dims) on a closed axis and wrapped on a periodic
    one.  Clamped in floats, so the conversion is a truncation and the common
    path has no branch."""
    f = (x - lower) * inv_h
    if periodic and not (f >= 0.0 and f < dims):  # rare: wrapped positions sit in [lower, upper)
        return np.int64(math.floor(f)) % dims
    f = f if f > 0.0 else 0.0
    return np.int64(min(f, dims - 1.0))


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
def wrap(k, dims):
    """Cell index k (unwrapped, usually within one period) into [0, dims)."""
    if k < 0:
        k += dims
        if k < 0:
            k = k % dims
    elif k >= dims:
        k -= dims
        if k >= dims:
            k = k % dims
    return k


@njit(cache=True, inline="always")
def axis_window(v, r, lower, inv_h, dims, periodic):
    """Cells within ``r`` µm (at most a cell edge) of coordinate ``v`` on one
    axis: (first, count, whole).  ``first`` is unwrapped (-1 or ``dims`` on a
    periodic axis; see ``wrap``); ``whole`` when the window covers a
    periodic axis entirely (then it is every cell once, from 0)."""
    # clipped in floats first: a radius far beyond the box must not overflow int64
    lo = np.int64(math.floor(min(max((v - r - lower) * inv_h, -2.0 * dims), 2.0 * dims)))
    hi = np.int64(math.floor(min(max((v + r - lower) * inv_h, -2.0 * dims), 2.0 * dims)))
    if periodic:
        cnt = hi - lo + 1
        if cnt >= dims:
            return 0, dims, True
        return lo, cnt, False
    if lo < 0:
        lo = 0
    elif lo > dims - 1:
        lo = dims - 1
    if hi < 0:
        hi = 0
    elif hi > dims - 1:
        hi = dims - 1
    return lo, hi - lo + 1, False


@njit(cache=True, inline="always")
def x_segments(x, w, lower, inv_h, nx, periodic):
    """Cells [a1, b1) and [a2, b2) of a row holding every agent within ``w`` µm
    of ``x`` along the x axis (the second range is empty unless it wraps)."""
    lo, cnt, whole = axis_window(x, w, lower, inv_h, nx, periodic)
    if not periodic or whole:
        return lo, lo + cnt, 0, 0
    a = wrap(lo, nx)
    c1 = min(cnt, nx - a)
    return a, a + c1, 0, cnt - c1


@njit(cache=True, inline="always")
def min_image(d, length, periodic):
    """Minimum-image difference on a periodic axis: d - length rint(d / length),
    computed without a division for |d| < 1.5 length (always, for wrapped
    positions) and with the same result."""
    if periodic:
        half = 0.5 * length
        if d > half:
            d -= length
            if d > half:
                d = (d + length) - length * rint((d + length) / length)
        elif d < -half:
            d += length
            if d < -half:
                d = (d - length) - length * rint((d - length) / length)
    return d


@njit(cache=True, parallel=True)
def assign_cells(pos, n, lower, inv_h, dims, periodic, cell):
    for i in prange(n):
        ix, iy, iz = cell_coords(pos, i, lower, inv_h, dims, periodic)
        cell[i] = ix + dims[0] * (iy + dims[1] * iz)


@njit(cache=True, parallel=True)
def count_invalid(pos, diam, types, n, ntypes):
    """Rows the grid and force kernels cannot index with: a position that is
    not finite, a diameter that is not finite and > 0 µm, or a type code
    outside [0, ntypes).  One branch-free vectorised pass: x - x is 0 for a
    finite x and NaN otherwise (no fast-math here), so one sum of those
    differences tests all four floats of a row (1.3 ms for 10^6 agents on
    one thread, against 9 ms testing each with isfinite)."""
    flat = pos.reshape(-1)
    bad = 0
    for i in prange(n):
        d = diam[i]
        t = types[i]
        x = flat[3 * i]
        y = flat[3 * i + 1]
        z = flat[3 * i + 2]
        s = (x - x) + (y - y) + (z - z) + (d - d)
        bad += np.int64((s != s) | (not d > 0.0) | (t < 0) | (t >= ntypes))
    return bad


# Cells per parallel block of the prefix and the within-cell sort (a fixed
# size, so the work split does not depend on the thread count).
CELL_BLOCK_BITS = 14
CELL_BLOCK = 1 << CELL_BLOCK_BITS
# Cells up to this many agents are put in uid order by insertion (near sorted
# between reorders: linear); larger ones by a sort of their keys.
INSERTION_MAX = 48


def sort_chunks(n, ncells, threads):
    """Chunks of rows for the counting sort's histograms: at most one per
    thread, one per 4096 rows, and few enough that the (chunks, cells)
    counts stay within 2 (cells + agents) entries."""
    return max(1, min(threads, n // 4096 + 1, 2 * (n + ncells) // max(ncells, 1)))


@njit(cache=True, parallel=True)
def _histograms(cell, n, counts, block_counts):
    """Per chunk of rows: agents per cell (``counts``) and per block of
    CELL_BLOCK cells (``block_counts``)."""
    nchunks, ncells = counts.shape
    chunk = (n + nchunks - 1) // nchunks
    for c in prange(nchunks):
        row = counts[c]
        brow = block_counts[c]
        for k in range(ncells):
            row[k] = 0
        for b in range(brow.size):
            brow[b] = 0
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            k = cell[i]
            row[k] += 1
            brow[k >> CELL_BLOCK_BITS] += 1


@njit(cache=True, parallel=True)
def _offsets(counts, block_counts, cell_start):
    """Exclusive prefix of ``counts`` taken cell-major, then chunk, written
    back into ``counts`` (each chunk's first slot per cell) and as
    ``cell_start``: a serial scan over the blocks' totals, then each block of
    CELL_BLOCK cells writes its offsets in parallel."""
    nchunks, ncells = counts.shape
    nblocks = block_counts.shape[1]
    total = 0
    for b in range(nblocks):
        t = 0
        for c in range(nchunks):
            t += block_counts[c, b]
        block_counts[0, b] = total
        total += t
    for b in prange(nblocks):
        s = block_counts[0, b]
        for k in range(b * CELL_BLOCK, min(ncells, (b + 1) * CELL_BLOCK)):
            cell_start[k] = s
            for c in range(nchunks):
                m = counts[c, k]
                counts[c, k] = s
                s += m
    cell_start[ncells] = total


@njit(cache=True, parallel=True)
def _scatter(cell, uid, shift, n, counts, order, skey):
    """Stable scatter of the rows into cell order: ``order[j]`` the row at
    sorted place j and ``skey[j]`` its key ``cell << shift | uid`` (the
    canonical order is the order of the keys).  Returns how many rows land
    elsewhere than their own index."""
    nchunks = counts.shape[0]
    chunk = (n + nchunks - 1) // nchunks
    moved = 0
    for c in prange(nchunks):
        m = 0
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            k = cell[i]
            j = counts[c, k]
            order[j] = i
            skey[j] = (np.int64(k) << shift) | uid[i]
            counts[c, k] = j + 1
            m += j != i
        moved += m
    return moved


@njit(cache=True, parallel=True)
def _uid_order_within_cells(order, skey, shift, cell_start):
    """Sort each cell's run of ``order`` by uid, one sequential pass over the
    keys per block of CELL_BLOCK cells (the keys grow across cells, so a key
    below its predecessor is an uid out of order inside a cell): the entry
    is moved back (insertion; runs are near sorted between reorders), and a
    crowded cell (over INSERTION_MAX agents) is sorted whole instead.
    Returns the number of entries moved."""
    ncells = cell_start.size - 1
    nblocks = (ncells + CELL_BLOCK - 1) // CELL_BLOCK
    shifted = 0
    for b in prange(nblocks):
        lo = cell_start[b * CELL_BLOCK]
        hi = cell_start[min(ncells, (b + 1) * CELL_BLOCK)]
        m = 0
        q = lo + 1
        while q < hi:
            key = skey[q]
            if key < skey[q - 1]:
                c = key >> shift
                s = cell_start[c]
                e = cell_start[c + 1]
                if e - s > INSERTION_MAX:
                    idx = np.argsort(skey[s:e])
                    rows = order[s:e].copy()
                    keys = skey[s:e].copy()
                    for a in range(e - s):
                        order[s + a] = rows[idx[a]]
                        skey[s + a] = keys[idx[a]]
                    m += e - s
                    q = e
                    continue
                v = order[q]
                p = q - 1
                while p >= s and skey[p] > key:
                    order[p + 1] = order[p]
                    skey[p + 1] = skey[p]
                    p -= 1
                    m += 1
                order[p + 1] = v
                skey[p + 1] = key
            q += 1
        shifted += m
    return shifted


def canonical_sort(cell, uid, uid_bound, n, counts, block_counts, cell_start, order, skey):
    """Rows in the canonical order: by ``cell[:n]``, then by ``uid`` (every
    uid below ``uid_bound``).

    A stable counting sort by cell (``counts``: (chunks, ncells) scratch,
    chunks from :func:`sort_chunks`; ``block_counts``: (chunks,
    ceil(ncells / CELL_BLOCK)) scratch; ``skey``: int64 scratch of n), then
    each cell's run sorted by uid.  The output, ``order`` (the rows in
    sorted order) and ``cell_start`` (``ncells + 1`` offsets), is a function
    of the cells and uids alone: it depends neither on the chunks nor on the
    rows' current order.  Returns 0 exactly when the rows are in canonical
    order already (else a count of the rows and shifts it took)."""
    ncells = cell_start.size - 1
    shift = max(1, int(uid_bound - 1).bit_length())
    _histograms(cell, n, counts, block_counts)
    _offsets(counts, block_counts, cell_start)
    if shift + max(1, ncells - 1).bit_length() > 63:  # keys would overflow (beyond any real run): numpy
        moved = _scatter(cell, np.zeros(n, dtype=np.int64), 0, n, counts, order, skey)
        rows = order[:n].copy()
        order[:n] = rows[np.lexsort((uid[rows], cell[rows]))]
        return moved + int(np.count_nonzero(order[:n] != rows))
    moved = _scatter(cell, uid, shift, n, counts, order, skey)
    return moved + _uid_order_within_cells(order, skey, shift, cell_start)


@njit(cache=True, parallel=True)
def gather_rows(src, order, n, dst):
    """dst[i, :] = src[order[i], :] for i < n (2D arrays of any dtype)."""
    m = src.shape[1]
    for i in prange(n):
        j = order[i]
        for k in range(m):
            dst[i, k] = src[j, k]


SORTED_PAD = 16  # zeroed entries after the n sorted ones of sorted_columns' rows


@njit(cache=True, parallel=True)
def sorted_columns(pos, diam, types, order, n, cols):
    """Agent columns in the grid's sort order, as rows of ``cols`` (float64,
    at least n + SORTED_PAD wide): rows 0-2 the position (µm) of row
    ``order[q]`` at entry q, row 3 (when present) its diameter (µm), row 4
    its type.  The SORTED_PAD entries after n are zeroed, so that fixed-width
    copies of a cell's run may read past it."""
    nc = cols.shape[0]
    for q in prange(n):
        j = order[q]
        cols[0, q] = pos[j, 0]
        cols[1, q] = pos[j, 1]
        cols[2, q] = pos[j, 2]
        if nc > 3:
            cols[3, q] = diam[j]
        if nc > 4:
            cols[4, q] = types[j]
    for c in range(nc):
        for q in range(n, n + SORTED_PAD):
            cols[c, q] = 0.0


@njit(cache=True, parallel=True)
def copy_rows(src, n, dst):
    m = src.shape[1]
    for i in prange(n):
        for k in range(m):
            dst[i, k] = src[i, k]


STENCIL_RUNS = 18  # at most 3 x 3 rows of cells, each in at most two x-segments

# Agents per parallel work item of the search kernels: each item keeps one
# small buffer of runs, and a fixed item size keeps the work split independent
# of the thread count.
SEARCH_CHUNK = 1024


@njit(cache=True, inline="always")
def own_cell(v, lower, inv_h, dims, periodic):
    if periodic:
        return np.int64(math.floor((v - lower) * inv_h))
    return axis_index(v, lower, inv_h, dims, periodic)


@njit(cache=True, inline="always")
def face_gap(k, c, rel, h):
    """Lower bound (µm) of the distance from a point ``rel`` µm above the lower
    face of its cell ``c`` to cell ``k`` (unwrapped, within one of ``c``)."""
    if k == c:
        return 0.0
    g = rel if k < c else h - rel
    return g if g > 0.0 else 0.0


@njit(cache=True, inline="always")
def half_cell_pair(v, lower, inv_h, dims, periodic):
    """The two cells on one axis holding everything within half a cell edge of
    ``v``: its own and the neighbour on the side of the nearer face.
    Returns (first, count): first unwrapped on periodic axes (-1 .. dims-1),
    count 2 (1 for a single-cell axis; cells clamp on closed axes)."""
    t = (v - lower) * inv_h
    c = np.int64(math.floor(t))
    if not periodic:
        if c < 0:
            c = 0
        elif c > dims - 1:
            c = dims - 1
    lo = c - np.int64(t - c < 0.5)  # branch-free: the side is a coin flip
    if dims == 1:
        return 0, 1
    if periodic:
        if dims == 2:
            return 0, 2
        return lo, 2
    if lo < 0:
        lo = 0
    elif lo > dims - 2:
        lo = dims - 2
    return lo, 2


@njit(cache=True, inline="always")
def block_runs(xi, yi, zi, cell_start, lower, inv_h, dims, periodic, runs):
    """stencil_runs when the radius is at most half of every cell edge: the
    sphere lies in a block of 2 x 2 x 2 cells (per axis, the point's cell and
    the neighbour on the nearer side), so the search is 4 rows of 2 x-cells
    with no pruning and few branches (sparse agents, e.g. epidemics)."""
    nx = dims[0]
    ny = dims[1]
    nz = dims[2]
    x0, cx = half_cell_pair(xi, lower[0], inv_h[0], nx, periodic[0])
    y0, cy = half_cell_pair(yi, lower[1], inv_h[1], ny, periodic[1])
    z0, cz = half_cell_pair(zi, lower[2], inv_h[2], nz, periodic[2])
    split = x0 < 0 or x0 + cx > nx  # the x pair wraps around a periodic axis
    m = 0
    for oz in range(cz):
        iz = wrap(z0 + oz, nz)
        for oy in range(cy):
            iy = wrap(y0 + oy, ny)
            base = nx * (iy + ny * iz)
            if not split:
                s = cell_start[base + x0]
                e = cell_start[base + x0 + cx]
                runs[2 * m] = s  # written always, kept if not empty (no branch)
                runs[2 * m + 1] = e
                m += np.int64(e > s)
            else:
                for ox in range(cx):
                    ix = wrap(x0 + ox, nx)
                    s = cell_start[base + ix]
                    e = cell_start[base + ix + 1]
                    if e > s:
                        runs[2 * m] = s
                        runs[2 * m + 1] = e
                        m += 1
    return m


@njit(cache=True, inline="always")
def stencil_runs(xi, yi, zi, cell_start, lower, inv_h, dims, periodic, radius, runs):
    """The index ranges ``[runs[2k], runs[2k+1])`` into the grid's sorted
    order that hold every agent closer than ``radius`` µm (at most the grid's
    cutoff) to the point (xi, yi, zi); returns their number (<= STENCIL_RUNS).

    Visits the rows of cells (y, z) that the sphere of ``radius`` overlaps
    (one to three per axis), skips rows farther than ``radius`` and keeps, in
    each, only the x-cells within sqrt(radius^2 - gy^2 - gz^2) of xi (gy, gz:
    lower bounds of the distance to the row).  Ranges are listed in a fixed
    order (z, then y, then x)."""
    nx = dims[0]
    ny = dims[1]
    nz = dims[2]
    if radius * inv_h[0] <= 0.5 and radius * inv_h[1] <= 0.5 and radius * inv_h[2] <= 0.5:
        return block_runs(xi, yi, zi, cell_start, lower, inv_h, dims, periodic, runs)
    y0, cnty, wholey = axis_window(yi, radius, lower[1], inv_h[1], ny, periodic[1])
    z0, cntz, wholez = axis_window(zi, radius, lower[2], inv_h[2], nz, periodic[2])
    hy = 1.0 / inv_h[1]
    hz = 1.0 / inv_h[2]
    # the point's own cell (unwrapped like the window on periodic axes, clamped
    # like the binning on the others) and its place in it
    cy = own_cell(yi, lower[1], inv_h[1], ny, periodic[1])
    cz = own_cell(zi, lower[2], inv_h[2], nz, periodic[2])
    ry = yi - lower[1] - cy * hy
    rz = zi - lower[2] - cz * hz
    r2 = radius * radius
    m = 0
    for oz in range(cntz):
        iz = wrap(z0 + oz, nz)
        gz = 0.0 if wholez else face_gap(z0 + oz, cz, rz, hz)
        for oy in range(cnty):
            iy = wrap(y0 + oy, ny)
            gy = 0.0 if wholey else face_gap(y0 + oy, cy, ry, hy)
            w2 = r2 - gy * gy - gz * gz
            if w2 < 0.0:
                continue
            a1, b1, a2, b2 = x_segments(xi, math.sqrt(w2), lower[0], inv_h[0], nx, periodic[0])
            base = nx * (iy + ny * iz)
            s = cell_start[base + a1]
            e = cell_start[base + b1]
            if e > s:
                runs[2 * m] = s
                runs[2 * m + 1] = e
                m += 1
            if b2 > a2:
                s = cell_start[base + a2]
                e = cell_start[base + b2]
                if e > s:
                    runs[2 * m] = s
                    runs[2 * m + 1] = e
                    m += 1
    return m


@njit(cache=True, parallel=True)
def neighbour_lists(pos, n, cell_start, order, lower, inv_h, dims, length, periodic, cutoff, radius,
                    offsets, fill, nbr):
    """CSR neighbour lists (cell members are rows ``order[cell_start[c]:
    cell_start[c+1]]``): rows j != i closer than ``radius`` (µm, at most the
    grid's ``cutoff``).  With ``fill`` false, writes counts into
    ``offsets[1:]`` only; with ``fill`` true, ``offsets`` must hold the prefix
    sums and the rows are written into ``nbr`` in traversal order."""
    r2max = radius * radius
    nchunks = (n + SEARCH_CHUNK - 1) // SEARCH_CHUNK
    for c in prange(nchunks):
        runs = np.empty(2 * STENCIL_RUNS, dtype=np.int64)
        for i in range(c * SEARCH_CHUNK, min(n, (c + 1) * SEARCH_CHUNK)):
            xi = pos[i, 0]
            yi = pos[i, 1]
            zi = pos[i, 2]
            m = stencil_runs(xi, yi, zi, cell_start, lower, inv_h, dims, periodic, radius, runs)
            w = offsets[i] if fill else 0
            for r in range(m):
                for q in range(runs[2 * r], runs[2 * r + 1]):
                    j = order[q]
                    if j == i:
                        continue
                    dx = min_image(pos[j, 0] - xi, length[0], periodic[0])
                    dy = min_image(pos[j, 1] - yi, length[1], periodic[1])
                    dz = min_image(pos[j, 2] - zi, length[2], periodic[2])
                    if dx * dx + dy * dy + dz * dz < r2max:
                        if fill:
                            nbr[w] = j
                        w += 1
            if not fill:
                offsets[i + 1] = w


@njit(cache=True, parallel=True)
def largest_move(probe, same, now, then, start, axes, length, periodic, faces, width):
    """The MPI movement check in one pass: for each row ``now[k]`` of
    ``probe`` (µm, (n, 3)) that started at column ``then[k]`` of ``start``
    (µm, (len(axes), m): the start along each axis the ranks are cut
    along), its move = the largest |probe - start| over those axes (the
    shorter way round when ``periodic``) and its gap = the smallest
    distance of its start from the faces ``faces`` (µm, (len(axes), 2),
    NaN for a face no other rank shares); returns the largest move of an
    agent with gap < ``width`` + move (0 without one).  With ``same``,
    every row k of ``start`` instead, at its own row of ``probe``."""
    count = start.shape[1] if same else now.size
    nchunks = (count + 4095) // 4096
    best = np.zeros(max(nchunks, 1))
    for ch in prange(nchunks):
        most = 0.0
        for k in range(ch * 4096, min(count, (ch + 1) * 4096)):
            i = k if same else now[k]
            s = k if same else then[k]
            move = 0.0
            near = np.inf
            for c in range(axes.size):
                a = axes[c]
                x0 = start[c, s]
                d = abs(probe[i, a] - x0)
                if periodic:
                    d = min(d, length[a] - d)
                move = max(move, d)
                for f in range(2):
                    face = faces[c, f]
                    if face == face:  # a face shared with another rank
                        gap = abs(x0 - face)
                        if periodic:
                            gap = min(gap, length[a] - gap)
                        near = min(near, gap)
            if near < width + move:
                most = max(most, move)
        best[ch] = most
    return best.max()  # a maximum: the same whatever the chunks' order


@njit(cache=True)
def block_owners(pos, faces, dims, out):
    """The block of each position (n, 3) µm in a grid of ``dims`` blocks
    (row-major over x, y, z) whose inner faces along axis a are
    ``faces[a, :dims[a] - 1]`` (increasing): along each axis the number of
    faces at or below the coordinate (outside the box, the nearest block; a
    NaN counts as above every face)."""
    for i in range(pos.shape[0]):
        idx = 0
        for a in range(3):
            d = dims[a]
            if d > 1:
                x = pos[i, a]
                k = 0
                if x != x:
                    k = d - 1
                else:
                    while k < d - 1 and faces[a, k] <= x:
                        k += 1
                idx = idx * d + k
        out[i] = idx


@njit(cache=True, parallel=True)
def in_box(pos, n, lo, hi, length, periodic, out):
    """out[i] = 1 where position i (of the first ``n`` rows of ``pos``,
    µm) lies within [lo[a], hi[a]) along every axis a with lo[a] < hi[a]
    (the others are not tested), a periodic box's images at +-length[a]
    counting too; else 0."""
    for i in prange(n):
        inside = 1
        for a in range(3):
            if not lo[a] < hi[a]:
                continue
            x = pos[i, a]
            ok = lo[a] <= x < hi[a]
            if periodic and not ok:
                ok = (lo[a] <= x + length[a] < hi[a]) or (lo[a] <= x - length[a] < hi[a])
            if not ok:
                inside = 0
                break
        out[i] = inside


@njit(cache=True, parallel=True)
def mark_members(values, lo, hits):
    """hits[v - lo] = 1 for each v of ``values`` within [lo, lo + hits.size)
    (``values`` unique, so no two threads write one entry)."""
    span = hits.size
    for i in prange(values.size):
        k = values[i] - lo
        if 0 <= k < span:
            hits[k] = 1
