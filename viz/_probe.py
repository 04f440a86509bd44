"""Can this machine render offscreen?  Asked once per process, in a
subprocess, because VTK without a working OpenGL segfaults instead of
raising."""
import os
import subprocess
import sys

_RESULT = None

_SCRIPT = """
import pyvista as pv
pv.OFF_SCREEN = True
pv.global_theme.multi_samples = 0
pl = pv.Plotter(off_screen=True, window_size=(32, 32))
pl.add_mesh(pv.Sphere())
img = pl.screenshot(return_img=True)
print("RENDER_OK", img.shape)
"""

ADVICE = ("offscreen rendering with VTK failed on this machine. Install an OpenGL for headless use: "
          "on Debian/Ubuntu `apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri` (then "
          "VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow), or `apt-get install libosmesa6` "
          "(then VTK_DEFAULT_OPENGL_WINDOW=vtkOSOpenGLRenderWindow).")


def environment():
    """The environment rendering runs with (EGL window unless the user chose)."""
    env = dict(os.environ)
    env.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    return env


def check():
    """(ok, message): whether a tiny offscreen render works here."""
    global _RESULT
    if _RESULT is None:
        try:
            r = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120,
                               env=environment())
            ok = r.returncode == 0 and "RENDER_OK" in r.stdout
            detail = "" if ok else f" (probe exit status {r.returncode}: {r.stderr.strip()[-300:]})"
        except (OSError, subprocess.TimeoutExpired) as e:
            ok, detail = False, f" ({e})"
        _RESULT = (ok, "" if ok else ADVICE + detail)
    return _RESULT


def require():
    ok, message = check()
    if not ok:
        raise RuntimeError(message)
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
