"""Counter-based random numbers for numba kernels.

Every draw is a pure function of ``(seed, uid, step, stream, k)``: the run's
seed, the agent's uid, the simulation step, the behaviour's stream id and the
index ``k`` of the draw within that (agent, step, stream).  No state is
carried between draws, so results do not depend on thread count or on the
order in which agents are visited.

The mixing function is the SplitMix64 finaliser (Stafford's "mix13"), chained
over the key words; it passes BigCrush as a counter-based generator.
"""
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
_TWO_PI = 6.283185307179586


@njit(cache=True, inline="always")
def mix64(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def hash5(seed, uid, step, stream, k):
    """64 random bits for the key (seed, uid, step, stream, k)."""
    h = mix64(np.uint64(seed) + _GOLDEN)
    h = mix64(h ^ (np.uint64(uid) + _GOLDEN))
    h = mix64(h ^ (np.uint64(step) + _GOLDEN))
    h = mix64(h ^ (np.uint64(stream) + _GOLDEN))
    return mix64(h ^ (np.uint64(k) + _GOLDEN))


@njit(cache=True, inline="always")
def uniform(seed, uid, step, stream, k):
    """A float64 uniform on [0, 1) with 53 random bits."""
    return np.float64(hash5(seed, uid, step, stream, k) >> _S11) * _INV53


@njit(cache=True, inline="always")
def normal(seed, uid, step, stream, k):
    """A standard normal (Box-Muller over draws 2k and 2k+1)."""
    u1 = 1.0 - uniform(seed, uid, step, stream, 2 * k)  # (0, 1]
    u2 = uniform(seed, uid, step, stream, 2 * k + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)


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
def unit_vector(seed, uid, step, stream, k):
    """A direction uniform on the unit sphere (uses draws 2k, 2k+1)."""
    z = 2.0 * uniform(seed, uid, step, stream, 2 * k) - 1.0
    c, s = cos_sin_turn(uniform(seed, uid, step, stream, 2 * k + 1))
    r = np.sqrt(max(0.0, 1.0 - z * z))
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
