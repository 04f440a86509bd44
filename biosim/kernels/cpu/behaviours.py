"""Kernels of the built-in behaviours (biosim.models).  Each runs over all
rows and acts on those whose ``type`` equals ``code``; each writes only its
own row, and random draws are keyed by (seed, uid, step, stream, k)."""
import numpy as np
from numba import njit, prange

from .rng import normal, uniform, unit_vector

PI_6 = np.pi / 6.0


@njit(cache=True, parallel=True)
def grow(type_, code, diameter, n, dv, factor, division_diameter, divide):
    """Add volume ``dv * factor[i]`` (µm³) to cells below ``division_diameter``
    (µm); flag cells that reach it.  Returns the number flagged."""
    count = 0
    for i in prange(n):
        f = False
        if type_[i] == code:
            d = diameter[i]
            if d < division_diameter:
                v = PI_6 * d * d * d + dv * factor[i]
                d = np.cbrt(v / PI_6)
                diameter[i] = d
            if d >= division_diameter:
                f = True
                count += 1
        divide[i] = f
    return count


@njit(cache=True, parallel=True)
def divide(rows, pos, diameter, uid, seed, step, stream, ratio_lo, ratio_hi,
           daughter_pos, daughter_diameter):
    """Split each mother in ``rows`` in two along a random axis.

    The volume ratio q = V_daughter / V_mother is drawn from U(lo, hi) (exactly
    lo when lo == hi); volume is conserved, the centres move apart by the
    mother's radius along the axis and the centre of mass stays put.  Mothers
    are updated in place; daughters' position and diameter are written out."""
    for k in prange(rows.size):
        i = rows[k]
        d = diameter[i]
        v = PI_6 * d * d * d
        if ratio_hi > ratio_lo:
            q = ratio_lo + (ratio_hi - ratio_lo) * uniform(seed, uid[i], step, stream, 0)
        else:
            q = ratio_lo
        vd = v * q / (1.0 + q)
        vm = v - vd
        ex, ey, ez = unit_vector(seed, uid[i], step, stream, 1)
        sep = 0.5 * d
        am = -sep * vd / v
        ad = sep * vm / v
        x = pos[i, 0]
        y = pos[i, 1]
        z = pos[i, 2]
        pos[i, 0] = x + am * ex
        pos[i, 1] = y + am * ey
        pos[i, 2] = z + am * ez
        daughter_pos[k, 0] = x + ad * ex
        daughter_pos[k, 1] = y + ad * ey
        daughter_pos[k, 2] = z + ad * ez
        diameter[i] = np.cbrt(vm / PI_6)
        daughter_diameter[k] = np.cbrt(vd / PI_6)


@njit(cache=True, parallel=True)
def mark_random(type_, code, uid, n, seed, step, stream, probability, flag):
    """flag[i] = (row i is of ``code``) and U < probability.  Returns the count."""
    count = 0
    for i in prange(n):
        f = False
        if type_[i] == code and uniform(seed, uid[i], step, stream, 0) < probability:
            f = True
            count += 1
        flag[i] = f
    return count


@njit(cache=True, parallel=True)
def brownian_move(type_, code, uid, pos, n, seed, step, stream, sigma):
    """Brownian step: each coordinate += sigma * N(0, 1)."""
    for i in prange(n):
        if type_[i] == code:
            u = uid[i]
            pos[i, 0] += sigma * normal(seed, u, step, stream, 0)
            pos[i, 1] += sigma * normal(seed, u, step, stream, 1)
            pos[i, 2] += sigma * normal(seed, u, step, stream, 2)


@njit(cache=True, parallel=True)
def directed_move(type_, code, uid, pos, n, seed, step, stream, distance):
    """Move ``distance`` µm along a direction uniform on the sphere."""
    for i in prange(n):
        if type_[i] == code:
            ex, ey, ez = unit_vector(seed, uid[i], step, stream, 0)
            pos[i, 0] += distance * ex
            pos[i, 1] += distance * ey
            pos[i, 2] += distance * ez


@njit(cache=True, parallel=True)
def move_along(pos, rows, direction, distance):
    """pos[rows[q]] += distance * direction[q] / |direction[q]| (no move for a
    zero direction)."""
    for q in prange(rows.size):
        gx = direction[q, 0]
        gy = direction[q, 1]
        gz = direction[q, 2]
        norm = np.sqrt(gx * gx + gy * gy + gz * gz)
        if norm > 0.0:
            f = distance / norm
            i = rows[q]
            pos[i, 0] += f * gx
            pos[i, 1] += f * gy
            pos[i, 2] += f * gz


@njit(cache=True, parallel=True)
def mark_below(rows, uid, values, threshold, probability, seed, step, stream, flag):
    """flag[q] = values[q] < threshold and U < probability (U keyed by the
    agent's uid).  Returns the count."""
    count = 0
    for q in prange(rows.size):
        f = False
        if values[q] < threshold and uniform(seed, uid[rows[q]], step, stream, 0) < probability:
            f = True
            count += 1
        flag[q] = f
    return count
