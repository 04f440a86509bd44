"""Slow, obviously right reference versions of the engine's kernels."""
import numpy as np


def min_image(d, box, periodic):
    if periodic:
        L = box.length
        return d - L * np.round(d / L)
    return d


def brute_pairs(pos, radius, box, periodic):
    """All (i, j), i < j, closer than radius: O(N^2)."""
    n = len(pos)
    out = []
    for i in range(n):
        d = min_image(pos[i + 1:] - pos[i], box, periodic)
        r2 = np.einsum("ij,ij->i", d, d)
        for j in np.flatnonzero(r2 < radius * radius):
            out.append((i, i + 1 + j))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def soft_sphere(r, di, dj, rep, adh, lam):
    s = 0.5 * (di + dj)
    f = 0.0
    if r < s:
        f += rep * (1 - r / s)
    if r < lam * s:
        f -= adh * (1 - r / (lam * s))
    return f


def physicell(r, di, dj, rep, adh, lam):
    R = 0.5 * (di + dj)
    f = 0.0
    if r < R:
        f += rep * (1 - r / R) ** 2
    if r < lam * R:
        f -= adh * (1 - r / (lam * R)) ** 2
    return f


def biodynamo(r, di, dj, k, gamma, infl):
    ri, rj = di / 2 + infl, dj / 2 + infl
    delta = ri + rj - r
    if delta <= 0:
        return 0.0
    rr = ri * rj / (ri + rj)
    return k * delta - gamma * np.sqrt(rr * delta)


LAWS = {"SoftSphere": soft_sphere, "PhysiCellForce": physicell, "BioDynaMoForce": biodynamo}


def naive_forces(pos, diam, law, params, box, periodic, types=None, table=None):
    """Total pair force on each agent, O(N^2), plus the sum of |pair force|
    per agent (the scale for relative errors).  With ``types`` and ``table``,
    the second law parameter of pair (i, j) is table[types[i], types[j]]."""
    n = len(pos)
    force = np.zeros((n, 3))
    scale = np.zeros(n)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            d = min_image(pos[i] - pos[j], box, periodic)
            r = np.sqrt(d @ d)
            p = params if types is None else (params[0], table[types[i], types[j]], params[2])
            f = law(r, diam[i], diam[j], *p)
            force[i] += f * d / r
            scale[i] += abs(f)
    return force, scale
