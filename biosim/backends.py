"""Backends: where a simulation's kernels run, chosen once when it is built.

``Simulation(..., device="cpu")`` (the default) runs every kernel with
numba on the CPU's cores; ``device="cuda"`` (or ``"cuda:N"`` for the N-th
GPU) runs them with numba-cuda on an NVIDIA GPU, with the agent columns
kept on the device.  A script changes nothing else.

A backend is the engine's set of primitives: kernel modules with the same
functions and arguments on both targets (``grid``: binning, the canonical
sort, row gathers; ``forces``: pair forces, integrators, box boundaries;
``rng``; ``circles``), array allocation and transfer, and reductions.
The simulation, the mechanics and the agent table ask their backend;
only this module and :mod:`biosim.kernels.cuda` import ``numba.cuda``.

The default device of simulations that do not name one is ``"cpu"``, or
the ``BIOSIM_DEVICE`` environment variable (``biosim run --device cuda``
sets it for the script it runs).
"""
import os
import re

import numpy as np

DEVICES = ('"cpu"', '"cuda"', '"cuda:N"')


def default_device():
    """The device of simulations that do not name one: ``$BIOSIM_DEVICE`` or "cpu"."""
    return os.environ.get("BIOSIM_DEVICE") or "cpu"


def cuda_devices():
    """The GPUs numba-cuda sees: a list of (index, description), empty when
    there is none (or numba-cuda is not installed); under the simulator
    (``NUMBA_ENABLE_CUDASIM=1``) one simulated device."""
    from .kernels.cuda import devices

    return devices()


def parse_device(device):
    """The canonical name of ``device`` ("cpu" or "cuda:N"), or a clear
    error: a TypeError for a non-string, a ValueError naming the value, what
    is allowed and the GPUs found."""
    if device is None:
        device = default_device()
    if not isinstance(device, str):
        raise TypeError(f"device must be a string, one of {', '.join(DEVICES)}; got {device!r}")
    d = device.strip().lower()
    if d == "cpu":
        return "cpu"
    m = re.fullmatch(r"cuda(?::(\d+))?", d)
    if not m:
        raise ValueError(f"device must be one of {', '.join(DEVICES)} (N: a GPU index); got {device!r}. "
                         f"{_found()}")
    index = int(m.group(1) or 0)
    found = cuda_devices()
    if not found:
        raise ValueError(f"device={device!r}: {_missing()}")
    if index >= len(found):
        raise ValueError(f"device={device!r}: there is no GPU {index}. {_found(found)}")
    return f"cuda:{index}"


def _found(found=None):
    found = cuda_devices() if found is None else found
    if not found:
        return "No CUDA GPU was found (" + _missing() + ")."
    return "GPUs found: " + "; ".join(f"cuda:{i} {name}" for i, name in found) + "."


def _missing():
    from .kernels.cuda import describe

    return (f"no CUDA GPU is available ({describe()}); biosim's GPU backend needs an NVIDIA GPU with its "
            f"driver and numba-cuda (pip install \"numba-cuda[cu13]\"); use device=\"cpu\"")


_BACKENDS = {}


def get_backend(device=None):
    """The backend object of ``device`` (parsed by :func:`parse_device`);
    one per device and process."""
    name = parse_device(device)
    b = _BACKENDS.get(name)
    if b is None:
        b = CPUBackend() if name == "cpu" else CUDABackend(int(name.split(":")[1]))
        _BACKENDS[name] = b
    return b


class CPUBackend:
    """numba's parallel CPU kernels on numpy arrays (the agent columns
    themselves)."""

    name = "cpu"
    on_device = False

    def __init__(self):
        from .kernels.cpu import behaviours, circles, diffusion, forces, grid, rng

        self.diffusion = diffusion
        self.grid = grid
        self.forces = forces
        self.rng = rng
        self.circles = circles
        self.behaviours = behaviours

    @property
    def host(self):
        """The CPU backend: kernels on host arrays, for work that has no
        device kernel yet (on the CPU, the backend itself)."""
        return get_backend("cpu")

    def __repr__(self):
        return f"<biosim backend {self.name}>"

    # arrays
    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def to_device(self, a):
        return a

    def to_host(self, a):
        return np.asarray(a)

    def copy_to_host(self, src, dst):
        dst[...] = src

    def nonzero(self, flag, n):
        """Indices i < n where flag[i] is true, increasing (int64)."""
        return np.flatnonzero(flag[:n])

    def full(self, n, value):
        """A float64 array of n entries equal to value."""
        return np.full(n, float(value))

    def take(self, a, idx):
        """a[idx] for a 1D array and int64 indices (a new array)."""
        return a[idx]

    def copy(self, a):
        """A copy of array ``a`` where it lives."""
        return a.copy()

    def rows_of_type(self, agents, code):
        """Rows (int64, increasing) of the agents whose type is ``code``."""
        return self.behaviours.where_equal(agents.col("type", False), len(agents), code)

    def synchronize(self):
        """Wait for the kernels launched so far (a no-op on the CPU)."""

    def free_memory(self):
        """(free, total) bytes of the backend's memory (the CPU: 0, 0)."""
        return 0, 0

    # reductions
    def max(self, a, n):
        """The largest of a[:n] (float)."""
        return float(a[:n].max())

    def min(self, a, n):
        return float(a[:n].min())


class CUDABackend(CPUBackend):
    """numba-cuda kernels on device arrays; the agent table keeps a device
    copy of every column that kernels use (:class:`biosim.agents.AgentTable`)."""

    on_device = True

    def __init__(self, index=0):
        from numba import cuda

        from .kernels.cuda import _launch, behaviours, circles, diffusion, forces, grid, rng, rules

        self.index = index
        self.name = f"cuda:{index}"
        self._cuda = cuda
        self._launch = _launch
        cuda.select_device(index)
        self.grid = grid
        self.forces = forces
        self.rng = rng
        self.circles = circles
        self.behaviours = behaviours
        self.diffusion = diffusion
        self.rules = rules

    def empty(self, shape, dtype):
        try:
            return self._cuda.device_array(shape, dtype=dtype)
        except Exception as e:  # the driver's out-of-memory error, named for the user
            if "OUT_OF_MEMORY" not in str(e).upper():
                raise
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            free, total = self.free_memory()
            raise MemoryError(f"{self.name}: allocating {nbytes / 2**30:.2f} GiB on the device failed: out of "
                              f"memory ({free / 2**30:.2f} GiB free of {total / 2**30:.2f} GiB)") from e

    def nonzero(self, flag, n):
        return self._launch.nonzero(flag, n)

    def full(self, n, value):
        return self._launch.full(n, value)

    def copy(self, a):
        out = self.empty(a.shape, a.dtype)
        out.copy_to_device(a)
        return out

    def take(self, a, idx):
        m = len(idx)
        out = self.empty(m, a.dtype)
        if m:
            self.grid.gather_rows(a.reshape(a.size, 1), idx, m, out.reshape(m, 1))
        return out

    def zeros(self, shape, dtype):
        """A device array of zeros, set on the device (nothing crosses the bus)."""
        a = self.empty(shape, dtype)
        self._launch.zero(a)
        return a

    def to_device(self, a):
        return self._cuda.to_device(np.ascontiguousarray(a))

    def to_host(self, a):
        return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)

    def copy_to_host(self, src, dst):
        src.copy_to_host(dst)

    def upload(self, src, dst):
        """dst[:len(src)] = src (host to device)."""
        if len(src):
            dst[: len(src)].copy_to_device(np.ascontiguousarray(src))

    def max(self, a, n):
        return self._launch.max_value(a, n)

    def min(self, a, n):
        return self._launch.min_value(a, n)

    def synchronize(self):
        self._cuda.synchronize()

    def free_memory(self):
        """(free, total) bytes of device memory."""
        info = self._cuda.current_context().get_memory_info()
        return tuple(int(v) if np.isfinite(v) else 0 for v in info[:2])  # the simulator: infinite
