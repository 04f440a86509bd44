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
largest diameter.  The neighbour loop is compiled with floating-point
reassociation so it vectorises: each agent's sum is still computed by one
thread in a fixed order of candidates, so results are bit-identical for any
thread count on a given machine, and equal a plain double loop to ~1e-15
relative.  Coincident centres (r < 1e-8 µm) get a direction drawn from the
counter-based generator keyed by the pair's uids, opposite for the two cells
(BioDynaMo's law uses its U(-3, 3)^3 random force instead).

Each agent sums over its neighbours in a fixed order (stencil order, then row
order), so the result does not depend on the thread count.
"""
import numpy as np
from numba import njit, prange

from .grid import cell_coords, stencil_axis
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


@njit(cache=True, inline="always")
def biodynamo_law(r, di, dj, p0, p1, p2):
    ri = 0.5 * di + p2
    rj = 0.5 * dj + p2
    delta = max(0.0, ri + rj - r)
    return p0 * delta - p1 * np.sqrt(ri * rj / (ri + rj) * delta)


@njit(cache=True, inline="always")
def _open(d, length):
    return d


@njit(cache=True, inline="always")
def _wrap(d, length):
    return d - length * np.rint(d / length)


_TINY2 = 1e-16  # (1e-8 µm)^2: centres closer than this count as coincident
_FAST = {"reassoc", "contract", "nsz", "arcp"}  # no nnan/ninf: NaN semantics kept


@njit(inline="always")
def _force_run(law, mi, pos, diam, s, e, xi, yi, zi, di, l0, l1, l2, p0, p1, p2):
    fx = 0.0
    fy = 0.0
    fz = 0.0
    nc = 0
    for j in range(s, e):
        dx = mi(xi - pos[j, 0], l0)
        dy = mi(yi - pos[j, 1], l1)
        dz = mi(zi - pos[j, 2], l2)
        r2 = dx * dx + dy * dy + dz * dz
        r = np.sqrt(r2)
        f = law(r, di, diam[j], p0, p1, p2)
        w = f / r if r2 > _TINY2 else 0.0
        nc += r2 <= _TINY2
        fx += w * dx
        fy += w * dy
        fz += w * dz
    return fx, fy, fz, nc


@njit(inline="always")
def _coincident_run(is_bdm, law, mi, pos, diam, uid, i, s, e, xi, yi, zi, di, l0, l1, l2,
                    p0, p1, p2, seed, step):
    fx = 0.0
    fy = 0.0
    fz = 0.0
    for j in range(s, e):
        if j == i:
            continue
        dx = mi(xi - pos[j, 0], l0)
        dy = mi(yi - pos[j, 1], l1)
        dz = mi(zi - pos[j, 2], l2)
        if dx * dx + dy * dy + dz * dz > _TINY2:
            continue
        a = min(uid[i], uid[j])
        b = max(uid[i], uid[j])
        sign = 1.0 if uid[i] == a else -1.0
        key = _COINCIDENT_STREAM ^ b
        if is_bdm:
            fx += sign * (6.0 * uniform(seed, a, step, key, 0) - 3.0)
            fy += sign * (6.0 * uniform(seed, a, step, key, 1) - 3.0)
            fz += sign * (6.0 * uniform(seed, a, step, key, 2) - 3.0)
        else:
            ex, ey, ez = unit_vector(seed, a, step, key, 0)
            f = sign * law(0.0, di, diam[j], p0, p1, p2)
            fx += f * ex
            fy += f * ey
            fz += f * ez
    return fx, fy, fz


@njit(inline="always")
def _forces(law, mi, is_bdm, params, pos, diam, uid, n, cell_start, lower, inv_h, dims, length,
            periodic, seed, step, force):
    p0 = params[0]
    p1 = params[1]
    p2 = params[2]
    l0 = length[0]
    l1 = length[1]
    l2 = length[2]
    nx = dims[0]
    for i in prange(n):
        xi = pos[i, 0]
        yi = pos[i, 1]
        zi = pos[i, 2]
        di = diam[i]
        cx, cy, cz = cell_coords(pos, i, lower, inv_h, dims, periodic)
        lox, cntx = stencil_axis(cx, nx, periodic[0])
        loy, cnty = stencil_axis(cy, dims[1], periodic[1])
        loz, cntz = stencil_axis(cz, dims[2], periodic[2])
        x0 = lox % nx
        c1 = min(cntx, nx - x0)
        fx = 0.0
        fy = 0.0
        fz = 0.0
        nc = 0
        for oz in range(cntz):
            iz = (loz + oz) % dims[2]
            for oy in range(cnty):
                iy = (loy + oy) % dims[1]
                base = nx * (iy + dims[1] * iz)
                gx, gy, gz, c = _force_run(law, mi, pos, diam, cell_start[base + x0],
                                           cell_start[base + x0 + c1], xi, yi, zi, di,
                                           l0, l1, l2, p0, p1, p2)
                fx += gx
                fy += gy
                fz += gz
                nc += c
                if cntx > c1:
                    gx, gy, gz, c = _force_run(law, mi, pos, diam, cell_start[base],
                                               cell_start[base + cntx - c1], xi, yi, zi, di,
                                               l0, l1, l2, p0, p1, p2)
                    fx += gx
                    fy += gy
                    fz += gz
                    nc += c
        if nc > 1:  # another centre coincides with this one: rare, scalar path
            for oz in range(cntz):
                iz = (loz + oz) % dims[2]
                for oy in range(cnty):
                    iy = (loy + oy) % dims[1]
                    base = nx * (iy + dims[1] * iz)
                    for ox in range(cntx):
                        c0 = base + (lox + ox) % nx
                        gx, gy, gz = _coincident_run(is_bdm, law, mi, pos, diam, uid, i,
                                                     cell_start[c0], cell_start[c0 + 1], xi, yi,
                                                     zi, di, l0, l1, l2, p0, p1, p2, seed, step)
                        fx += gx
                        fy += gy
                        fz += gz
        force[i, 0] = fx
        force[i, 1] = fy
        force[i, 2] = fz


# One compiled kernel per (law, boundary), all cached; the arguments are
# (params, pos, diam, uid, n, cell_start, lower, inv_h, dims, length, periodic,
#  seed, step, force): force[i] = sum of pair forces on row i of a cell-sorted table.
@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def soft_sphere_forces(params, pos, diam, uid, n, cell_start, lower, inv_h, dims, length,
                       periodic, seed, step, force):
    _forces(soft_sphere_law, _open, False, params, pos, diam, uid, n, cell_start, lower, inv_h,
            dims, length, periodic, seed, step, force)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def soft_sphere_forces_periodic(params, pos, diam, uid, n, cell_start, lower, inv_h, dims,
                                length, periodic, seed, step, force):
    _forces(soft_sphere_law, _wrap, False, params, pos, diam, uid, n, cell_start, lower, inv_h,
            dims, length, periodic, seed, step, force)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def physicell_forces(params, pos, diam, uid, n, cell_start, lower, inv_h, dims, length,
                     periodic, seed, step, force):
    _forces(physicell_law, _open, False, params, pos, diam, uid, n, cell_start, lower, inv_h,
            dims, length, periodic, seed, step, force)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def physicell_forces_periodic(params, pos, diam, uid, n, cell_start, lower, inv_h, dims,
                              length, periodic, seed, step, force):
    _forces(physicell_law, _wrap, False, params, pos, diam, uid, n, cell_start, lower, inv_h,
            dims, length, periodic, seed, step, force)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def biodynamo_forces(params, pos, diam, uid, n, cell_start, lower, inv_h, dims, length,
                     periodic, seed, step, force):
    _forces(biodynamo_law, _open, True, params, pos, diam, uid, n, cell_start, lower, inv_h,
            dims, length, periodic, seed, step, force)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_FAST)
def biodynamo_forces_periodic(params, pos, diam, uid, n, cell_start, lower, inv_h, dims,
                              length, periodic, seed, step, force):
    _forces(biodynamo_law, _wrap, True, params, pos, diam, uid, n, cell_start, lower, inv_h,
            dims, length, periodic, seed, step, force)


FORCE_KERNELS = {
    ("soft_sphere", False): soft_sphere_forces,
    ("soft_sphere", True): soft_sphere_forces_periodic,
    ("physicell", False): physicell_forces,
    ("physicell", True): physicell_forces_periodic,
    ("biodynamo", False): biodynamo_forces,
    ("biodynamo", True): biodynamo_forces_periodic,
}


@njit(cache=True, inline="always")
def _capped_move(pos, i, dx, dy, dz, cap):
    m2 = dx * dx + dy * dy + dz * dz
    if m2 > cap * cap:
        f = cap / np.sqrt(m2)
        dx *= f
        dy *= f
        dz *= f
    pos[i, 0] += dx
    pos[i, 1] += dy
    pos[i, 2] += dz


@njit(cache=True, parallel=True)
def overdamped_update(pos, force, n, dt_over_damping, cap):
    """Explicit Euler of velocity = force / damping, capped at ``cap`` µm."""
    for i in prange(n):
        _capped_move(pos, i, force[i, 0] * dt_over_damping, force[i, 1] * dt_over_damping,
                     force[i, 2] * dt_over_damping, cap)


@njit(cache=True, parallel=True)
def adams_bashforth_update(pos, velocity, previous, n, dt, cap):
    """PhysiCell's second-order Adams-Bashforth step: x += dt (1.5 v - 0.5 v_prev);
    then v_prev = v."""
    for i in prange(n):
        dx = dt * (1.5 * velocity[i, 0] - 0.5 * previous[i, 0])
        dy = dt * (1.5 * velocity[i, 1] - 0.5 * previous[i, 1])
        dz = dt * (1.5 * velocity[i, 2] - 0.5 * previous[i, 2])
        previous[i, 0] = velocity[i, 0]
        previous[i, 1] = velocity[i, 1]
        previous[i, 2] = velocity[i, 2]
        _capped_move(pos, i, dx, dy, dz, cap)


@njit(cache=True, parallel=True)
def mass_update(pos, force, diam, n, dt, density, adherence, cap):
    """BioDynaMo's update: displacement = F dt / (density * volume) when
    |F| > adherence, capped at ``cap`` µm."""
    for i in prange(n):
        fx = force[i, 0]
        fy = force[i, 1]
        fz = force[i, 2]
        if fx * fx + fy * fy + fz * fz > adherence * adherence:
            d = diam[i]
            inv_m = dt / (density * np.pi / 6.0 * d * d * d)
            _capped_move(pos, i, fx * inv_m, fy * inv_m, fz * inv_m, cap)


@njit(cache=True, parallel=True)
def clamp_to_box(pos, n, lower, upper):
    for i in prange(n):
        for k in range(3):
            x = pos[i, k]
            if x < lower[k]:
                pos[i, k] = lower[k]
            elif x > upper[k]:
                pos[i, k] = upper[k]


@njit(cache=True, parallel=True)
def wrap_into_box(pos, n, lower, length):
    for i in prange(n):
        for k in range(3):
            x = pos[i, k] - lower[k]
            if x < 0.0 or x >= length[k]:
                x -= length[k] * np.floor(x / length[k])
                if x >= length[k]:  # rounding of tiny negatives
                    x = 0.0
                pos[i, k] = lower[k] + x


@njit(cache=True, parallel=True)
def outside_box(pos, n, lower, upper, out):
    for i in prange(n):
        o = False
        for k in range(3):
            x = pos[i, k]
            if x < lower[k] or x > upper[k]:
                o = True
        out[i] = o
