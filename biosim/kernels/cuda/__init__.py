"""CUDA backend (numba-cuda): the only module of biosim that imports
``numba.cuda``.  Kernels arrive with the GPU work; this module reports what
is available."""


def describe():
    """A one-line description of the GPU numba-cuda sees, or why none."""
    try:
        from numba import cuda
    except Exception as e:  # numba-cuda missing or broken
        return f"unavailable (numba.cuda: {e})"
    try:
        if not cuda.is_available():
            return "no CUDA GPU detected"
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
        return f"{name} (compute capability {dev.compute_capability[0]}.{dev.compute_capability[1]})"
    except Exception as e:
        return f"unavailable ({e})"
