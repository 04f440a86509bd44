"""The circles interaction (FLAME GPU 2's benchmark model) on the GPU: the
twin of :func:`biosim.kernels.cpu.circles.circles_step`, one thread per
agent of the grid's sorted order, the pair term by the CPU module's
``sinc_turn_x`` polynomial compiled for the GPU, the neighbours visited in
the canonical order (x-cells, rows, uid) so that every run gives the same
bits."""
import math

from numba import cuda

from ..cpu.circles import sinc_turn_x
from ..cpu.forces import x_chunks
from ..cpu.grid import stencil_axis
from ._launch import launch, t3


@cuda.jit
def _circles(cols, n, cell, cell_start, order, inv_h, dims, periodic, cutoff, c, scale, out):
    q = cuda.grid(1)
    if q >= n:
        return
    nx = dims[0]
    ny = dims[1]
    nz = dims[2]
    i = order[q]
    xi = cols[0, q]
    yi = cols[1, q]
    zi = cols[2, q]
    xc = xi * c
    yc = yi * c
    zc = zi * c
    k, _, whole = x_chunks(nx, cutoff, inv_h, periodic[0])
    ci = cell[i]
    cx = ci % nx
    loy, cnty = stencil_axis((ci // nx) % ny, ny, False)
    loz, cntz = stencil_axis(ci // (nx * ny), nz, False)
    x0 = 0 if whole else cx - k
    cntx = nx if whole else 2 * k + 1
    fx = 0.0
    fy = 0.0
    fz = 0.0
    cnt = 0.0
    for ox in range(cntx):
        x = x0 + ox
        if x < 0 or x >= nx:
            continue
        for oz in range(cntz):
            for oy in range(cnty):
                cl = x + nx * ((loy + oy) + ny * (loz + oz))
                for r in range(cell_start[cl], cell_start[cl + 1]):
                    dx = cols[0, r] * c - xc
                    dy = cols[1, r] * c - yc
                    dz = cols[2, r] * c - zc
                    xx = dz * dz + (dy * dy + (dx * dx - 1.0))
                    if xx < 1.0 and xx > -1.0:  # itself (d = 0) excluded
                        f = sinc_turn_x(xx)
                        fx += f * dx
                        fy += f * dy
                        fz += f * dz
                        cnt += 1.0
    if cnt > 0.0:
        out[i, 0] = xi + fx * scale / cnt
        out[i, 1] = yi + fy * scale / cnt
        out[i, 2] = zi + fz * scale / cnt
    else:
        out[i, 0] = xi
        out[i, 1] = yi
        out[i, 2] = zi


def circles_step(cols, n, cell, cell_start, order, lower, inv_h, dims, length, periodic, cutoff, radius,
                 strength, out):
    """out[i] = pos[i] + (sum_j strength sin(-2 pi d_ij / r) e_ij) / k_i over
    the k_i agents closer than ``radius`` (see the CPU twin; closed boxes
    only).  ``cols``: the grid's sorted positions; ``cell`` the rows' cells."""
    if n == 0:
        return
    c = math.sqrt(2.0) / radius
    scale = -strength / radius / c
    _circles[launch(n)](cols, int(n), cell, cell_start, order, t3(inv_h), t3(dims, int), t3(periodic, bool),
                               float(cutoff), c, scale, out)
