"""Numba kernels: arrays and scalars in, no classes.

``cpu`` holds ``@njit(parallel=True, cache=True)`` kernels; ``cuda`` is the
only place in biosim that imports ``numba.cuda``.
"""
