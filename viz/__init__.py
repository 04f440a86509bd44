"""3D rendering of biosim runs with PyVista (``biosim.viz``), offscreen.

    import biosim as bs
    bs.viz.render(bs.io.open_run("run.h5"), snapshot=-1, color_by="diameter", out="run.png")

Rendering is probed once per process in a subprocess; where VTK cannot
render (no EGL/OSMesa), a RuntimeError says what to install instead of the
process crashing.
"""
from ._probe import check as rendering_available
from .plots import plot_counts
from .notebook import show
from .render import movie, render, view

__all__ = ["movie", "plot_counts", "render", "rendering_available", "show", "view"]
