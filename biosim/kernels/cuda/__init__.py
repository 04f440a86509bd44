"""CUDA backend (numba-cuda): the GPU twins of :mod:`biosim.kernels.cpu`'s
modules (``grid``, ``forces``, ``rng``, ``circles``), with the same
functions and arguments on device arrays.  With :mod:`biosim.backends`, the
only place in biosim that imports ``numba.cuda``; this package itself
imports it only when a kernel module is loaded, so ``describe`` and
``devices`` work without a GPU."""


def _cuda():
    from numba import cuda

    return cuda


def devices():
    """[(index, description)] of the GPUs numba-cuda sees (empty without one)."""
    try:
        cuda = _cuda()
        if not cuda.is_available():
            return []
        if _simulated():
            return [(0, "the numba-cuda simulator (NUMBA_ENABLE_CUDASIM=1)")]
        out = []
        for i, ctx in enumerate(cuda.gpus):
            dev = getattr(ctx, "_device", ctx)
            name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
            cc = dev.compute_capability
            out.append((i, f"{name} (compute capability {cc[0]}.{cc[1]})"))
        return out
    except Exception:
        return []


def describe():
    """A one-line description of the GPUs numba-cuda sees, or why none."""
    try:
        cuda = _cuda()
    except Exception as e:  # numba-cuda missing or broken
        return f"unavailable (numba.cuda: {e})"
    try:
        if not cuda.is_available():
            return "no CUDA GPU detected"
        return "; ".join(f"cuda:{i} {d}" for i, d in devices())
    except Exception as e:
        return f"unavailable ({e})"


def _simulated():
    from numba import config

    return bool(config.ENABLE_CUDASIM)
