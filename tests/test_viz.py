"""Pictures checked for content, not existence."""
import numpy as np
import pytest

import biosim as bs
from biosim import viz

pytestmark = pytest.mark.skipif(not viz.rendering_available()[0], reason="no offscreen OpenGL here")


def content(img, background=255):
    """Mask of pixels that are not the white background."""
    return np.any(img < background - 10, axis=2)


def layer(tmp_path, n_side=12, substance=False):
    """Two populations on a checkerboard in one z-layer, written to a run."""
    sim = bs.Simulation(bs.Box.cube(200.0), mechanics=None, seed=1)
    g = bs.init.grid((n_side, n_side, 1), 12.0, origin=(34.0, 34.0, 100.0))
    checker = ((np.arange(n_side * n_side) % n_side) + (np.arange(n_side * n_side) // n_side)) % 2 == 0
    sim.add_agents("first", g[checker], diameter=10.0)                     # type 0: blue
    sim.add_agents("second", g[~checker][: checker.sum() // 3], diameter=10.0)  # type 1: orange
    if substance:
        sim.add_substance("signal", diffusion=0.0, spacing=20.0, initial=lambda x, y, z: x)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "r.h5", every=1))
    sim.run(1)
    return bs.io.open_run(tmp_path / "r.h5")


def test_two_types_two_colours_in_proportion(tmp_path):
    run = layer(tmp_path)
    img = viz.render(run, color_by="type", camera="xy", out=tmp_path / "t.png", window_size=(600, 600),
                     annotate=False)
    assert (tmp_path / "t.png").stat().st_size > 1000
    px = img[content(img)].astype(int)
    blue = np.sum(px[:, 2] > px[:, 0] + 30)      # #0072B2
    orange = np.sum(px[:, 0] > px[:, 2] + 30)    # #D55E00
    assert blue > 500 and orange > 500
    assert blue / orange == pytest.approx(3.0, rel=0.25)  # 72 cells of type 0, 24 of type 1


def test_continuous_column_uses_a_colour_map():
    sim = bs.Simulation(bs.Box.cube(200.0), mechanics=None)
    pos = bs.init.ball(800, 60.0, (100.0, 100.0, 100.0), seed=2)
    sim.add_agents("cells", pos, diameter=8.0, age=pos[:, 1])
    img = viz.render(sim, color_by="age", camera="xy", out=None, annotate=False, window_size=(400, 400))
    px = img[content(img)]
    assert content(img).mean() > 0.05
    # viridis from y low (purple, bottom of the picture) to high (yellow, top)
    top, bottom = img[60:140][content(img[60:140])], img[260:340][content(img[260:340])]
    assert top[:, 1].mean() > bottom[:, 1].mean() + 40  # greener/yellower at high age
    assert len(np.unique(px // 16, axis=0)) > 20


def test_clip_removes_one_half(tmp_path):
    sim = bs.Simulation(bs.Box.cube(200.0), mechanics=None)
    sim.add_agents("cells", bs.init.ball(2000, 80.0, (100.0, 100.0, 100.0), seed=2), diameter=6.0)
    # fixed framing: draw the box so both pictures share the same view
    whole = content(viz.render(sim, camera="xy", out=None, annotate=False, window_size=(400, 400)))
    half = content(viz.render(sim, camera="xy", clip="x", out=None, annotate=False, window_size=(400, 400),
                              show_box=False))
    assert 0.3 < half.sum() / whole.sum() < 0.75


def test_substance_slice_shows_the_gradient(tmp_path):
    run = layer(tmp_path, n_side=2, substance=True)
    img = viz.render(run, color_by="type", substance="signal", camera="xy", out=None, annotate=False,
                     window_size=(500, 500), clip="-z")
    row = img[250].astype(float).sum(axis=1)
    bright = row[content(img)[250]]
    assert bright[-20:].mean() > bright[:20].mean() + 100  # magma: dark at low x, bright at high x


def test_empty_and_single_agent_runs_render(tmp_path):
    sim = bs.Simulation(bs.Box.cube(50.0), mechanics=None)
    sim.add_agents("none", np.zeros((0, 3)))
    img = viz.render(sim, out=tmp_path / "empty.png")
    assert content(img).any()  # the box outline and the caption
    sim.add_agents("one", [[25.0, 25.0, 25.0]], diameter=5.0)
    img = viz.render(sim, out=tmp_path / "one.png", annotate=False)
    assert content(img).mean() > 0.01


def test_bad_requests_get_clear_errors(tmp_path):
    run = layer(tmp_path, n_side=2)
    with pytest.raises(ValueError, match="step 99 is not in this run.*0, 1"):
        viz.render(run, step=99, out=None)
    with pytest.raises(ValueError, match="color_by 'volume'.*diameter, position, type, uid"):
        viz.render(run, color_by="volume", out=None)
    with pytest.raises(ValueError, match=r"\.gif.*\.png"):
        viz.render(run, out=tmp_path / "x.gif")
    with pytest.raises(ValueError, match="substance 'oxygen'"):
        viz.render(run, substance="oxygen", out=None)
    with pytest.raises(IndexError, match="2 snapshots"):
        viz.render(run, snapshot=5, out=None)
    notrun = tmp_path / "n.h5"
    notrun.write_text("x")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        viz.render(str(notrun), out=None)


def test_render_command(tmp_path):
    import subprocess
    import sys

    layer(tmp_path, n_side=4)
    r = subprocess.run([sys.executable, "-m", "biosim", "render", str(tmp_path / "r.h5"), "-o",
                        str(tmp_path / "cli.png"), "--color-by", "diameter"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cli.png").stat().st_size > 1000
    r = subprocess.run([sys.executable, "-m", "biosim", "render", str(tmp_path / "r.h5"), "-o",
                        str(tmp_path / "cli.png"), "--step", "7"], capture_output=True, text=True)
    assert r.returncode != 0 and "step 7" in r.stderr


def test_movie_has_every_frame_and_the_same_size(tmp_path):
    import imageio.v3 as iio

    sim = bs.Simulation(bs.Box.cube(100.0), mechanics=None, seed=3)
    pop = sim.add_agents("c", bs.init.ball(50, 20.0, (50.0, 50.0, 50.0), seed=1), diameter=5.0)
    from biosim import models
    pop.behaviours += [models.RandomWalk(speed=5.0)]
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "m.h5", every=2))
    sim.run(20)  # 11 snapshots
    n = viz.movie(tmp_path / "m.h5", out=tmp_path / "m.mp4", every=1, fps=5, window_size=(320, 240),
                  progress=False)
    frames = iio.imread(tmp_path / "m.mp4")
    assert n == 11 and frames.shape == (11, 240, 320, 3)
    assert viz.movie(tmp_path / "m.h5", out=tmp_path / "m.gif", every=5, progress=False,
                     window_size=(160, 120)) == 3
    assert iio.imread(tmp_path / "m.gif").shape[:3] == (3, 120, 160)
    with pytest.raises(ValueError, match=r"\.avi.*\.mp4"):
        viz.movie(tmp_path / "m.h5", out=tmp_path / "m.avi")


def test_a_movie_ends_on_the_last_snapshot_with_the_same_scene_and_colour_range_in_every_frame(tmp_path,
                                                                                                 monkeypatch):
    import importlib

    from biosim import models

    R = importlib.import_module(viz.__name__ + ".render")  # the module (viz.render is the function)

    sim = bs.Simulation(bs.Box.cube(200.0), seed=3, mechanics=bs.BioDynaMoForce())
    oxygen = sim.add_substance("oxygen", diffusion=200.0, spacing=20.0, initial=10.0)
    pop = sim.add_agents("c", bs.init.ball(4, 5.0, (100.0, 100.0, 100.0), seed=1), diameter=[8.0, 8.5, 9.0, 9.5])
    pop.behaviours += [models.GrowthDivision(growth_rate=400.0, division_diameter=10.0),
                       models.Uptake(oxygen, rate=1.0)]
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "g.h5", every=3))
    sim.run(28)  # snapshots at steps 0, 3, ..., 27: 10 of them; every=4 picks 0, 4, 8 and then the last, 9
    run = bs.io.open_run(tmp_path / "g.h5")
    calls = []
    real = R._render_frame

    def spy(frame, color_by, out, substance, clip, camera, window_size, clim, cmap, max_spheres, background,
            show_box, annotate, bounds, label=""):
        calls.append(dict(step=frame.step, substance=substance, show_box=show_box, bounds=bounds, clim=clim,
                          camera=camera))
        return real(frame, color_by, out, substance, clip, camera, window_size, clim, cmap, max_spheres,
                    background, show_box, annotate, bounds, label)

    monkeypatch.setattr(R, "_render_frame", spy)
    n = viz.movie(run, out=tmp_path / "g.gif", every=4, color_by="diameter", substance="oxygen",
                  window_size=(160, 120), progress=False)
    assert n == 4 and [c["step"] for c in calls] == [0, 12, 24, 27]  # the last snapshot is in
    assert len({c["show_box"] for c in calls}) == 1 and calls[0]["show_box"] is not None
    assert len({(tuple(c["bounds"][0]), tuple(c["bounds"][1])) for c in calls}) == 1  # one camera
    assert len({c["clim"] for c in calls}) == 1 and len({c["substance"] for c in calls}) == 1
    low, high = calls[0]["substance"][3]  # the field's range over every frame
    grids = [run.substance("oxygen", i) for i in (0, 4, 8, 9)]
    assert low == min(g.min() for g in grids) and high == max(g.max() for g in grids) and low < high
    calls.clear()
    viz.movie(run, out=tmp_path / "f.gif", every=4, camera="follow", window_size=(160, 120), progress=False)
    assert [c["bounds"] for c in calls] == [None] * 4 and {c["camera"] for c in calls} == {"iso"}


def test_plot_counts(tmp_path):
    sim = bs.Simulation(bs.Box.cube(100.0), mechanics=None, seed=3)
    from biosim import models
    a = sim.add_agents("dying", bs.init.uniform(200, sim.box, seed=1), diameter=2.0)
    sim.add_agents("steady", bs.init.uniform(50, sim.box, seed=2), diameter=2.0)
    a.behaviours += [models.Apoptosis(rate=0.5)]
    sim.record("alive", lambda s: len(s.agents), every=1)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "c.h5", every=5))
    sim.run(20)
    counts = viz.plot_counts(tmp_path / "c.h5", out=tmp_path / "c.png")
    assert bs.io.open_run(tmp_path / "c.h5").series("alive")["value"][-1] == len(sim.agents)
    assert counts["steady"].tolist() == [50] * 5
    assert counts["dying"][0] == 200 and np.all(np.diff(counts["dying"]) <= 0) and counts["dying"][-1] < 100
    assert (tmp_path / "c.png").stat().st_size > 5000


def test_plot_counts_log_scale_stacked_states_and_units(tmp_path, monkeypatch):
    import matplotlib.figure
    from biosim import models

    sim = bs.Simulation(bs.Box.cube(200.0), seed=1, dt=0.5, boundary="periodic", mechanics=None)
    p = sim.add_agents("people", bs.init.uniform(300, sim.box, seed=1), diameter=4.0)
    p.behaviours += [models.Infection(rate=0.5, radius=12.0, recovery=0.05), models.RandomWalk(diffusion=2.0)]
    sim.agents["state"][:5] = 1
    c = sim.add_agents("cells", bs.init.uniform(10, sim.box, seed=2), diameter=np.linspace(5, 6.9, 10))
    c.behaviours += [models.GrowthDivision(growth_rate=10.0, division_diameter=7.0)]
    sim.record("mean_diameter", lambda s: float(np.mean(s.agents.diameter)), every=5, unit="µm")
    sim.record("ratio", lambda s: 0.5, every=5)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "p.h5", every=20))
    sim.run(100)
    run = bs.io.open_run(tmp_path / "p.h5")
    assert run.units["mean_diameter"] == "µm" and run.units["ratio"] == "" and run.units["count_cells"] == "agents"
    figures = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: figures.append(fig))
    viz.plot_counts(run, out=tmp_path / "p.png", log=True)
    axes = figures[0].axes
    assert len(axes) == 4  # counts, the people's states, then one panel per unit
    assert axes[0].get_yscale() == "log" and axes[0].get_ylabel() == "agents (log scale)"
    assert sorted(t.get_text() for t in axes[0].get_legend().get_texts()) == ["cells", "people"]
    assert axes[1].get_title() == "people: states (stacked)" and len(axes[1].collections) == 3
    top = np.asarray(axes[1].collections[-1].get_paths()[0].vertices)[:, 1]
    # the three states stack up to every person at every recorded step
    assert top.max() == 300 and (top == 300).sum() >= len(run.series("count_people")["step"])
    labels = {t.get_text() for ax in axes[2:] for t in ax.get_legend().get_texts()}
    assert labels == {"mean_diameter (µm)", "ratio"}
    assert {ax.get_ylabel() for ax in axes[2:]} == {"µm", "value (no unit given)"}
    assert axes[-1].get_xlabel() == "time (min)"
    viz.plot_counts(run, out=tmp_path / "q.png")
    assert figures[1].axes[0].get_yscale() == "linear"
    with pytest.raises(TypeError, match="log must be True or False"):
        viz.plot_counts(run, out=tmp_path / "q.png", log="yes")


def test_substance_isosurface_and_volume(tmp_path):
    sim = bs.Simulation(bs.Box.cube(200.0), mechanics=None, seed=1)
    sim.add_agents("a", bs.init.ball(50, 20.0, (100.0, 100.0, 100.0), seed=1), diameter=8.0)
    sim.add_substance("o2", diffusion=0.0, spacing=10.0,
                      initial=lambda x, y, z: np.sqrt((x - 100) ** 2 + (y - 100) ** 2 + (z - 100) ** 2))
    opts = dict(out=None, annotate=False, window_size=(300, 300), show_box=False, substance="o2")
    # same framing (the whole box) with and without a surface: a level above the maximum draws none
    none = content(viz.render(sim, substance_mode="isosurface", substance_level=1e9, **opts))
    iso = content(viz.render(sim, substance_mode="isosurface", substance_level=60.0, **opts))
    vol = content(viz.render(sim, substance_mode="volume", **opts))
    assert iso.sum() > 2 * none.sum()  # a sphere of 60 µm around cells of a 20 µm ball
    assert vol.sum() > 2 * none.sum()
    with pytest.raises(ValueError, match="substance_mode"):
        viz.render(sim, substance="o2", substance_mode="cloud", out=None)


def test_view_without_a_display_says_so(tmp_path):
    import os
    import subprocess
    import sys

    layer(tmp_path, n_side=2)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run([sys.executable, "-m", "biosim", "view", str(tmp_path / "r.h5")], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode != 0 and "needs a display" in r.stderr and "biosim render" in r.stderr


VIEW_HARNESS = """
import sys
import pyvista as pv
from biosim import viz

def show(self, *args, **kwargs):  # drive the slider instead of waiting for a user
    slider = self.widgets.slider_widgets[0]
    slider.GetRepresentation().SetValue(1)
    slider.InvokeEvent("EndInteractionEvent")
    self.render()
    texts = []
    for actor in self.renderer.actors.values():
        if hasattr(actor, "GetText"):  # corner annotations: the caption
            texts += [actor.GetText(k) for k in range(4)]
        elif hasattr(actor, "GetInput"):
            texts.append(actor.GetInput())
    print("CAPTION", texts)
    self.close()

pv.Plotter.show = show
viz.view(sys.argv[1], color_by="diameter")
"""


@pytest.mark.skipif(__import__("shutil").which("xvfb-run") is None, reason="xvfb-run not installed")
def test_viewer_slider_shows_the_chosen_snapshot(tmp_path):
    import subprocess
    import sys

    sim = bs.Simulation(bs.Box.cube(100.0), mechanics=None)
    sim.add_agents("c", [[50.0, 50.0, 50.0]], diameter=5.0)
    sim.add_action(lambda s: s.add_agents("c", [[50.0, 50.0, 40.0 + s.step]], diameter=5.0), every=1)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "v.h5", every=5))
    sim.run(10)  # snapshots at steps 0, 5, 10
    harness = tmp_path / "h.py"
    harness.write_text(VIEW_HARNESS)
    r = subprocess.run(["xvfb-run", "-a", sys.executable, str(harness), str(tmp_path / "v.h5")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "step 5 " in r.stdout and "6 agents" in r.stdout  # snapshot 1: step 5


class _Kernel:
    kernel = object()  # what a Jupyter kernel's shell has and a terminal IPython's lacks


def test_show_displays_the_picture_inline_in_a_notebook_and_says_what_to_do_elsewhere(tmp_path, monkeypatch):
    import io

    import imageio.v3 as iio

    IPython = pytest.importorskip("IPython")
    import IPython.display

    run = layer(tmp_path)
    with pytest.raises(RuntimeError, match=r"not one; write a picture to a file instead: bs.viz.render\("):
        viz.show(run)  # pytest is no notebook
    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: _Kernel())
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    opts = dict(color_by="type", camera="xy", window_size=(400, 300), annotate=False)
    assert viz.show(run, **opts) is None
    png = shown[0]
    assert isinstance(png, IPython.display.Image) and png.format == "png"
    img = iio.imread(io.BytesIO(png.data))
    np.testing.assert_array_equal(img[..., :3], viz.render(run, out=None, **opts))  # the picture render makes
    assert content(img[..., :3]).sum() > 1000
    with pytest.raises(TypeError, match="takes no out=...; to write a file use bs.viz.render"):
        viz.show(run, out="x.png")
    with pytest.raises(TypeError, match="interactive must be True or False"):
        viz.show(run, interactive="yes")
    with pytest.raises(IndexError, match="out of range"):
        viz.show(run, snapshot=7)
    pytest.importorskip("trame_pyvista")
    viz.show(tmp_path / "r.h5", interactive=True, color_by="type")
    assert type(shown[-1]).__module__.startswith("trame_pyvista")  # the trame widget, displayed
    with pytest.raises(TypeError, match="got annotate=...; it takes"):
        viz.show(run, interactive=True, annotate=False)


def test_colour_bars_carry_units_and_pictures_take_axes_a_scale_bar_and_readable_labels(tmp_path, monkeypatch):
    import pyvista as pv

    sim = bs.Simulation(bs.Box.cube(200.0), seed=1, mechanics=None)
    sim.add_substance("oxygen", diffusion=10.0, spacing=20.0, initial=lambda x, y, z: x / 10, unit="mmHg")
    sim.add_substance("flat", diffusion=10.0, spacing=20.0, initial=7.0)
    sim.add_agents("a", bs.init.ball(50, 30.0, (100, 100, 100), seed=1), diameter=np.linspace(6, 10, 50))
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "u.h5", every=1))
    sim.run(1)
    assert bs.io.open_run(tmp_path / "u.h5").metadata["substances"]["oxygen"]["unit"] == "mmHg"
    seen = {}
    real_bar, real_text, real_ruler = pv.Plotter.add_scalar_bar, pv.Plotter.add_text, pv.Plotter.add_ruler

    def bar(pl, title=None, **k):
        seen.setdefault("bars", []).append(title)
        return real_bar(pl, title=title, **k)

    def text(pl, t, *a, **k):
        seen.setdefault("texts", []).append(t)
        actor = real_text(pl, t, *a, **k)
        seen.setdefault("actors", []).append(actor)
        return actor

    def ruler(pl, a, b, title="Distance", **k):
        seen["ruler"] = (np.asarray(b) - np.asarray(a), title)
        return real_ruler(pl, a, b, title=title, **k)

    monkeypatch.setattr(pv.Plotter, "add_scalar_bar", bar)
    monkeypatch.setattr(pv.Plotter, "add_text", text)
    monkeypatch.setattr(pv.Plotter, "add_ruler", ruler)
    img = viz.render(tmp_path / "u.h5", color_by="diameter", substance="oxygen", axes=True, scale_bar=True, out=None,
                     window_size=(400, 300))
    assert {"diameter (µm)", "oxygen (mmHg)"} <= set(seen["bars"])
    length, title = seen["ruler"]
    assert title == f"{length[0]:g} µm" and length[0] in (10, 20, 50) and not length[1:].any()
    assert all(a.prop.background_opacity > 0.5 for a in seen["actors"])  # labels on a pale box
    assert content(img).sum() > 1000
    seen.clear()  # one value: no bar of equal ticks, the value; a uniform field: one colour and its value
    viz.render(sim, color_by="diameter", substance="flat", out=None, window_size=(300, 200))
    assert "flat = 7 everywhere" in seen["texts"] and "flat" not in (seen.get("bars") or [])
    sim.agents.diameter[:] = 8.0
    seen.clear()
    viz.render(sim, color_by="diameter", out=None, window_size=(300, 200))
    assert "diameter = 8 µm" in seen["texts"] and not seen.get("bars")
    with pytest.raises(ValueError, match="unit of substance 'bad' must be a short printable string"):
        sim.add_substance("bad", diffusion=1.0, spacing=20.0, unit="x" * 41)
