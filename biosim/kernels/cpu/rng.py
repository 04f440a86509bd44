"""Counter-based random numbers for numba kernels.

Every draw is a pure function of ``(seed, uid, step, stream, k)``: the run's
seed, the agent's uid, the simulation step, the behaviour's stream id and the
index ``k`` of the draw within that (agent, step, stream).  No state is
carried between draws, so results do not depend on thread count or on the
order in which agents are visited.

The mixing function is the SplitMix64 finaliser (Stafford's "mix13"), chained
over the key words; it passes BigCrush as a counter-based generator.

The floating-point maps from bits to numbers use only IEEE-exact operations
(+, -, *, /, sqrt, frexp, in a fixed order, never fused) and no libm call:
the logarithm and the cosine are polynomials written out here.  A draw is
therefore the same bits in any kernel on any machine, and a GPU port that
keeps the order (and rounds each operation, no FMA) reproduces them; the
values pinned in tests/test_rng.py are that contract.  Kernels compiled with
fast-math must not inline these functions (the compiler would fuse their
arithmetic): call them through a separately compiled function.
"""
import math

import numpy as np
from numba import njit

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True, inline="always")
def mix64(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def hash_prefix(seed, uid, step, stream):
    """The first four rounds of :func:`hash5`, shared by every k of one
    (seed, uid, step, stream): ``uniform_after(prefix, k)`` equals
    ``uniform(seed, uid, step, stream, k)`` bit for bit, at a fifth of the
    cost for many k."""
    h = mix64(np.uint64(seed) + _GOLDEN)
    h = mix64(h ^ (np.uint64(uid) + _GOLDEN))
    h = mix64(h ^ (np.uint64(step) + _GOLDEN))
    return mix64(h ^ (np.uint64(stream) + _GOLDEN))


@njit(cache=True, inline="always")
def hash5(seed, uid, step, stream, k):
    """64 random bits for the key (seed, uid, step, stream, k)."""
    return mix64(hash_prefix(seed, uid, step, stream) ^ (np.uint64(k) + _GOLDEN))


@njit(cache=True, inline="always")
def uniform_after(prefix, k):
    """:func:`uniform` from a :func:`hash_prefix`."""
    return np.float64(mix64(prefix ^ (np.uint64(k) + _GOLDEN)) >> _S11) * _INV53


@njit(cache=True, inline="always")
def uniform(seed, uid, step, stream, k):
    """A float64 uniform on [0, 1) with 53 random bits."""
    return np.float64(hash5(seed, uid, step, stream, k) >> _S11) * _INV53


_LN2_HI = 6.93147180369123816490e-01  # fdlibm's split of ln 2: e * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
# 2 atanh(s) = 2 s + 2 s (s^2/3 + s^4/5 + ...): coefficients 1/3 .. 1/23
_ATANH = tuple(1.0 / (2 * k + 1) for k in range(1, 12))


@njit(cache=True, inline="always")
def log_unit(u):
    """Natural logarithm of u in (0, 1] without libm: u = m 2^e with m in
    [sqrt(1/2), sqrt(2)), log m = 2 atanh((m - 1) / (m + 1)) by its series
    to s^23 (|s| <= 0.1716, truncation below 2e-17), plus e ln 2 in two
    parts.  Within 2 ulp of the correctly rounded value."""
    m, e = math.frexp(u)
    if m < 0.7071067811865476:
        m = m * 2.0
        e = e - 1
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    p = _ATANH[10]
    p = _ATANH[9] + z * p
    p = _ATANH[8] + z * p
    p = _ATANH[7] + z * p
    p = _ATANH[6] + z * p
    p = _ATANH[5] + z * p
    p = _ATANH[4] + z * p
    p = _ATANH[3] + z * p
    p = _ATANH[2] + z * p
    p = _ATANH[1] + z * p
    p = _ATANH[0] + z * p
    t = 2.0 * s
    fe = np.float64(e)
    return fe * _LN2_HI + (fe * _LN2_LO + (t + t * (z * p)))


_PI_4 = 0.7853981633974483
_SQRT_HALF = 0.7071067811865476


@njit(cache=True, inline="always")
def cos_sin_turn(u):
    """(cos, sin) of 2 pi u for u in [0, 1), branch-free and without libm
    calls: the quadrant q = floor(4u), the angle within it shifted to
    x in [-pi/4, pi/4), Taylor series of cos x and sin x to x^14 and x^13
    (error below 1e-14), rotated by pi/4 and by the quadrant."""
    t = 4.0 * u
    q = np.int64(t)
    x = (t - q) * (2.0 * _PI_4) - _PI_4
    x2 = x * x
    cx = 1.0 + x2 * (-1.0 / 2 + x2 * (1.0 / 24 + x2 * (-1.0 / 720 + x2 * (1.0 / 40320 + x2 * (
        -1.0 / 3628800 + x2 * (1.0 / 479001600 + x2 * (-1.0 / 87178291200)))))))
    sx = x * (1.0 + x2 * (-1.0 / 6 + x2 * (1.0 / 120 + x2 * (-1.0 / 5040 + x2 * (1.0 / 362880 + x2 * (
        -1.0 / 39916800 + x2 * (1.0 / 6227020800)))))))
    c = _SQRT_HALF * (cx - sx)  # angle within the quadrant: x + pi/4
    s = _SQRT_HALF * (cx + sx)
    cq = np.float64(q == 0) - np.float64(q == 2)  # rotation by q quarter turns
    sq = np.float64(q == 1) - np.float64(q == 3)
    return c * cq - s * sq, s * cq + c * sq


@njit(cache=True, inline="always")
def normal(seed, uid, step, stream, k):
    """A standard normal: Box-Muller over draws 2k and 2k+1,
    sqrt(-2 log u1) cos(2 pi u2) with u1 = 1 - U in (0, 1], both by the
    libm-free :func:`log_unit` and :func:`cos_sin_turn`."""
    u1 = 1.0 - uniform(seed, uid, step, stream, 2 * k)  # (0, 1], exact
    c, _ = cos_sin_turn(uniform(seed, uid, step, stream, 2 * k + 1))
    return math.sqrt(-2.0 * log_unit(u1)) * c


@njit(cache=True, inline="always")
def unit_vector(seed, uid, step, stream, k):
    """A direction uniform on the unit sphere (uses draws 2k, 2k+1)."""
    z = 2.0 * uniform(seed, uid, step, stream, 2 * k) - 1.0
    c, s = cos_sin_turn(uniform(seed, uid, step, stream, 2 * k + 1))
    r = math.sqrt(max(0.0, 1.0 - z * z))
    return r * c, r * s, z


@njit(cache=True, parallel=False)
def uniform_array(seed, uids, step, stream, k, out):
    for i in range(uids.size):
        out[i] = uniform(seed, uids[i], step, stream, k)


@njit(cache=True, parallel=False)
def normal_array(seed, uids, step, stream, k, out):
    for i in range(uids.size):
        out[i] = normal(seed, uids[i], step, stream, k)


@njit(cache=True, parallel=False)
def unit_vector_array(seed, uids, step, stream, k, out):
    for i in range(uids.size):
        x, y, z = unit_vector(seed, uids[i], step, stream, k)
        out[i, 0] = x
        out[i, 1] = y
        out[i, 2] = z
