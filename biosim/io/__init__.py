"""Output: HDF5 snapshots of runs (:class:`HDF5Writer`), reading them back
(:func:`open_run`), and checkpoints (:class:`Checkpointer`,
``Simulation.save_checkpoint`` / ``load_checkpoint``)."""
from .checkpoint import CheckpointError, Checkpointer
from .hdf5 import HDF5Writer, OutputError, Run, open_run

__all__ = ["HDF5Writer", "Run", "open_run", "Checkpointer", "CheckpointError", "OutputError"]
