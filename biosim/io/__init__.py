"""Output: HDF5 snapshots of runs (:class:`HDF5Writer`), reading them back
(:func:`open_run`), and checkpoints (:class:`Checkpointer`,
``Simulation.save_checkpoint`` / ``load_checkpoint``) and neuron
morphologies in SWC (:func:`write_swc`)."""
from .checkpoint import CheckpointError, Checkpointer
from .hdf5 import HDF5Writer, OutputError, Run, open_run
from .swc import write_swc

__all__ = ["HDF5Writer", "Run", "open_run", "Checkpointer", "CheckpointError", "OutputError", "write_swc"]
