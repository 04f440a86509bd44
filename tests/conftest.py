import os
import shutil

# The CUDA backend's tests run on every machine: on a real GPU where there is
# one, else under numba-cuda's simulator (set before numba is imported).
if "NUMBA_ENABLE_CUDASIM" not in os.environ and not (os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi")):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

from hypothesis import settings

settings.register_profile("biosim", deadline=None, max_examples=40)
settings.load_profile("biosim")


import pytest  # noqa: E402


def _cuda_usable():
    try:
        from biosim.kernels.cuda import devices

        return bool(devices())
    except Exception:
        return False


CUDA = _cuda_usable()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="numba-cuda not installed"))]


@pytest.fixture(params=DEVICES)
def device(request):
    """Each backend in turn (HOOMD-blue's fixture): "cpu", and "cuda" on a GPU
    or, without one, under numba-cuda's simulator (keep such tests to a few
    hundred agents: the simulator runs a few thousand threads a second)."""
    return request.param
