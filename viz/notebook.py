"""Pictures and views inside a Jupyter notebook (``bs.viz.show``)."""
import io
import os


def in_notebook():
    """Whether this process is a Jupyter kernel (IPython in a terminal is
    not: it cannot display pictures inline)."""
    import sys

    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def show(run_or_sim, snapshot=-1, interactive=False, **options):
    """Display a run (or its path) or a simulation inline in a Jupyter
    notebook.

    ``interactive=False`` (default): the picture :func:`render` makes of
    snapshot ``snapshot`` (``options`` are render's: ``color_by``,
    ``substance``, ``clip``, ``camera``, ``window_size`` ...), shown as a
    PNG under the cell.  ``interactive=True``: a 3D view to turn and zoom,
    with a slider over the run's snapshots (a simulation: its current
    state), through PyVista's trame backend (``pip install
    "biosim[notebook]"``: IPython and trame-pyvista).

    Outside a notebook a RuntimeError says how to write a picture to a
    file instead.  Returns None (the picture is displayed, not returned:
    ``render(..., out=None)`` returns the image array)."""
    if not isinstance(interactive, bool):
        raise TypeError(f"interactive must be True or False, got {interactive!r}")
    if "out" in options:
        raise TypeError("show displays in the notebook and takes no out=...; to write a file use "
                        "bs.viz.render(run_or_sim, out='picture.png')")
    if not in_notebook():
        raise RuntimeError("bs.viz.show displays pictures inside a Jupyter notebook, and this is not one; write "
                           "a picture to a file instead: bs.viz.render(run_or_sim, out='picture.png') (or a movie: "
                           "bs.viz.movie(run, out='run.mp4'); on the command line: biosim render RUN.h5 -o "
                           "run.png)")
    from IPython.display import Image, display

    if interactive:
        display(_interactive(run_or_sim, snapshot, options))
        return None
    from .render import render

    image = render(run_or_sim, snapshot, out=None, **options)
    import imageio.v3 as iio

    buf = io.BytesIO()
    iio.imwrite(buf, image, extension=".png")
    display(Image(data=buf.getvalue(), format="png"))
    return None


def _interactive(source, snapshot, options):
    """The trame widget of a PyVista plotter with the scene of ``source``
    and, for a run, a slider over its snapshots."""
    try:
        import trame_pyvista  # noqa: F401
    except ImportError:
        raise ImportError('show(..., interactive=True) needs PyVista\'s trame backend: pip install '
                          '"biosim[notebook]" (trame-pyvista); show(...) without it displays a picture') from None
    import pyvista as pv

    from biosim.io import Run, open_run

    from .render import _check_options, _draw, _place_camera, _snapshot_slider, frame_of

    if isinstance(source, (str, os.PathLike)):
        source = open_run(source)
    allowed = {"color_by", "substance", "clip", "camera", "window_size", "cmap", "max_spheres"}  # render's, 3D
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"show(..., interactive=True) got {unknown[0]}=...; it takes {', '.join(sorted(allowed))}")
    color_by = options.get("color_by", "type")
    substance = options.get("substance")
    clip = options.get("clip")
    camera = options.get("camera", "iso")
    frame = frame_of(source, snapshot, None, substance)
    _check_options(frame, color_by, None, camera, substance, clip)
    shown = None if substance is None else (substance, "slice", None)
    pl = pv.Plotter(notebook=True, window_size=tuple(options.get("window_size", (900, 650))))
    pl.set_background("white")
    cmap, most = options.get("cmap", "viridis"), options.get("max_spheres", 20000)

    if isinstance(source, Run) and len(source) > 1:
        _snapshot_slider(pl, source, source._snapshot(snapshot), color_by, shown, clip, cmap, most)
    else:
        _draw(pl, frame, color_by, shown, clip, None, cmap, most, None, True)
    _place_camera(pl, frame, camera, clip)
    return pl.show(jupyter_backend="server", return_viewer=True)
