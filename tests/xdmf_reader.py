"""Reading a run's ParaView sidecar back through VTK's XDMF reader, as
ParaView does (the sidecar tests of test_io.py and test_neurites.py)."""
import numpy as np


def snapshots(xmf, run):
    """Yield (snapshot index, the reader's output at its time) for every
    snapshot of ``run``, after checking the sidecar's times are the run's."""
    from vtkmodules import vtkIOXdmf2 as vtk
    from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline as SDDP

    reader = vtk.vtkXdmfReader()
    reader.SetFileName(str(xmf))
    reader.UpdateInformation()
    times = reader.GetOutputInformation(0).Get(SDDP.TIME_STEPS())
    np.testing.assert_allclose(times, run.times)
    for i, t in enumerate(times):
        reader.UpdateTimeStep(t)
        yield i, reader.GetOutputDataObject(0)
