"""The "circles" interaction (FLAME GPU 2's benchmark model) for the
benchmark suite: every agent sums sin(-2 pi d / r) x strength along the unit
vectors to its neighbours closer than r, divides by their number and moves
by the result.  Computed like the forces (kernels/cpu/forces.py): cell by
cell, the neighbourhood gathered into a per-thread buffer, then one long
vectorised loop per agent (the sine by a polynomial, sin_turn, which
vectorises where libm's does not).  Positions are read from ``pos``
and written to ``out``, so the update is synchronous and thread-count
independent."""
import numpy as np
from numba import get_thread_id, njit, prange

from .forces import gather_neighbourhood

_FAST = {"reassoc", "contract", "nsz", "arcp"}
_PI = 3.141592653589793


@njit(cache=True, inline="always")
def sin_turn(u):
    """sin(2 pi u) for u in [0, 1), branch-free: x = 2 pi (u - 1/2) in [-pi, pi)
    (sin(2 pi u) = -sin x), folded into [-pi/2, pi/2] by sin(pi - x) = sin x,
    then the Taylor series to x^17 (error below 5e-14)."""
    x = 2.0 * _PI * (u - 0.5)
    a = abs(x)
    y = x if a <= 0.5 * _PI else np.copysign(_PI, x) - x
    y2 = y * y
    s = y * (1.0 + y2 * (-1.0 / 6 + y2 * (1.0 / 120 + y2 * (-1.0 / 5040 + y2 * (1.0 / 362880 + y2 * (
        -1.0 / 39916800 + y2 * (1.0 / 6227020800 + y2 * (-1.0 / 1307674368000 + y2 * (
            1.0 / 355687428096000)))))))))
    return -s


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def circles_step(pos, n, cell_start, order, lower, inv_h, dims, length, periodic, cutoff, radius, strength,
                 buf, out):
    """out[i] = pos[i] + (sum_j strength sin(-2 pi d_ij / r) e_ij) / k_i over the
    k_i agents j closer than ``radius`` (e_ij the unit vector from i to j);
    out[i] = pos[i] when k_i = 0.  Closed boxes only (no minimum image)."""
    nx = dims[0]
    ny = dims[1]
    nz = dims[2]
    r2 = radius * radius
    inv_r = 1.0 / radius
    k = np.int64(np.ceil(cutoff * inv_h[0] - 1e-9))
    for c in prange(nx * ny * nz):
        sa = cell_start[c]
        ea = cell_start[c + 1]
        if sa == ea:
            continue
        tid = get_thread_id()
        bx = buf[tid, 0]
        by = buf[tid, 1]
        bz = buf[tid, 2]
        m = gather_neighbourhood(c, nx, ny, nz, k, periodic, cell_start, order, pos, bx, order, bx, by, bz,
                                 bx, bx, False, False)
        for qi in range(sa, ea):
            i = order[qi]
            xi = pos[i, 0]
            yi = pos[i, 1]
            zi = pos[i, 2]
            fx = 0.0
            fy = 0.0
            fz = 0.0
            cnt = 0.0
            for q in range(m):
                dx = bx[q] - xi
                dy = by[q] - yi
                dz = bz[q] - zi
                d2 = dx * dx + dy * dy + dz * dz
                w = 1.0 if (d2 < r2) & (d2 > 0.0) else 0.0  # itself (d = 0) excluded
                d = np.sqrt(d2)
                s_ = sin_turn(min(d * inv_r, 0.999999))
                f = w * strength * -s_ / (d + (1.0 - w))
                fx += f * dx
                fy += f * dy
                fz += f * dz
                cnt += w
            if cnt > 0.0:
                out[i, 0] = xi + fx / cnt
                out[i, 1] = yi + fy / cnt
                out[i, 2] = zi + fz / cnt
            else:
                out[i, 0] = xi
                out[i, 1] = yi
                out[i, 2] = zi
