"""Output: HDF5 snapshots of runs (:class:`HDF5Writer`) and reading them back
(:func:`open_run`)."""
from .hdf5 import HDF5Writer, Run, open_run

__all__ = ["HDF5Writer", "Run", "open_run"]
