"""Kernels of the built-in behaviours on the GPU: the twins of
:mod:`biosim.kernels.cpu.behaviours`, with the same functions and
arguments (device arrays for the columns), one thread per agent.  Random
draws are the CPU module's own functions, keyed by (seed, uid, step,
stream, k), so every decision taken on a ``uniform`` draw is the CPU's.
Cube roots go through libdevice's ``cbrt`` (within an ulp of the CPU's
libm), and normals and unit vectors through polynomials NVVM fuses, so
diameters and moves agree with the CPU to the last bits, not bit for bit.
Counts come back as one small integer per call.
"""
import math

import numpy as np
from numba import cuda

from ..cpu import behaviours as _cpu
from ..cpu import grid as _grid
from ..cpu.grid import STENCIL_RUNS
from ..cpu.rng import normal, uniform, unit_vector
from ._launch import cbrt, counter, launch, nonzero, portable, read, t3

stencil_runs = portable(_grid.stencil_runs)
min_image = portable(_grid.min_image)
move_one_along = portable(_cpu.move_one_along)
split_offsets = portable(_cpu.split_offsets)
volume_step = portable(_cpu.volume_step)
volume_from_diameter = portable(_cpu.volume_from_diameter)
death_one = portable(_cpu.death_one)

PI_6 = math.pi / 6.0


def _on_device(a):
    """A float64 array on the device (host arrays, e.g. one probability,
    are copied there)."""
    return a if hasattr(a, "copy_to_host") else cuda.to_device(np.ascontiguousarray(a, dtype=np.float64))


_RUNS = 2 * STENCIL_RUNS  # entries of the stencil's run list (a constant for cuda.local.array)


@cuda.jit
def _grow(type_, code, diameter, n, dv, factor, division_diameter, divide, count):
    i = cuda.grid(1)
    if i < n:
        f = False
        if type_[i] == code:
            d = diameter[i]
            if d < division_diameter:
                v = PI_6 * d * d * d + dv * factor[i]
                d = cbrt(v / PI_6)
                diameter[i] = d
            if d >= division_diameter:
                f = True
                cuda.atomic.add(count, 0, 1)
        divide[i] = f


def grow(type_, code, diameter, n, dv, factor, division_diameter, divide):
    """Add volume ``dv * factor[i]`` (µm³) to cells of ``code`` below
    ``division_diameter`` (µm); flag those that reach it; returns how many."""
    count = counter()
    if n:
        _grow[launch(n)](type_, int(code), diameter, int(n), float(dv), factor, float(division_diameter), divide,
                         count)
    return read(count)


@cuda.jit
def _divide(rows, m, pos, diameter, uid, seed, step, stream, ratio_lo, ratio_hi, physicell, daughter_pos,
            daughter_diameter):
    k = cuda.grid(1)
    if k < m:
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
        am, ad = split_offsets(d, v, vd, vm, physicell)
        x = pos[i, 0]
        y = pos[i, 1]
        z = pos[i, 2]
        pos[i, 0] = x + am * ex
        pos[i, 1] = y + am * ey
        pos[i, 2] = z + am * ez
        daughter_pos[k, 0] = x + ad * ex
        daughter_pos[k, 1] = y + ad * ey
        daughter_pos[k, 2] = z + ad * ez
        diameter[i] = cbrt(vm / PI_6)
        daughter_diameter[k] = cbrt(vd / PI_6)


def divide(rows, pos, diameter, uid, seed, step, stream, ratio_lo, ratio_hi, physicell, daughter_pos,
           daughter_diameter):
    """Split each mother in ``rows`` in two along a random axis (see the CPU
    twin); daughters' positions and diameters are written out."""
    m = rows.size
    if m:
        _divide[launch(m)](rows, int(m), pos, diameter, uid, int(seed), int(step), int(stream), float(ratio_lo),
                           float(ratio_hi), bool(physicell), daughter_pos, daughter_diameter)


@cuda.jit
def _volume_update(type_, code, n, dt, table, nuclear_share, death, has_death, ns, nf, cs, cf, calcified, volume,
                   diameter):
    i = cuda.grid(1)
    if i < n and type_[i] == code:
        p = table[death[i] if has_death else 0]
        if not volume[i] > 0.0:
            volume_from_diameter(i, diameter[i], nuclear_share, table[0, 2], ns, nf, cs, cf)
        v = volume_step(i, dt, p, ns, nf, cs, cf, calcified)
        volume[i] = v
        diameter[i] = cbrt(v / PI_6)


def volume_update(type_, code, n, dt, table, nuclear_share, death, has_death, ns, nf, cs, cf, calcified, volume,
                  diameter):
    """PhysiCell's standard volume model over the rows of ``code`` (see the
    CPU twin; ``table`` a (4, 7) float64 device array, one row per death
    state)."""
    if n:
        _volume_update[launch(n)](type_, int(code), int(n), float(dt), table, float(nuclear_share), death,
                                  bool(has_death), ns, nf, cs, cf, calcified, volume, diameter)


@cuda.jit
def _death_phases(rows, m, uid, gated, values, threshold, probability, seed, step, stream, state, dt, duration,
                  relative_rupture, death, age, volume, has_volume, diameter, rupture, remove, count):
    q = cuda.grid(1)
    if q < m:
        i = rows[q]
        p = probability[q] if probability.size > 1 else probability[0]
        enter = death[i] == 0 and p > 0.0 and (not gated or values[q] < threshold) and \
            uniform(seed, uid[i], step, stream, 0) < p
        r = death_one(i, enter, state, dt, duration, relative_rupture, death, age, volume, has_volume, diameter,
                      rupture)
        remove[q] = r
        if r:
            cuda.atomic.add(count, 0, 1)


def death_phases(rows, uid, gated, values, threshold, probability, seed, step, stream, state, dt, duration,
                 relative_rupture, death, age, volume, has_volume, diameter, rupture, remove):
    """A death model with phases over ``rows`` (see the CPU twin); returns
    the count of cells to remove."""
    count = counter()
    m = rows.size
    if m:
        _death_phases[launch(m)](rows, int(m), uid, bool(gated), values, float(threshold), _on_device(probability),
                                 int(seed), int(step), int(stream), int(state), float(dt), float(duration),
                                 float(relative_rupture), death, age, volume, bool(has_volume), diameter, rupture,
                                 remove, count)
    return read(count)


@cuda.jit
def _live_types(type_, death, n, out):
    i = cuda.grid(1)
    if i < n:
        out[i] = type_[i] if death[i] == 0 else -1


def live_types(type_, death, n, out):
    """out[i] = type_[i] for live cells, -1 for dead ones."""
    if n:
        _live_types[launch(n)](type_, death, int(n), out)


@cuda.jit
def _mark_random(type_, code, uid, n, seed, step, stream, probability, flag, count):
    i = cuda.grid(1)
    if i < n:
        f = False
        if type_[i] == code and uniform(seed, uid[i], step, stream, 0) < probability:
            f = True
            cuda.atomic.add(count, 0, 1)
        flag[i] = f


def mark_random(type_, code, uid, n, seed, step, stream, probability, flag):
    """flag[i] = (row i is of ``code``) and U < probability; returns the count."""
    count = counter()
    if n:
        _mark_random[launch(n)](type_, int(code), uid, int(n), int(seed), int(step), int(stream), float(probability),
                                flag, count)
    return read(count)


@cuda.jit
def _brownian(type_, code, uid, pos, n, seed, step, stream, sigma):
    i = cuda.grid(1)
    if i < n and type_[i] == code:
        u = uid[i]
        pos[i, 0] += sigma * normal(seed, u, step, stream, 0)
        pos[i, 1] += sigma * normal(seed, u, step, stream, 1)
        pos[i, 2] += sigma * normal(seed, u, step, stream, 2)


def brownian_move(type_, code, uid, pos, n, seed, step, stream, sigma):
    """Brownian step of the rows of ``code``: each coordinate += sigma N(0, 1)."""
    if n:
        _brownian[launch(n)](type_, int(code), uid, pos, int(n), int(seed), int(step), int(stream), float(sigma))


@cuda.jit
def _directed(type_, code, uid, pos, n, seed, step, stream, distance):
    i = cuda.grid(1)
    if i < n and type_[i] == code:
        ex, ey, ez = unit_vector(seed, uid[i], step, stream, 0)
        pos[i, 0] += distance * ex
        pos[i, 1] += distance * ey
        pos[i, 2] += distance * ez


def directed_move(type_, code, uid, pos, n, seed, step, stream, distance):
    """Move the rows of ``code`` ``distance`` µm along a direction uniform on the sphere."""
    if n:
        _directed[launch(n)](type_, int(code), uid, pos, int(n), int(seed), int(step), int(stream), float(distance))


@cuda.jit
def _infection_pull(type_, code, uid, old, state, pos, n, cell_start, order, lower, inv_h, dims, length, periodic,
                    radius, p_contact, seed, step, stream):
    i = cuda.grid(1)
    if i >= n or type_[i] != code or old[i] != 0:
        return
    runs = cuda.local.array(_RUNS, dtype=np.int64)
    r2max = radius * radius
    q_contact = 1.0 - p_contact
    xi = pos[i, 0]
    yi = pos[i, 1]
    zi = pos[i, 2]
    m = stencil_runs(xi, yi, zi, cell_start, lower, inv_h, dims, periodic, radius, runs)
    k = 0
    for r in range(m):
        for q in range(runs[2 * r], runs[2 * r + 1]):
            j = order[q]
            if old[j] == 1:
                dx = min_image(pos[j, 0] - xi, length[0], periodic[0])
                dy = min_image(pos[j, 1] - yi, length[1], periodic[1])
                dz = min_image(pos[j, 2] - zi, length[2], periodic[2])
                if dx * dx + dy * dy + dz * dz < r2max:
                    k += 1
    if k > 0 and uniform(seed, uid[i], step, stream, 0) < 1.0 - q_contact ** k:
        state[i] = 1


def infection_pull(type_, code, uid, old, state, pos, n, cell_start, order, lower, inv_h, dims, length, periodic,
                   radius, p_contact, seed, step, stream):
    """Infection of the susceptible rows of ``code`` (see the CPU twin): each
    counts its infected neighbours (old state 1) closer than ``radius`` µm
    and is infected with probability 1 - (1 - p_contact)^k."""
    if n:
        _infection_pull[launch(n)](type_, int(code), uid, old, state, pos, int(n), cell_start, order, t3(lower),
                                   t3(inv_h), t3(dims, int), t3(length), t3(periodic, bool), float(radius),
                                   float(p_contact), int(seed), int(step), int(stream))


@cuda.jit
def _recovery(type_, code, uid, old, state, n, p_recover, p_lose, seed, step, stream):
    i = cuda.grid(1)
    if i < n and type_[i] == code:
        s = old[i]
        if s == 1:
            if p_recover > 0.0 and uniform(seed, uid[i], step, stream, 0) < p_recover:
                state[i] = 2
        elif s == 2:
            if p_lose > 0.0 and uniform(seed, uid[i], step, stream, 0) < p_lose:
                state[i] = 0


def recovery_step(type_, code, uid, old, state, n, p_recover, p_lose, seed, step, stream):
    """Rows of ``code``: old state 1 -> 2 with probability p_recover, 2 -> 0
    with probability p_lose (see the CPU twin)."""
    if n:
        _recovery[launch(n)](type_, int(code), uid, old, state, int(n), float(p_recover), float(p_lose), int(seed),
                             int(step), int(stream))


@cuda.jit
def _copy_1d(src, n, dst):
    i = cuda.grid(1)
    if i < n:
        dst[i] = src[i]


def copy(src, n, dst):
    """dst[:n] = src[:n] (1D device arrays)."""
    if n:
        _copy_1d[launch(n)](src, int(n), dst)


@cuda.jit
def _cell_cycle(type_, code, uid, phase, age, n, dt, durations, fixed, p_leave, nxt, divide_at, seed, step, stream,
                diameter, dv, divide, count):
    i = cuda.grid(1)
    if i >= n:
        return
    f = False
    if type_[i] == code:
        k = phase[i]
        if k < 0 or k >= durations.shape[1]:  # not a phase: counted, left alone (the caller names it)
            cuda.atomic.add(count, 1, 1)
            divide[i] = False
            return
        a = age[i] + dt
        r = i if durations.shape[0] > 1 else 0
        if fixed[k]:
            leave = a >= durations[r, k]
        else:
            pk = p_leave[r, k]
            leave = pk > 0.0 and uniform(seed, uid[i], step, stream, 0) < pk
        if leave:
            phase[i] = nxt[k]
            age[i] = 0.0
            f = divide_at[k]
        else:
            age[i] = a
        if dv > 0.0:
            d = diameter[i]
            diameter[i] = cbrt(d * d * d + dv / PI_6)
        if f:
            cuda.atomic.add(count, 0, 1)
    divide[i] = f


def cell_cycle(type_, code, uid, phase, age, n, dt, durations, fixed, p_leave, nxt, divide_at, seed, step, stream,
               diameter, dv, divide):
    """One interval of a cell cycle for the rows of ``code`` (see the CPU
    twin; the per-phase tables are host arrays, durations and p_leave with
    one row or one per agent).  Returns (cells flagged to
    divide, cells whose phase is not an index of ``durations``)."""
    counts = cuda.to_device(np.zeros(2, dtype=np.int64))
    if n:
        tables = [cuda.to_device(np.ascontiguousarray(a)) for a in (durations, fixed, p_leave, nxt, divide_at)]
        _cell_cycle[launch(n)](type_, int(code), uid, phase, age, int(n), float(dt), *tables, int(seed), int(step),
                               int(stream), diameter, float(dv), divide, counts)
    c = counts.copy_to_host()
    return int(c[0]), int(c[1])


@cuda.jit
def _move_along(pos, rows, m, direction, distance):
    q = cuda.grid(1)
    if q < m:
        move_one_along(pos, rows[q], direction[q, 0], direction[q, 1], direction[q, 2], distance)


def move_along(pos, rows, direction, distance):
    """pos[rows[q]] += distance * direction[q] / |direction[q]| (see the CPU twin)."""
    m = rows.size
    if m:
        _move_along[launch(m)](pos, rows, int(m), direction, float(distance))


@cuda.jit
def _mark_below(rows, m, uid, values, threshold, probability, seed, step, stream, flag, count):
    q = cuda.grid(1)
    if q < m:
        f = False
        p = probability[q] if probability.size > 1 else probability[0]
        if values[q] < threshold and uniform(seed, uid[rows[q]], step, stream, 0) < p:
            f = True
            cuda.atomic.add(count, 0, 1)
        flag[q] = f


def mark_below(rows, uid, values, threshold, probability, seed, step, stream, flag):
    """flag[q] = values[q] < threshold and U < probability[q] (one entry: the
    same for all); returns the count."""
    count = counter()
    m = rows.size
    if m:
        _mark_below[launch(m)](rows, int(m), uid, values, float(threshold), _on_device(probability), int(seed),
                               int(step), int(stream), flag, count)
    return read(count)


@cuda.jit
def _volume_fraction(rows, m, diameter, scale, voxel_volume, out):
    q = cuda.grid(1)
    if q < m:
        d = diameter[rows[q]]
        out[q] = scale * (PI_6 * d * d * d / voxel_volume)


def volume_fraction(rows, diameter, scale, voxel_volume, out):
    """out[q] = scale x cell volume / voxel volume at rows[q] (products and a
    division only: the CPU's bits)."""
    m = rows.size
    if m:
        _volume_fraction[launch(m)](rows, int(m), diameter, float(scale), float(voxel_volume), out)


@cuda.jit
def _scale_dead(rows, m, death, factor, out):
    q = cuda.grid(1)
    if q < m and death[rows[q]] != 0:
        out[q] *= factor


def scale_dead(rows, death, factor, out):
    """out[q] *= factor where the agent at rows[q] is dead."""
    m = rows.size
    if m:
        _scale_dead[launch(m)](rows, int(m), death, float(factor), out)


@cuda.jit
def _limit_factor(rows, m, values, threshold, out):
    q = cuda.grid(1)
    if q < m:
        out[rows[q]] = min(max(values[q] / threshold, 0.0), 1.0)


def limit_factor(rows, values, threshold, out):
    """out[rows[q]] = values[q] / threshold clipped to [0, 1]."""
    m = rows.size
    if m:
        _limit_factor[launch(m)](rows, int(m), values, float(threshold), out)


@cuda.jit
def _substance_gate(values, m, below, above, out):
    q = cuda.grid(1)
    if q < m:
        v = values[q]
        out[q] = 0.0 if (v < below and v > above) else 1.0


def substance_gate(values, below, above, out):
    """out[q] = 0 where below > values[q] > above, else 1."""
    m = values.size
    if m:
        _substance_gate[launch(m)](values, int(m), float(below), float(above), out)


@cuda.jit
def _assign(a, rows, m, value):
    q = cuda.grid(1)
    if q < m:
        a[rows[q]] = value


def assign(a, rows, value):
    """a[rows[q]] = value (a 1D device column)."""
    m = rows.size
    if m:
        _assign[launch(m)](a, rows, int(m), a.dtype.type(value))


@cuda.jit
def _where_equal(a, n, value, flag):
    i = cuda.grid(1)
    if i < n:
        flag[i] = a[i] == value


def where_equal(a, n, value):
    """Indices i < n with a[i] == value, increasing (an int64 device array)."""
    flag = cuda.device_array(max(int(n), 1), dtype=np.bool_)
    if n:
        _where_equal[launch(n)](a, int(n), a.dtype.type(value), flag)
    return nonzero(flag, n)


@cuda.jit
def _damage_step(type_, code, n, a, b, damage):
    i = cuda.grid(1)
    if i < n and type_[i] == code:
        damage[i] = (damage[i] + a) / b


def damage_step(type_, code, n, dt, rate, repair, damage):
    """damage = (damage + dt rate) / (1 + dt repair) for the rows of ``code``
    (the CPU's operations: the CPU's bits)."""
    if n:
        _damage_step[launch(n)](type_, int(code), int(n), float(dt) * float(rate), 1.0 + float(dt) * float(repair),
                                damage)


contact_one = portable(_cpu.contact_one)


@cuda.jit
def _contacts(type_, code, n, death, has_death, pos, diameter, cell_start, order, lower, inv_h, dims, length, periodic,
              search, reach, pressure, counts, ncount):
    i = cuda.grid(1)
    if i < n and type_[i] == code:
        runs = cuda.local.array(_RUNS, dtype=np.int64)
        pressure[i] = contact_one(i, type_, death, has_death, pos, diameter, cell_start, order, lower, inv_h, dims,
                                  length, periodic, search, reach, runs, counts, ncount)


def contacts(type_, code, n, death, has_death, pos, diameter, cell_start, order, lower, inv_h, dims, length, periodic,
             search, reach, pressure, counts, ncount):
    """The CPU twin's simple pressure and contact counts, one thread per
    agent (the same neighbours in the same order: the CPU's sums)."""
    if n:
        _contacts[launch(n)](type_, int(code), int(n), death, bool(has_death), pos, diameter, cell_start, order,
                             t3(lower), t3(inv_h), t3(dims, int), t3(length), t3(periodic, bool), float(search),
                             float(reach), pressure, counts, bool(ncount))


motility_one = portable(_cpu.motility_one)


@cuda.jit
def _motility(rows, m, uid, seed, step, stream, p_turn, speed, bias, planar, bias_dir, vec, pos, dt):
    q = cuda.grid(1)
    if q < m:
        i = rows[q]
        motility_one(i, q, uid[i], seed, step, stream, p_turn, speed, bias, planar, bias_dir, vec, pos, dt)


def motility(rows, uid, seed, step, stream, p_turn, speed, bias, planar, bias_dir, vec, pos, dt):
    """PhysiCell's motility for ``rows`` (see the CPU twin): the CPU's draws
    and operations."""
    m = rows.size
    if m:
        _motility[launch(m)](rows, int(m), uid, int(seed), int(step), int(stream), _on_device(p_turn),
                             _on_device(speed), _on_device(bias), bool(planar), bias_dir, vec, pos, float(dt))
