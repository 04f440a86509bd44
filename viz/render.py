"""Pictures of runs with PyVista, offscreen."""
import os

import numpy as np

from biosim import _validate as V

from . import _probe

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CAMERAS = ("iso", "xy", "xz", "yz")
# categorical colours for population types (colour-blind-safe, Okabe-Ito)
TYPE_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


class Frame:
    """What one picture shows: agent columns, box, population names and
    substance grids (with their spacing and lower corner), at one step/time."""

    def __init__(self, agents, lower, upper, populations, substances, step, time, neurite_types=(), units=None):
        self.agents = agents
        self.units = dict(units or {})  # substance -> the unit of its concentration
        self.neurite_types = list(neurite_types)  # type codes drawn as tubes (biosim.neurites)
        self.lower = np.asarray(lower, dtype=float)
        self.upper = np.asarray(upper, dtype=float)
        self.populations = populations
        self.substances = substances  # name -> (grid, spacing, lower)
        self.step = step
        self.time = time


def frame_of(source, snapshot=-1, step=None, substance=None):
    """A Frame from a Run, a run's path, or a live Simulation."""
    from biosim.io import Run, open_run
    from biosim.simulation import Simulation

    if isinstance(source, (str, os.PathLike)):
        source = open_run(source)
    if isinstance(source, Simulation):
        if step is not None and step != source.step:
            raise ValueError(f"step {step!r}: a live simulation shows its current step {source.step}")
        t = source.agents
        agents = {c: t[c].copy() for c in t.columns}
        agents.update({c: t[c] for c in t.derived})  # fresh arrays already
        subs = {n: (s._current().copy(), s.spacing, s.lower) for n, s in source.substances.items()}
        pops = [p.name for p in sorted(source.populations.values(), key=lambda p: p.code)]
        tubes = () if source.neurites is None else source.neurites.types
        units = {n: s.unit for n, s in source.substances.items() if s.unit}
        return Frame(agents, source.box.lower, source.box.upper, pops, subs, source.step, source.time, tubes,
                     units)
    if not isinstance(source, Run):
        raise TypeError(f"render takes a run (bs.io.open_run(path)), a run's path or a Simulation; got "
                        f"{type(source).__name__}")
    if len(source) == 0:
        raise ValueError(f"run {source.path!r} holds no snapshots yet")
    i = source.index(step) if step is not None else source._snapshot(snapshot)
    box = source.metadata.get("box", {})
    agents = source.agents(i)
    subs = {}
    if substance is not None:
        if substance not in source.substances:
            known = ", ".join(source.substances) or "none"
            raise ValueError(f"substance {substance!r} is not in this run; substances are {known}")
        meta = source.metadata.get("substances", {}).get(substance, {})
        subs[substance] = (source.substance(substance, i), meta.get("spacing"),
                           np.asarray(box.get("lower", (0, 0, 0)), dtype=float))
        unit = meta.get("unit")
        units = {substance: unit} if V.is_unit(unit) else {}
    else:
        units = {}
    pos = agents["position"]
    lower = box.get("lower", pos.min(axis=0) if len(pos) else (0, 0, 0))
    upper = box.get("upper", pos.max(axis=0) if len(pos) else (1, 1, 1))
    tubes = (source.metadata.get("neurites") or {}).get("types", [])
    if not all(c in agents for c in ("distal", "axis")) or not isinstance(tubes, list):
        tubes = []
    return Frame(agents, lower, upper, source.populations, subs, int(source.steps[i]), float(source.times[i]),
                 [c for c in tubes if isinstance(c, int)], units)


SUBSTANCE_MODES = ("slice", "isosurface", "volume")


def _check_options(frame, color_by, out, camera, substance, clip, substance_mode="slice"):
    if out is not None:
        ext = os.path.splitext(str(out))[1].lower()
        if ext not in IMAGE_EXTENSIONS:
            raise ValueError(f"out {str(out)!r}: the image type {ext or '(none)'} is not supported; use one of "
                             f"{', '.join(IMAGE_EXTENSIONS)} (movies: bs.viz.movie)")
        parent = os.path.dirname(os.path.abspath(str(out)))
        if not os.path.isdir(parent):
            raise ValueError(f"out {str(out)!r}: directory {parent!r} does not exist")
    if color_by not in frame.agents:
        raise ValueError(f"color_by {color_by!r} is not a column of this run; columns are "
                         f"{', '.join(sorted(frame.agents))}")
    if camera not in CAMERAS:
        raise ValueError(f"camera must be one of {', '.join(CAMERAS)}; got {camera!r}")
    if substance is not None and substance not in frame.substances:
        known = ", ".join(frame.substances) or "none"
        raise ValueError(f"substance {substance!r} is not in this simulation; substances are {known}")
    if substance_mode not in SUBSTANCE_MODES:
        raise ValueError(f"substance_mode must be one of {', '.join(SUBSTANCE_MODES)}; got {substance_mode!r}")
    if clip is not None and clip not in ("x", "y", "z", "-x", "-y", "-z"):
        raise ValueError(f"clip must be None or an axis 'x', 'y', 'z' (keep the lower half) or '-x', '-y', '-z' "
                         f"(keep the upper half); got {clip!r}")


def _scalars(values):
    v = np.asarray(values)
    if v.ndim > 1:
        v = np.linalg.norm(v.reshape(len(v), -1), axis=1)
    return v.astype(float)


def render(source, snapshot=-1, color_by="type", out="frame.png", step=None, substance=None, clip=None,
           camera="iso", window_size=(1024, 768), clim=None, cmap="viridis", max_spheres=20000,
           background="white", show_box=None, annotate=True, substance_mode="slice", substance_level=None,
           axes=False, scale_bar=False):
    """Render agents as spheres of their true diameter and save a picture.

    Parameters
    ----------
    source : Run, path of a run, or Simulation
    snapshot : int, Python-style index of the snapshot (-1: the last)
    color_by : column to colour by: ``"type"`` gives one colour per population
        (with a legend), other columns a colour map with a scalar bar
        (vectors by their length)
    out : path of a .png or .jpg, or None to return the image array only
    step : select the snapshot by simulation step instead
    substance : name of a substance to show
    substance_mode : ``"slice"`` (through the box centre, normal z; the
        default), ``"isosurface"`` (at ``substance_level``, default the middle
        of the grid's range) or ``"volume"`` (volume rendering)
    clip : ``"x"``, ``"y"`` or ``"z"``: drop the agents in the upper half along
        that axis (``"-x"``...: the lower half), to look inside a spheroid
    camera : ``"iso"`` (default), ``"xy"``, ``"xz"`` or ``"yz"``
    window_size : (width, height) in pixels
    clim : (low, high) colour limits for continuous columns (default: the data's)
    max_spheres : above this many agents, points rendered as spheres are drawn
        instead of sphere meshes (seconds for 10^6 agents)
    show_box : draw the box outline (default: when the agents span most of it)
    axes : draw axes with µm ticks around the agents
    scale_bar : draw a scale bar of a round length (µm) under the agents

    Returns the image as an (height, width, 3) uint8 array.
    """
    frame = frame_of(source, snapshot, step, substance)
    _check_options(frame, color_by, out, camera, substance, clip, substance_mode)
    shown = None if substance is None else (substance, substance_mode, substance_level)
    return _render_frame(frame, color_by, out, shown, clip, camera, window_size, clim, cmap,
                         max_spheres, background, show_box, annotate, bounds=None, keep=True,
                         decor=(bool(axes), bool(scale_bar)))


def _render_frame(frame, color_by, out, substance, clip, camera, window_size, clim, cmap, max_spheres,
                  background, show_box, annotate, bounds, label="", keep=False, decor=(False, False)):
    _probe.require()
    import pyvista as pv

    pv.OFF_SCREEN = True
    pv.global_theme.multi_samples = 0
    pl = pv.Plotter(off_screen=True, window_size=tuple(window_size))
    pl.set_background(background)
    _draw(pl, frame, color_by, substance, clip, clim, cmap, max_spheres, show_box, annotate, label)
    _decorate(pl, frame, *decor)
    if bounds is None and substance is not None and substance[1] != "slice":
        bounds = (frame.lower, frame.upper)  # a field fills the box: show all of it
    _place_camera(pl, frame, camera, clip, bounds)
    img = pl.screenshot(None if out is None else str(out), return_img=True)
    if not (keep and getattr(pv, "BUILDING_GALLERY", False)):
        pl.close()  # (while the docs' gallery builds, PyVista's scraper takes and closes render's plotters)
    return img


MOVIE_EXTENSIONS = (".mp4", ".gif")


def movie(run, out="run.mp4", every=1, fps=10, color_by="type", substance=None, clip=None, camera="iso",
          window_size=(800, 600), clim=None, cmap="viridis", max_spheres=20000, progress=True,
          substance_mode="slice", substance_level=None):
    """Render snapshots ``0, every, 2 every, ...`` and always the last of
    ``run`` into an .mp4 or .gif movie; each frame shows its number, step
    and time.  Every frame has the same scene elements (the box outline in
    all or none), the same colour limits for the agents and the substance
    (no flicker) and, by default, the same camera, framing the agents of
    every frame (the final state of a growing tissue); ``camera="follow"``
    frames each snapshot's agents instead (from the iso direction), so
    early frames of a growing tissue are not a dot.  Other options as for
    :func:`render`.  Returns the frame count."""
    from biosim.io import Run, open_run

    if isinstance(run, (str, os.PathLike)):
        run = open_run(run)
    if not isinstance(run, Run):
        raise TypeError(f"movie takes a run (bs.io.open_run(path)) or its path; got {type(run).__name__}")
    ext = os.path.splitext(str(out))[1].lower()
    if ext not in MOVIE_EXTENSIONS:
        raise ValueError(f"out {str(out)!r}: movies are written as {', '.join(MOVIE_EXTENSIONS)}; got "
                         f"{ext or '(none)'} (pictures: bs.viz.render)")
    every = int(every)
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if not (isinstance(fps, (int, float)) and 0 < fps <= 120):
        raise ValueError(f"fps must be a number in (0, 120], got {fps!r}")
    indices = list(range(0, len(run), every))
    if not indices:
        raise ValueError(f"run {run.path!r} holds no snapshots")
    if indices[-1] != len(run) - 1:
        indices.append(len(run) - 1)  # the last snapshot, always
    follow = camera == "follow"
    if follow:
        camera = "iso"
    first = frame_of(run, indices[0], None, substance)
    _check_options(first, color_by, None, camera, substance, clip, substance_mode)
    shown = None if substance is None else (substance, substance_mode, substance_level)
    if substance is not None:  # one colour range for the field too
        grids = [run.substance(substance, i) for i in indices]
        slo = min(float(np.nanmin(g)) if np.isfinite(g).any() else np.inf for g in grids)
        shi = max(float(np.nanmax(g)) if np.isfinite(g).any() else -np.inf for g in grids)
        if np.isfinite(slo):
            shown = shown + ((slo, shi if shi > slo else slo + 1e-12),)
    parent = os.path.dirname(os.path.abspath(str(out)))
    if not os.path.isdir(parent):
        raise ValueError(f"out {str(out)!r}: directory {parent!r} does not exist")
    # one camera and one colour range for the whole movie
    lo, hi, vmin, vmax = None, None, np.inf, -np.inf
    for i in indices:
        a = run.agents(i, columns=["position", "diameter", color_by] if color_by not in ("position", "diameter")
                       else ["position", "diameter"])
        if len(a["position"]):
            pad = float(np.max(a["diameter"]))
            plo, phi = a["position"].min(axis=0) - pad, a["position"].max(axis=0) + pad
            lo = plo if lo is None else np.minimum(lo, plo)
            hi = phi if hi is None else np.maximum(hi, phi)
            v = _scalars(a[color_by])
            vmin, vmax = min(vmin, float(v.min())), max(vmax, float(v.max()))
    bounds = None if lo is None or follow else (lo, hi)
    # the box outline in every frame or in none: decided on the agents' extent over the whole movie
    show_box = lo is None or bool(np.any(hi - lo > 0.5 * (first.upper - first.lower)))
    if clim is None and color_by != "type" and np.isfinite(vmin):
        clim = (vmin, vmax if vmax > vmin else vmin + 1e-12)
    import imageio.v2 as imageio

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(indices), unit="frame", desc="movie")
    kwargs = {"fps": fps}
    if ext == ".mp4":
        kwargs.update(codec="libx264", quality=7, macro_block_size=1)
    else:
        kwargs = {"duration": 1000.0 / fps, "loop": 0}
    try:
        with imageio.get_writer(str(out), **kwargs) as writer:
            for k, i in enumerate(indices):
                frame = frame_of(run, i, None, substance)
                img = _render_frame(frame, color_by, None, shown, clip, camera, window_size, clim, cmap,
                                    max_spheres, "white", show_box, True, bounds,
                                    label=f"frame {k + 1}/{len(indices)}   ")
                writer.append_data(img)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return len(indices)


def _draw(pl, frame, color_by, substance, clip, clim, cmap, max_spheres, show_box, annotate, label=""):
    import pyvista as pv

    a = frame.agents
    pos = np.asarray(a["position"], dtype=float)
    keep = np.ones(len(pos), dtype=bool)
    if clip is not None:
        axis = "xyz".index(clip[-1])
        centre = 0.5 * (frame.lower[axis] + frame.upper[axis])
        keep = pos[:, axis] <= centre if not clip.startswith("-") else pos[:, axis] >= centre
    pos = pos[keep]
    diam = np.asarray(a["diameter"], dtype=float)[keep]
    values = _scalars(a[color_by])[keep]
    categorical = color_by == "type"
    if show_box is None:
        span = pos.max(axis=0) - pos.min(axis=0) if len(pos) else frame.upper - frame.lower
        show_box = bool(np.any(span > 0.5 * (frame.upper - frame.lower)))
    if show_box:
        pl.add_mesh(pv.Box(bounds=(frame.lower[0], frame.upper[0], frame.lower[1], frame.upper[1],
                                   frame.lower[2], frame.upper[2])), style="wireframe", color="grey",
                    line_width=1)
    if substance is not None:
        _draw_substance(pl, frame, *substance)
    if len(pos):
        cloud = pv.PolyData(pos)
        cloud["diameter"] = diam
        if categorical:
            codes = values.astype(int)
            names = frame.populations or [str(c) for c in range(codes.max() + 1)]
            colours = np.array([TYPE_COLOURS[c % len(TYPE_COLOURS)] for c in range(max(len(names), 1))])
            cloud["rgb"] = np.array([_hex_rgb(colours[c]) for c in codes], dtype=np.uint8)
            kwargs = {"scalars": "rgb", "rgb": True}
            if annotate:
                present = sorted(set(codes.tolist()))
                for row, c in enumerate(present):  # a legend in the populations' own colours
                    _text(pl, names[c] if c < len(names) else str(c), position=(0.01, 0.90 - 0.045 * row),
                          viewport=True, color=colours[c], font_size=11)
        else:
            cloud[color_by] = values
            lo, hi = (float(values.min()), float(values.max())) if clim is None else clim
            kwargs = {"scalars": color_by, "cmap": cmap, "clim": (lo, hi if hi > lo else lo + 1e-12),
                      "scalar_bar_args": {"title": _titled(color_by), "color": "black", "n_labels": 4,
                                          "fmt": "%.3g", "position_x": 0.25, "width": 0.5}}
            if not hi > lo:  # one value: no bar of equal ticks, the value itself
                kwargs["show_scalar_bar"] = False
                if annotate:
                    unit = COLUMN_UNITS.get(color_by, "")
                    _text(pl, f"{color_by} = {lo:.4g} {unit}".rstrip(), position=(0.02, 0.03), viewport=True,
                          font_size=10, color="black")
        tube = np.isin(np.asarray(a["type"])[keep], frame.neurite_types)
        if tube.any():  # neurite elements: tubes of their diameter from the proximal to the distal end
            _draw_tubes(pl, cloud.extract_points(np.flatnonzero(tube), adjacent_cells=False), a, keep, tube,
                        len(pos) <= max_spheres, kwargs)
            cloud = cloud.extract_points(np.flatnonzero(~tube), adjacent_cells=False)
        if cloud.n_points == 0:
            pass
        elif cloud.n_points <= max_spheres:
            sphere = pv.Sphere(radius=0.5, theta_resolution=14, phi_resolution=14)
            glyphs = cloud.glyph(scale="diameter", geom=sphere, orient=False)
            pl.add_mesh(glyphs, smooth_shading=True, **kwargs)
        else:
            size = _point_size(pl, frame, float(np.median(diam)))
            pl.add_mesh(cloud, render_points_as_spheres=True, point_size=size, **kwargs)
    if annotate:
        _text(pl, f"{label}step {frame.step}   t = {frame.time:g} min   {len(a['position'])} agents",
              position="upper_left", font_size=10, color="black")


def _text(pl, text, **kwargs):
    """A label on a pale, half-opaque box: readable over any background."""
    actor = pl.add_text(text, **kwargs)
    actor.prop.background_color = "white"
    actor.prop.background_opacity = 0.7
    return actor


def _decorate(pl, frame, axes, scale_bar):
    """Axes with µm ticks around the agents (``axes``) and a scale bar of a
    round length under them (``scale_bar``)."""
    lo, hi = _agent_bounds(frame)
    if axes:
        pl.show_bounds(bounds=(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]), grid=False, location="outer",
                       xtitle="x (µm)", ytitle="y (µm)", ztitle="z (µm)", color="black", font_size=9,
                       n_xlabels=3, n_ylabels=3, n_zlabels=3, fmt="%.0f")
    if scale_bar:
        extent = float(hi[0] - lo[0])
        length = max(v * 10.0 ** k for k in range(-2, 7) for v in (1, 2, 5) if v * 10.0 ** k <= extent / 3) \
            if extent > 0 else 1.0
        start = np.array([lo[0], lo[1], lo[2]])
        pl.add_ruler(start, start + [length, 0.0, 0.0], title=f"{length:g} µm", show_labels=False,
                     number_labels=2, label_color="black", tick_color="black")


# units of the columns biosim itself defines (colour bar titles)
COLUMN_UNITS = {"diameter": "µm", "position": "µm", "distal": "µm", "axis": "µm", "length": "µm",
                "resting_length": "µm", "volume": "µm³", "age": "min", "death_age": "min", "phase_age": "min"}


def _titled(name):
    unit = COLUMN_UNITS.get(name)
    return f"{name} ({unit})" if unit else name


def _draw_tubes(pl, points, a, keep, tube, solid, kwargs):
    """Neurite elements as tubes (``solid``) or lines: one segment per
    element from its proximal end (distal - axis) to its distal end, the
    tube's radius half the element's diameter, coloured as its point."""
    import pyvista as pv

    distal = np.asarray(a["distal"], dtype=float)[keep][tube]
    proximal = distal - np.asarray(a["axis"], dtype=float)[keep][tube]
    m = len(distal)
    ends = np.empty((2 * m, 3))
    ends[0::2] = proximal
    ends[1::2] = distal
    lines = np.column_stack([np.full(m, 2), np.arange(0, 2 * m, 2), np.arange(1, 2 * m, 2)]).ravel()
    mesh = pv.PolyData(ends, lines=lines)
    for name in points.point_data.keys():
        if name.startswith("vtk"):
            continue
        mesh.point_data[name] = np.repeat(np.asarray(points.point_data[name]), 2, axis=0)
    mesh.point_data["radius"] = np.repeat(0.5 * np.asarray(points.point_data["diameter"]), 2)
    if solid:
        mesh = mesh.tube(scalars="radius", absolute=True, n_sides=10, capping=True)
        pl.add_mesh(mesh, smooth_shading=True, **kwargs)
    else:
        pl.add_mesh(mesh, line_width=2, **kwargs)


def _draw_substance(pl, frame, name, mode, level, clim=None):
    import pyvista as pv

    grid, spacing, lower = frame.substances[name]
    # upright at the right edge, clear of the agents' bar along the bottom
    title = f"{name} ({frame.units[name]})" if frame.units.get(name) else name
    bar = {"title": title, "color": "black", "vertical": True, "position_x": 0.86, "position_y": 0.2,
           "height": 0.6, "width": 0.07, "n_labels": 4, "fmt": "%.3g"}
    img = pv.ImageData(dimensions=np.array(grid.shape) + 1, spacing=(spacing,) * 3, origin=lower)
    img.cell_data[name] = grid.ravel(order="F")
    if mode == "slice":
        # a horizontal slice under the agents (the camera looks from above), so it never hides one; through the
        # box centre when there are none
        origin = 0.5 * (frame.lower + frame.upper)
        pos = np.asarray(frame.agents["position"], dtype=float)
        if len(pos):
            below = float(pos[:, 2].min() - np.max(frame.agents["diameter"]))
            origin[2] = min(max(below, frame.lower[2] + 0.5 * spacing), frame.upper[2] - 0.5 * spacing)
        sl = img.slice(normal="z", origin=origin)
        finite = grid[np.isfinite(grid)]
        uniform = finite.size and finite.max() - finite.min() <= 1e-9 * max(1.0, abs(float(finite.max())))
        if clim is None and uniform:  # a uniform field (to rounding): one colour and its value
            pl.add_mesh(sl, color="#F0E0C0", show_scalar_bar=False)
            _text(pl, f"{title} = {float(finite.min()):.4g} everywhere", position=(0.02, 0.07), viewport=True,
                  font_size=10, color="black")
            return
        pl.add_mesh(sl, scalars=name, cmap="magma", show_scalar_bar=True, scalar_bar_args=bar, clim=clim)
        return
    pts = img.cell_data_to_point_data()
    lo, hi = (float(np.nanmin(grid)), float(np.nanmax(grid))) if clim is None else clim
    if mode == "isosurface":
        value = 0.5 * (lo + hi) if level is None else float(level)
        surface = pts.contour([value], scalars=name)
        if surface.n_points:
            pl.add_mesh(surface, color="#CC79A7", opacity=0.45, smooth_shading=True)
        _text(pl, f"{name} = {value:g}", position="lower_left", font_size=9, color="black")
    else:
        pl.add_volume(pts, scalars=name, cmap="magma", opacity=[0.0, 0.03, 0.08, 0.15],
                      clim=(lo, hi if hi > lo else lo + 1e-12), scalar_bar_args=bar)


def _point_size(pl, frame, diameter):
    extent = float(np.max(frame.upper - frame.lower))
    return max(1.0, 0.8 * pl.window_size[1] * diameter / extent)


def _hex_rgb(h):
    h = h.lstrip("#")
    return [int(h[k:k + 2], 16) for k in (0, 2, 4)]


def _agent_bounds(frame):
    """(lower, upper) µm of the frame's agents padded by the largest
    diameter; the box when there are none."""
    pos = np.asarray(frame.agents["position"], dtype=float)
    if not len(pos):
        return frame.lower, frame.upper
    pad = float(np.max(frame.agents["diameter"]))
    return pos.min(axis=0) - pad, pos.max(axis=0) + pad


def _snapshot_slider(pl, run, first, color_by, shown, clip, cmap, max_spheres):
    """A slider over the snapshots of ``run`` that redraws the scene of the
    one it points at; draws snapshot ``first``."""
    def draw(value):
        pl.clear_actors()
        _draw(pl, frame_of(run, int(round(value)), None, shown and shown[0]), color_by, shown, clip, None, cmap,
              max_spheres, None, True)

    pl.add_slider_widget(draw, [0, len(run) - 1], value=first, title="snapshot", fmt="%.0f", style="modern")
    draw(first)


def _place_camera(pl, frame, camera, clip=None, bounds=None):
    """Look along the preset direction and fit the agents (the box when there
    are none, ``bounds`` when given) into the view; with a clip, look at the
    cut face."""
    if bounds is not None:
        lo, hi = np.asarray(bounds[0], dtype=float), np.asarray(bounds[1], dtype=float)
    else:
        lo, hi = _agent_bounds(frame)
    centre = 0.5 * (lo + hi)
    direction, up = {"iso": ((0.8, -1.0, 0.7), (0, 0, 1)), "xy": ((0, 0, 1), (0, 1, 0)),
                     "xz": ((0, -1, 0), (0, 0, 1)), "yz": ((1, 0, 0), (0, 0, 1))}[camera]
    direction = np.asarray(direction, dtype=float)
    if clip is not None and camera == "iso":
        axis = "xyz".index(clip[-1])
        direction[axis] = abs(direction[axis]) * (-1.0 if clip.startswith("-") else 1.0)
    direction /= np.linalg.norm(direction)
    pl.camera_position = [tuple(centre + direction * float(np.max(hi - lo))), tuple(centre), up]
    pl.reset_camera(bounds=(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]))


def view(run, color_by="type", substance=None, clip=None, window_size=(1024, 768)):
    """An interactive window on ``run`` with a slider over its snapshots
    (needs a display; elsewhere a RuntimeError says so)."""
    from biosim.io import Run, open_run

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise RuntimeError("viewing needs a display (neither DISPLAY nor WAYLAND_DISPLAY is set); on a machine "
                           "without one, write pictures or movies instead: biosim render RUN.h5 -o run.png|run.mp4")
    if isinstance(run, (str, os.PathLike)):
        run = open_run(run)
    if not isinstance(run, Run):
        raise TypeError(f"view takes a run (bs.io.open_run(path)) or its path; got {type(run).__name__}")
    if len(run) == 0:
        raise ValueError(f"run {run.path!r} holds no snapshots yet")
    first = frame_of(run, -1, None, substance)
    _check_options(first, color_by, None, "iso", substance, clip)
    import pyvista as pv

    shown = None if substance is None else (substance, "slice", None)
    pl = pv.Plotter(window_size=tuple(window_size))
    pl.set_background("white")
    _snapshot_slider(pl, run, len(run) - 1, color_by, shown, clip, "viridis", 20000)
    _place_camera(pl, first, "iso", clip)
    pl.show()
