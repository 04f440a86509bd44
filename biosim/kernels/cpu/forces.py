"""Sphere-sphere forces and the position updates.

The pair laws (the value is a velocity-like force: the update divides it by
a damping or a mass; F > 0 pushes the two cells apart):

* soft sphere: s = (d_i + d_j) / 2; F = rep (1 - r/s) for r < s, minus
  adh (1 - r/(lam s)) for r < lam s.  params = (rep, adh, lam).
* PhysiCell: R = r_i + r_j; F = rep (1 - r/R)^2 for r < R, minus
  adh (1 - r/(lam R))^2 for r < lam R.  params = (rep, adh, lam).
* BioDynaMo: radii inflated by ``infl``; delta = r_i + r_j - r; for delta > 0,
  F = k delta - gamma sqrt(rr delta), rr = r_i r_j / (r_i + r_j).
  params = (k, gamma, infl).

Every law vanishes beyond a finite reach; the grid cutoff covers it for the
largest diameter.  Forces are computed for chunks of cells along x: the
agents around a chunk are gathered once from the grid's sorted columns
(positions and diameters in cell order, contiguous) into a per-thread
buffer, in column blocks, so that every cell's 3 x 3 x (2k+1) neighbourhood
(k = 1, or 2 where the grid halves its x-cells) is one contiguous run of it,
and each agent sums over that run in one long loop, compiled with
floating-point reassociation so it vectorises.  In periodic boxes the
gather writes the cells across a periodic face as their images, shifted by
the box length, so the loop needs no minimum-image rounding per pair
(except on a periodic axis of under 3 cells).  Each agent's sum is computed
by one thread over the candidates in the canonical order (block by block
along x, then by row, then by uid within each cell), so results are
bit-identical for any thread count and any arrangement of the table's rows
on a given machine, and equal a plain double loop to ~1e-15 relative.
Coincident centres (r < 1e-8 µm) get a direction drawn from the
counter-based generator keyed by the pair's uids, opposite for the two cells
(BioDynaMo's law uses its U(-3, 3)^3 random force instead), added by
:func:`coincident_pushes`, a kernel compiled without fast-math so that the
draws keep their bits.
"""
import math

import numpy as np
from numba import get_thread_id, njit, prange

from .grid import SORTED_PAD, cell_coords, ffloor, min_image, stencil_axis, wrap
from .rng import uniform, unit_vector

_COINCIDENT_STREAM = np.int64(0x5EED0C01)


# Branch-free laws (max(0, .) instead of ifs) so the neighbour loop vectorises;
# each is exactly zero beyond its reach.
@njit(cache=True, inline="always")
def soft_sphere_law(r, di, dj, p0, p1, p2):
    s = 0.5 * (di + dj)
    return p0 * max(0.0, 1.0 - r / s) - p1 * max(0.0, 1.0 - r / (p2 * s))


@njit(cache=True, inline="always")
def physicell_law(r, di, dj, p0, p1, p2):
    s = 0.5 * (di + dj)
    t = max(0.0, 1.0 - r / s)
    a = max(0.0, 1.0 - r / (p2 * s))
    return p0 * t * t - p1 * a * a


# The same laws divided by r, from r^2 (what the neighbour loop needs: the force
# vector is (f / r) times the separation), each with one square root and one
# division: 1 / (r s) gives both 1 / r = s / (r s) and r / s = r^2 / (r s), and the
# division and square root units bound the vectorised loop.  Valid for r2 > 0; the
# caller zeroes coincident pairs.
@njit(cache=True, inline="always")
def soft_sphere_over_r(r2, di, dj, p0, p1, p2):
    # p1 max(0, 1/r - 1/(p2 s)) = (p1 / p2) max(0, p2 s - r) / (r s)
    s = 0.5 * (di + dj)
    r = math.sqrt(r2)
    return (p0 * max(0.0, s - r) - (p1 / p2) * max(0.0, p2 * s - r)) / (r * s)


@njit(cache=True, inline="always")
def physicell_over_r(r2, di, dj, p0, p1, p2):
    s = 0.5 * (di + dj)
    z = 1.0 / (math.sqrt(r2) * s)
    x = r2 * z  # r / s
    t = max(0.0, 1.0 - x)
    a = max(0.0, 1.0 - x / p2)
    return (p0 * t * t - p1 * a * a) * (s * z)


@njit(cache=True, inline="always")
def physicell_cell_over_r(r2, s, S, rep, adh):
    """PhysiCell's law with each pair's own values: R = s = (d_i + d_j) / 2,
    adhesion reach S = (lam_i d_i + lam_j d_j) / 2, repulsion ``rep`` =
    sqrt(c_i c_j) and adhesion ``adh`` = sqrt(a_i a_j) times the pair's
    affinity; one square root and one division (1 / (r s S))."""
    z = 1.0 / (math.sqrt(r2) * s * S)
    t = max(0.0, 1.0 - r2 * S * z)  # 1 - r / s
    a = max(0.0, 1.0 - r2 * s * z)  # 1 - r / S
    return (rep * t * t - adh * a * a) * (s * S * z)


@njit(cache=True, inline="always")
def biodynamo_over_r(r2, di, dj, p0, p1, p2):
    ri = 0.5 * di + p2
    rj = 0.5 * dj + p2
    sr = ri + rj
    r = math.sqrt(r2)
    z = 1.0 / (r * sr)
    delta = max(0.0, sr - r)
    return (p0 * delta - p1 * math.sqrt((ri * rj) * (r * z) * delta)) * (sr * z)


@njit(cache=True, inline="always")
def _open(d, length):
    return d


@njit(cache=True, inline="always")
def _wrap(d, length):
    return d - length * np.rint(d / length)


_TINY2 = 1e-16  # (1e-8 µm)^2: centres closer than this count as coincident
# sorted positions beyond this are cylinders hidden from the sphere laws (biosim.neurites: 1e150 and more,
# where every law is exactly zero); their own rows get no sphere force
HIDDEN = 1e149
_FAST = {"reassoc", "contract", "nsz", "arcp"}  # no nnan/ninf: NaN semantics kept


X_CHUNK = 32  # cells along x per work item of the neighbour loops


@njit(cache=True, inline="always")
def x_reach(cutoff, inv_h):
    """k: how many cells either side along x a cutoff (µm) reaches."""
    return np.int64(math.ceil(cutoff * inv_h[0] - 1e-9))


@njit(cache=True, inline="always")
def x_chunks(nx, cutoff, inv_h, periodic_x):
    """(k, number of x-chunks per row of cells, whole): k from
    :func:`x_reach`; ``whole`` when the periodic x axis has at most 2k
    cells, so that every cell's x-neighbourhood is the whole row."""
    k = x_reach(cutoff, inv_h)
    return k, (nx + X_CHUNK - 1) // X_CHUNK, periodic_x and nx <= 2 * k


COPY = 8  # entries per fixed-width copy of a cell's run in gather_blocks (at most SORTED_PAD)


@njit(cache=True, inline="always")
def _image_shift(on, u, dims, length):
    """Shift (µm) of the periodic image of unwrapped cell index ``u`` (one
    period at most outside [0, dims)): -length below, +length above, else 0."""
    if not on:
        return 0.0
    if u < 0:
        return -length
    if u >= dims:
        return length
    return 0.0


@njit(cache=True, inline="always")
def images_apply(periodic, dims, whole):
    """Whether :func:`gather_blocks` can write periodic images (``images``):
    some axis is periodic, and none of the periodic ones is ``whole`` (x) or
    under 3 cells (y, z), where a cell's neighbourhood holds each cell once
    and the nearest image depends on the pair, not on the block."""
    if not (periodic[0] or periodic[1] or periodic[2]):
        return False
    if periodic[0] and whole:
        return False
    return not ((periodic[1] and dims[1] < 3) or (periodic[2] and dims[2] < 3))


@njit(cache=True, inline="always")
def gather_blocks(x0, x1, cy, cz, nx, ny, nz, k, whole, periodic, cell_start, cols, bx, by, bz, bd, bt, bstart,
                  with_diam, with_type, scale, length, images, nextra, ex):
    """Gather the neighbourhoods of cells x0..x1-1 of the row (cy, cz) at once.

    Column block x holds the agents of the cells (x, y', z') with y', z'
    next to cy, cz (3 x 3 rows), in a fixed order; blocks x0-k .. x1+k-1 are
    copied one after the other into the buffers (positions times ``scale``
    into bx, by, bz; with the flags diameters into bd and types into bt)
    from the sorted columns ``cols`` (:func:`grid.sorted_columns`), and
    ``bstart[b]`` is where local block b starts.  The neighbourhood of cell
    cx is then the contiguous run of blocks cx-k .. cx+k
    (:func:`cell_window`), so each agent is copied about 2k+1 times less
    often than when every cell gathers its own neighbourhood.  Blocks outside a closed box are empty;
    with ``whole`` the blocks are x = 0..nx-1, once each.

    A cell's run is copied COPY entries at a time (whole vector moves; the
    entries past its end are overwritten by the next run or lie beyond the
    gathered data), with unsigned indices: numba's negative-index handling
    of signed ones kept these copies scalar and about twice as slow.

    With ``images`` (periodic axes only, none of them ``whole`` or shorter
    than 3 cells: see :func:`images_apply`), blocks and rows across a
    periodic face are written as their periodic images, shifted by the box
    ``length`` (µm), so that plain differences from the agents of the chunk
    are the minimum-image ones and the loops need no rounding per pair.

    ``nextra`` more rows of ``cols`` from row 5 on (per-cell values) are
    copied alongside, into the rows of ``ex``."""
    loy, cnty = stencil_axis(cy, ny, periodic[1])
    loz, cntz = stencil_axis(cz, nz, periodic[2])
    nb = nx if whole else x1 - x0 + 2 * k
    xs = cols[0]
    ys = cols[1]
    zs = cols[2]
    ds = cols[3 if with_diam else 0]
    ts = cols[4 if with_type else 0]
    w = np.uint64(COPY)
    m = np.uint64(0)
    for b in range(nb):
        bstart[b] = np.int64(m)
        xu = b if whole else x0 - k + b  # unwrapped
        x = xu
        if periodic[0]:
            x = wrap(xu, nx)
        elif x < 0 or x >= nx:
            continue
        sx = _image_shift(images and periodic[0], xu, nx, length[0])
        for oz in range(cntz):
            iz = wrap(loz + oz, nz)  # a compare, not an integer division
            sz = _image_shift(images and periodic[2], loz + oz - nz, nz, length[2])
            for oy in range(cnty):
                cell = x + nx * (wrap(loy + oy, ny) + ny * iz)
                sy = _image_shift(images and periodic[1], loy + oy - ny, ny, length[1])
                s = np.uint64(cell_start[cell])
                cnt = np.uint64(cell_start[cell + 1]) - s
                base = np.uint64(0)
                while base < cnt:
                    for t in range(COPY):
                        bx[m + base + np.uint64(t)] = (xs[s + base + np.uint64(t)] + sx) * scale
                    for t in range(COPY):
                        by[m + base + np.uint64(t)] = (ys[s + base + np.uint64(t)] + sy) * scale
                    for t in range(COPY):
                        bz[m + base + np.uint64(t)] = (zs[s + base + np.uint64(t)] + sz) * scale
                    if with_diam:
                        for t in range(COPY):
                            bd[m + base + np.uint64(t)] = ds[s + base + np.uint64(t)]
                    if with_type:
                        for t in range(COPY):
                            bt[m + base + np.uint64(t)] = ts[s + base + np.uint64(t)]
                    for e in range(nextra):
                        for t in range(COPY):
                            ex[e, m + base + np.uint64(t)] = cols[5 + e, s + base + np.uint64(t)]
                    base += w
                m += cnt
    bstart[nb] = np.int64(m)


@njit(cache=True, inline="always")
def chunk_of(item, nxc, nx, cell_start):
    """Work item ``item`` of a neighbour loop: (row of cells, first x, end x,
    whether its cells hold no agent)."""
    row = item // nxc
    x0 = (item % nxc) * X_CHUNK
    x1 = min(nx, x0 + X_CHUNK)
    return row, x0, x1, cell_start[row * nx + x0] == cell_start[row * nx + x1]


@njit(cache=True, inline="always")
def _all_hidden(cols, order, first, end, force, flag, need):
    """Whether the sorted agents first..end-1 are all hidden (neurite
    elements, moved past ``HIDDEN`` by the neurites' hide_cylinders) or not
    needed (``need``, one uint8 per row, 0 where nothing reads the row's
    force; empty: every row is needed); then their forces and flags are set
    to 0.  The first visible needed agent ends the scan (at once in a
    simulation without neurites, in one process)."""
    for q in range(first, end):
        if cols[0, q] <= HIDDEN and (need.size == 0 or need[order[q]]):
            return False
    for q in range(first, end):
        i = order[q]
        flag[i] = 0
        force[i, 0] = 0.0
        force[i, 1] = 0.0
        force[i, 2] = 0.0
    return True


@njit(cache=True, inline="always")
def cell_window(bstart, cell_start, row, cx, x0, nx, k, whole):
    """(first, end) sorted position of the agents of cell (cx, row), and
    [lo, hi) of its neighbourhood in the buffers gathered by
    :func:`gather_blocks`.  Loop over slices ``bx[lo:hi]`` from 0: a loop
    that starts at ``lo`` inside the buffer compiles to code about 1.6x
    slower."""
    c = row * nx + cx
    if whole:
        return cell_start[c], cell_start[c + 1], bstart[0], bstart[nx]
    b = cx - x0
    return cell_start[c], cell_start[c + 1], bstart[b], bstart[b + 2 * k + 1]


@njit(cache=True, parallel=True)
def gather_need(cell_start, dims, inv_h, cutoff, periodic):
    """The most agents :func:`gather_blocks` copies for any one chunk (row of
    cells and x range) of the neighbour loops: per row of cells, the agents
    of the 3 x 3 rows around it summed per x, then over each chunk's blocks
    (wrapped on a periodic x axis, clipped on a closed one)."""
    nx = dims[0]
    ny = dims[1]
    nz = dims[2]
    k, nxc, whole = x_chunks(nx, cutoff, inv_h, periodic[0])
    best = np.zeros(ny * nz, dtype=np.int64)
    for row in prange(ny * nz):
        cy = row % ny
        cz = row // ny
        loy, cnty = stencil_axis(cy, ny, periodic[1])
        loz, cntz = stencil_axis(cz, nz, periodic[2])
        col = np.zeros(nx, dtype=np.int64)
        for oz in range(cntz):
            iz = wrap(loz + oz, nz)
            for oy in range(cnty):
                base = nx * (wrap(loy + oy, ny) + ny * iz)
                for x in range(nx):
                    col[x] += cell_start[base + x + 1] - cell_start[base + x]
        m = 0
        for c in range(nxc):
            x0 = c * X_CHUNK
            x1 = min(nx, x0 + X_CHUNK)
            nb = nx if whole else x1 - x0 + 2 * k
            s = 0
            for b in range(nb):
                x = b if whole else x0 - k + b
                if periodic[0]:
                    x = wrap(x, nx)
                elif x < 0 or x >= nx:
                    continue
                s += col[x]
            m = max(m, s)
        best[row] = m
    return best.max() if best.size else 0


@njit(cache=True, inline="always")
def _room(blocks, nx, gathered):
    """Buffer row length for ``gathered`` agents: at least the chunk's block
    offsets, plus the overrun of the fixed-width copies and of the loops'
    last whole vector."""
    return max(max(blocks, nx) + 1, gathered) + 2 * SORTED_PAD


# above this many entries per buffer row the bound of gather_capacity is
# replaced by the exact need (a pass over the cells; only crowded grids pay)
EXACT_ROOM = 1 << 18


@njit(cache=True)
def gather_capacity(cell_start, dims, inv_h, cutoff, n):
    """(room, occupancy): room per buffer row for one chunk's gathered
    blocks, and at least for the chunk's block offsets; the most agents in
    one cell.  A closed box gathers each cell at most once per chunk (so at
    most n agents); a periodic x axis shorter than the chunk's blocks
    repeats cells, up to ceil(blocks / nx) times."""
    occ = 0
    for c in range(cell_start.size - 1):
        occ = max(occ, cell_start[c + 1] - cell_start[c])
    k = x_reach(cutoff, inv_h)
    nx = dims[0]
    blocks = X_CHUNK + 2 * k
    repeats = (blocks + nx - 1) // nx
    return _room(blocks, nx, min(9 * blocks * occ, n * repeats)), occ


def gather_room(cell_start, dims, inv_h, cutoff, n, periodic):
    """(room, occupancy) as :func:`gather_capacity`, with the room cut to the
    exact need when the bound exceeds EXACT_ROOM (one crowded cell must not
    size every thread's buffers for n agents)."""
    room, occ = gather_capacity(cell_start, dims, inv_h, cutoff, n)
    if room > EXACT_ROOM:
        blocks = X_CHUNK + 2 * x_reach(cutoff, inv_h)
        room = min(room, _room(blocks, dims[0], gather_need(cell_start, dims, inv_h, cutoff, periodic)))
    return room, occ


@njit(inline="always")
def _window_sums(law_over_r, mi, typed, m, mr, wx, wy, wz, wd, wt, xi, yi, zi, di, trow, l0, l1, l2, p0, p1, p2):
    """Force on the agent at (xi, yi, zi) of diameter di from the first m
    entries of a gathered window (loop over mr >= m, a whole number of
    vectors, the rest masked out), and how many of them coincide with it
    (r < 1e-8 µm: itself, and rarely another)."""
    fx = 0.0
    fy = 0.0
    fz = 0.0
    nc = 0
    for q in range(mr):
        dx = mi(xi - wx[q], l0)
        dy = mi(yi - wy[q], l1)
        dz = mi(zi - wz[q], l2)
        r2 = dx * dx + dy * dy + dz * dz
        w = law_over_r(r2, di, wd[q], p0, trow[np.int64(wt[q])] if typed else p1, p2)
        inside = q < m
        w = w if (r2 > _TINY2) & inside else 0.0
        nc += (r2 <= _TINY2) & inside
        fx += w * dx
        fy += w * dy
        fz += w * dz
    return fx, fy, fz, nc


@njit(inline="always")
def _window_sums_cell(mi, m, mr, wx, wy, wz, wd, wt, wr, wa, wl, xi, yi, zi, di, ri, ai, li, trow, l0, l1, l2):
    """:func:`_window_sums` of PhysiCell's law with per-cell values: the
    gathered wr = sqrt(repulsion), wa = sqrt(adhesion), wl = adhesion_range
    x diameter of each candidate, (ri, ai, li) the agent's own, and the
    pair's affinity ``trow[type_j]``."""
    fx = 0.0
    fy = 0.0
    fz = 0.0
    nc = 0
    for q in range(mr):
        dx = mi(xi - wx[q], l0)
        dy = mi(yi - wy[q], l1)
        dz = mi(zi - wz[q], l2)
        r2 = dx * dx + dy * dy + dz * dz
        w = physicell_cell_over_r(r2, 0.5 * (di + wd[q]), 0.5 * (li + wl[q]), ri * wr[q],
                                  ai * wa[q] * trow[np.int64(wt[q])])
        inside = q < m
        w = w if (r2 > _TINY2) & inside else 0.0
        nc += (r2 <= _TINY2) & inside
        fx += w * dx
        fy += w * dy
        fz += w * dz
    return fx, fy, fz, nc


@njit(inline="always")
def _forces(law_over_r, mi, typed, params, types, table, n, cell_start, order, lower, inv_h, dims, length, periodic,
            cutoff, cols, buf, force, flag, need, cellwise=False):
    """Forces chunk by chunk (X_CHUNK cells of one row along x): the positions
    and diameters around the chunk are gathered from the sorted columns
    ``cols`` (:func:`grid.sorted_columns`, with diameters, and types when
    ``typed``) into a per-thread buffer (structure of arrays,
    :func:`gather_blocks`), then each agent sums over
    its cell's neighbourhood, a contiguous run of it, in one long vectorised
    loop.
    With ``typed``, the second law parameter of a pair is
    ``table[types[i], types[j]]`` (type-dependent adhesion) instead of
    ``params[1]``.  In a periodic box (``mi`` the minimum image) the gather
    writes periodic images where :func:`images_apply` allows, so the loop
    takes plain differences, as in a closed box; elsewhere it rounds every
    pair to the minimum image.  Coincident centres (r < 1e-8 µm) add
    nothing here: ``flag[i]`` is set where another centre coincides with
    row i's, and :func:`coincident_pushes` adds their pushes, outside
    fast-math.

    With ``cellwise`` (PhysiCell's law with per-cell values), rows 5-7 of
    ``cols`` hold each agent's sqrt(repulsion), sqrt(adhesion) and
    adhesion_range x diameter (:func:`sorted_cell_values`), gathered into
    rows 6-8 of ``buf``, and ``table`` holds the pairs' affinities."""
    p0 = params[0]
    p1 = params[1]
    p2 = params[2]
    l0 = length[0]
    l1 = length[1]
    l2 = length[2]
    nx = dims[0]
    ny = dims[1]
    nz = dims[2]
    k, nxc, whole = x_chunks(nx, cutoff, inv_h, periodic[0])
    # periodic images written by the gather where the grid allows, else the minimum image per pair
    images = images_apply(periodic, dims, whole)
    wrapped = (periodic[0] or periodic[1] or periodic[2]) and not images
    for item in prange(ny * nz * nxc):
        row, x0, x1, empty = chunk_of(item, nxc, nx, cell_start)
        if empty:
            continue
        if _all_hidden(cols, order, cell_start[row * nx + x0], cell_start[row * nx + x1], force, flag, need):
            continue  # only neurite elements or rows not needed here: no gather
        tid = get_thread_id()
        bx = buf[tid, 0]
        by = buf[tid, 1]
        bz = buf[tid, 2]
        bd = buf[tid, 3]
        bt = buf[tid, 4]
        bstart = buf[tid, 5].view(np.int64)
        ex = buf[tid, 6:9 if cellwise else 6]
        gather_blocks(x0, x1, row % ny, row // ny, nx, ny, nz, k, whole, periodic, cell_start, cols, bx, by, bz,
                      bd, bt, bstart, True, typed, 1.0, length, images, 3 if cellwise else 0, ex)
        for cx in range(x0, x1):
            sa, ea, lo, hi = cell_window(bstart, cell_start, row, cx, x0, nx, k, whole)
            if sa == ea:
                continue
            m = hi - lo
            mr = (m + 15) & -16  # whole vectors: entries past m are masked out, not left to a scalar tail
            wx = bx[lo:lo + mr]
            wy = by[lo:lo + mr]
            wz = bz[lo:lo + mr]
            wd = bd[lo:lo + mr]
            wt = bt[lo:lo + mr]
            if cellwise:
                wr = ex[0, lo:lo + mr]
                wa = ex[1, lo:lo + mr]
                wl = ex[2, lo:lo + mr]
            for qi in range(sa, ea):
                i = order[qi]
                xi = cols[0, qi]
                if xi > HIDDEN or (need.size and not need[i]):  # a neurite element (its forces are the
                    # neurites' kernels'), or a row whose force nothing reads (an MPI rank's far aura)
                    flag[i] = 0
                    force[i, 0] = 0.0
                    force[i, 1] = 0.0
                    force[i, 2] = 0.0
                    continue
                yi = cols[1, qi]
                zi = cols[2, qi]
                di = cols[3, qi]
                trow = table[types[i]] if typed else table[0]
                if cellwise:
                    if wrapped:
                        fx, fy, fz, nc = _window_sums_cell(mi, m, mr, wx, wy, wz, wd, wt, wr, wa, wl, xi, yi, zi,
                                                           di, cols[5, qi], cols[6, qi], cols[7, qi], trow, l0, l1,
                                                           l2)
                    else:
                        fx, fy, fz, nc = _window_sums_cell(_open, m, mr, wx, wy, wz, wd, wt, wr, wa, wl, xi, yi,
                                                           zi, di, cols[5, qi], cols[6, qi], cols[7, qi], trow, l0,
                                                           l1, l2)
                elif wrapped:  # minimum image per pair: a periodic axis of under 3 cells
                    fx, fy, fz, nc = _window_sums(law_over_r, mi, typed, m, mr, wx, wy, wz, wd, wt, xi, yi, zi, di,
                                                  trow, l0, l1, l2, p0, p1, p2)
                else:
                    fx, fy, fz, nc = _window_sums(law_over_r, _open, typed, m, mr, wx, wy, wz, wd, wt, xi, yi, zi,
                                                  di, trow, l0, l1, l2, p0, p1, p2)
                flag[i] = nc > 1  # another centre coincides with this one (rare): coincident_pushes
                force[i, 0] = fx
                force[i, 1] = fy
                force[i, 2] = fz

# One compiled kernel per (law, boundary, typed adhesion), all cached; the arguments
# are (params, types, table, n, cell_start, order, lower, inv_h, dims, length,
# periodic, cutoff, cols, buf, force, flag), ``buf`` a (threads, 6, gather_capacity(...))
# float64 scratch (row 5: block offsets), ``table`` the (ntypes, ntypes) adhesion table
# of the typed kernels (ignored by the others), ``flag`` one uint8 per row:
# force[i] = sum of pair forces on row i of a cell-sorted table, coincident pairs
# left to coincident_pushes.
@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def soft_sphere_forces(params, types, table, n, cell_start, order, lower, inv_h,
                       dims, length, periodic, cutoff, cols, buf, force, flag, need):
    _forces(soft_sphere_over_r, _open, False, params, types, table, n, cell_start, order, lower, inv_h, dims, length,
            periodic, cutoff, cols, buf, force, flag, need)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def soft_sphere_forces_periodic(params, types, table, n, cell_start, order, lower, inv_h,
                                dims, length, periodic, cutoff, cols, buf, force, flag, need):
    _forces(soft_sphere_over_r, _wrap, False, params, types, table, n, cell_start, order, lower, inv_h, dims, length,
            periodic, cutoff, cols, buf, force, flag, need)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def soft_sphere_typed_forces(params, types, table, n, cell_start, order, lower, inv_h,
                             dims, length, periodic, cutoff, cols, buf, force, flag, need):
    _forces(soft_sphere_over_r, _open, True, params, types, table, n, cell_start, order, lower, inv_h, dims, length,
            periodic, cutoff, cols, buf, force, flag, need)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def soft_sphere_typed_forces_periodic(params, types, table, n, cell_start, order, lower, inv_h,
                                      dims, length, periodic, cutoff, cols, buf, force, flag, need):
    _forces(soft_sphere_over_r, _wrap, True, params, types, table, n, cell_start, order, lower, inv_h, dims, length,
            periodic, cutoff, cols, buf, force, flag, need)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def physicell_forces(params, types, table, n, cell_start, order, lower, inv_h,
                     dims, length, periodic, cutoff, cols, buf, force, flag, need):
    _forces(physicell_over_r, _open, False, params, types, table, n, cell_start, order, lower, inv_h, dims, length,
            periodic, cutoff, cols, buf, force, flag, need)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def physicell_forces_periodic(params, types, table, n, cell_start, order, lower, inv_h,
                              dims, length, periodic, cutoff, cols, buf, force, flag, need):
    _forces(physicell_over_r, _wrap, False, params, types, table, n, cell_start, order, lower, inv_h, dims, length,
            periodic, cutoff, cols, buf, force, flag, need)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def physicell_typed_forces(params, types, table, n, cell_start, order, lower, inv_h,
                           dims, length, periodic, cutoff, cols, buf, force, flag, need):
    _forces(physicell_over_r, _open, True, params, types, table, n, cell_start, order, lower, inv_h, dims, length,
            periodic, cutoff, cols, buf, force, flag, need)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def physicell_typed_forces_periodic(params, types, table, n, cell_start, order, lower, inv_h,
                                    dims, length, periodic, cutoff, cols, buf, force, flag, need):
    _forces(physicell_over_r, _wrap, True, params, types, table, n, cell_start, order, lower, inv_h, dims, length,
            periodic, cutoff, cols, buf, force, flag, need)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def biodynamo_forces(params, types, table, n, cell_start, order, lower, inv_h,
                     dims, length, periodic, cutoff, cols, buf, force, flag, need):
    _forces(biodynamo_over_r, _open, False, params, types, table, n, cell_start, order, lower, inv_h, dims, length,
            periodic, cutoff, cols, buf, force, flag, need)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def biodynamo_forces_periodic(params, types, table, n, cell_start, order, lower, inv_h,
                              dims, length, periodic, cutoff, cols, buf, force, flag, need):
    _forces(biodynamo_over_r, _wrap, False, params, types, table, n, cell_start, order, lower, inv_h, dims, length,
            periodic, cutoff, cols, buf, force, flag, need)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def physicell_cell_forces(params, types, table, n, cell_start, order, lower, inv_h,
                          dims, length, periodic, cutoff, cols, buf, force, flag, need):
    _forces(physicell_over_r, _open, True, params, types, table, n, cell_start, order, lower, inv_h, dims, length,
            periodic, cutoff, cols, buf, force, flag, need, True)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def physicell_cell_forces_periodic(params, types, table, n, cell_start, order, lower, inv_h,
                                   dims, length, periodic, cutoff, cols, buf, force, flag, need):
    _forces(physicell_over_r, _wrap, True, params, types, table, n, cell_start, order, lower, inv_h, dims, length,
            periodic, cutoff, cols, buf, force, flag, need, True)


FORCE_KERNELS = {  # (law, periodic, typed adhesion)
    ("soft_sphere", False, False): soft_sphere_forces,
    ("soft_sphere", True, False): soft_sphere_forces_periodic,
    ("soft_sphere", False, True): soft_sphere_typed_forces,
    ("soft_sphere", True, True): soft_sphere_typed_forces_periodic,
    ("physicell", False, False): physicell_forces,
    ("physicell", True, False): physicell_forces_periodic,
    ("physicell", False, True): physicell_typed_forces,
    ("physicell", True, True): physicell_typed_forces_periodic,
    ("biodynamo", False, False): biodynamo_forces,
    ("biodynamo", True, False): biodynamo_forces_periodic,
    ("physicell_cell", False, True): physicell_cell_forces,  # per-cell values, table: the pairs' affinities
    ("physicell_cell", True, True): physicell_cell_forces_periodic,
}



LAW_CODES = {"soft_sphere": 0, "physicell": 1, "biodynamo": 2, "physicell_cell": 3}


@njit(cache=True, inline="always")
def cell_value(types, i, which, table, driven, rule):
    """Row i's PhysiCell mechanics value ``which`` (0 repulsion, 1 adhesion,
    2 adhesion_range): its rule column where a rule drives it for the row's
    type, else its type's value."""
    ti = types[i]
    return rule[i] if driven[which, ti] else table[which, ti]


@njit(cache=True, parallel=True)
def cell_mechanics(types, diam, n, table, driven, rule_rep, rule_adh, rule_lam, out):
    """out[i] = (sqrt(repulsion), sqrt(adhesion), adhesion_range x diameter)
    of row i (repulsion and adhesion in µm/min, the range a multiple of the
    contact distance, so the last in µm): ``table`` (3, ntypes) holds each
    type's values, ``driven`` (3, ntypes) where a rule column (``rule_*``,
    one value per row; any array where nothing is driven) replaces them.
    Returns how many rows hold a value that is not finite, a negative
    strength or a range below 1 (those rows' values are left as they are)."""
    bad = 0
    for i in prange(n):
        rep = cell_value(types, i, 0, table, driven, rule_rep)
        adh = cell_value(types, i, 1, table, driven, rule_adh)
        lam = cell_value(types, i, 2, table, driven, rule_lam)
        if not (rep >= 0.0 and adh >= 0.0 and lam >= 1.0 and rep < math.inf and adh < math.inf
                and lam < math.inf):
            bad += 1
            continue
        out[i, 0] = math.sqrt(rep)
        out[i, 1] = math.sqrt(adh)
        out[i, 2] = lam * diam[i]
    return bad


@njit(cache=True, parallel=True)
def sorted_cell_values(values, order, n, cols):
    """Rows 5-7 of the grid's sorted columns ``cols``: the per-cell values of
    :func:`cell_mechanics` in the sort order (the SORTED_PAD entries after n
    zeroed)."""
    for q in prange(n):
        j = order[q]
        cols[5, q] = values[j, 0]
        cols[6, q] = values[j, 1]
        cols[7, q] = values[j, 2]
    for c in range(5, 8):
        for q in range(n, n + SORTED_PAD):
            cols[c, q] = 0.0


@njit(cache=True, inline="always")
def coincident_push(law, ui, uj, di, dj, p0, p1, p2, seed, step):
    """The push on the agent of uid ``ui`` from one whose centre coincides
    with its own (uid ``uj``): a direction drawn from the counter-based
    generator keyed by the pair's uids, opposite for the two; BioDynaMo's law
    (``law`` 2) pushes with a U(-3, 3)^3 force, the others (0 soft sphere,
    1 PhysiCell) with the law at r = 0.  Shared by the CPU and GPU kernels."""
    a = min(ui, uj)
    b = max(ui, uj)
    sign = 1.0 if ui == a else -1.0
    key = _COINCIDENT_STREAM ^ b
    if law == 2:
        return (sign * (6.0 * uniform(seed, a, step, key, 0) - 3.0),
                sign * (6.0 * uniform(seed, a, step, key, 1) - 3.0),
                sign * (6.0 * uniform(seed, a, step, key, 2) - 3.0))
    if law == 0:
        f = sign * soft_sphere_law(0.0, di, dj, p0, p1, p2)
    else:
        f = sign * physicell_law(0.0, di, dj, p0, p1, p2)
    ex, ey, ez = unit_vector(seed, a, step, key, 0)
    return f * ex, f * ey, f * ez


@njit(cache=True, parallel=True)
def coincident_pushes(rows, law, typed, params, pos, diam, uid, types, table, cellv, cell_start, order, lower,
                      inv_h, dims, length, periodic, cutoff, seed, step, force):
    """Add to ``force`` the pushes of coincident centres (r < 1e-8 µm) on the
    ``rows`` the force kernel flagged, over the same neighbourhood its sums
    covered (x-cells within :func:`x_reach`, or the whole row; 3 x 3 rows
    of cells), in the canonical order, so centres that coincide across a
    cell face are pushed too.  Each pair's direction comes from the
    counter-based generator keyed by the pair's uids (BioDynaMo's law
    ``law == 2``: its U(-3, 3)^3 force), opposite for the two cells; the
    others push with the law at r = 0 (``law`` 0 soft sphere, 1 PhysiCell;
    3 PhysiCell with the per-cell values ``cellv`` of :func:`cell_mechanics`
    and the affinities ``table``).  Compiled without fast-math, so the draws are the same bits as
    :mod:`biosim.rng` gives for the key."""
    nx = dims[0]
    ny = dims[1]
    nz = dims[2]
    k, _, whole = x_chunks(nx, cutoff, inv_h, periodic[0])
    for q in prange(rows.size):
        i = rows[q]
        xi = pos[i, 0]
        yi = pos[i, 1]
        zi = pos[i, 2]
        cx, cy, cz = cell_coords(pos, i, lower, inv_h, dims, periodic)
        loy, cnty = stencil_axis(cy, ny, periodic[1])
        loz, cntz = stencil_axis(cz, nz, periodic[2])
        x0 = 0 if whole else cx - k
        cntx = nx if whole else 2 * k + 1
        fx = 0.0
        fy = 0.0
        fz = 0.0
        for ox in range(cntx):
            x = x0 + ox
            if periodic[0]:
                x = wrap(x, nx)
            elif x < 0 or x >= nx:
                continue
            for oz in range(cntz):
                iz = wrap(loz + oz, nz)
                for oy in range(cnty):
                    cell = x + nx * (wrap(loy + oy, ny) + ny * iz)
                    for s in range(cell_start[cell], cell_start[cell + 1]):
                        j = order[s]
                        if j == i:
                            continue
                        dx = min_image(xi - pos[j, 0], length[0], periodic[0])
                        dy = min_image(yi - pos[j, 1], length[1], periodic[1])
                        dz = min_image(zi - pos[j, 2], length[2], periodic[2])
                        if dx * dx + dy * dy + dz * dz > _TINY2:
                            continue
                        p0 = params[0]
                        p1 = table[types[i], types[j]] if typed else params[1]
                        if law == 3:  # per-cell values: PhysiCell's law at r = 0 is p0 - p1
                            p0 = cellv[i, 0] * cellv[j, 0]
                            p1 *= cellv[i, 1] * cellv[j, 1]
                        gx, gy, gz = coincident_push(1 if law == 3 else law, uid[i], uid[j], diam[i], diam[j], p0,
                                                     p1, params[2], seed, step)
                        fx += gx
                        fy += gy
                        fz += gz
        force[i, 0] += fx
        force[i, 1] += fy
        force[i, 2] += fz


@njit(cache=True, inline="always")
def _capped_move(pos, i, fx, fy, fz, s, cap):
    """Move row ``i`` by s (fx, fy, fz) µm, at most ``cap`` µm along the same
    direction.  Where s |f| overflows (huge forces, a huge dt / damping), the
    direction is taken from f scaled by its largest component before
    squaring, so the move is still the capped one.  Returns 1, without
    moving, where the direction is not finite (a NaN or infinite force) or
    the move is infinite with no cap; else 0."""
    dx = fx * s
    dy = fy * s
    dz = fz * s
    m2 = dx * dx + dy * dy + dz * dz
    if m2 > cap * cap or not m2 < math.inf:
        if m2 < math.inf:
            f = cap / math.sqrt(m2)
            dx *= f
            dy *= f
            dz *= f
        else:  # overflowed or not finite: scale first
            m = max(abs(fx), abs(fy), abs(fz))
            if not m < math.inf or not cap < math.inf:
                return 1
            if m == 0.0 or s == 0.0:
                return 0
            ux = fx / m
            uy = fy / m
            uz = fz / m
            k = cap / math.sqrt(ux * ux + uy * uy + uz * uz)
            dx = ux * k
            dy = uy * k
            dz = uz * k
    pos[i, 0] += dx
    pos[i, 1] += dy
    pos[i, 2] += dz
    return 0


@njit(cache=True, parallel=True)
def overdamped_update(pos, force, n, dt_over_damping, cap):
    """Explicit Euler of velocity = force / damping, capped at ``cap`` µm.
    Returns the number of agents not moved for a non-finite force."""
    bad = 0
    for i in prange(n):
        bad += _capped_move(pos, i, force[i, 0], force[i, 1], force[i, 2], dt_over_damping, cap)
    return bad


@njit(cache=True, parallel=True)
def adams_bashforth_update(pos, velocity, previous, n, dt, cap):
    """PhysiCell's second-order Adams-Bashforth step: x += dt (1.5 v - 0.5 v_prev);
    then v_prev = v.  Returns the number of agents not moved for a
    non-finite velocity."""
    bad = 0
    for i in prange(n):
        vx = 1.5 * velocity[i, 0] - 0.5 * previous[i, 0]
        vy = 1.5 * velocity[i, 1] - 0.5 * previous[i, 1]
        vz = 1.5 * velocity[i, 2] - 0.5 * previous[i, 2]
        previous[i, 0] = velocity[i, 0]
        previous[i, 1] = velocity[i, 1]
        previous[i, 2] = velocity[i, 2]
        bad += _capped_move(pos, i, vx, vy, vz, dt, cap)
    return bad


@njit(cache=True, parallel=True)
def mass_update(pos, force, diam, n, dt, density, adherence, cap):
    """BioDynaMo's update: displacement = F dt / (density * volume) when
    |F| > adherence, capped at ``cap`` µm.  Returns the number of agents not
    moved for a non-finite force."""
    bad = 0
    for i in prange(n):
        fx = force[i, 0]
        fy = force[i, 1]
        fz = force[i, 2]
        if not (fx * fx + fy * fy + fz * fz <= adherence * adherence):
            d = diam[i]
            bad += _capped_move(pos, i, fx, fy, fz, dt / (density * math.pi / 6.0 * d * d * d), cap)
    return bad


@njit(cache=True, inline="always")
def _clamp_row(pos, i, lower, upper):
    for k in range(3):
        x = pos[i, k]
        if x < lower[k]:
            pos[i, k] = lower[k]
        elif x > upper[k]:
            pos[i, k] = upper[k]


@njit(cache=True, parallel=True)
def clamp_to_box(pos, n, lower, upper):
    for i in prange(n):
        _clamp_row(pos, i, lower, upper)


@njit(cache=True, parallel=True)
def clamp_to_box_but(pos, n, lower, upper, types, skip):
    """:func:`clamp_to_box` for the rows whose type has ``skip`` 0 (the
    neurite elements' midpoints are left where their ends put them)."""
    for i in prange(n):
        if skip[types[i]] == 0:
            _clamp_row(pos, i, lower, upper)


@njit(cache=True, inline="always")
def wrap_coordinate(v, lower, length):
    """Coordinate ``v`` (µm) wrapped into [lower, lower + length) (unchanged
    when inside)."""
    x = v - lower
    if x < 0.0 or x >= length:
        x -= length * ffloor(x / length)
        if x >= length:  # rounding of tiny negatives
            x = 0.0
        return lower + x
    return v


@njit(cache=True, parallel=True)
def wrap_into_box(pos, n, lower, length):
    for i in prange(n):
        for k in range(3):
            pos[i, k] = wrap_coordinate(pos[i, k], lower[k], length[k])


@njit(cache=True, parallel=True)
def outside_box(pos, n, lower, upper, out):
    """out[i] = whether row i lies outside the box; returns how many do."""
    count = 0
    for i in prange(n):
        o = False
        for k in range(3):
            x = pos[i, k]
            if x < lower[k] or x > upper[k]:
                o = True
        out[i] = o
        count += np.int64(o)
    return count


@njit(cache=True, inline="always")
def wall_one(i, pos, diameter, velocity, lower, upper, planar, strength):
    """PhysiCell's virtual wall (standard_domain_edge_avoidance_interactions)
    for row i: with d the distance from the centre to the nearest face of
    the box (x-, x+, y-, y+, then z-, z+ unless ``planar``; the first of
    equals) and r the radius, add strength (1 - d/r)^2 along that face's
    inward normal to ``velocity[i]`` when d < r.  ``math`` only: the GPU's
    kernel too."""
    best = pos[i, 0] - lower[0]
    axis = 0
    sign = 1.0
    naxes = 2 if planar else 3
    for a in range(naxes):
        d = pos[i, a] - lower[a]
        if d < best:
            best, axis, sign = d, a, 1.0
        d = upper[a] - pos[i, a]
        if d < best:
            best, axis, sign = d, a, -1.0
    r = 0.5 * diameter[i]
    if best < r:
        t = 1.0 - best / r
        velocity[i, axis] += sign * strength * t * t


@njit(cache=True, parallel=True)
def wall_push(pos, diameter, velocity, n, lower, upper, planar, strength):
    """:func:`wall_one` for every agent."""
    for i in prange(n):
        wall_one(i, pos, diameter, velocity, lower, upper, planar, strength)
