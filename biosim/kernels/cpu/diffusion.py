"""Diffusion-decay on cell-centred grids, sampling and agent scatter.

A grid is a C-ordered (nx, ny, nz) float64 array, axes x, y, z, voxel edge
``h`` µm.  Faces are numbered 0..5 = x-, x+, y-, y+, z-, z+ and described by
``btype`` (0 Neumann, 1 Dirichlet, 2 periodic), ``bflux`` (Neumann: amount per
µm² per min entering the domain) and the Dirichlet face values ``dval_x``
(2, ny, nz), ``dval_y`` (2, nx, nz), ``dval_z`` (2, nx, ny).  Dirichlet values
hold on the face, half a voxel beyond the outer centres (ghost value
2 v - c).  Decay is not part of these steps: the caller integrates it exactly.
"""
import math

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _face_term(btype, v, dval, flux, h, D):
    """(D (ghost - c) / h^2 contribution, extra source) of one outside face."""
    if btype == 1:
        return 2.0 * (dval - v), 0.0
    if D > 0.0:
        return flux * h / D, 0.0
    return 0.0, flux / h


@njit(cache=True, inline="always")
def _ftcs_voxel(c, i, j, k, a, D, h, dt, btype, bflux, dval_x, dval_y, dval_z):
    """New value of voxel (i, j, k) after one explicit step, any position."""
    nx, ny, nz = c.shape
    v = c[i, j, k]
    lap = 0.0
    src = 0.0
    # x
    if i > 0:
        lap += c[i - 1, j, k] - v
    elif btype[0] == 2:
        lap += c[nx - 1, j, k] - v
    else:
        t, s = _face_term(btype[0], v, dval_x[0, j, k], bflux[0], h, D)
        lap += t
        src += s
    if i < nx - 1:
        lap += c[i + 1, j, k] - v
    elif btype[1] == 2:
        lap += c[0, j, k] - v
    else:
        t, s = _face_term(btype[1], v, dval_x[1, j, k], bflux[1], h, D)
        lap += t
        src += s
    # y
    if j > 0:
        lap += c[i, j - 1, k] - v
    elif btype[2] == 2:
        lap += c[i, ny - 1, k] - v
    else:
        t, s = _face_term(btype[2], v, dval_y[0, i, k], bflux[2], h, D)
        lap += t
        src += s
    if j < ny - 1:
        lap += c[i, j + 1, k] - v
    elif btype[3] == 2:
        lap += c[i, 0, k] - v
    else:
        t, s = _face_term(btype[3], v, dval_y[1, i, k], bflux[3], h, D)
        lap += t
        src += s
    # z
    if k > 0:
        lap += c[i, j, k - 1] - v
    elif btype[4] == 2:
        lap += c[i, j, nz - 1] - v
    else:
        t, s = _face_term(btype[4], v, dval_z[0, i, j], bflux[4], h, D)
        lap += t
        src += s
    if k < nz - 1:
        lap += c[i, j, k + 1] - v
    elif btype[5] == 2:
        lap += c[i, j, 0] - v
    else:
        t, s = _face_term(btype[5], v, dval_z[1, i, j], bflux[5], h, D)
        lap += t
        src += s
    return v + dt * (a * lap + src)


@njit(cache=True, parallel=True)
def ftcs_step(c, out, D, h, dt, btype, bflux, dval_x, dval_y, dval_z, x0=0, nxg=0, y0=0, nyg=0, z0=0, nzg=0):
    """One explicit 7-point step of dc/dt = D lap(c) (no decay).  Interior
    rows run a branch-free loop that vectorises; voxels on the faces take
    the general path with the boundary conditions.

    ``c`` may be a block of a larger grid (an MPI rank's, with ghost layers
    holding the neighbours' values where it borders another rank): ``x0``,
    ``y0``, ``z0`` are the global indices of its first voxel along each
    axis, ``nxg``, ``nyg``, ``nzg`` the grid's voxels along it (0: this
    array spans the whole axis).  A voxel takes the general path where it
    would in the whole grid (so the block's bits are the whole grid's), and
    where it lies on the block's outer layer (the ghosts, whose results are
    discarded)."""
    nx, ny, nz = c.shape
    if nxg <= 0:
        nxg = nx
    if nyg <= 0:
        nyg = ny
    if nzg <= 0:
        nzg = nz
    klo = max(1, 1 - z0)  # the k of the vectorised loop: inside the block and the grid
    khi = min(nz - 1, nzg - 1 - z0)
    a = D / (h * h)
    ad = a * dt
    for i in prange(nx):
        for j in range(ny):
            if 0 < i < nx - 1 and 0 < x0 + i < nxg - 1 and 0 < j < ny - 1 and 0 < y0 + j < nyg - 1 and khi > klo:
                for k in range(klo):
                    out[i, j, k] = _ftcs_voxel(c, i, j, k, a, D, h, dt, btype, bflux, dval_x, dval_y, dval_z)
                for k in range(klo, khi):
                    v = c[i, j, k]
                    out[i, j, k] = v + ad * ((c[i - 1, j, k] - v) + (c[i + 1, j, k] - v)
                                             + (c[i, j - 1, k] - v) + (c[i, j + 1, k] - v)
                                             + (c[i, j, k - 1] - v) + (c[i, j, k + 1] - v))
                for k in range(khi, nz):
                    out[i, j, k] = _ftcs_voxel(c, i, j, k, a, D, h, dt, btype, bflux, dval_x, dval_y, dval_z)
            else:
                for k in range(nz):
                    out[i, j, k] = _ftcs_voxel(c, i, j, k, a, D, h, dt, btype, bflux, dval_x, dval_y,
                                               dval_z)


@njit(cache=True)
def thomas_coefficients(n, r, blo, bhi, cp, inv, zz, k=0.0):
    """Factor the line system (1 + k - r d2) x = rhs once for every line of a
    sweep (``k`` = dt λ / 3: decay inside the sweep, BioFVM's LOD splitting;
    0 for biosim's exact decay, which leaves the factors' bits unchanged).

    Fills ``inv`` (1 / pivots) and ``cp`` (modified upper diagonal); for
    periodic lines (blo == 2) also ``zz``, the Sherman-Morrison vector, and
    returns (vr, denominator) of the correction; else (0, 1).  Boundary
    types: 0 Neumann, 1 Dirichlet (ghost 2 v - c), 2 periodic."""
    if n == 1:
        d = 1.0 + k
        if blo == 1:
            d += 2.0 * r
        if bhi == 1:
            d += 2.0 * r
        inv[0] = 1.0 / d if blo != 2 else 1.0 / (1.0 + k)
        cp[0] = 0.0
        return 0.0, 1.0
    b0 = 1.0 + 2.0 * r + k
    a = -r
    periodic = blo == 2
    if periodic:
        gamma = -b0
        bfirst = b0 - gamma
        blast = b0 - r * r / gamma
    else:
        bfirst = 1.0 + k + (3.0 * r if blo == 1 else r)
        blast = 1.0 + k + (3.0 * r if bhi == 1 else r)
    for p in range(n):
        bp = bfirst if p == 0 else (blast if p == n - 1 else b0)
        denom = bp if p == 0 else bp - a * cp[p - 1]
        inv[p] = 1.0 / denom
        cp[p] = a * inv[p]
    if not periodic:
        return 0.0, 1.0
    for p in range(n):
        u = gamma if p == 0 else (-r if p == n - 1 else 0.0)
        zz[p] = u * inv[p] if p == 0 else (u - a * zz[p - 1]) * inv[p]
    for p in range(n - 2, -1, -1):
        zz[p] -= cp[p] * zz[p + 1]
    vr = -r / gamma
    return vr, 1.0 + zz[0] + vr * zz[n - 1]


# lines side by side per block of the vectorised sweeps: 256 columns are 2 KB of each entry's row, so a
# block's rows take fewer pages (x lines lie a plane apart) and longer vector loops; for 198^3 voxels on
# one thread the x sweep takes 13.7 ms against 18.0 with 64, the y sweep 10.1 against 14.8
_BLOCK = 256
_LANES = 16  # contiguous lines solved side by side in place (lod_sweep with B == 1)


@njit(cache=True, inline="always")
def _solve_block(w, n, B, r, cp, inv, zz, vr, zden, periodic, lo, hi):
    """The Thomas recurrences for B lines side by side: ``w`` is (n, >= B),
    line b in column b; ``lo``/``hi`` hold the boundary terms per line."""
    if n == 1:  # a line of one voxel has both faces' terms
        for b in range(B):
            w[0, b] = (w[0, b] + lo[b] + hi[b]) * inv[0]
        return
    for b in range(B):
        w[0, b] = (w[0, b] + lo[b]) * inv[0]
    for b in range(B):
        w[n - 1, b] += hi[b]
    for p in range(1, n):
        ip = inv[p]
        for b in range(B):
            w[p, b] = (w[p, b] + r * w[p - 1, b]) * ip
    for p in range(n - 2, -1, -1):
        q = cp[p]
        for b in range(B):
            w[p, b] -= q * w[p + 1, b]
    if periodic:
        for b in range(B):
            fac = (w[0, b] + vr * w[n - 1, b]) / zden
            for p in range(n):
                w[p, b] -= fac * zz[p]


@njit(cache=True, parallel=True)
def lod_sweep(c3, r, cp, inv, zz, vr, zden, periodic, add_lo, add_hi):
    """Solve (1 - r d2) x = c along the middle axis of ``c3`` (A, n, B) in
    place, for all A x B lines at once (blocks of lines side by side, so the
    recurrences run over contiguous memory and vectorise).  When the lines
    are contiguous themselves (B == 1), they go in tiles of _LANES lines
    solved in place, one entry of each line after the other: the lines'
    recurrences are independent, so the steps of one line do not wait on
    each other, and the tile's lines stay in cache between the passes.
    (Copying tiles of lines side by side into a buffer to vectorise the
    recurrences cost more in the copies than it saved: 22.6 against 16.0 ms
    on one thread and 11.2 against 5.7 on two, for 198^3 voxels.)
    ``add_lo``/``add_hi`` (A, B) are the boundary terms added to the first
    and last right-hand sides."""
    A, n, B = c3.shape
    if B == 1:
        ntile = (A + _LANES - 1) // _LANES
        for t in prange(ntile):
            a0 = t * _LANES
            a1 = min(A, a0 + _LANES)
            if n == 1:  # a line of one voxel has both faces' terms
                for a in range(a0, a1):
                    c3[a, 0, 0] = (c3[a, 0, 0] + add_lo[a, 0] + add_hi[a, 0]) * inv[0]
                continue
            # _solve_block's operations, in its order, on each line
            for a in range(a0, a1):
                c3[a, 0, 0] = (c3[a, 0, 0] + add_lo[a, 0]) * inv[0]
            for a in range(a0, a1):
                c3[a, n - 1, 0] += add_hi[a, 0]
            for p in range(1, n):
                ip = inv[p]
                for a in range(a0, a1):
                    c3[a, p, 0] = (c3[a, p, 0] + r * c3[a, p - 1, 0]) * ip
            for p in range(n - 2, -1, -1):
                q = cp[p]
                for a in range(a0, a1):
                    c3[a, p, 0] -= q * c3[a, p + 1, 0]
            if periodic:
                for a in range(a0, a1):
                    fac = (c3[a, 0, 0] + vr * c3[a, n - 1, 0]) / zden
                    for p in range(n):
                        c3[a, p, 0] -= fac * zz[p]
        return
    nblk = (B + _BLOCK - 1) // _BLOCK
    for t in prange(A * nblk):
        ia = t // nblk
        b0 = (t % nblk) * _BLOCK
        b1 = min(B, b0 + _BLOCK)
        _solve_block(c3[ia, :, b0:b1], n, b1 - b0, r, cp, inv, zz, vr, zden, periodic,
                     add_lo[ia, b0:b1], add_hi[ia, b0:b1])


# lod_sweep's Thomas recurrences for lines split into consecutive pieces (an MPI rank's block):
# the same operations on the same values, so each entry gets the bits of the whole line's solve.
# ``w`` (A, m, B) holds entries g0 .. g0 + m - 1 of A x B lines of n entries along its middle
# axis (as lod_sweep's ``c3``); the per-line arrays (before, lo, hi, after, first, last) are (A, B).
# The recurrences run over the lines [a0, a1) x [c0, c1) (a chunk of them) of the whole arrays, not
# over views of the chunk: a strided view would not vectorise.

@njit(cache=True, parallel=True)
def thomas_forward_piece(w, a0, a1, c0, c1, g0, n, r, inv, before, lo, hi):
    """The forward recurrence over the piece; ``before`` the forward values
    of entry g0 - 1 (read only when g0 > 0), ``lo``/``hi`` the boundary
    terms of the lines' first and last right-hand sides."""
    m = w.shape[1]
    nblk = (c1 - c0 + _BLOCK - 1) // _BLOCK
    for t in prange((a1 - a0) * nblk):
        a = a0 + t // nblk
        b0 = c0 + (t % nblk) * _BLOCK
        b1 = min(c1, b0 + _BLOCK)
        if n == 1:  # a line of one voxel has both faces' terms
            for b in range(b0, b1):
                w[a, 0, b] = (w[a, 0, b] + lo[a, b] + hi[a, b]) * inv[0]
            continue
        if g0 == 0:
            for b in range(b0, b1):
                w[a, 0, b] = (w[a, 0, b] + lo[a, b]) * inv[0]
        if g0 + m == n:
            for b in range(b0, b1):
                w[a, m - 1, b] += hi[a, b]
        if g0 > 0:
            ip = inv[g0]
            for b in range(b0, b1):
                w[a, 0, b] = (w[a, 0, b] + r * before[a, b]) * ip
        for i in range(1, m):
            ip = inv[g0 + i]
            for b in range(b0, b1):
                w[a, i, b] = (w[a, i, b] + r * w[a, i - 1, b]) * ip


@njit(cache=True, parallel=True)
def thomas_backward_piece(w, a0, a1, c0, c1, g0, n, cp, after):
    """The backward recurrence over the piece; ``after`` the solved values
    of entry g0 + m (read only when g0 + m < n)."""
    m = w.shape[1]
    if n == 1:
        return
    nblk = (c1 - c0 + _BLOCK - 1) // _BLOCK
    for t in prange((a1 - a0) * nblk):
        a = a0 + t // nblk
        b0 = c0 + (t % nblk) * _BLOCK
        b1 = min(c1, b0 + _BLOCK)
        if g0 + m < n:
            q = cp[g0 + m - 1]
            for b in range(b0, b1):
                w[a, m - 1, b] -= q * after[a, b]
        for i in range(m - 2, -1, -1):
            q = cp[g0 + i]
            for b in range(b0, b1):
                w[a, i, b] -= q * w[a, i + 1, b]


@njit(cache=True, parallel=True)
def periodic_piece(w, g0, n, zz, vr, zden, first, last):
    """The periodic lines' Sherman-Morrison correction over the piece, from
    the solved first and last entries of each line (``first``, ``last``)."""
    A, m, B = w.shape
    if n == 1:
        return
    nblk = (B + _BLOCK - 1) // _BLOCK
    for t in prange(A * nblk):
        a = t // nblk
        b0 = (t % nblk) * _BLOCK
        b1 = min(B, b0 + _BLOCK)
        for b in range(b0, b1):
            fac = (first[a, b] + vr * last[a, b]) / zden
            for i in range(m):
                w[a, i, b] -= fac * zz[g0 + i]


@njit(cache=True, parallel=True)
def scale(c, factor):
    flat = c.reshape(c.size)
    for i in prange(flat.size):
        flat[i] *= factor


@njit(cache=True, inline="always")
def _axis_weights(x, lower, h, n, periodic):
    """(i0, i1, w): the voxel centres either side of coordinate ``x`` (µm)
    on one axis and the weight of i1.  Beyond the outermost centres the
    weight clamps (the value is held constant) unless the axis is periodic,
    where the last and first centres are neighbours across the face.
    (``math`` only: compiled for the GPU too.)"""
    if n == 1:
        return 0, 0, 0.0
    u = (x - lower) / h - 0.5
    if periodic:
        f = math.floor(u)  # an int on the CPU, a float on the GPU: the same value
        i0 = np.int64(f) % n
        return i0, i0 + 1 if i0 + 1 < n else 0, u - f
    if u <= 0.0:
        return 0, 1, 0.0
    if u >= n - 1:
        return n - 2, n - 1, 1.0
    i = np.int64(math.floor(u))
    if i > n - 2:
        i = n - 2
    return i, i + 1, u - i


@njit(cache=True, inline="always")
def _lerp3(c000, c100, c010, c110, c001, c101, c011, c111, wx, wy, wz):
    c00 = c000 + wx * (c100 - c000)
    c10 = c010 + wx * (c110 - c010)
    c01 = c001 + wx * (c101 - c001)
    c11 = c011 + wx * (c111 - c011)
    c0 = c00 + wy * (c10 - c00)
    c1 = c01 + wy * (c11 - c01)
    return c0 + wz * (c1 - c0)


@njit(cache=True, inline="always")
def trilinear_flat(f, nx, ny, nz, lower, h, x, y, z, periodic):
    """Trilinear value at (x, y, z) µm of the grid whose C-ordered entries
    are ``f`` (shape nx, ny, nz; ``periodic``: the grid wraps on every
    axis; else constant beyond the outermost centres).  Written once for
    the CPU and the GPU."""
    i0, i1, wx = _axis_weights(x, lower[0], h, nx, periodic)
    j0, j1, wy = _axis_weights(y, lower[1], h, ny, periodic)
    k0, k1, wz = _axis_weights(z, lower[2], h, nz, periodic)
    a0 = i0 * ny
    a1 = i1 * ny
    return _lerp3(f[(a0 + j0) * nz + k0], f[(a1 + j0) * nz + k0], f[(a0 + j1) * nz + k0], f[(a1 + j1) * nz + k0],
                  f[(a0 + j0) * nz + k1], f[(a1 + j0) * nz + k1], f[(a0 + j1) * nz + k1], f[(a1 + j1) * nz + k1],
                  wx, wy, wz)


@njit(cache=True, inline="always")
def trilinear(c, lower, h, x, y, z, periodic):
    """Trilinear value of the 3D grid ``c`` at (x, y, z) µm (see
    :func:`trilinear_flat`)."""
    nx, ny, nz = c.shape
    return trilinear_flat(c.reshape(c.size), nx, ny, nz, lower, h, x, y, z, periodic)


@njit(cache=True, inline="always")
def centre_derivative(flat, base, i, n, stride, h, periodic):
    """d c / d axis (per µm) at voxel centre ``i`` of a line of ``n`` voxels
    (entries ``flat[base + i * stride]``): central differences inside,
    second-order one-sided differences at the outermost centres (exact for
    quadratics; first order with only two voxels, 0 with one), central
    across the face on a periodic axis."""
    if n == 1:
        return 0.0
    if periodic:
        ip = i + 1 if i + 1 < n else 0
        im = i - 1 if i > 0 else n - 1
        return (flat[base + ip * stride] - flat[base + im * stride]) / (2.0 * h)
    if n == 2:
        return (flat[base + stride] - flat[base]) / h
    if i == 0:
        return (4.0 * flat[base + stride] - 3.0 * flat[base] - flat[base + 2 * stride]) / (2.0 * h)
    if i == n - 1:
        return (3.0 * flat[base + i * stride] - 4.0 * flat[base + (i - 1) * stride]
                + flat[base + (i - 2) * stride]) / (2.0 * h)
    return (flat[base + (i + 1) * stride] - flat[base + (i - 1) * stride]) / (2.0 * h)


@njit(cache=True, inline="always")
def _d_dx(flat, i, j, k, nx, ny, nz, h, periodic):
    return centre_derivative(flat, j * nz + k, i, nx, ny * nz, h, periodic)


@njit(cache=True, inline="always")
def _d_dy(flat, i, j, k, nx, ny, nz, h, periodic):
    return centre_derivative(flat, i * ny * nz + k, j, ny, nz, h, periodic)


@njit(cache=True, inline="always")
def _d_dz(flat, i, j, k, nx, ny, nz, h, periodic):
    return centre_derivative(flat, (i * ny + j) * nz, k, nz, 1, h, periodic)


@njit(cache=True, inline="always")
def gradient_flat(f, nx, ny, nz, lower, h, x, y, z, periodic):
    """Gradient (per µm) at (x, y, z) µm of the flat grid ``f`` (as
    :func:`trilinear_flat`): the gradient at the voxel centres
    (:func:`centre_derivative` along each axis) interpolated trilinearly
    like the value.  Exact for a linear field everywhere in the box,
    second order inside, and not zero near a face where the field slopes
    (the derivative of the trilinear interpolant would be one-sided at every
    centre and 0 in the outer half voxels)."""
    i0, i1, wx = _axis_weights(x, lower[0], h, nx, periodic)
    j0, j1, wy = _axis_weights(y, lower[1], h, ny, periodic)
    k0, k1, wz = _axis_weights(z, lower[2], h, nz, periodic)
    gx = _lerp3(_d_dx(f, i0, j0, k0, nx, ny, nz, h, periodic), _d_dx(f, i1, j0, k0, nx, ny, nz, h, periodic),
                _d_dx(f, i0, j1, k0, nx, ny, nz, h, periodic), _d_dx(f, i1, j1, k0, nx, ny, nz, h, periodic),
                _d_dx(f, i0, j0, k1, nx, ny, nz, h, periodic), _d_dx(f, i1, j0, k1, nx, ny, nz, h, periodic),
                _d_dx(f, i0, j1, k1, nx, ny, nz, h, periodic), _d_dx(f, i1, j1, k1, nx, ny, nz, h, periodic),
                wx, wy, wz)
    gy = _lerp3(_d_dy(f, i0, j0, k0, nx, ny, nz, h, periodic), _d_dy(f, i1, j0, k0, nx, ny, nz, h, periodic),
                _d_dy(f, i0, j1, k0, nx, ny, nz, h, periodic), _d_dy(f, i1, j1, k0, nx, ny, nz, h, periodic),
                _d_dy(f, i0, j0, k1, nx, ny, nz, h, periodic), _d_dy(f, i1, j0, k1, nx, ny, nz, h, periodic),
                _d_dy(f, i0, j1, k1, nx, ny, nz, h, periodic), _d_dy(f, i1, j1, k1, nx, ny, nz, h, periodic),
                wx, wy, wz)
    gz = _lerp3(_d_dz(f, i0, j0, k0, nx, ny, nz, h, periodic), _d_dz(f, i1, j0, k0, nx, ny, nz, h, periodic),
                _d_dz(f, i0, j1, k0, nx, ny, nz, h, periodic), _d_dz(f, i1, j1, k0, nx, ny, nz, h, periodic),
                _d_dz(f, i0, j0, k1, nx, ny, nz, h, periodic), _d_dz(f, i1, j0, k1, nx, ny, nz, h, periodic),
                _d_dz(f, i0, j1, k1, nx, ny, nz, h, periodic), _d_dz(f, i1, j1, k1, nx, ny, nz, h, periodic),
                wx, wy, wz)
    return gx, gy, gz


@njit(cache=True, inline="always")
def gradient(c, lower, h, x, y, z, periodic):
    """Gradient (per µm) of the 3D grid ``c`` at (x, y, z) µm (see
    :func:`gradient_flat`)."""
    nx, ny, nz = c.shape
    return gradient_flat(c.reshape(c.size), nx, ny, nz, lower, h, x, y, z, periodic)


@njit(cache=True, parallel=True)
def sample(c, lower, h, periodic, pos, rows, value, grad, want_gradient):
    """Trilinear value (and with ``want_gradient`` the gradient, see
    :func:`gradient`) of ``c`` at ``pos[rows]``."""
    for q in prange(rows.size):
        p = rows[q]
        x = pos[p, 0]
        y = pos[p, 1]
        z = pos[p, 2]
        value[q] = trilinear(c, lower, h, x, y, z, periodic)
        if want_gradient:
            gx, gy, gz = gradient(c, lower, h, x, y, z, periodic)
            grad[q, 0] = gx
            grad[q, 1] = gy
            grad[q, 2] = gz


@njit(cache=True, inline="always")
def voxel_index(x, y, z, lower, h, nx, ny, nz):
    """Flat index of the voxel holding (x, y, z) µm, clamped into the grid
    (floor in floats, clamped, then truncated: the same as floor then clamp;
    ``math`` only, compiled for the GPU too)."""
    i = np.int64(min(max((x - lower[0]) / h, 0.0), nx - 1.0))
    j = np.int64(min(max((y - lower[1]) / h, 0.0), ny - 1.0))
    k = np.int64(min(max((z - lower[2]) / h, 0.0), nz - 1.0))
    return (i * ny + j) * nz + k


@njit(cache=True, parallel=True)
def voxel_of(pos, rows, lower, h, shape, out):
    """Flat voxel index of each agent (clamped into the grid)."""
    nx, ny, nz = shape[0], shape[1], shape[2]
    for q in prange(rows.size):
        p = rows[q]
        out[q] = voxel_index(pos[p, 0], pos[p, 1], pos[p, 2], lower, h, nx, ny, nz)


# canonical_source_sums works on ranges of 2^SOURCE_RANGE_BITS consecutive voxels in parallel (their
# counts, 32 KB, stay in the L1 cache while a range's entries are sorted; one count array per task of
# SOURCE_GROUP ranges, none of the grid's size) and reads the entries in chunks of SOURCE_CHUNK to
# bucket them by range; no size changes a sum, only the voxels' order
SOURCE_RANGE_BITS = 12
SOURCE_CHUNK = 16384
SOURCE_GROUP = 8


@njit(cache=True, parallel=True)
def canonical_source_sums(vox, key, values, used, nvox, voxels, added, s_dt, sc_dt, u_dt, lo=0, hi=-1):
    """Per-voxel sums of the queued source terms in the canonical order.

    ``vox[q]`` is entry q's voxel, ``key[q]`` its place within the voxel
    (the queueing call, then the agent's uid: an order fixed by the state,
    not by the table's rows; distinct), ``values[t, q]`` its term t (added,
    S dt, S c* dt, U dt; only those with ``used[t]``); ``nvox`` the grid's
    voxel count (every ``vox[q]`` below it).  Each voxel's
    entries are sorted by key (insertion, or a full sort past 48 entries)
    and summed from 0 in that order; the touched voxels go to ``voxels``
    (by ranges of voxels, in order of first appearance within a range) and
    their sums to the same places of ``added``, ``s_dt``, ``sc_dt`` and
    ``u_dt`` (arrays of at least ``vox.size``, those of unused terms not
    touched).  Returns the number of touched voxels.  With ``hi >= 0``
    only the voxels in [lo, hi) are summed and the other entries skipped
    (an MPI rank's own voxels).

    The entries are bucketed by range of voxels (a stable counting sort in
    parallel chunks), then each range is summed by one thread: a count per
    voxel of the range, offsets, a scatter, the sort and the sums.  Every voxel's sum
    is the same whatever the ranges, chunks and threads."""
    m = vox.size
    sums = (added, s_dt, sc_dt, u_dt)
    nrange = ((max(nvox, 1) - 1) >> SOURCE_RANGE_BITS) + 1
    mask = (1 << SOURCE_RANGE_BITS) - 1
    nch = max(1, (m + SOURCE_CHUNK - 1) // SOURCE_CHUNK)
    if hi < 0:
        hi = nvox
    hist = np.zeros((nch, nrange), np.int64)
    for c in prange(nch):
        for q in range(c * SOURCE_CHUNK, min(m, (c + 1) * SOURCE_CHUNK)):
            v = vox[q]
            if v >= lo and v < hi:
                hist[c, v >> SOURCE_RANGE_BITS] += 1
    start = np.empty(nrange + 1, np.int64)
    s = 0
    for r in range(nrange):
        start[r] = s
        for c in range(nch):
            h = hist[c, r]
            hist[c, r] = s
            s += h
    start[nrange] = s
    # the entries' voxels, keys and terms copied into range order (read once in order, so the ranges'
    # passes below read contiguous memory instead of gathering from the whole queue)
    kept = start[nrange]
    bvox = np.empty(kept, np.int64)
    bkey = np.empty(kept, np.int64)
    bval = np.empty((4, kept))
    for c in prange(nch):
        for q in range(c * SOURCE_CHUNK, min(m, (c + 1) * SOURCE_CHUNK)):
            v = vox[q]
            if v < lo or v >= hi:
                continue
            r = v >> SOURCE_RANGE_BITS
            j = hist[c, r]
            hist[c, r] = j + 1
            bvox[j] = v
            bkey[j] = key[q]
            for term in range(4):
                if used[term]:
                    bval[term, j] = values[term, q]
    perm = np.empty(kept, np.int64)
    found = np.zeros(nrange, np.int64)
    for g in prange((nrange + SOURCE_GROUP - 1) // SOURCE_GROUP):
        count = np.zeros(mask + 1, np.int64)  # per voxel of a range, left 0 by each range
        for r in range(g * SOURCE_GROUP, min(nrange, (g + 1) * SOURCE_GROUP)):
            s0 = start[r]
            s1 = start[r + 1]
            k = 0
            for a in range(s0, s1):  # the distinct voxels (written from s0 on: at most s1 - s0 of them)
                v = bvox[a]
                if count[v & mask] == 0:
                    voxels[s0 + k] = v
                    k += 1
                count[v & mask] += 1
            found[r] = k
            o = s0
            for t in range(k):  # each voxel's first place in perm
                v = voxels[s0 + t]
                c = count[v & mask]
                count[v & mask] = o
                o += c
            for a in range(s0, s1):
                v = bvox[a]
                perm[count[v & mask]] = a
                count[v & mask] += 1
            b0 = s0
            for t in range(k):
                v = voxels[s0 + t]
                end = count[v & mask]
                count[v & mask] = 0
                if end - b0 > 48:
                    seg = perm[b0:end].copy()
                    idx = np.argsort(bkey[seg])
                    for a in range(end - b0):
                        perm[b0 + a] = seg[idx[a]]
                else:
                    for a in range(b0 + 1, end):
                        e = perm[a]
                        ke = bkey[e]
                        b = a - 1
                        while b >= b0 and bkey[perm[b]] > ke:
                            perm[b + 1] = perm[b]
                            b -= 1
                        perm[b + 1] = e
                for term in range(4):
                    if used[term]:
                        acc = 0.0
                        for a in range(b0, end):
                            acc += bval[term, perm[a]]
                        sums[term][s0 + t] = acc
                b0 = end
    total = 0  # the ranges' voxels and sums moved together (never to the right: a serial forward copy)
    for r in range(nrange):
        s0 = start[r]
        k = found[r]
        if total != s0:
            for t in range(k):
                voxels[total + t] = voxels[s0 + t]
            for term in range(4):
                if used[term]:
                    out = sums[term]
                    for t in range(k):
                        out[total + t] = out[s0 + t]
        total += k
    return total


@njit(cache=True, parallel=True)
def apply_sources(c, voxels, added, s_dt, sc_dt, u_dt, used, n):
    """At each voxel ``voxels[q]`` (distinct; flat indices of ``c``): c <-
    (c + A + S c* dt) / (1 + (S + U) dt) with the voxel's sums at entry q
    (:func:`canonical_source_sums`), each divided by ``n`` (the share of
    one of n sub-steps); ``used[t]`` says whether term t (added, S dt,
    S c* dt, U dt) was queued, a missing one counts as 0.  Voxels no agent
    touched are unchanged by the formula, so they are skipped.  Never
    negative for non-negative inputs."""
    flat = c.reshape(c.size)
    for q in prange(voxels.size):
        v = voxels[q]
        num = flat[v]
        den = 1.0
        if used[0]:
            num += added[q] / n
        if used[2]:
            num += sc_dt[q] / n
        if used[1]:
            den += s_dt[q] / n
        if used[3]:
            den += u_dt[q] / n
        flat[v] = num / den


@njit(cache=True, inline="always")
def value_at_row(f, shape, lower, h, periodic, pos, i):
    """Trilinear value of the flat grid ``f`` (shape a 3-tuple) at the centre
    of row ``i`` of ``pos`` (agent rules' ``ctx.concentration``)."""
    return trilinear_flat(f, shape[0], shape[1], shape[2], lower, h, pos[i, 0], pos[i, 1], pos[i, 2], periodic)


@njit(cache=True, inline="always")
def gradient_at_row(f, shape, lower, h, periodic, pos, i):
    """Gradient (per µm) of the flat grid ``f`` at the centre of row ``i``
    (agent rules' ``ctx.gradient``)."""
    return gradient_flat(f, shape[0], shape[1], shape[2], lower, h, pos[i, 0], pos[i, 1], pos[i, 2], periodic)


def nonzero_values(a, n):
    """Indices i < n where a[i] != 0, increasing (int64)."""
    return np.flatnonzero(a[:n])


@njit(cache=True, parallel=True)
def take_divided(a, rows, divisor, out):
    """out[q] = a[rows[q]] / divisor."""
    for q in prange(rows.size):
        out[q] = a[rows[q]] / divisor


def set_layers(c, faces, dval):
    """BioFVM's Dirichlet nodes: the outer voxel layer of each face in
    ``faces`` (0..5 = x-, x+, y-, y+, z-, z+) set to that face's values
    (``dval`` as the solvers take them); face-sized numpy writes."""
    for f in faces:
        axis, side = divmod(f, 2)
        index = [slice(None)] * 3
        index[axis] = 0 if side == 0 else c.shape[axis] - 1
        c[tuple(index)] = dval[axis][side]
