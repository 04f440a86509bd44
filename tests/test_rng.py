"""The counter-based generator: reproducible, uniform, independent streams."""
import numpy as np
from scipy import stats

from biosim import rng


def test_draws_are_pure_functions_of_the_key():
    uids = np.arange(1000)
    a = rng.uniform(5, uids, 10, 2)
    np.testing.assert_array_equal(a, rng.uniform(5, uids, 10, 2))
    np.testing.assert_array_equal(a[::-1], rng.uniform(5, uids[::-1], 10, 2))
    for other in (rng.uniform(6, uids, 10, 2), rng.uniform(5, uids, 11, 2),
                  rng.uniform(5, uids, 10, 3), rng.uniform(5, uids, 10, 2, k=1)):
        assert np.corrcoef(a, other)[0, 1] < 0.1 and not np.array_equal(a, other)


def test_uniform_distribution():
    u = rng.uniform(1, np.arange(200_000), 0, 0)
    assert u.min() >= 0 and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # consecutive uids are not correlated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01


def test_normal_and_unit_vectors():
    g = rng.normal(3, np.arange(100_000), 7, 1)
    assert abs(g.mean()) < 0.02 and abs(g.std() - 1) < 0.02
    assert stats.kstest(g, "norm").pvalue > 1e-3
    v = rng.unit_vectors(3, np.arange(100_000), 7, 1)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-12)
    assert np.abs(v.mean(axis=0)).max() < 0.01
    np.testing.assert_allclose((v ** 2).mean(axis=0), 1 / 3, atol=0.01)


def test_cos_sin_of_a_turn_matches_libm():
    from numba import njit

    from biosim.kernels.cpu.rng import cos_sin_turn

    @njit
    def both(u):
        c = np.empty(u.size)
        s = np.empty(u.size)
        for i in range(u.size):
            c[i], s[i] = cos_sin_turn(u[i])
        return c, s

    u = np.concatenate([np.random.default_rng(0).random(200_000), [0.0, 0.125, 0.25, 0.5, 0.75, 1 - 2.0 ** -53]])
    c, s = both(u)
    np.testing.assert_allclose(c, np.cos(2 * np.pi * u), rtol=0, atol=5e-14)
    np.testing.assert_allclose(s, np.sin(2 * np.pi * u), rtol=0, atol=5e-14)


def test_sinc_polynomial_of_the_circles_kernel():
    from numba import njit

    from biosim.kernels.cpu.circles import sinc_turn_x

    @njit
    def many(v):  # of v = u^2, through the kernel's argument x = 2 u^2 - 1
        out = np.empty(v.size)
        for i in range(v.size):
            out[i] = sinc_turn_x(2.0 * v[i] - 1.0)
        return out

    u = np.concatenate([np.random.default_rng(1).random(200_000), [1e-300, 0.25, 0.5, 0.75, 1 - 2.0 ** -53]])
    np.testing.assert_allclose(many(u * u), np.sin(2 * np.pi * u) / u, rtol=0, atol=5e-13)  # degree 11
    assert abs(many(np.array([0.0]))[0] - 2 * np.pi) < 5e-13  # the limit at u = 0
    assert np.all(np.isfinite(many(np.linspace(0.0, 30.0, 1001))))  # far candidates: finite, weighted 0


# The contract every backend must meet: these keys give these bits.
PIN_KEY = dict(seed=42, step=17, stream=3, k=2)
PIN_UIDS = [0, 1, 12345, 2**40 + 7]
PIN_UNIFORM = ["0x1.7e116e0da2930p-1", "0x1.4cb828c78f073p-1", "0x1.d8c52c30c3479p-1", "0x1.6e7dd9ecc2cb9p-1"]
PIN_NORMAL = ["-0x1.8a6b3293110abp-2", "0x1.4c5577be5cc0fp-4", "-0x1.1344001effbbep-2", "-0x1.42ed77340cea3p-4"]
PIN_UNIT = [["-0x1.07cace716571cp-1", "0x1.c2504a347e93fp-6", "-0x1.b696967f83a5ep-1"],
            ["0x1.738fb829014d9p-4", "-0x1.c4c6eb6a7a774p-1", "-0x1.d4f4995e0d448p-2"],
            ["-0x1.77c8fe2dbaee9p-2", "-0x1.9e77ffa2d61f4p-3", "-0x1.d0dea66d2c9fcp-1"],
            ["-0x1.1540a66a7a745p-4", "-0x1.fec466c639365p-1", "-0x1.eee6b3a326e00p-7"]]


def test_pinned_draws():
    k = PIN_KEY
    got = rng.uniform(k["seed"], PIN_UIDS, k["step"], k["stream"], k["k"])
    assert [float(x).hex() for x in got] == PIN_UNIFORM
    got = rng.normal(k["seed"], PIN_UIDS, k["step"], k["stream"], k["k"])
    assert [float(x).hex() for x in got] == PIN_NORMAL
    got = rng.unit_vectors(k["seed"], PIN_UIDS, k["step"], k["stream"], k["k"])
    assert [[float(x).hex() for x in row] for row in got] == PIN_UNIT


def test_libm_free_logarithm_is_within_two_ulp():
    from numba import njit

    from biosim.kernels.cpu.rng import log_unit

    @njit
    def logs(u, out):
        for i in range(u.size):
            out[i] = log_unit(u[i])

    u = np.concatenate([1.0 - rng.uniform(5, np.arange(200000), 1, 2), [1.0, 0.5, 2.0**-53, 0.7071067811865476,
                                                                            0.7071067811865475, 1 - 2.0**-53]])
    out = np.empty_like(u)
    logs(u, out)
    ref = np.log(u)
    assert out[-6] == 0.0 and out[-5] == -np.log(2.0)
    ulps = np.abs(out - ref) / np.spacing(np.abs(np.where(ref == 0, 1.0, ref)))
    assert ulps.max() <= 2.0


def test_a_shared_hash_prefix_gives_uniform_s_bits():
    from biosim.kernels.cpu.rng import hash_prefix, uniform, uniform_after
    from numba import njit

    @njit
    def both(seed, uid, step, stream, ks):
        p = hash_prefix(seed, uid, step, stream)
        out = np.empty((ks.size, 2))
        for q in range(ks.size):
            out[q, 0] = uniform_after(p, ks[q])
            out[q, 1] = uniform(seed, uid, step, stream, ks[q])
        return out

    ks = np.array([0, 1, 7, 2**40 + 3, 2**62], dtype=np.int64)
    for key in ((0, 0, 0, 0), (5, 123456789, 77, 2**40), (2**62, 3, 2**31, 9)):
        out = both(*key, ks)
        assert np.array_equal(out[:, 0], out[:, 1]) and len(set(out[:, 0])) == ks.size
