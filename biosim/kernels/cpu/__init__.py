"""CPU kernels (numba, parallel, cached)."""
