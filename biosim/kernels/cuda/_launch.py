"""Launch helpers of the CUDA kernels: block size, grid size, device scratch,
small reductions and the exclusive scan.

Every kernel of biosim's CUDA backend gives the same bits whatever
``BLOCK`` (threads per block) is: a thread computes one agent (or one cell)
alone, in a fixed order, and the only atomics are on integers (counts,
slots) or order-free (a maximum).
"""
import numpy as np
from numba import config, cuda

if config.ENABLE_CUDASIM:  # the simulator's libdevice functions are stubs
    cbrt = np.cbrt
else:
    from numba.cuda.libdevice import cbrt  # noqa: F401  (libdevice's, within an ulp of libm's)

BLOCK = 128  # threads per block; results do not depend on it (tests vary it)
SCAN_CHUNK = 64  # entries one thread of the scan adds up serially


def portable(fn):
    """A CPU ``@njit`` function of biosim's kernels for use inside CUDA
    kernels.  On a GPU numba-cuda compiles the function itself for the
    device (one source for both targets).  Under the simulator
    (``NUMBA_ENABLE_CUDASIM=1``) kernels run as Python, and a compiled CPU
    function cannot take the simulator's arrays: there, the function's
    Python source is called instead, with every compiled function it calls
    replaced the same way."""
    if not config.ENABLE_CUDASIM:
        return fn
    return _python_twin(fn)


_TWINS = {}


def _python_twin(fn):
    """The numba dispatcher ``fn`` for the simulator: called compiled when
    every argument is a number, a tuple or a numpy array, else (a simulated
    device array) as its Python source, whose globals name the twins of the
    dispatchers it calls."""
    import numbers
    import types

    from numba.core.registry import CPUDispatcher

    twin = _TWINS.get(fn)
    if twin is None:
        py = fn.py_func
        env = dict(py.__globals__)
        source = types.FunctionType(py.__code__, env, py.__name__, py.__defaults__, py.__closure__)
        plain = (numbers.Number, np.generic, np.ndarray, tuple)

        def twin(*args):
            if all(isinstance(a, plain) for a in args):
                return fn(*args)
            return source(*args)
        _TWINS[fn] = twin
        for name in py.__code__.co_names:
            value = env.get(name)
            if isinstance(value, CPUDispatcher):
                env[name] = _python_twin(value)
    return twin


def launch(n):
    """The launch configuration (blocks, threads per block) of ``n`` threads:
    blocks of BLOCK threads (read at each launch), at least one."""
    return max(1, (int(n) + BLOCK - 1) // BLOCK), BLOCK


def t3(a, kind=float):
    """A length-3 host array as a tuple of Python scalars (passed to kernels
    by value: a numpy argument would be copied to the device and back at
    every launch)."""
    return tuple(kind(x) for x in a)


@cuda.jit
def _fill_i64(a, v, n):
    i = cuda.grid(1)
    if i < n:
        a[i] = v


def fill(a, v, n=None):
    """a[:n] = v on the device (int64 arrays)."""
    n = a.size if n is None else int(n)
    if n:
        _fill_i64[launch(n)](a, v, n)


@cuda.jit
def _chunk_sums(a, n, part):
    t = cuda.grid(1)
    lo = t * SCAN_CHUNK
    if lo < n:
        s = 0
        for k in range(lo, min(n, lo + SCAN_CHUNK)):
            s += a[k]
        part[t] = s


@cuda.jit
def _chunk_prefix(a, n, part, out):
    """out[k] = part[t] + a[lo] + ... + a[k-1] for the chunk t holding k
    (``a`` and ``out`` may be the same array)."""
    t = cuda.grid(1)
    lo = t * SCAN_CHUNK
    if lo < n:
        s = part[t]
        for k in range(lo, min(n, lo + SCAN_CHUNK)):
            v = a[k]
            out[k] = s
            s += v


def exclusive_scan(a, n, out):
    """out[k] = a[0] + ... + a[k-1] for k < n (int64 device arrays; ``out``
    may be ``a``); returns the total.  Chunks of SCAN_CHUNK summed by one
    thread each, their sums scanned the same way (recursively), then each
    chunk written from its offset: integer sums, so exact in any order."""
    n = int(n)
    if n == 0:
        return 0
    m = (n + SCAN_CHUNK - 1) // SCAN_CHUNK
    part = cuda.device_array(m + 1, dtype=np.int64)
    _chunk_sums[launch(m)](a, n, part)
    if m == 1:
        total = int(part[:1].copy_to_host()[0])
        fill(part, 0, 1)
    else:
        total = exclusive_scan(part, m, part)
    _chunk_prefix[launch(m)](a, n, part, out)
    return total


@cuda.jit
def _max_f64(a, n, out):
    i = cuda.grid(1)
    if i < n:
        cuda.atomic.max(out, 0, a[i])


def max_value(a, n):
    """The largest of a[:n] (float64 device array; order-free, so exact)."""
    out = cuda.to_device(np.full(1, -np.inf))
    if n:
        _max_f64[launch(n)](a, int(n), out)
    return float(out.copy_to_host()[0])


@cuda.jit
def _min_f64(a, n, out):
    i = cuda.grid(1)
    if i < n:
        cuda.atomic.min(out, 0, a[i])


def min_value(a, n):
    """The smallest of a[:n] (float64 device array)."""
    out = cuda.to_device(np.full(1, np.inf))
    if n:
        _min_f64[launch(n)](a, int(n), out)
    return float(out.copy_to_host()[0])


def counter():
    """A one-entry int64 device counter set to 0 (kernels add to it)."""
    return cuda.to_device(np.zeros(1, dtype=np.int64))


def read(c):
    """The value of a one-entry device counter (one small copy to the host)."""
    return int(c.copy_to_host()[0])


@cuda.jit
def _flags_to_counts(flag, n, counts):
    i = cuda.grid(1)
    if i < n:
        counts[i] = 1 if flag[i] else 0


@cuda.jit
def _scatter_nonzero(flag, n, place, out):
    i = cuda.grid(1)
    if i < n and flag[i]:
        out[place[i]] = i


def nonzero(flag, n):
    """The indices i < n where ``flag[i]`` is true, in increasing order (an
    int64 device array): a scan of the flags, then a scatter."""
    n = int(n)
    place = cuda.device_array(n + 1, dtype=np.int64)
    if n:
        _flags_to_counts[launch(n)](flag, n, place)
    m = exclusive_scan(place, n, place) if n else 0
    out = cuda.device_array(m, dtype=np.int64)
    if m:
        _scatter_nonzero[launch(n)](flag, n, place, out)
    return out


@cuda.jit
def _fill_f64(a, v, n):
    i = cuda.grid(1)
    if i < n:
        a[i] = v


@cuda.jit
def _zero_u8(a, n):
    i = cuda.grid(1)
    if i < n:
        a[i] = 0


def zero(a):
    """Set every byte of the contiguous device array ``a`` to 0."""
    if a.size:
        b = a.reshape(a.size).view(np.uint8)
        _zero_u8[launch(b.size)](b, int(b.size))


def full(n, value):
    """A float64 device array of ``n`` entries equal to ``value``."""
    a = cuda.device_array(max(int(n), 0), dtype=np.float64)
    if n:
        _fill_f64[launch(n)](a, float(value), int(n))
    return a
