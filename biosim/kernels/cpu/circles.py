"""The "circles" interaction (FLAME GPU 2's benchmark model) for the
benchmark suite: every agent sums sin(-2 pi d / r) x strength along the unit
vectors to its neighbours closer than r, divides by their number and moves
by the result.  Computed like the forces (kernels/cpu/forces.py): chunk by
chunk of cells, the neighbourhoods gathered into a per-thread buffer, then
one long vectorised loop per agent.  The pair term sin(-2 pi d / r) / d is a
polynomial in x = 2 d^2 / r^2 - 1 (sinc_turn_x): no square root, no division
and no libm call in the loop, so it vectorises fully.  Positions are read from the
grid's sorted columns and written to ``out``, so the update is synchronous
and thread-count independent."""
import numpy as np
from numba import get_thread_id, njit, prange

from .forces import cell_window, chunk_of, gather_blocks, x_chunks

_FAST = {"reassoc", "contract", "nsz", "arcp"}


# sin(2 pi u) / u as a polynomial of degree 11 in x = 2 u^2 - 1: the Chebyshev fit at 400 nodes,
# written in powers of x (coefficients below 3.5 in size, so well conditioned); error below
# 5e-13 for u in [0, 1] (the term peaks at 2 pi; FLAME GPU computes it in float32, ~1e-7).
# Degree 12 reaches 2e-14 but costs one more FMA per pair, and the loop is bound by their
# number (4% of the circles step).  Evaluated by Estrin's scheme (depth 5 instead of 11 for
# Horner, which measured 6% slower as even and odd chains): the loop is bound by throughput,
# not by the latency of a chain of FMAs.
_S0 = -1.3631640347625522
_S1 = -0.15488380915523092
_S2 = 3.479635296124555
_S3 = -2.7723092530360374
_S4 = 0.9948279363159006
_S5 = -0.21130525290390448
_S6 = 0.030053847185862504
_S7 = -0.003079770215143856
_S8 = 0.00023889222752557573
_S9 = -1.4539330909970758e-05
_S10 = 7.16498021614105e-07
_S11 = -2.8948558606049766e-08


@njit(cache=True, inline="always")
def sinc_turn_x(x):
    """sin(2 pi u) / u for x = 2 u^2 - 1 in [-1, 1] (Estrin's scheme; error
    below 5e-13): a polynomial, so the circles step needs neither a square
    root nor a division per pair.  Finite (and unused) beyond 1."""
    x2 = x * x
    x4 = x2 * x2
    x8 = x4 * x4
    r0 = (_S0 + _S1 * x) + (_S2 + _S3 * x) * x2
    r1 = (_S4 + _S5 * x) + (_S6 + _S7 * x) * x2
    r2 = (_S8 + _S9 * x) + (_S10 + _S11 * x) * x2
    return (r0 + r1 * x4) + r2 * x8


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def circles_step(cols, n, cell_start, order, lower, inv_h, dims, length, periodic, cutoff, radius, strength,
                 buf, out):
    """out[i] = pos[i] + (sum_j strength sin(-2 pi d_ij / r) e_ij) / k_i over the
    k_i agents j closer than ``radius`` (e_ij the unit vector from i to j);
    out[i] = pos[i] when k_i = 0.  The positions are read from ``cols``, the
    grid's sorted columns (:func:`grid.sorted_columns`, 3 rows), so ``out``
    may be the position array itself.  Pairs closer than about 1e-8 r count
    as coincident (no direction: left out, like an agent and itself).
    Closed boxes only (no minimum image)."""
    nx = dims[0]
    ny = dims[1]
    nz = dims[2]
    # In units of r / sqrt(2) (positions times c), x = 2 d^2 / r^2 - 1 = |d'|^2 - 1
    # in three FMAs; the pair is inside when -1 < x < 1 (0 < d < r).
    c = np.sqrt(2.0) / radius
    scale = -strength / radius / c  # strength sin(-2 pi d / r) / d = scale sinc_turn_x(x) d' / d
    k, nxc, whole = x_chunks(nx, cutoff, inv_h, periodic[0])
    for item in prange(ny * nz * nxc):
        row, x0, x1, empty = chunk_of(item, nxc, nx, cell_start)
        if empty:
            continue
        tid = get_thread_id()
        bx = buf[tid, 0]
        by = buf[tid, 1]
        bz = buf[tid, 2]
        bstart = buf[tid, 3].view(np.int64)
        gather_blocks(x0, x1, row % ny, row // ny, nx, ny, nz, k, whole, periodic, cell_start, cols, bx, by, bz,
                      bx, bx, bstart, False, False, c, length, False, 0, buf[tid, 0:0])
        for cx in range(x0, x1):
            sa, ea, lo, hi = cell_window(bstart, cell_start, row, cx, x0, nx, k, whole)
            if sa == ea:
                continue
            wx = bx[lo:hi]
            wy = by[lo:hi]
            wz = bz[lo:hi]
            for qi in range(sa, ea):
                i = order[qi]
                xi = cols[0, qi]
                yi = cols[1, qi]
                zi = cols[2, qi]
                xc = xi * c
                yc = yi * c
                zc = zi * c
                fx = 0.0
                fy = 0.0
                fz = 0.0
                cnt = 0.0
                for q in range(hi - lo):
                    dx = wx[q] - xc
                    dy = wy[q] - yc
                    dz = wz[q] - zc
                    x = dz * dz + (dy * dy + (dx * dx - 1.0))  # three FMAs
                    inside = (x < 1.0) & (x > -1.0)  # itself (d = 0) excluded
                    f = sinc_turn_x(x) if inside else 0.0
                    fx += f * dx
                    fy += f * dy
                    fz += f * dz
                    cnt += 1.0 if inside else 0.0
                fx *= scale  # the constant factor once per agent, not per pair
                fy *= scale
                fz *= scale
                if cnt > 0.0:
                    out[i, 0] = xi + fx / cnt
                    out[i, 1] = yi + fy / cnt
                    out[i, 2] = zi + fz / cnt
                else:
                    out[i, 0] = xi
                    out[i, 1] = yi
                    out[i, 2] = zi
