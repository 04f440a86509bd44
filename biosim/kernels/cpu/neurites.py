"""Neurite mechanics: cylinder contacts, forces passed down the tree, the
update of the dependent variables (BioDynaMo's NeuriteElement model).

A neurite element is a row of the agent table with ``distal`` (the point
mass, µm), ``position`` (the midpoint, µm), ``resting_length``,
``spring_constant``, ``adherence`` and its tree as uids (``mother``,
``daughter_left``, ``daughter_right``).  Its spring axis (proximal to
distal), length and tension are not stored but derived wherever they are
read (:func:`axis_of`, :func:`length_of`, :func:`tension_of`): the axis is
twice the way from the midpoint to the distal point, the length its norm,
the tension k (L - R) / R.  So is where a first element (one whose mother
is a soma) sits on its soma (:func:`attachments`): the direction of its
proximal end from the soma's centre.  ``row_of[uid]`` maps a live uid to its row.
``is_cyl[type]`` says which types are neurites.

Contact laws (interaction_force.cc), each returning the force on the first
object (µm-scaled, velocity-like as every biosim law) and the share of it
passed to the cylinder's proximal end:

* sphere on sphere (linear): overlap a = r1 + r2 - |c1 - c2|, force
  a (c1 - c2) / |c1 - c2| for a >= 0;
* cylinder from a sphere: at the closest point of the segment (or, for a
  cylinder shorter than the sphere's radius, at a virtual sphere of the
  cylinder's radius at its distal end), the proximal share 1 - k for the
  projection k in [0, 1];
* cylinder from a cylinder: 10 times the linear law between the closest
  points of the two segments (Bourke), the proximal share 1 - mua.

Every sum runs over the grid's canonical order (by cell, then by uid), one
agent per thread writing its own row, so results are bit-identical for any
thread count and any arrangement of the rows.
"""
import math

import numpy as np
from numba import njit, prange

from .forces import wrap_coordinate
from .grid import STENCIL_RUNS, min_image, stencil_runs
from .rng import uniform

_COINCIDENT = np.int64(0x4E5552)  # stream of the random pushes between coincident points
_CHUNK = 256  # elements per work item of the contact searches
_BLOCK = 64  # candidates tested at a time before the hits are examined
_TINY = 1e-8  # µm: points closer than this push in a random direction (BioDynaMo's U(-3, 3)^3)
_NO_ROWS = np.zeros(0, np.int64)  # proximal_point without held points
_NO_POINTS = np.zeros((0, 3))


@njit(cache=True, inline="always")
def _sphere_on_sphere(x1, y1, z1, r1, x2, y2, z2, r2, seed, u1, u2, step):
    """Force on sphere 1 from sphere 2, linear in the overlap."""
    cx = x1 - x2
    cy = y1 - y2
    cz = z1 - z2
    dist = math.sqrt(cx * cx + cy * cy + cz * cz)
    a = r1 + r2 - dist
    if a < 0.0:
        return 0.0, 0.0, 0.0
    if dist < _TINY:
        key = 3 * u2
        return (6.0 * uniform(seed, u1, step, _COINCIDENT, key) - 3.0,
                6.0 * uniform(seed, u1, step, _COINCIDENT, key + 1) - 3.0,
                6.0 * uniform(seed, u1, step, _COINCIDENT, key + 2) - 3.0)
    f = a / dist
    return f * cx, f * cy, f * cz


@njit(cache=True, inline="always")
def cylinder_from_sphere(px, py, pz, ax, ay, az, d, cx, cy, cz, r, seed, ucyl, usph, step):
    """(fx, fy, fz, proximal share) on the cylinder from proximal P, axis a,
    diameter d by the sphere of centre c and radius r."""
    L = math.sqrt(ax * ax + ay * ay + az * az)
    rc = 0.5 * d
    if L < r:  # a short cylinder: a virtual sphere of its radius at the distal end, all on the distal point
        s = rc / L
        fx, fy, fz = _sphere_on_sphere(px + ax - ax * s, py + ay - ay * s, pz + az - az * s, rc, cx, cy, cz, r,
                                       seed, ucyl, usph, step)
        return fx, fy, fz, 0.0
    k = ((cx - px) * ax + (cy - py) * ay + (cz - pz) * az) / (L * L)
    if k < 0.0:
        share = 1.0
        k = 0.0
    elif k > 1.0:
        share = 0.0
        k = 1.0
    else:
        share = 1.0 - k
    qx = px + k * ax
    qy = py + k * ay
    qz = pz + k * az
    dx = cx - qx
    dy = cy - qy
    dz = cz - qz
    if rc + r - math.sqrt(dx * dx + dy * dy + dz * dz) <= 0.0:
        return 0.0, 0.0, 0.0, 0.0
    fx, fy, fz = _sphere_on_sphere(qx, qy, qz, rc, cx, cy, cz, r, seed, ucyl, usph, step)
    return fx, fy, fz, share


@njit(cache=True, inline="always")
def cylinder_from_cylinder(ax, ay, az, bx, by, bz, d1, cx, cy, cz, dx, dy, dz, d2, seed, u1, u2, step):
    """(fx, fy, fz, proximal share) on segment a-b (proximal a) of diameter d1
    from segment c-d of diameter d2: 10 x the linear law between the
    closest points; parallel segments use their midpoints and share 0.5."""
    p13x = ax - cx
    p13y = ay - cy
    p13z = az - cz
    p43x = dx - cx
    p43y = dy - cy
    p43z = dz - cz
    p21x = bx - ax
    p21y = by - ay
    p21z = bz - az
    d1343 = p13x * p43x + p13y * p43y + p13z * p43z
    d4321 = p21x * p43x + p21y * p43y + p21z * p43z
    d1321 = p21x * p13x + p21y * p13y + p21z * p13z
    d4343 = p43x * p43x + p43y * p43y + p43z * p43z
    d2121 = p21x * p21x + p21y * p21y + p21z * p21z
    denom = d2121 * d4343 - d4321 * d4321
    share = 0.5
    if denom > 1e-12:
        mua = (d1343 * d4321 - d1321 * d4343) / denom
        mub = (d1343 + mua * d4321) / d4343
        if mua < 0.0:
            q1x, q1y, q1z = ax, ay, az
            share = 1.0
        elif mua > 1.0:
            q1x, q1y, q1z = bx, by, bz
            share = 0.0
        else:
            q1x = ax + mua * p21x
            q1y = ay + mua * p21y
            q1z = az + mua * p21z
            share = 1.0 - mua
        if mub < 0.0:
            q2x, q2y, q2z = cx, cy, cz
        elif mub > 1.0:
            q2x, q2y, q2z = dx, dy, dz
        else:
            q2x = cx + mub * p43x
            q2y = cy + mub * p43y
            q2z = cz + mub * p43z
    else:
        q1x = ax + 0.5 * p21x
        q1y = ay + 0.5 * p21y
        q1z = az + 0.5 * p21z
        q2x = cx + 0.5 * p43x
        q2y = cy + 0.5 * p43y
        q2z = cz + 0.5 * p43z
    fx, fy, fz = _sphere_on_sphere(q1x, q1y, q1z, 0.5 * d1, q2x, q2y, q2z, 0.5 * d2, seed, u1, u2, step)
    return 10.0 * fx, 10.0 * fy, 10.0 * fz, share


@njit(cache=True, inline="always")
def axis_of(i, distal, pos, box, periodic):
    """Row i's spring axis (proximal end to distal point, µm): twice the way
    from its midpoint to its distal point (the shortest way round a periodic
    box, edge lengths ``box``)."""
    return (2.0 * min_image(distal[i, 0] - pos[i, 0], box[0], periodic[0]),
            2.0 * min_image(distal[i, 1] - pos[i, 1], box[1], periodic[1]),
            2.0 * min_image(distal[i, 2] - pos[i, 2], box[2], periodic[2]))


@njit(cache=True, inline="always")
def length_of(i, distal, pos, box, periodic):
    """Row i's length, |axis| (µm)."""
    ax, ay, az = axis_of(i, distal, pos, box, periodic)
    return math.sqrt(ax * ax + ay * ay + az * az)


@njit(cache=True, inline="always")
def _tension(L, R, k):
    """T = k (L - R) / R, 0 within 1e-13 µm of rest."""
    return k * (L - R) / R if abs(L - R) > 1e-13 else 0.0


@njit(cache=True, inline="always")
def tension_of(i, distal, pos, resting, stiff, box, periodic):
    """Row i's spring tension, k (L - R) / R."""
    return _tension(length_of(i, distal, pos, box, periodic), resting[i], stiff[i])


@njit(cache=True, parallel=True)
def axes(rows, distal, pos, box, periodic, out):
    """``out[k]``: the axis of row ``rows[k]`` (:func:`axis_of`)."""
    for k in prange(rows.size):
        out[k, 0], out[k, 1], out[k, 2] = axis_of(rows[k], distal, pos, box, periodic)


@njit(cache=True, parallel=True)
def lengths(rows, distal, pos, box, periodic, out):
    """``out[k]``: the length of row ``rows[k]`` (:func:`length_of`)."""
    for k in prange(rows.size):
        out[k] = length_of(rows[k], distal, pos, box, periodic)


@njit(cache=True, parallel=True)
def tensions(rows, distal, pos, resting, stiff, box, periodic, out):
    """``out[k]``: the tension of row ``rows[k]`` (:func:`tension_of`)."""
    for k in prange(rows.size):
        out[k] = tension_of(rows[k], distal, pos, resting, stiff, box, periodic)


@njit(cache=True, parallel=True)
def row_map(uid, n, row_of, start):
    """row_of[uid[i]] = start + i for the n rows ``uid`` (those from row
    ``start`` on)."""
    for i in prange(n):
        row_of[uid[i]] = start + i


@njit(cache=True, inline="always")
def _row(u, row_of):
    return -1 if u < 0 else row_of[u]


@njit(cache=True, inline="always")
def proximal_point(i, pos, distal, mother, is_cyl, types, row_of, held_rows, held, box, periodic):
    """The proximal end of neurite row i: its mother's distal point; for a
    first element (its mother a soma) the point ``held[h]`` where
    ``held_rows[h]`` is i (``held_rows`` increasing), else its own,
    distal - axis (where its midpoint and distal point put it)."""
    m = row_of[mother[i]]
    if is_cyl[types[m]]:
        return distal[m, 0], distal[m, 1], distal[m, 2]
    h = np.searchsorted(held_rows, i)
    if h < held_rows.size and held_rows[h] == i:
        return held[h, 0], held[h, 1], held[h, 2]
    ax, ay, az = axis_of(i, distal, pos, box, periodic)
    return distal[i, 0] - ax, distal[i, 1] - ay, distal[i, 2] - az


@njit(cache=True, parallel=True)
def first_mask(rows, types, is_cyl, mother, row_of, out):
    """``out[k]`` 1 where neurite row ``rows[k]`` is a first element (its
    mother a soma), else 0."""
    for k in prange(rows.size):
        out[k] = 1 - is_cyl[types[row_of[mother[rows[k]]]]]


@njit(cache=True, parallel=True)
def attachments(first, pos, distal, mother, row_of, box, periodic, out):
    """``out[k]``: the unit direction from the centre of the soma of first
    element ``first[k]`` to its proximal end (distal - axis; 0 where they
    coincide): where it sits on its soma."""
    for k in prange(first.size):
        i = first[k]
        m = row_of[mother[i]]
        ax, ay, az = axis_of(i, distal, pos, box, periodic)
        dx = min_image(distal[i, 0] - ax - pos[m, 0], box[0], periodic[0])
        dy = min_image(distal[i, 1] - ay - pos[m, 1], box[1], periodic[1])
        dz = min_image(distal[i, 2] - az - pos[m, 2], box[2], periodic[2])
        norm = math.sqrt(dx * dx + dy * dy + dz * dz)
        f = 1.0 / norm if norm > 0.0 else 0.0
        out[k, 0] = dx * f
        out[k, 1] = dy * f
        out[k, 2] = dz * f


@njit(cache=True, parallel=True)
def soma_points(first, pos, diam, mother, row_of, attach, out):
    """``out[k]``: the point of the surface of the soma of first element
    ``first[k]`` along ``attach[k]`` (its proximal end)."""
    for k in prange(first.size):
        m = row_of[mother[first[k]]]
        r = 0.5 * diam[m]
        out[k, 0] = pos[m, 0] + r * attach[k, 0]
        out[k, 1] = pos[m, 1] + r * attach[k, 1]
        out[k, 2] = pos[m, 2] + r * attach[k, 2]


@njit(cache=True, parallel=True)
def largest_bounding_radius(rows, diam, distal, pos, box, periodic):
    """The largest (length + diameter) / 2 of the neurite rows: the radius
    about its midpoint that holds a whole cylinder."""
    r = 0.0
    for k in prange(rows.size):
        i = rows[k]
        r = max(r, 0.5 * (length_of(i, distal, pos, box, periodic) + diam[i]))
    return r


@njit(cache=True, parallel=True)
def kinds(order, types, is_cyl, n, sphere_at, cylinder):
    """In one parallel pass over the grid's order: ``sphere_at[q]`` 1 where
    the agent at sorted index q is a sphere, ``cylinder[i]`` 1 where row i
    is a neurite element (0 elsewhere)."""
    for q in prange(n):
        j = order[q]
        c = is_cyl[types[j]]
        sphere_at[q] = 1 - c
        cylinder[j] = c


@njit(cache=True, parallel=True)
def sorted_bounds(pos, diam, distal, types, is_cyl, order, n, box, periodic, cols):
    """The agents in the grid's sort order as rows of ``cols`` (4, n): the
    centre (µm) and the bounding radius, (L + d) / 2 for a cylinder, d / 2
    for a sphere: what the contact searches read, contiguously."""
    for q in prange(n):
        j = order[q]
        cols[0, q] = pos[j, 0]
        cols[1, q] = pos[j, 1]
        cols[2, q] = pos[j, 2]
        cols[3, q] = 0.5 * (length_of(j, distal, pos, box, periodic) + diam[j]) if is_cyl[types[j]] else 0.5 * diam[j]


@njit(cache=True, parallel=True)
def contact_forces(n, cols, diam, types, uid, is_cyl, distal, mother, cell_start, order, lower, inv_h, dims,
                   length, periodic, cutoff, reach, scale, seed, step, own, touched):
    """Forces between cylinders on each neurite row i with ``touched[i]``
    nonzero on entry (phase 1 of the neurite mechanics): ``own[i]`` the part
    on its distal point mass, ``touched[i]`` 1 when a cylinder touches it,
    else 0 (other rows are left as they are).  The part passed to the
    mother's point mass is nonzero for touched rows only, so it is found
    again for those alone (:func:`contact_prox`).  Relatives are skipped: the mother, the daughters and
    every cylinder of the same mother (siblings; the first elements of one
    soma).  Forces are multiplied by ``scale`` (BioDynaMo's h/m = 0.01).
    A candidate is examined when the bounding spheres (``cols``,
    :func:`sorted_bounds`) meet; the search radius about the midpoint is the
    element's bounding radius plus ``reach``, the largest of any cylinder
    (spheres are searched from their side: :func:`sphere_pairs`).

    The elements are taken in the grid's order, not the rows': neighbours in
    that order search the same cells, which stay in cache however far the
    rows have drifted from it since the last reorder (rows appended by
    growth).  Each element's own centre and bounding radius are read from
    ``cols`` too; its other columns only when a candidate is not a relative."""
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(nchunks):
        runs = np.empty(2 * STENCIL_RUNS, dtype=np.int64)  # once per chunk: an allocation per element costs more
        block = np.empty(_BLOCK, dtype=np.int64)
        for q in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            i = order[q]
            if touched[i] != 0:
                ox, oy, oz, _, _, _, hit = _contacts_of(
                    i, cols[0, q], cols[1, q], cols[2, q], cols[3, q], cols, diam, types, uid, is_cyl, distal,
                    mother, cell_start, order, lower, inv_h, dims, length, periodic, cutoff, reach, scale, seed, step,
                    runs, block)
                own[i, 0] = ox
                own[i, 1] = oy
                own[i, 2] = oz
                touched[i] = hit


@njit(cache=True, parallel=True)
def contact_prox(hot, touched, pos, cols, diam, types, uid, is_cyl, distal, mother, cell_start, order,
                 lower, inv_h, dims, length, periodic, cutoff, reach, scale, seed, step, prox):
    """``prox[k]``: the part of :func:`contact_forces` that row ``hot[k]``
    (``pos``: the rows' midpoints) passes to its mother's point mass when
    ``touched`` says a cylinder touches it (``touched & 1``), else 0 (the
    same search, the same sums)."""
    for k in prange(hot.size):
        i = hot[k]
        prox[k, 0] = 0.0
        prox[k, 1] = 0.0
        prox[k, 2] = 0.0
        if touched[i] & 1:
            runs = np.empty(2 * STENCIL_RUNS, dtype=np.int64)
            block = np.empty(_BLOCK, dtype=np.int64)
            _, _, _, qx, qy, qz, _ = _contacts_of(
                i, pos[i, 0], pos[i, 1], pos[i, 2], 0.5 * (length_of(i, distal, pos, length, periodic) + diam[i]),
                cols, diam, types, uid, is_cyl, distal, mother, cell_start, order, lower, inv_h, dims, length,
                periodic, cutoff, reach, scale, seed, step, runs, block)
            prox[k, 0] = qx
            prox[k, 1] = qy
            prox[k, 2] = qz


@njit(cache=True, inline="always")
def _image_shift(cols, q, mx, my, mz, length, periodic):
    """What to subtract from the points of the agent at sorted index ``q``
    (centre ``cols[:3, q]``) to take its image nearest the point m (µm):
    whole box lengths along the periodic axes, 0 elsewhere."""
    dx = cols[0, q] - mx
    dy = cols[1, q] - my
    dz = cols[2, q] - mz
    return (dx - min_image(dx, length[0], periodic[0]), dy - min_image(dy, length[1], periodic[1]),
            dz - min_image(dz, length[2], periodic[2]))


@njit(cache=True, inline="always")
def _contacts_of(i, mx, my, mz, ri, cols, diam, types, uid, is_cyl, distal, mother, cell_start, order, lower,
                 inv_h, dims, length, periodic, cutoff, reach, scale, seed, step, runs, block):
    """The contact forces on row i (midpoint m, bounding radius ri, µm; the
    axes twice the way from the midpoints, ``cols[:3]``, to the distal
    points, the shortest way round a periodic box of edges ``length``): the
    part on its distal point mass, the part passed to its mother's, and 1
    when a cylinder touches it, else 0 (``runs``, ``block``: the thread's
    scratch).  In a periodic box a candidate is taken at its image nearest
    the element."""
    wrap = periodic[0] or periodic[1] or periodic[2]
    mi = mother[i]
    ui = uid[i]
    m = stencil_runs(mx, my, mz, cell_start, lower, inv_h, dims, periodic, min(ri + reach, cutoff), runs)
    loaded = False
    px = py = pz = bx = by = bz = di = 0.0
    ox = 0.0
    oy = 0.0
    oz = 0.0
    qx = 0.0
    qy = 0.0
    qz = 0.0
    hit = 0
    for r in range(m):
        end = runs[2 * r + 1]
        for q0 in range(runs[2 * r], end, _BLOCK):
            # the candidates whose bounding spheres meet this one's, compacted in order without branches
            # (most do not: a branch per candidate costs more than the test)
            hits = 0
            if wrap:
                for q in range(q0, min(q0 + _BLOCK, end)):
                    dx = min_image(cols[0, q] - mx, length[0], periodic[0])
                    dy = min_image(cols[1, q] - my, length[1], periodic[1])
                    dz = min_image(cols[2, q] - mz, length[2], periodic[2])
                    rr = ri + cols[3, q]
                    block[hits] = q
                    hits += np.int64(dx * dx + dy * dy + dz * dz <= rr * rr)
            else:
                for q in range(q0, min(q0 + _BLOCK, end)):
                    dx = cols[0, q] - mx
                    dy = cols[1, q] - my
                    dz = cols[2, q] - mz
                    rr = ri + cols[3, q]
                    block[hits] = q
                    hits += np.int64(dx * dx + dy * dy + dz * dz <= rr * rr)
            for h in range(hits):
                j = order[block[h]]
                if j == i:
                    continue  # itself
                mj = mother[j]
                if mj == mi or mj == ui or uid[j] == mi or not is_cyl[types[j]]:
                    continue  # a sibling, a daughter, the mother, or a sphere (sphere_pairs)
                if not loaded:
                    bx = distal[i, 0]
                    by = distal[i, 1]
                    bz = distal[i, 2]
                    px = bx - 2.0 * min_image(bx - mx, length[0], periodic[0])
                    py = by - 2.0 * min_image(by - my, length[1], periodic[1])
                    pz = bz - 2.0 * min_image(bz - mz, length[2], periodic[2])
                    di = diam[i]
                    loaded = True
                qj = block[h]
                sx, sy, sz = _image_shift(cols, qj, mx, my, mz, length, periodic) if wrap else (0.0, 0.0, 0.0)
                dx, dy, dz = distal[j, 0] - sx, distal[j, 1] - sy, distal[j, 2] - sz
                ax = 2.0 * min_image(distal[j, 0] - cols[0, qj], length[0], periodic[0])
                ay = 2.0 * min_image(distal[j, 1] - cols[1, qj], length[1], periodic[1])
                az = 2.0 * min_image(distal[j, 2] - cols[2, qj], length[2], periodic[2])
                fx, fy, fz, share = cylinder_from_cylinder(
                    px, py, pz, bx, by, bz, di, dx - ax, dy - ay, dz - az, dx, dy, dz,
                    diam[j], seed, ui, uid[j], step)
                if fx == 0.0 and fy == 0.0 and fz == 0.0:
                    continue
                hit = 1
                fx *= scale
                fy *= scale
                fz *= scale
                keep = 1.0 - share
                ox += fx * keep
                oy += fy * keep
                oz += fz * keep
                qx += fx * share
                qy += fy * share
                qz += fz * share
    return ox, oy, oz, qx, qy, qz, hit


@njit(cache=True, inline="always")
def _sphere_walk(qs, cols, is_cyl, diam, types, uid, distal, mother, cell_start, order, lower, inv_h, dims,
                 length, periodic, cutoff, reach, seed, step, runs, fill, pairs, forces, w):
    """The cylinders touching the sphere at sorted index ``qs``: their count,
    or with ``fill`` their rows into ``pairs[w:]`` and the force on each
    from the sphere (fx, fy, fz, proximal share) into ``forces[w:]`` (in a
    periodic box, each cylinder's image nearest the sphere)."""
    wrap = periodic[0] or periodic[1] or periodic[2]
    s = order[qs]
    cx = cols[0, qs]
    cy = cols[1, qs]
    cz = cols[2, qs]
    r = cols[3, qs]
    us = uid[s]
    m = stencil_runs(cx, cy, cz, cell_start, lower, inv_h, dims, periodic, min(r + reach, cutoff), runs)
    count = 0
    for t in range(m):
        for q in range(runs[2 * t], runs[2 * t + 1]):
            dx = cols[0, q] - cx
            dy = cols[1, q] - cy
            dz = cols[2, q] - cz
            if wrap:
                dx = min_image(dx, length[0], periodic[0])
                dy = min_image(dy, length[1], periodic[1])
                dz = min_image(dz, length[2], periodic[2])
            rr = r + cols[3, q]
            if dx * dx + dy * dy + dz * dz > rr * rr:
                continue
            j = order[q]
            if not is_cyl[types[j]] or mother[j] == us:
                continue  # a sphere, or one of its own first elements
            sx, sy, sz = _image_shift(cols, q, cx, cy, cz, length, periodic) if wrap else (0.0, 0.0, 0.0)
            ax = 2.0 * min_image(distal[j, 0] - cols[0, q], length[0], periodic[0])
            ay = 2.0 * min_image(distal[j, 1] - cols[1, q], length[1], periodic[1])
            az = 2.0 * min_image(distal[j, 2] - cols[2, q], length[2], periodic[2])
            gx, gy, gz, share = cylinder_from_sphere(distal[j, 0] - sx - ax, distal[j, 1] - sy - ay,
                                                     distal[j, 2] - sz - az, ax, ay, az, diam[j], cx, cy, cz, r, seed,
                                                     uid[j], us, step)
            if gx == 0.0 and gy == 0.0 and gz == 0.0:
                continue
            if fill:
                pairs[w + count] = j
                forces[w + count, 0] = gx
                forces[w + count, 1] = gy
                forces[w + count, 2] = gz
                forces[w + count, 3] = share
            count += 1
    return count


@njit(cache=True, parallel=True)
def sphere_pairs(spheres, cols, is_cyl, diam, types, uid, distal, mother, cell_start, order, lower, inv_h,
                 dims, length, periodic, cutoff, reach, seed, step, offsets, fill, pairs, forces):
    """Sphere-cylinder contacts, found from each sphere (sorted indices
    ``spheres``, in the grid's order) within its radius plus ``reach``:
    with ``fill`` false the count per sphere into ``offsets[1:]``; with
    ``fill`` true (``offsets`` the prefix sums) each pair's cylinder row and
    the force on it from the sphere (fx, fy, fz, proximal share)."""
    nchunks = (spheres.size + _CHUNK - 1) // _CHUNK
    for c in prange(nchunks):
        runs = np.empty(2 * STENCIL_RUNS, dtype=np.int64)
        for k in range(c * _CHUNK, min(spheres.size, (c + 1) * _CHUNK)):
            w = offsets[k] if fill else 0
            m = _sphere_walk(spheres[k], cols, is_cyl, diam, types, uid, distal, mother, cell_start, order,
                             lower, inv_h, dims, length, periodic, cutoff, reach, seed, step, runs, fill, pairs,
                             forces, w)
            if not fill:
                offsets[k + 1] = m


@njit(cache=True)
def add_sphere_pairs(pairs, forces, by_cylinder, own, hot, prox):
    """Adds each pair's force on its cylinder (``by_cylinder``: the pairs
    ordered by cylinder, then by sphere) to ``own`` (the distal share) and
    ``prox`` (the proximal share; row j's at ``searchsorted(hot, j)``), in
    that order (one thread)."""
    for k in range(by_cylinder.size):
        p = by_cylinder[k]
        j = pairs[p]
        h = np.searchsorted(hot, j)
        share = forces[p, 3]
        keep = 1.0 - share
        for c in range(3):
            own[j, c] += forces[p, c] * keep
            prox[h, c] += forces[p, c] * share


@njit(cache=True)
def sphere_pushes(spheres, order, offsets, forces, force):
    """Adds to each sphere's ``force`` the opposite of its pairs' forces (the
    cylinders push it away), in pair order."""
    for k in range(spheres.size):
        s = order[spheres[k]]
        for p in range(offsets[k], offsets[k + 1]):
            force[s, 0] -= forces[p, 0]
            force[s, 1] -= forces[p, 1]
            force[s, 2] -= forces[p, 2]


@njit(cache=True, inline="always")
def _pull(j, ax, ay, az, L, T, touched, hot, prox):
    """What daughter row j (axis a, length L, tension T) passes to its
    mother's point mass: its spring (which only pulls) plus the proximal
    share of its contact forces (held for the rows ``hot``, those with
    ``touched`` nonzero)."""
    f = max(T / L, 0.0)
    if touched[j] == 0:
        return f * ax + 0.0, f * ay + 0.0, f * az + 0.0
    h = np.searchsorted(hot, j)
    return f * ax + prox[h, 0], f * ay + prox[h, 1], f * az + prox[h, 2]


@njit(cache=True, inline="always")
def _stiffen(k, R, ax, ay, az, L, K):
    """Adds the stiffness of a spring (constant k, resting length R, axis a
    of length L) along its axis, (k / R) u u^T, to the 3 x 3 ``K`` (a flat
    9)."""
    w = k / R / (L * L)
    K[0] += w * ax * ax
    K[1] += w * ax * ay
    K[2] += w * ax * az
    K[3] += w * ay * ax
    K[4] += w * ay * ay
    K[5] += w * ay * az
    K[6] += w * az * ax
    K[7] += w * az * ay
    K[8] += w * az * az


@njit(cache=True, parallel=True)
def displacements(rows, distal, pos, adherence, stiff, resting, left, right, row_of, own, touched, hot,
                  prox, scale, mobility, max_move, implicit, box, periodic, disp):
    """The move of each neurite row's distal point mass (phase 2) under the
    force F = its own spring, -T/L x axis, plus what its daughters pass on
    (both scaled by ``scale`` when a cylinder touches it, BioDynaMo's h/m),
    plus the kept share of its contact forces (``touched & 1``: a cylinder
    touches it; ``hot``, ``prox``: the proximal shares, as :func:`_pull`
    reads them): none when |F| is below the
    ``adherence``, else the move d capped at ``max_move`` µm, with
    d = mobility x F (BioDynaMo's explicit move) or, with ``implicit``,
    (I + mobility K) d = mobility x F, K the stiffness of the springs at the
    point (its own, and its daughters' that pull: (k / R) u u^T each), so
    stiff springs relax without overshoot whatever the step.  ``own`` may
    be ``disp`` (each row reads only its own entry)."""
    for k in prange(rows.size):
        i = rows[k]
        K = np.zeros(9)
        ax, ay, az = axis_of(i, distal, pos, box, periodic)
        L = math.sqrt(ax * ax + ay * ay + az * az)
        f = -_tension(L, resting[i], stiff[i]) / L
        fx = f * ax
        fy = f * ay
        fz = f * az
        if implicit:
            _stiffen(stiff[i], resting[i], ax, ay, az, L, K)
        for j in (_row(left[i], row_of), _row(right[i], row_of)):
            if j >= 0:
                bx, by, bz = axis_of(j, distal, pos, box, periodic)
                Lj = math.sqrt(bx * bx + by * by + bz * bz)
                Tj = _tension(Lj, resting[j], stiff[j])
                gx, gy, gz = _pull(j, bx, by, bz, Lj, Tj, touched, hot, prox)
                fx += gx
                fy += gy
                fz += gz
                if implicit and Tj > 0.0:
                    _stiffen(stiff[j], resting[j], bx, by, bz, Lj, K)
        w = mobility
        if touched[i] & 1:
            fx *= scale
            fy *= scale
            fz *= scale
            w *= scale
        fx += own[i, 0]
        fy += own[i, 1]
        fz += own[i, 2]
        norm = math.sqrt(fx * fx + fy * fy + fz * fz)
        if norm < adherence[i]:
            disp[i, 0] = 0.0
            disp[i, 1] = 0.0
            disp[i, 2] = 0.0
            continue
        dx = fx * mobility
        dy = fy * mobility
        dz = fz * mobility
        if implicit:  # solve (I + w K) d = mobility F, a symmetric positive definite 3 x 3
            a00 = 1.0 + w * K[0]
            a01 = w * K[1]
            a02 = w * K[2]
            a11 = 1.0 + w * K[4]
            a12 = w * K[5]
            a22 = 1.0 + w * K[8]
            c00 = a11 * a22 - a12 * a12
            c01 = a02 * a12 - a01 * a22
            c02 = a01 * a12 - a02 * a11
            c11 = a00 * a22 - a02 * a02
            c12 = a01 * a02 - a00 * a12
            c22 = a00 * a11 - a01 * a01
            det = a00 * c00 + a01 * c01 + a02 * c02
            ex = (c00 * dx + c01 * dy + c02 * dz) / det
            ey = (c01 * dx + c11 * dy + c12 * dz) / det
            ez = (c02 * dx + c12 * dy + c22 * dz) / det
            dx, dy, dz = ex, ey, ez
        move = math.sqrt(dx * dx + dy * dy + dz * dz)
        c = 1.0 if move <= max_move else max_move / move
        disp[i, 0] = dx * c
        disp[i, 1] = dy * c
        disp[i, 2] = dz * c


@njit(cache=True)
def first_pulls(first, mother, row_of, distal, pos, resting, stiff, touched, hot, prox, box, periodic):
    """(somata, pulls): for each first element ``first[k]`` (one whose mother
    is a soma, :func:`first_mask`), in that order, its soma's row and what
    it passes to its soma's point (:func:`_pull`), read before the distal
    points move (the option ``soma_feels_tension``; :func:`soma_pulls` adds
    them)."""
    somata = np.empty(first.size, np.int64)
    pulls = np.empty((first.size, 3))
    for k in range(first.size):
        i = first[k]
        ax, ay, az = axis_of(i, distal, pos, box, periodic)
        L = math.sqrt(ax * ax + ay * ay + az * az)
        somata[k] = row_of[mother[i]]
        pulls[k, 0], pulls[k, 1], pulls[k, 2] = _pull(i, ax, ay, az, L, _tension(L, resting[i], stiff[i]), touched,
                                                      hot, prox)
    return somata, pulls


@njit(cache=True)
def soma_pulls(somata, pulls, force):
    """Adds each of :func:`first_pulls`' pulls to its soma's ``force``, in
    their order (one thread: several elements share a soma)."""
    for k in range(somata.size):
        s = somata[k]
        force[s, 0] += pulls[k, 0]
        force[s, 1] += pulls[k, 1]
        force[s, 2] += pulls[k, 2]


@njit(cache=True, inline="always")
def _span(i, qx, qy, qz, pos, distal, lower, box, periodic):
    """Row i's midpoint from its proximal end q and its distal point, and its
    length as then derived (:func:`length_of`, returned).  Along a periodic
    axis of the box (lower corner ``lower``, edge lengths ``box``, µm) the
    axis is the shortest way from the proximal end to the distal point, and
    the midpoint is wrapped into the box."""
    ax = min_image(distal[i, 0] - qx, box[0], periodic[0])
    ay = min_image(distal[i, 1] - qy, box[1], periodic[1])
    az = min_image(distal[i, 2] - qz, box[2], periodic[2])
    pos[i, 0] = distal[i, 0] - 0.5 * ax
    pos[i, 1] = distal[i, 1] - 0.5 * ay
    pos[i, 2] = distal[i, 2] - 0.5 * az
    for c in range(3):
        if periodic[c]:
            pos[i, c] = wrap_coordinate(pos[i, c], lower[c], box[c])
    return length_of(i, distal, pos, box, periodic)


@njit(cache=True, parallel=True)
def dependent(rows, pos, types, is_cyl, distal, mother, row_of, held_rows, held, lower, box, periodic):
    """UpdateDependentPhysicalVariables for each neurite row: the midpoint
    between its (current) proximal end (:func:`proximal_point`) and its
    distal point, from which the axis, length and tension follow (see
    :func:`_span` for a periodic box)."""
    for k in prange(rows.size):
        i = rows[k]
        qx, qy, qz = proximal_point(i, pos, distal, mother, is_cyl, types, row_of, held_rows, held, box, periodic)
        _span(i, qx, qy, qz, pos, distal, lower, box, periodic)


@njit(cache=True, parallel=True)
def move_distal(rows, disp, distal, lo, hi, clamp, lower, box, periodic):
    """Move each row's distal point by its displacement, kept inside
    [lo, hi] (µm) per axis when ``clamp`` (a closed box), wrapped into the
    box along its periodic axes."""
    for k in prange(rows.size):
        i = rows[k]
        for c in range(3):
            v = distal[i, c] + disp[i, c]
            if clamp:
                v = min(max(v, lo[c]), hi[c])
            if periodic[c]:
                v = wrap_coordinate(v, lower[c], box[c])
            distal[i, c] = v


@njit(cache=True, parallel=True)
def hide_cylinders(cols, order, types, is_cyl, n):
    """Move every cylinder in ``cols`` (the sphere force loops' gathered
    columns) far away: entry q to 1e150 + q 1e140 µm on each axis, where
    every sphere law is exactly zero (finite squared distances above 1e280:
    no overflow, no NaN) and no two hidden entries coincide.  The sphere
    loops then add exactly nothing for a cylinder (their contacts are the
    neurites' own kernels')."""
    for q in prange(n):
        if is_cyl[types[order[q]]]:
            far = 1e150 + q * 1e140
            cols[0, q] = far
            cols[1, q] = far
            cols[2, q] = far


@njit(cache=True, parallel=True)
def tip_directions(rows, distal, pos, box, periodic, uid, grad, seed, step, stream, persistence, randomness, weight,
                   out):
    """Growth directions of the tips ``rows``: persistence x axis +
    randomness x U(-1, 1)^3 (draws 0-2 of the tip's uid, step and
    ``stream``) + weight x the unit vector of ``grad[k]`` (when ``grad``
    has a row per tip)."""
    graded = grad.shape[0] == rows.size
    for k in prange(rows.size):
        i = rows[k]
        u = uid[i]
        out[k, 0], out[k, 1], out[k, 2] = axis_of(i, distal, pos, box, periodic)
        for c in range(3):
            out[k, c] = persistence * out[k, c]
            if randomness != 0.0:
                out[k, c] += randomness * (2.0 * uniform(seed, u, step, stream, c) - 1.0)
        if graded and weight != 0.0:
            g = math.sqrt(grad[k, 0] ** 2 + grad[k, 1] ** 2 + grad[k, 2] ** 2)
            if g > 0.0:
                for c in range(3):
                    out[k, c] += weight * grad[k, c] / g


@njit(cache=True, parallel=True)
def grow_tips(rows, direction, distance, pos, diam, types, is_cyl, distal, mother, row_of, resting, rate, floor,
              lower, box, periodic):
    """ElongateTerminalEnd for each row ``rows[k]`` (terminal elements):
    when ``direction[k]`` (any length, not 0) points forward (a positive dot
    product with the axis) the distal end moves by ``distance[k]`` µm along
    it, and the midpoint follows with T = 0 (R = L).  Then the diameter
    changes by ``rate`` µm (kept at ``floor`` or above when ``rate`` < 0)."""
    for k in prange(rows.size):
        i = rows[k]
        dx = direction[k, 0]
        dy = direction[k, 1]
        dz = direction[k, 2]
        norm = math.sqrt(dx * dx + dy * dy + dz * dz)
        ax, ay, az = axis_of(i, distal, pos, box, periodic)
        if norm > 0.0 and dx * ax + dy * ay + dz * az > 0.0:
            # the proximal end before the distal point moves (a first element's is its own)
            qx, qy, qz = proximal_point(i, pos, distal, mother, is_cyl, types, row_of, _NO_ROWS, _NO_POINTS, box,
                                        periodic)
            s = distance[k] / norm
            distal[i, 0] += dx * s
            distal[i, 1] += dy * s
            distal[i, 2] += dz * s
            for c in range(3):
                if periodic[c]:
                    distal[i, c] = wrap_coordinate(distal[i, c], lower[c], box[c])
            resting[i] = _span(i, qx, qy, qz, pos, distal, lower, box, periodic)
        if rate != 0.0:
            d = diam[i] + rate
            diam[i] = max(d, floor) if rate < 0.0 else d


# rows per chunk of the parallel row scans below (the result is the same for any chunk size and thread count)
SCAN_CHUNK = 1 << 15


@njit(cache=True)
def _pack_chunks(out, counts):
    """Move each chunk's matches (``counts[c]`` rows at ``out[c *
    SCAN_CHUNK:]``) down behind the previous chunks'; returns their total.
    Chunks in order, each moved to a place at or below its own: in place."""
    m = 0
    for c in range(counts.size):
        a = c * SCAN_CHUNK
        for k in range(counts[c]):
            out[m + k] = out[a + k]
        m += counts[c]
    return m


@njit(cache=True, parallel=True)
def _terminal_chunks(types, code, left, n, out, counts):
    for c in prange(counts.size):
        a = c * SCAN_CHUNK
        m = a
        for i in range(a, min(n, a + SCAN_CHUNK)):
            if types[i] == code and left[i] < 0:
                out[m] = i
                m += 1
        counts[c] = m - a


def terminal_rows(types, code, left, n, out):
    """Rows of type ``code`` without a left daughter into ``out`` (at least n
    long); returns their number (increasing rows: chunks of rows scanned in
    parallel, then their matches packed)."""
    counts = np.empty((n + SCAN_CHUNK - 1) // SCAN_CHUNK, np.int64)
    _terminal_chunks(types, code, left, n, out, counts)
    return _pack_chunks(out, counts)


@njit(cache=True, parallel=True)
def _long_chunks(types, is_cyl, left, distal, pos, box, periodic, n, max_length, out, counts):
    for c in prange(counts.size):
        a = c * SCAN_CHUNK
        m = a
        for i in range(a, min(n, a + SCAN_CHUNK)):
            if left[i] < 0 and is_cyl[types[i]] and length_of(i, distal, pos, box, periodic) > max_length:
                out[m] = i
                m += 1
        counts[c] = m - a


def long_tips(types, is_cyl, left, distal, pos, box, periodic, n, max_length, out):
    """Rows of terminal neurite elements longer than ``max_length`` µm into
    ``out`` (at least n long); returns their number (increasing rows, as
    :func:`terminal_rows`)."""
    counts = np.empty((n + SCAN_CHUNK - 1) // SCAN_CHUNK, np.int64)
    _long_chunks(types, is_cyl, left, distal, pos, box, periodic, n, max_length, out, counts)
    return _pack_chunks(out, counts)
