"""Uniform-grid neighbour search on the GPU: the GPU twin of
:mod:`biosim.kernels.cpu.grid`, with the same functions and arguments
(device arrays in place of numpy arrays; the grid description ``lower``,
``inv_h``, ``dims``, ``length``, ``periodic`` as host arrays of 3).

The canonical sort is FLAME GPU 2's spatial messaging (a histogram of the
agents per cell with integer atomics, an exclusive scan, a scatter into
slots taken with atomics), followed by a sort of each cell's run by uid,
so the output, ``order`` and ``cell_start``, is the canonical order (by
cell, then by uid): the same integers as the CPU's, whatever the block
size and the order in which the atomics landed.  Cell indices come from
the CPU module's own functions (``cell_coords``), compiled for the GPU.
"""
import numpy as np
from numba import cuda

from ..cpu import grid as _cpu
from ._launch import counter, exclusive_scan, fill, launch, portable, read, t3

cell_coords = portable(_cpu.cell_coords)


@cuda.jit
def _assign_cells(pos, n, lower, inv_h, dims, periodic, cell):
    i = cuda.grid(1)
    if i < n:
        ix, iy, iz = cell_coords(pos, i, lower, inv_h, dims, periodic)
        cell[i] = ix + dims[0] * (iy + dims[1] * iz)


def assign_cells(pos, n, lower, inv_h, dims, periodic, cell):
    """cell[i] = the grid cell of row i (x-fastest numbering)."""
    if n:
        _assign_cells[launch(n)](pos, int(n), t3(lower), t3(inv_h), t3(dims, int), t3(periodic, bool),
                                        cell)


@cuda.jit
def _count_invalid(pos, diam, types, n, ntypes, bad):
    i = cuda.grid(1)
    if i < n:
        d = diam[i]
        t = types[i]
        x = pos[i, 0]
        y = pos[i, 1]
        z = pos[i, 2]
        s = (x - x) + (y - y) + (z - z) + (d - d)
        if (s != s) or (not d > 0.0) or t < 0 or t >= ntypes:
            cuda.atomic.add(bad, 0, 1)


def count_invalid(pos, diam, types, n, ntypes):
    """Rows with a position that is not finite, a diameter not finite and
    > 0 µm, or a type code outside [0, ntypes) (see the CPU twin)."""
    bad = counter()
    if n:
        _count_invalid[launch(n)](pos, diam, types, int(n), int(ntypes), bad)
    return read(bad)


@cuda.jit
def _histogram(cell, n, counts):
    i = cuda.grid(1)
    if i < n:
        cuda.atomic.add(counts, cell[i], 1)


@cuda.jit
def _scatter(cell, uid, n, cursor, order, skey):
    i = cuda.grid(1)
    if i < n:
        j = cuda.atomic.add(cursor, cell[i], 1)
        order[j] = i
        skey[j] = uid[i]


@cuda.jit
def _uid_order_within_cells(cell_start, ncells, order, skey):
    """One thread per cell: insertion sort of its run by uid (runs are short;
    they come out of the scatter in the arbitrary order of the atomics)."""
    c = cuda.grid(1)
    if c < ncells:
        s = cell_start[c]
        e = cell_start[c + 1]
        for q in range(s + 1, e):
            key = skey[q]
            v = order[q]
            p = q - 1
            while p >= s and skey[p] > key:
                order[p + 1] = order[p]
                skey[p + 1] = skey[p]
                p -= 1
            order[p + 1] = v
            skey[p + 1] = key


@cuda.jit
def _count_moved(order, n, moved):
    q = cuda.grid(1)
    if q < n and order[q] != q:
        cuda.atomic.add(moved, 0, 1)


def canonical_sort(cell, uid, uid_bound, n, counts, block_counts, cell_start, order, skey):
    """Rows in the canonical order (by ``cell[:n]``, then by uid):
    ``order`` (rows in sorted order) and ``cell_start`` (ncells + 1 int64
    offsets).  ``counts`` is an int64 device scratch of ncells + 1 entries
    (``block_counts`` and ``uid_bound`` are the CPU twin's and unused);
    ``skey`` int64 scratch of n.  Returns the number of rows not at their
    own index (0 exactly when the rows are in canonical order)."""
    ncells = cell_start.size - 1
    n = int(n)
    fill(counts, 0, ncells + 1)
    if n:
        _histogram[launch(n)](cell, n, counts)
    exclusive_scan(counts, ncells + 1, cell_start)
    cursor = counts  # reused: the slots' cursors start at each cell's first entry
    _copy_i64[launch(ncells + 1)](cell_start, ncells + 1, cursor)
    if n == 0:
        return 0
    _scatter[launch(n)](cell, uid, n, cursor, order, skey)
    _uid_order_within_cells[launch(ncells)](cell_start, ncells, order, skey)
    moved = counter()
    _count_moved[launch(n)](order, n, moved)
    return read(moved)


@cuda.jit
def _copy_i64(src, n, dst):
    i = cuda.grid(1)
    if i < n:
        dst[i] = src[i]


@cuda.jit
def _gather_rows(src, order, n, dst):
    i = cuda.grid(1)
    if i < n:
        j = order[i]
        for k in range(src.shape[1]):
            dst[i, k] = src[j, k]


def gather_rows(src, order, n, dst):
    """dst[i, :] = src[order[i], :] for i < n (2D device arrays)."""
    if n:
        _gather_rows[launch(n)](src, order, int(n), dst)


@cuda.jit
def _copy_rows(src, n, dst):
    i = cuda.grid(1)
    if i < n:
        for k in range(src.shape[1]):
            dst[i, k] = src[i, k]


def copy_rows(src, n, dst):
    """dst[i, :] = src[i, :] for i < n (2D device arrays)."""
    if n:
        _copy_rows[launch(n)](src, int(n), dst)


@cuda.jit
def _sorted_columns(pos, diam, types, order, n, cols):
    q = cuda.grid(1)
    nc = cols.shape[0]
    if q < n:
        j = order[q]
        cols[0, q] = pos[j, 0]
        cols[1, q] = pos[j, 1]
        cols[2, q] = pos[j, 2]
        if nc > 3:
            cols[3, q] = diam[j]
        if nc > 4:
            cols[4, q] = types[j]


def sorted_columns(pos, diam, types, order, n, cols):
    """Rows 0-2 of ``cols``: the positions (µm) in the grid's sort order;
    row 3 the diameters, row 4 the types (as floats) when present."""
    if n:
        _sorted_columns[launch(n)](pos, diam, types, order, int(n), cols)


@cuda.jit
def _arange(a, n):
    i = cuda.grid(1)
    if i < n:
        a[i] = i


def arange(a, n):
    """a[i] = i for i < n (the identity order after a reorder)."""
    if n:
        _arange[launch(n)](a, int(n))


@cuda.jit
def _mark_survivors(uid, n, dead, ndead, place):
    """place[i] = 1 if uid[i] is not in the sorted ``dead`` (binary search), else 0."""
    i = cuda.grid(1)
    if i < n:
        u = uid[i]
        lo = 0
        hi = ndead
        while lo < hi:
            mid = (lo + hi) // 2
            if dead[mid] < u:
                lo = mid + 1
            else:
                hi = mid
        place[i] = 0 if (lo < ndead and dead[lo] == u) else 1


def survivors(uid, n, dead):
    """Where the rows whose uid is not in ``dead`` (a sorted int64 device
    array) go when the dead are removed: (place, kept), ``place[i]`` the new
    row of a survivor i (an exclusive scan of the survival flags) and
    ``place[n]`` = kept."""
    n = int(n)
    place = cuda.device_array(n + 1, dtype=np.int64)
    if n:
        _mark_survivors[launch(n)](uid, n, dead, int(dead.size), place)
    kept = exclusive_scan(place, n, place) if n else 0
    fill(place[n:], kept, 1)
    return place, kept


@cuda.jit
def _compact_rows(src, place, n, dst):
    i = cuda.grid(1)
    if i < n:
        j = place[i]
        if place[i + 1] > j:  # a survivor
            for k in range(src.shape[1]):
                dst[j, k] = src[i, k]


def compact_rows(src, place, n, dst):
    """dst[place[i], :] = src[i, :] for the survivors i < n (see survivors)."""
    if n:
        _compact_rows[launch(n)](src, place, int(n), dst)
