"""Kernels of the built-in behaviours (biosim.models).  Each runs over all
rows and acts on those whose ``type`` equals ``code``; each writes only its
own row, and random draws are keyed by (seed, uid, step, stream, k)."""
import math

import numpy as np
from numba import njit, prange

from .grid import SEARCH_CHUNK, STENCIL_RUNS, min_image, stencil_runs
from .rng import hash_prefix, normal, uniform, uniform_after, unit_vector

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


@njit(cache=True, inline="always")
def split_offsets(d, v, vd, vm, physicell):
    """(mother's, daughter's) displacement along the division axis (µm) of a
    cell of diameter ``d`` and volume ``v`` splitting into daughter volume
    ``vd`` and mother volume ``vm``: centres the mother's radius apart with
    the centre of mass kept, or PhysiCell's placement (daughter at +r,
    mother at -r / 2)."""
    if physicell:
        return -0.25 * d, 0.5 * d
    sep = 0.5 * d
    return -sep * vd / v, sep * vm / v


@njit(cache=True, parallel=True)
def divide(rows, pos, diameter, uid, seed, step, stream, ratio_lo, ratio_hi, physicell,
           daughter_pos, daughter_diameter):
    """Split each mother in ``rows`` in two along a random axis.

    The volume ratio q = V_daughter / V_mother is drawn from U(lo, hi) (exactly
    lo when lo == hi); volume is conserved; the centres move apart by the
    mother's radius along the axis, the centre of mass kept (or with
    ``physicell``, PhysiCell's placement: daughter at +r, mother at -r/2).
    Mothers are updated in place; daughters' position and diameter are
    written out."""
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
        diameter[i] = np.cbrt(vm / PI_6)
        daughter_diameter[k] = np.cbrt(vd / PI_6)


@njit(cache=True, inline="always")
def volume_step(i, dt, p, ns, nf, cs, cf, calcified):
    """One explicit Euler step of PhysiCell's standard volume model for cell
    ``i`` (standard_volume_update_function), in place; returns the new total
    volume (µm³).  ``p`` = (target nuclear solid µm³, target cytoplasmic :
    nuclear solid ratio, target fluid fraction, fluid rate, nuclear and
    cytoplasmic biomass rates, calcification rate; 1/min).  The fluid
    relaxes towards its target share of the old total and is shared between
    nucleus and cytoplasm as the old nuclear volume; the solids relax
    towards their targets; nothing goes negative.  ``math`` only."""
    total = ns[i] + nf[i] + cs[i] + cf[i]
    nuclear = ns[i] + nf[i]
    fluid = nf[i] + cf[i]
    fluid += dt * p[3] * (p[2] * total - fluid)
    if fluid < 0.0:
        fluid = 0.0
    nf_new = (nuclear / (total + 1e-16)) * fluid
    nf[i] = nf_new
    cf[i] = fluid - nf_new
    s = ns[i] + dt * p[4] * (p[0] - ns[i])
    ns[i] = s if s > 0.0 else 0.0
    s = cs[i] + dt * p[5] * (p[1] * p[0] - cs[i])
    cs[i] = s if s > 0.0 else 0.0
    calcified[i] += dt * p[6] * (1.0 - calcified[i])
    return ns[i] + nf[i] + cs[i] + cf[i]


@njit(cache=True, inline="always")
def volume_from_diameter(i, d, nuclear_share, fluid_fraction, ns, nf, cs, cf):
    """Compartments of a cell of diameter ``d`` (µm) not yet given volumes:
    its sphere's volume split as the targets split (nuclear share, fluid
    fraction)."""
    v = PI_6 * d * d * d
    nuc = v * nuclear_share
    cyt = v - nuc
    nf[i] = nuc * fluid_fraction
    ns[i] = nuc - nf[i]
    cf[i] = cyt * fluid_fraction
    cs[i] = cyt - cf[i]


@njit(cache=True, parallel=True)
def volume_update(type_, code, n, dt, table, nuclear_share, death, has_death, ns, nf, cs, cf, calcified, volume,
                  diameter):
    """PhysiCell's standard volume model over the rows of ``code`` (see
    :func:`volume_step`), with the parameters of row ``death[i]`` of
    ``table`` (row 0 the live cell's; with ``has_death`` False every cell
    uses row 0); a cell whose ``volume`` is not > 0 (new) first gets
    compartments from its diameter.  Writes ``volume`` (µm³) and the
    diameter of the sphere of that volume (µm)."""
    for i in prange(n):
        if type_[i] == code:
            p = table[death[i] if has_death else 0]
            if not volume[i] > 0.0:
                volume_from_diameter(i, diameter[i], nuclear_share, table[0, 2], ns, nf, cs, cf)
            v = volume_step(i, dt, p, ns, nf, cs, cf, calcified)
            volume[i] = v
            diameter[i] = np.cbrt(v / PI_6)


# death states (the int8 column ``death``): live, then PhysiCell's death phases
LIVE, APOPTOTIC, NECROTIC_SWELLING, NECROTIC_LYSED = 0, 1, 2, 3


@njit(cache=True, inline="always")
def cell_volume(i, volume, has_volume, diameter):
    """The cell's volume (µm³): the ``volume`` column where it is set, else
    the sphere of its diameter."""
    if has_volume and volume[i] > 0.0:
        return volume[i]
    d = diameter[i]
    return PI_6 * d * d * d


@njit(cache=True, inline="always")
def death_one(i, enter, state, dt, duration, relative_rupture, death, age, volume, has_volume, diameter, rupture):
    """One interval of a death model with phases for cell ``i`` (``math``
    only).  ``state`` is the model's entry state (APOPTOTIC or
    NECROTIC_SWELLING).  A live cell with ``enter`` enters it (time in state
    0; necrosis sets its rupture volume to ``relative_rupture`` x its
    volume).  Then a cell in one of the model's states ages by ``dt``
    (min), as PhysiCell advances a death cycle in the step of entry: a
    swelling cell whose volume has reached its rupture volume lyses
    instead (time 0, rupture volume +inf); an apoptotic or lysed cell whose
    time reaches ``duration`` is to be removed (returns True)."""
    s = death[i]
    if s == LIVE:
        if not enter:
            return False
        s = state
        death[i] = s
        age[i] = 0.0
        if s == NECROTIC_SWELLING:
            rupture[i] = relative_rupture * cell_volume(i, volume, has_volume, diameter)
    mine = s == state or (state == NECROTIC_SWELLING and s == NECROTIC_LYSED)
    if not mine:
        return False
    if s == NECROTIC_SWELLING and cell_volume(i, volume, has_volume, diameter) >= rupture[i]:
        death[i] = NECROTIC_LYSED
        age[i] = 0.0
        rupture[i] = math.inf
        return False
    a = age[i] + dt
    age[i] = a
    return s != NECROTIC_SWELLING and a >= duration


@njit(cache=True, parallel=True)
def death_phases(rows, uid, gated, values, threshold, probability, seed, step, stream, state, dt, duration,
                 relative_rupture, death, age, volume, has_volume, diameter, rupture, remove):
    """A death model with phases over the rows ``rows`` (one population):
    live cells enter ``state`` with probability ``probability[q]`` (one
    entry: the same for all; draw 0 of the uid's key, the draw of
    :func:`mark_random` and :func:`mark_below`), where ``values[q] <
    threshold`` if ``gated``; then :func:`death_one`.  remove[q] flags the
    cells whose last phase ended; returns their count."""
    count = 0
    per_row = probability.size > 1
    for q in prange(rows.size):
        i = rows[q]
        p = probability[q] if per_row else probability[0]
        enter = death[i] == LIVE and p > 0.0 and (not gated or values[q] < threshold) and \
            uniform(seed, uid[i], step, stream, 0) < p
        r = death_one(i, enter, state, dt, duration, relative_rupture, death, age, volume, has_volume, diameter,
                      rupture)
        remove[q] = r
        if r:
            count += 1
    return count


@njit(cache=True, parallel=True)
def live_types(type_, death, n, out):
    """out[i] = type_[i] for live cells (death 0), -1 for dead ones: the
    type column the behaviours of live cells select on."""
    for i in prange(n):
        out[i] = type_[i] if death[i] == LIVE else -1


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


@njit(cache=True, inline="always")
def move_one_along(pos, i, gx, gy, gz, distance):
    """pos[i] += distance * g / |g| (no move for g = 0); ``math`` only, the
    GPU's kernel too."""
    norm = math.sqrt(gx * gx + gy * gy + gz * gz)
    if norm > 0.0:
        f = distance / norm
        pos[i, 0] += f * gx
        pos[i, 1] += f * gy
        pos[i, 2] += f * gz


@njit(cache=True, parallel=True)
def move_along(pos, rows, direction, distance):
    """pos[rows[q]] += distance * direction[q] / |direction[q]| (no move for a
    zero direction)."""
    for q in prange(rows.size):
        move_one_along(pos, rows[q], direction[q, 0], direction[q, 1], direction[q, 2], distance)


@njit(cache=True, parallel=True)
def mark_below(rows, uid, values, threshold, probability, seed, step, stream, flag):
    """flag[q] = values[q] < threshold and U < probability[q] (U keyed by the
    agent's uid; one probability: the same for all).  Returns the count."""
    count = 0
    per_row = probability.size > 1
    for q in prange(rows.size):
        f = False
        p = probability[q] if per_row else probability[0]
        if values[q] < threshold and uniform(seed, uid[rows[q]], step, stream, 0) < p:
            f = True
            count += 1
        flag[q] = f
    return count


@njit(cache=True, parallel=True)
def volume_fraction(rows, diameter, scale, voxel_volume, out):
    """out[q] = scale x (cell volume / voxel volume) of the agent at rows[q]
    (spheres of the diameter column, µm)."""
    for q in prange(rows.size):
        d = diameter[rows[q]]
        out[q] = scale * (PI_6 * d * d * d / voxel_volume)


@njit(cache=True, parallel=True)
def scale_dead(rows, death, factor, out):
    """out[q] *= factor where the agent at rows[q] is dead (death > 0)."""
    for q in prange(rows.size):
        if death[rows[q]] != LIVE:
            out[q] *= factor


@njit(cache=True, parallel=True)
def limit_factor(rows, values, threshold, out):
    """out[rows[q]] = values[q] / threshold clipped to [0, 1] (substance-limited
    growth: the share of the full rate)."""
    for q in prange(rows.size):
        out[rows[q]] = min(max(values[q] / threshold, 0.0), 1.0)


@njit(cache=True, parallel=True)
def substance_gate(values, below, above, out):
    """out[q] = 0 where below > values[q] > above (pass), else 1 (use
    +inf / -inf for a missing bound)."""
    for q in prange(values.size):
        v = values[q]
        out[q] = 0.0 if (v < below and v > above) else 1.0


@njit(cache=True, parallel=True)
def assign(a, rows, value):
    """a[rows[q]] = value."""
    for q in prange(rows.size):
        a[rows[q]] = value


@njit(cache=True, parallel=True)
def infection_pull(type_, code, uid, old, state, pos, n, cell_start, order, lower, inv_h, dims, length,
                   periodic, radius, p_contact, seed, step, stream):
    """Infection of the susceptible rows of ``code``, each searching its own
    neighbourhood: k = number of agents (any type) with old state 1 closer
    than ``radius`` µm; infected (state 1) with probability
    1 - (1 - p_contact)^k, by draw 0 of the agent's key.  Reads ``old`` (the
    states at the interval's start), writes ``state``.  (No count is
    returned: a reduction over the parallel loop made it twice as slow.)"""
    r2max = radius * radius
    q_contact = 1.0 - p_contact
    nchunks = (n + SEARCH_CHUNK - 1) // SEARCH_CHUNK
    for c in prange(nchunks):
        runs = np.empty(2 * STENCIL_RUNS, dtype=np.int64)
        for i in range(c * SEARCH_CHUNK, min(n, (c + 1) * SEARCH_CHUNK)):
            if type_[i] != code or old[i] != 0:
                continue
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


@njit(cache=True, parallel=True)
def susceptible_contacts(sources, type_, code, old, pos, cell_start, order, lower, inv_h, dims, length,
                         periodic, radius, offsets, fill, targets):
    """For each source row (an infected agent), the rows j of ``code`` with old
    state 0 closer than ``radius`` µm: their number into ``offsets[q + 1]``
    (``fill`` false) or the rows into ``targets[offsets[q]:]`` (``fill``
    true, ``offsets`` holding the prefix sums).  The pairs are those of
    infection_pull: squared minimum-image distances are symmetric bit for bit."""
    r2max = radius * radius
    ns = sources.size
    nchunks = (ns + SEARCH_CHUNK - 1) // SEARCH_CHUNK
    for c in prange(nchunks):
        runs = np.empty(2 * STENCIL_RUNS, dtype=np.int64)
        for q in range(c * SEARCH_CHUNK, min(ns, (c + 1) * SEARCH_CHUNK)):
            i = sources[q]
            xi = pos[i, 0]
            yi = pos[i, 1]
            zi = pos[i, 2]
            m = stencil_runs(xi, yi, zi, cell_start, lower, inv_h, dims, periodic, radius, runs)
            w = offsets[q] if fill else 0
            for r in range(m):
                for s in range(runs[2 * r], runs[2 * r + 1]):
                    j = order[s]
                    if old[j] == 0 and type_[j] == code:
                        dx = min_image(pos[i, 0] - pos[j, 0], length[0], periodic[0])
                        dy = min_image(pos[i, 1] - pos[j, 1], length[1], periodic[1])
                        dz = min_image(pos[i, 2] - pos[j, 2], length[2], periodic[2])
                        if dx * dx + dy * dy + dz * dz < r2max:
                            if fill:
                                targets[w] = j
                            w += 1
            if not fill:
                offsets[q + 1] = w


@njit(cache=True)
def infect_targets(targets, k, uid, state, p_contact, seed, step, stream):
    """Each distinct row in ``targets`` (repeated once per infected contact) is
    infected with probability 1 - (1 - p_contact)^k, by draw 0 of its key.
    ``k`` is zeroed scratch of one int per row, left zeroed."""
    q_contact = 1.0 - p_contact
    for t in targets:
        k[t] += 1
    for t in targets:
        kt = k[t]
        if kt > 0:
            if uniform(seed, uid[t], step, stream, 0) < 1.0 - q_contact ** kt:
                state[t] = 1
            k[t] = 0


@njit(cache=True, parallel=True)
def recovery_step(type_, code, uid, old, state, n, p_recover, p_lose, seed, step, stream):
    """Rows of ``code``: old state 1 -> 2 with probability p_recover, 2 -> 0
    with probability p_lose (draw 0 of the agent's key; one transition per
    interval, decided on the interval's starting state)."""
    for i in prange(n):
        if type_[i] == code:
            s = old[i]
            if s == 1:
                if p_recover > 0.0 and uniform(seed, uid[i], step, stream, 0) < p_recover:
                    state[i] = 2
            elif s == 2:
                if p_lose > 0.0 and uniform(seed, uid[i], step, stream, 0) < p_lose:
                    state[i] = 0


@njit(cache=True, parallel=True)
def count_equal(a, n, value, out):
    """out[0] = number of i < n with a[i] == value (fixed chunks)."""
    nchunks = (n + 65535) // 65536
    part = np.zeros(nchunks, dtype=np.int64)
    for c in prange(nchunks):
        m = 0
        for i in range(c * 65536, min(n, (c + 1) * 65536)):
            m += a[i] == value
        part[c] = m
    out[0] = part.sum()


@njit(cache=True, parallel=True)
def cell_cycle(type_, code, uid, phase, age, n, dt, durations, fixed, p_leave, nxt, divide_at, seed, step,
               stream, diameter, dv, divide):
    """One interval of a cell cycle for the rows of ``code``.  A cell in
    phase k (time ``age`` in it, min) leaves it at the end of the interval if
    ``fixed[k]`` and age + dt >= durations[r, k], or otherwise with
    probability ``p_leave[r, k]`` (draw 0 of its key); it then enters phase
    ``nxt[k]`` with age 0 and, if ``divide_at[k]``, is flagged to divide.
    Cells not leaving age by dt.  Volume grows by ``dv`` µm³ per interval
    (dv may be 0).  ``durations`` and ``p_leave`` have one row (r = 0, the
    same for all cells) or one per row of the table (r = i: per-cell rates,
    e.g. from models.Rules)."""
    stride = 1 if durations.shape[0] > 1 else 0
    for i in prange(n):
        f = False
        if type_[i] == code:
            k = phase[i]
            a = age[i] + dt
            r = i * stride
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
                diameter[i] = np.cbrt(d * d * d + dv / PI_6)
        divide[i] = f


def where_equal(a, n, value):
    """Indices i < n with a[i] == value, increasing (int64)."""
    return np.flatnonzero(a[:n] == value)


# -- cell-cell interactions (models.Interactions) --------------------------------------
K_TRANSFORM = 1 << 62  # draw indices of Interactions beyond any neighbour's (4 uid + event)


@njit(cache=True, inline="always")
def _better(u, uj, best, best_uid):
    """Whether a success with draw ``u`` on the neighbour of uid ``uj``
    beats the best so far (smaller draw, then smaller uid): the choice
    does not depend on the order neighbours are visited in."""
    return u < best or (u == best and uj < best_uid)


@njit(cache=True, inline="always")
def in_reach(pos, diameter, j, xi, yi, zi, ri, reach, s2, length, periodic):
    """Whether row j lies closer than reach x (ri + r_j) µm to the point
    (xi, yi, zi) (minimum image where periodic), and within the search
    radius (s2: its square)."""
    dx = min_image(pos[j, 0] - xi, length[0], periodic[0])
    dy = min_image(pos[j, 1] - yi, length[1], periodic[1])
    dz = min_image(pos[j, 2] - zi, length[2], periodic[2])
    d2 = dx * dx + dy * dy + dz * dz
    rr = reach * (ri + 0.5 * diameter[j])
    return d2 < rr * rr and d2 < s2


@njit(cache=True, parallel=True)
def interaction_proposals(rows, type_, death, has_death, uid, pos, diameter, attack_target, cell_start, order,
                          lower, inv_h, dims, length, periodic, search, reach, p_dead, p_phag, p_fuse, x_attack,
                          immunogenicity, linear, p_transform, transform_codes, seed, step, stream, eat, fuse, attack,
                          transform):
    """One interval of PhysiCell's cell-cell interactions for the actor rows
    ``rows`` (live cells of one population): each considers every other
    agent closer than reach x (r_i + r_j) (µm; ``search`` bounds it, at
    most the grid's cutoff) with one draw per (neighbour, event), keyed by
    the actor's uid and 4 x the neighbour's uid + event:

    * eat (event 1): a dead neighbour with probability p_dead[., 0]
      (apoptotic) or p_dead[., 1] (necrotic), a live one with
      p_phag[., type];
    * fuse (event 2): a live neighbour with p_fuse[., type];
    * attack (event 3): a live neighbour, only for an actor not attacking
      (attack_target < 0), with x = x_attack[., type] (the expected
      attacks, rate x dt) times the neighbour's ``immunogenicity`` (one
      value per row, or one value for all): probability 1 - exp(-x), or
      PhysiCell's x capped at 1 with ``linear``.

    Each table has one row (the same for every actor) or one per actor
    (row q: per-cell rates, e.g. from models.Rules).  Of the successes of
    one event the smallest draw wins (then the smallest uid): eat[q],
    fuse[q], attack[q] are its row or -1.  Then the actor transforms into
    transform_codes[k] for the first k with a draw (index K_TRANSFORM + k)
    below p_transform[., k] (transform[q], or -1)."""
    nchunks = (rows.size + SEARCH_CHUNK - 1) // SEARCH_CHUNK
    s2 = search * search
    per_target = immunogenicity.size > 1
    for c in prange(nchunks):
        runs = np.empty(2 * STENCIL_RUNS, dtype=np.int64)
        for q in range(c * SEARCH_CHUNK, min(rows.size, (c + 1) * SEARCH_CHUNK)):
            i = rows[q]
            qd = q if p_dead.shape[0] > 1 else 0
            qp = q if p_phag.shape[0] > 1 else 0
            qf = q if p_fuse.shape[0] > 1 else 0
            qa = q if x_attack.shape[0] > 1 else 0
            qt = q if p_transform.shape[0] > 1 else 0
            ui = uid[i]
            xi = pos[i, 0]
            yi = pos[i, 1]
            zi = pos[i, 2]
            ri = 0.5 * diameter[i]
            can_attack = attack_target[i] < 0
            be, bf, ba = 2.0, 2.0, 2.0
            ue, uf, ua = -1, -1, -1
            e, f, a = -1, -1, -1
            m = stencil_runs(xi, yi, zi, cell_start, lower, inv_h, dims, periodic, search, runs)
            for r in range(m):
                for k in range(runs[2 * r], runs[2 * r + 1]):
                    j = order[k]
                    if j == i:
                        continue
                    if not in_reach(pos, diameter, j, xi, yi, zi, ri, reach, s2, length, periodic):
                        continue
                    uj = uid[j]
                    s = death[j] if has_death else 0
                    tj = type_[j]
                    if s != 0:
                        p = p_dead[qd, 0] if s == 1 else p_dead[qd, 1]
                    else:
                        p = p_phag[qp, tj]
                    if p > 0.0:
                        u = uniform(seed, ui, step, stream, 4 * uj + 1)
                        if u < p and _better(u, uj, be, ue):
                            be, ue, e = u, uj, j
                    if s != 0:
                        continue
                    p = p_fuse[qf, tj]
                    if p > 0.0:
                        u = uniform(seed, ui, step, stream, 4 * uj + 2)
                        if u < p and _better(u, uj, bf, uf):
                            bf, uf, f = u, uj, j
                    x = x_attack[qa, tj] * (immunogenicity[j] if per_target else immunogenicity[0])
                    p = min(x, 1.0) if linear else -math.expm1(-x)
                    if can_attack and p > 0.0:
                        u = uniform(seed, ui, step, stream, 4 * uj + 3)
                        if u < p and _better(u, uj, ba, ua):
                            ba, ua, a = u, uj, j
            eat[q] = e
            fuse[q] = f
            attack[q] = a
            tr = -1
            for k in range(p_transform.shape[1]):
                pk = p_transform[qt, k]
                if pk > 0.0 and uniform(seed, ui, step, stream, K_TRANSFORM + k) < pk:
                    tr = transform_codes[k]
                    break
            transform[q] = tr


@njit(cache=True)
def resolve_claims(actors, targets, n, ok):
    """Grant claims in the order given (the caller sorts them canonically:
    by actor uid, eating before fusing): a claim on ``targets[c]`` by
    ``actors[c]`` is granted unless either cell was already consumed in
    this step or the target already consumed another (a cell that eats or
    fuses this step cannot be eaten: no chains).  Serial: the claims of one
    step are few."""
    consumed = np.zeros(n, dtype=np.bool_)
    eater = np.zeros(n, dtype=np.bool_)
    for c in range(actors.size):
        a = actors[c]
        b = targets[c]
        if consumed[a] or consumed[b] or eater[b]:
            ok[c] = False
            continue
        consumed[b] = True
        eater[a] = True
        ok[c] = True


@njit(cache=True, parallel=True)
def damage_step(type_, code, n, dt, rate, repair, damage):
    """PhysiCell's Cell_Integrity::advance_damage for the rows of ``code``:
    damage = (damage + dt rate) / (1 + dt repair)."""
    a = dt * rate
    b = 1.0 + dt * repair
    for i in prange(n):
        if type_[i] == code:
            damage[i] = (damage[i] + a) / b


# -- contacts and pressure (models.Pressure, models.Rules) -----------------------------
PRESSURE_SCALE = 0.027288820670331  # PhysiCell's simple_pressure_scale: 12 (1 - 1/1.05... )^2 of a packed cell


@njit(cache=True, inline="always")
def contact_one(i, type_, death, has_death, pos, diameter, cell_start, order, lower, inv_h, dims, length, periodic,
                search, reach, runs, counts, ncount):
    """PhysiCell's simple pressure of row i, sum over neighbours closer than
    R = r_i + r_j of (1 - d/R)^2 / PRESSURE_SCALE (dimensionless: 1 for a
    cell in a close packing of equal cells), with the neighbours visited in
    the grid's canonical order; with ``ncount`` its contacts (neighbours
    closer than reach x R) into ``counts[i]``: per type (0..ntypes-1),
    then live, then dead."""
    xi = pos[i, 0]
    yi = pos[i, 1]
    zi = pos[i, 2]
    ri = 0.5 * diameter[i]
    s2 = search * search
    p = 0.0
    if ncount:
        for c in range(counts.shape[1]):
            counts[i, c] = 0.0
    m = stencil_runs(xi, yi, zi, cell_start, lower, inv_h, dims, periodic, search, runs)
    for r in range(m):
        for k in range(runs[2 * r], runs[2 * r + 1]):
            j = order[k]
            if j == i:
                continue
            dx = min_image(pos[j, 0] - xi, length[0], periodic[0])
            dy = min_image(pos[j, 1] - yi, length[1], periodic[1])
            dz = min_image(pos[j, 2] - zi, length[2], periodic[2])
            d2 = dx * dx + dy * dy + dz * dz
            if d2 >= s2:
                continue
            rr = ri + 0.5 * diameter[j]
            if d2 < rr * rr:
                t = 1.0 - math.sqrt(d2) / rr
                p += t * t / PRESSURE_SCALE
            if ncount and d2 < (reach * rr) * (reach * rr):
                counts[i, type_[j]] += 1.0
                dead = has_death and death[j] != 0
                counts[i, counts.shape[1] - 1 - (0 if dead else 1)] += 1.0
    return p


@njit(cache=True, parallel=True)
def contacts(type_, code, n, death, has_death, pos, diameter, cell_start, order, lower, inv_h, dims, length, periodic,
             search, reach, pressure, counts, ncount):
    """:func:`contact_one` for the rows of ``code``: ``pressure[i]`` and, with
    ``ncount``, ``counts[i]`` (n x (ntypes + 2))."""
    nchunks = (n + SEARCH_CHUNK - 1) // SEARCH_CHUNK
    for c in prange(nchunks):
        runs = np.empty(2 * STENCIL_RUNS, dtype=np.int64)
        for i in range(c * SEARCH_CHUNK, min(n, (c + 1) * SEARCH_CHUNK)):
            if type_[i] == code:
                pressure[i] = contact_one(i, type_, death, has_death, pos, diameter, cell_start, order, lower, inv_h,
                                          dims, length, periodic, search, reach, runs, counts, ncount)


# -- PhysiCell's rules (models.Rules) ----------------------------------------------------
@njit(cache=True, parallel=True)
def hill_rules(signals, dead, base, bmax, bmin, r_beh, r_sig, r_up, r_half, r_hill, r_dead, out):
    """PhysiCell's multivariate Hill response of every (row q, behaviour b):
    with the rules r of b (r_beh[r] == b; signal column r_sig[r] of
    ``signals``, half-max r_half[r] > 0, Hill power r_hill[r])::

        SU = sum over "increases" rules of (s / half)^hill   (s <= 0 adds 0)
        U  = base[b] + (bmax[b] - base[b]) SU / (1 + SU)
        SD = the same over "decreases" rules
        out[q, b] = U + (bmin[b] - U) SD / (1 + SD)

    For a dead row only the rules with r_dead apply (the others add 0);
    where none of b's rules applies, out[q, b] is left as it is (PhysiCell
    leaves the behaviour unchanged).  Sums in rule order: the same bits
    for any thread count."""
    nb = base.size
    nr = r_beh.size
    for q in prange(signals.shape[0]):
        for b in range(nb):
            su = 0.0
            sd = 0.0
            apply = False
            for r in range(nr):
                if r_beh[r] != b or (dead[q] and not r_dead[r]):
                    continue
                apply = True
                s = signals[q, r_sig[r]]
                if s > 0.0:
                    x = (s / r_half[r]) ** r_hill[r]
                    if r_up[r]:
                        su += x
                    else:
                        sd += x
            if apply:
                hu = su / (1.0 + su) if su < math.inf else 1.0
                hd = sd / (1.0 + sd) if sd < math.inf else 1.0
                u = base[b] + (bmax[b] - base[b]) * hu
                out[q, b] = u + (bmin[b] - u) * hd


# -- PhysiCell's motility (models.Motility) -----------------------------------------------
@njit(cache=True, inline="always")
def motility_one(i, q, uid, seed, step, stream, p_turn, speed, bias, planar, bias_dir, vec, pos, dt):
    """PhysiCell's update_motility_vector for row i (q its index in the
    pass): with probability p_turn the cell picks a new direction, (1 - b) r
    + b d normalised times the speed (r uniform on the sphere, or the circle
    when ``planar``; d the unit bias direction ``bias_dir[q]``, zero where
    there is none), then moves vec[i] dt.  ``p_turn``, ``speed`` and
    ``bias`` hold one value or one per row of the pass.  ``math`` only: the
    GPU's kernel too."""
    pt = p_turn[q] if p_turn.size > 1 else p_turn[0]
    if uniform(seed, uid, step, stream, 0) < pt:
        b = bias[q] if bias.size > 1 else bias[0]
        v = speed[q] if speed.size > 1 else speed[0]
        if planar:
            a = 2.0 * math.pi * uniform(seed, uid, step, stream, 1)
            rx = math.cos(a)
            ry = math.sin(a)
            rz = 0.0
        else:
            rx, ry, rz = unit_vector(seed, uid, step, stream, 2)
        dx = bias_dir[q, 0] if bias_dir.shape[0] > 1 else 0.0
        dy = bias_dir[q, 1] if bias_dir.shape[0] > 1 else 0.0
        dz = bias_dir[q, 2] if bias_dir.shape[0] > 1 else 0.0
        dn = math.sqrt(dx * dx + dy * dy + dz * dz)
        if dn > 0.0:
            dx /= dn
            dy /= dn
            dz /= dn
        mx = b * dx + (1.0 - b) * rx
        my = b * dy + (1.0 - b) * ry
        mz = b * dz + (1.0 - b) * rz
        norm = math.sqrt(mx * mx + my * my + mz * mz)
        f = v / norm if norm > 0.0 else 0.0
        vec[i, 0] = f * mx
        vec[i, 1] = f * my
        vec[i, 2] = f * mz
    pos[i, 0] += dt * vec[i, 0]
    pos[i, 1] += dt * vec[i, 1]
    pos[i, 2] += dt * vec[i, 2]


@njit(cache=True, parallel=True)
def motility(rows, uid, seed, step, stream, p_turn, speed, bias, planar, bias_dir, vec, pos, dt):
    """:func:`motility_one` for each row of ``rows`` (bias_dir: (len(rows),
    3) directions, or (1, 3) for none)."""
    for q in prange(rows.size):
        i = rows[q]
        motility_one(i, q, uid[i], seed, step, stream, p_turn, speed, bias, planar, bias_dir, vec, pos, dt)


# -- spring attachments (PhysiCell's dynamic_spring_attachments) ----------------------------
@njit(cache=True, parallel=True)
def uid_rows(uid, n, out):
    """out[u] = the row holding uid u, -1 for a uid no row holds (``out``
    at least as long as the largest uid + 1): constant-time lookups for
    the passes that follow uids (attachments, springs)."""
    for u in prange(out.size):
        out[u] = -1
    for i in prange(n):
        out[uid[i]] = i


@njit(cache=True, inline="always")
def row_of_uid(u, where):
    """The row holding uid ``u`` (``where`` from :func:`uid_rows`), or -1."""
    if u < 0 or u >= where.size:
        return -1
    return where[u]


@njit(cache=True, parallel=True)
def attach_proposals(rows, type_, death, has_death, uid, pos, diameter, attached, cell_start, order, lower, inv_h,
                     dims, length, periodic, search, reach, p_attach, seed, step, stream, out):
    """The cells each actor row (live, of one population) would attach to in
    this interval: every other live agent closer than reach x (r_i + r_j)
    µm (``search`` bounds it, at most the grid's cutoff) and not attached to
    it yet, with probability p_attach[type_j] (one draw keyed by the actor's
    uid and 2 x the neighbour's uid).  ``out[q]`` holds the rows of the
    successes with the smallest draws (then uids), best first, -1 padded:
    the choice does not depend on the order neighbours are visited in."""
    nchunks = (rows.size + SEARCH_CHUNK - 1) // SEARCH_CHUNK
    s2 = search * search
    w = out.shape[1]
    slots = attached.shape[1]
    for c in prange(nchunks):
        runs = np.empty(2 * STENCIL_RUNS, dtype=np.int64)
        best = np.empty(w)
        best_uid = np.empty(w, dtype=np.int64)
        for q in range(c * SEARCH_CHUNK, min(rows.size, (c + 1) * SEARCH_CHUNK)):
            i = rows[q]
            for k in range(w):
                out[q, k] = -1
                best[k] = 2.0
                best_uid[k] = -1
            ui = uid[i]
            prefix = hash_prefix(seed, ui, step, stream)  # the draws' shared rounds: uniform(seed, ui, step, stream, .)
            xi = pos[i, 0]
            yi = pos[i, 1]
            zi = pos[i, 2]
            ri = 0.5 * diameter[i]
            m = stencil_runs(xi, yi, zi, cell_start, lower, inv_h, dims, periodic, search, runs)
            for r in range(m):
                for kk in range(runs[2 * r], runs[2 * r + 1]):
                    j = order[kk]
                    if j == i or (has_death and death[j] != 0):
                        continue
                    p = p_attach[type_[j]]
                    if p <= 0.0:
                        continue
                    if not in_reach(pos, diameter, j, xi, yi, zi, ri, reach, s2, length, periodic):
                        continue
                    uj = uid[j]
                    held = False
                    for s in range(slots):
                        held |= attached[i, s] == uj
                    if held:
                        continue
                    u = uniform_after(prefix, 2 * uj)
                    if u >= p or not _better(u, uj, best[w - 1], best_uid[w - 1]):
                        continue
                    k = w - 1  # insert, keeping (draw, uid) ascending
                    while k > 0 and _better(u, uj, best[k - 1], best_uid[k - 1]):
                        best[k] = best[k - 1]
                        best_uid[k] = best_uid[k - 1]
                        out[q, k] = out[q, k - 1]
                        k -= 1
                    best[k] = u
                    best_uid[k] = uj
                    out[q, k] = j


@njit(cache=True, inline="always")
def _held(attached, i, where):
    """How many of row i's slots hold a cell that is still there."""
    c = 0
    for s in range(attached.shape[1]):
        u = attached[i, s]
        if u >= 0 and row_of_uid(u, where) >= 0:
            c += 1
    return c


@njit(cache=True, inline="always")
def _put(attached, i, u, where):
    """Write uid ``u`` into row i's first free slot (empty, or holding a
    cell that is gone)."""
    for s in range(attached.shape[1]):
        v = attached[i, s]
        if v < 0 or row_of_uid(v, where) < 0:
            attached[i, s] = u
            return


@njit(cache=True, inline="always")
def _drop(attached, i, u):
    for s in range(attached.shape[1]):
        if attached[i, s] == u:
            attached[i, s] = -1


@njit(cache=True)
def update_attachments(rows, cand, type_, death, has_death, uid, where, attached, max_slots, p_detach, seed, step,
                       stream):
    """One interval of PhysiCell's spring attachments for the rows of one
    population, ``rows`` in uid order, one after the other (so the result
    depends on nothing but the uids): first each attachment of a row ends
    when either cell is dead or gone, or with probability ``p_detach``
    (a draw keyed by the row's uid and 2 x the partner's uid + 1), on both
    sides; then the row attaches to its candidates ``cand[q]`` (rows, best
    first, -1 padded: :func:`attach_proposals`) while both it and the
    candidate hold fewer than ``max_slots[type]`` attachments, the
    attachment written to both.  ``where`` maps uids to rows
    (:func:`uid_rows`)."""
    slots = attached.shape[1]
    for q in range(rows.size):
        i = rows[q]
        ui = uid[i]
        dead_i = has_death and death[i] != 0
        for s in range(slots):
            u = attached[i, s]
            if u < 0:
                continue
            j = row_of_uid(u, where)
            end = dead_i or j < 0 or (has_death and death[j] != 0)
            if not end and p_detach > 0.0:
                end = uniform(seed, ui, step, stream, 2 * u + 1) < p_detach
            if end:
                attached[i, s] = -1
                if j >= 0:
                    _drop(attached, j, ui)
        if dead_i:
            continue
        for k in range(cand.shape[1]):
            j = cand[q, k]
            if j < 0:
                break
            if _held(attached, i, where) >= max_slots[type_[i]]:
                break
            uj = uid[j]
            already = False
            for s in range(slots):
                already |= attached[i, s] == uj
            if already or _held(attached, j, where) >= max_slots[type_[j]]:
                continue
            _put(attached, i, uj, where)
            _put(attached, j, ui, where)


@njit(cache=True, parallel=True)
def spring_velocities(n, type_, pos, attached, where, stiffness, length, periodic, force):
    """Add PhysiCell's springs of zero rest length to ``force`` (µm/min):
    for each attachment of row i to a cell j still there,
    stiffness[type_i, type_j] x (x_j - x_i) (the pair's sqrt(k_i aff_ij
    k_j aff_ji), 1/min), in slot order."""
    slots = attached.shape[1]
    for i in prange(n):
        fx = 0.0
        fy = 0.0
        fz = 0.0
        ti = type_[i]
        for s in range(slots):
            u = attached[i, s]
            if u < 0:
                continue
            j = row_of_uid(u, where)
            if j < 0:
                continue
            k = stiffness[ti, type_[j]]
            fx += k * min_image(pos[j, 0] - pos[i, 0], length[0], periodic[0])
            fy += k * min_image(pos[j, 1] - pos[i, 1], length[1], periodic[1])
            fz += k * min_image(pos[j, 2] - pos[i, 2], length[2], periodic[2])
        force[i, 0] += fx
        force[i, 1] += fy
        force[i, 2] += fz


@njit(cache=True)
def attack_springs(attackers, targets, type_, pos, stiffness, length, periodic, force):
    """The spring that holds each attacker to its target (PhysiCell attaches
    them while the attack lasts): stiffness[type_a, type_t] x (x_t - x_a)
    on the attacker and its opposite on the target, pairs in the order
    given (the attackers' uid order)."""
    for q in range(attackers.size):
        i = attackers[q]
        j = targets[q]
        k = stiffness[type_[i], type_[j]]
        for a in range(3):
            f = k * min_image(pos[j, a] - pos[i, a], length[a], periodic[a])
            force[i, a] += f
            force[j, a] -= f
