"""Sphere-sphere forces and the position updates on the GPU: the twin of
:mod:`biosim.kernels.cpu.forces`.

The pair laws (``soft_sphere_over_r``, ``physicell_over_r``,
``biodynamo_over_r``), the capped move, the coincident-centre pushes and
the random numbers are the CPU module's own functions, compiled for the GPU
(written once, with ``math.*`` only).  One thread computes one agent of the
grid's sorted order: it sums over the same neighbourhood as the CPU kernels
in the same order (x-cells within the reach, then the 3 x 3 rows of cells,
then uid within each cell), so two GPU runs give the same bits whatever the
block size, and the CPU agrees to about 1e-13 relative: the CPU loop
reassociates its sums to vectorise them, the GPU fuses multiply-adds, and
in periodic boxes the CPU shifts whole cells by the box length where the
GPU takes the minimum image per pair.
"""
import math

import numpy as np
from numba import cuda

from ..cpu import forces as _cpu
from ..cpu.forces import (_TINY2, biodynamo_over_r, coincident_push, physicell_cell_over_r, physicell_over_r,
                          soft_sphere_over_r, wrap_coordinate, x_chunks)
from ..cpu.grid import min_image, stencil_axis, wrap
from ._launch import counter, launch, portable, read, t3

_capped_move = portable(_cpu._capped_move)

LAW_CODES = {"soft_sphere": 0, "physicell": 1, "biodynamo": 2, "physicell_cell": 3}
_cell_value = portable(_cpu.cell_value)


def _make_forces(law_over_r, law, cellwise=False):
    """The pair-force kernel of one law; with ``cellwise`` PhysiCell's law
    with per-cell values (``cellv``, rows as :func:`cell_mechanics` gives
    them, and ``table`` the pairs' affinities)."""
    @cuda.jit
    def kernel(params, types, table, typed, n, cell, cell_start, order, lower, inv_h, dims, length, periodic,
               cutoff, cols, uid, seed, step, cellv, force):
        q = cuda.grid(1)
        if q >= n:
            return
        p0 = params[0]
        p1 = params[1]
        p2 = params[2]
        nx = dims[0]
        ny = dims[1]
        nz = dims[2]
        i = order[q]
        xi = cols[0, q]
        yi = cols[1, q]
        zi = cols[2, q]
        di = cols[3, q]
        ti = types[i]
        ui = uid[i]
        k, _, whole = x_chunks(nx, cutoff, inv_h, periodic[0])
        c = cell[i]  # the agent's cell, as binned
        cx = c % nx
        cy = (c // nx) % ny
        cz = c // (nx * ny)
        loy, cnty = stencil_axis(cy, ny, periodic[1])
        loz, cntz = stencil_axis(cz, nz, periodic[2])
        x0 = 0 if whole else cx - k
        cntx = nx if whole else 2 * k + 1
        fx = 0.0
        fy = 0.0
        fz = 0.0
        gx = 0.0
        gy = 0.0
        gz = 0.0
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
                    s = cell_start[cell]
                    e = cell_start[cell + 1]
                    for r in range(s, e):
                        if r == q:
                            continue
                        dx = min_image(xi - cols[0, r], length[0], periodic[0])
                        dy = min_image(yi - cols[1, r], length[1], periodic[1])
                        dz = min_image(zi - cols[2, r], length[2], periodic[2])
                        r2 = dx * dx + dy * dy + dz * dz
                        pj = table[ti, types[order[r]]] if typed else p1
                        pi = p0
                        if cellwise:
                            j = order[r]
                            pi = cellv[i, 0] * cellv[j, 0]
                            pj *= cellv[i, 1] * cellv[j, 1]
                        if r2 > _TINY2:
                            if cellwise:
                                w = physicell_cell_over_r(r2, 0.5 * (di + cols[3, r]),
                                                          0.5 * (cellv[i, 2] + cellv[order[r], 2]), pi, pj)
                            else:
                                w = law_over_r(r2, di, cols[3, r], p0, pj, p2)
                            fx += w * dx
                            fy += w * dy
                            fz += w * dz
                            continue
                        # coincident centres: a direction keyed by the pair's uids, opposite for the two
                        px, py, pz = coincident_push(law, ui, uid[order[r]], di, cols[3, r], pi, pj, p2, seed,
                                                     step)
                        gx += px
                        gy += py
                        gz += pz
        force[i, 0] = fx + gx
        force[i, 1] = fy + gy
        force[i, 2] = fz + gz

    return kernel


FORCE_KERNELS = {
    "soft_sphere": _make_forces(soft_sphere_over_r, 0),
    "physicell": _make_forces(physicell_over_r, 1),
    "biodynamo": _make_forces(biodynamo_over_r, 2),
    "physicell_cell": _make_forces(physicell_over_r, 1, True),
}


def pair_forces(law, params, types, table, typed, n, cell, cell_start, order, lower, inv_h, dims, length, periodic,
                cutoff, cols, uid, seed, step, force, cellv=None):
    """force[i] = the sum of pair forces on row i (law ``law``: "soft_sphere",
    "physicell" or "biodynamo"; ``params`` its three parameters, a host
    array; with ``typed`` the second taken from ``table[type_i, type_j]``),
    coincident centres included; ``cols`` the grid's sorted columns with
    diameters (:func:`grid.sorted_columns`, 4 rows) and ``cell`` the rows'
    cells as binned (:func:`grid.assign_cells`); "physicell_cell" takes the
    per-cell values ``cellv`` (:func:`cell_mechanics`) and the affinities
    as ``table``."""
    if n == 0:
        return
    if cellv is None:
        cellv = _placeholder()
    FORCE_KERNELS[law][launch(n)](t3(params), types, table, bool(typed), int(n), cell, cell_start, order,
                                         t3(lower), t3(inv_h), t3(dims, int), t3(length), t3(periodic, bool),
                                         float(cutoff), cols, uid, np.int64(seed), np.int64(step), cellv, force)


_PLACEHOLDER = []


def _placeholder():
    """A (1, 3) device array for the laws without per-cell values (one, made
    on first use, so every launch has the same argument types)."""
    if not _PLACEHOLDER:
        _PLACEHOLDER.append(cuda.to_device(np.zeros((1, 3))))
    return _PLACEHOLDER[0]


@cuda.jit
def _cell_mechanics(types, diam, n, table, driven, rule_rep, rule_adh, rule_lam, out, bad):
    i = cuda.grid(1)
    if i >= n:
        return
    rep = _cell_value(types, i, 0, table, driven, rule_rep)
    adh = _cell_value(types, i, 1, table, driven, rule_adh)
    lam = _cell_value(types, i, 2, table, driven, rule_lam)
    if not (rep >= 0.0 and adh >= 0.0 and lam >= 1.0 and rep < math.inf and adh < math.inf and lam < math.inf):
        cuda.atomic.add(bad, 0, 1)
        return
    out[i, 0] = math.sqrt(rep)
    out[i, 1] = math.sqrt(adh)
    out[i, 2] = lam * diam[i]


def cell_mechanics(types, diam, n, table, driven, rule_rep, rule_adh, rule_lam, out):
    """The CPU kernel's twin (:func:`biosim.kernels.cpu.forces.cell_mechanics`):
    out[i] = (sqrt(repulsion), sqrt(adhesion), adhesion_range x diameter);
    returns how many rows hold an invalid value."""
    if n == 0:
        return 0
    bad = counter()
    _cell_mechanics[launch(n)](types, diam, int(n), table, driven, rule_rep, rule_adh, rule_lam, out, bad)
    return read(bad)


@cuda.jit
def _overdamped(pos, force, n, s, cap, bad):
    i = cuda.grid(1)
    if i < n:
        if _capped_move(pos, i, force[i, 0], force[i, 1], force[i, 2], s, cap):
            cuda.atomic.add(bad, 0, 1)


def overdamped_update(pos, force, n, dt_over_damping, cap):
    """Explicit Euler of velocity = force / damping, capped at ``cap`` µm;
    returns the number of agents not moved for a non-finite force."""
    bad = counter()
    if n:
        _overdamped[launch(n)](pos, force, int(n), float(dt_over_damping), float(cap), bad)
    return read(bad)


@cuda.jit
def _adams_bashforth(pos, velocity, previous, n, dt, cap, bad):
    i = cuda.grid(1)
    if i < n:
        vx = 1.5 * velocity[i, 0] - 0.5 * previous[i, 0]
        vy = 1.5 * velocity[i, 1] - 0.5 * previous[i, 1]
        vz = 1.5 * velocity[i, 2] - 0.5 * previous[i, 2]
        previous[i, 0] = velocity[i, 0]
        previous[i, 1] = velocity[i, 1]
        previous[i, 2] = velocity[i, 2]
        if _capped_move(pos, i, vx, vy, vz, dt, cap):
            cuda.atomic.add(bad, 0, 1)


def adams_bashforth_update(pos, velocity, previous, n, dt, cap):
    """PhysiCell's x += dt (1.5 v - 0.5 v_prev), then v_prev = v; returns
    the number of agents not moved for a non-finite velocity."""
    bad = counter()
    if n:
        _adams_bashforth[launch(n)](pos, velocity, previous, int(n), float(dt), float(cap), bad)
    return read(bad)


@cuda.jit
def _mass(pos, force, diam, n, dt, density, adherence, cap, bad):
    i = cuda.grid(1)
    if i < n:
        fx = force[i, 0]
        fy = force[i, 1]
        fz = force[i, 2]
        if not (fx * fx + fy * fy + fz * fz <= adherence * adherence):
            d = diam[i]
            if _capped_move(pos, i, fx, fy, fz, dt / (density * np.pi / 6.0 * d * d * d), cap):
                cuda.atomic.add(bad, 0, 1)


def mass_update(pos, force, diam, n, dt, density, adherence, cap):
    """BioDynaMo's displacement F dt / (density volume) where |F| >
    adherence, capped at ``cap`` µm; returns the agents not moved."""
    bad = counter()
    if n:
        _mass[launch(n)](pos, force, diam, int(n), float(dt), float(density), float(adherence), float(cap),
                                bad)
    return read(bad)


@cuda.jit
def _clamp(pos, n, lower, upper):
    i = cuda.grid(1)
    if i < n:
        for k in range(3):
            x = pos[i, k]
            if x < lower[k]:
                pos[i, k] = lower[k]
            elif x > upper[k]:
                pos[i, k] = upper[k]


def clamp_to_box(pos, n, lower, upper):
    if n:
        _clamp[launch(n)](pos, int(n), t3(lower), t3(upper))


@cuda.jit
def _wrap_into(pos, n, lower, length):
    i = cuda.grid(1)
    if i < n:
        for k in range(3):
            pos[i, k] = wrap_coordinate(pos[i, k], lower[k], length[k])


def wrap_into_box(pos, n, lower, length):
    if n:
        _wrap_into[launch(n)](pos, int(n), t3(lower), t3(length))


@cuda.jit
def _outside(pos, n, lower, upper, out, count):
    i = cuda.grid(1)
    if i < n:
        o = False
        for k in range(3):
            x = pos[i, k]
            if x < lower[k] or x > upper[k]:
                o = True
        out[i] = o
        if o:
            cuda.atomic.add(count, 0, 1)


def outside_box(pos, n, lower, upper, out):
    """out[i] = whether row i lies outside the box; returns how many do."""
    count = counter()
    if n:
        _outside[launch(n)](pos, int(n), t3(lower), t3(upper), out, count)
    return read(count)


wall_one = portable(_cpu.wall_one)


@cuda.jit
def _wall(pos, diameter, velocity, n, lower, upper, planar, strength):
    i = cuda.grid(1)
    if i < n:
        wall_one(i, pos, diameter, velocity, lower, upper, planar, strength)


def wall_push(pos, diameter, velocity, n, lower, upper, planar, strength):
    """PhysiCell's virtual wall (see the CPU twin): the CPU's operations."""
    if n:
        _wall[launch(n)](pos, diameter, velocity, int(n), t3(lower), t3(upper), bool(planar), float(strength))
