"""Every example runs, at a tiny size, as a user would run it."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import biosim as bs

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def run_example(name, *args, cwd):
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *map(str, args)],
                       capture_output=True, text=True, cwd=cwd, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_spheroid(tmp_path):
    out = run_example("spheroid.py", 40, 350, tmp_path / "s.h5", cwd=tmp_path)
    assert "8 snapshots" in out
    run = bs.io.open_run(tmp_path / "s.h5")
    assert len(run.agents(-1)["uid"]) > 40
    assert_picture(tmp_path / "s.png")


def test_compare_mechanics(tmp_path):
    out = run_example("compare_mechanics.py", 60, 300, cwd=tmp_path)
    for name in ("SoftSphere", "PhysiCell", "BioDynaMo"):
        assert name in out
    assert_picture(tmp_path / "compare_mechanics.png")


def assert_picture(path):
    """Where offscreen rendering works, the example wrote a picture of its cells."""
    if bs.viz.rendering_available()[0]:
        import imageio.v3 as iio

        img = iio.imread(path)[..., :3]
        assert (img < 245).any(axis=2).mean() > 0.02  # more than a blank page


def test_soma_clustering_passes_biodynamos_criterion(tmp_path):
    out = run_example("soma_clustering.py", cwd=tmp_path)  # the default size: seconds here
    assert "start:" in out and out.splitlines()[0].endswith("FAIL")
    assert out.strip().endswith("PASS")


def test_soma_clustering_tiny(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "soma_clustering.py"), "200", "50"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert "after 50 steps" in r.stdout and r.returncode in (0, 1)
    assert_picture(tmp_path / "soma_clustering.png")


def test_tumour_spheroid_tiny(tmp_path):
    out = run_example("tumour_spheroid.py", 150, 2, tmp_path / "t.h5", cwd=tmp_path)
    assert "diameter (µm)" in out and "BioDynaMo" in out
    run = bs.io.open_run(tmp_path / "t.h5")
    assert run.substances == ("oxygen",)
    o2 = run.substance("oxygen", -1)
    assert o2.min() < 38.0 and o2.max() <= 38.0 + 1e-9  # consumed inside, held at the faces
    assert_picture(tmp_path / "t.png")


def test_custom_rule(tmp_path):
    out = run_example("custom_rule.py", 20, 500, cwd=tmp_path)
    cells = int(out.split()[0])
    inner = int(out.split("crowded: ")[1].split("%")[0])
    assert cells > 20 and inner > 50  # the colony grew and its inside stopped
    assert_picture(tmp_path / "custom_rule.png")


def test_epidemiology_sir_tiny(tmp_path):
    out = run_example("epidemiology_sir.py", 600, 200, 2, tmp_path / "sir.png", cwd=tmp_path)
    assert "vs SIR with the equivalent rates" in out and "BioDynaMo" in out
    gaps = [float(x) for x in out.split("equivalent rates:")[1].split("\n")[0].split()[1::2]]
    assert len(gaps) == 3 and max(gaps) < 0.3
    assert (tmp_path / "sir.png").stat().st_size > 10_000


def test_cell_sorting_sorts(tmp_path):
    out = run_example("cell_sorting.py", 400, 1500, tmp_path / "sort.h5", cwd=tmp_path)
    last = out.strip().splitlines()[-1]
    start, end = (float(x) for x in last.split("fraction: ")[1].replace(" at the start,", "").split()[:2])
    assert 0.4 < start < 0.6           # a random mixture of two halves
    assert end > start + 0.2           # sorted out: like cells neighbour like cells
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit() and "/" in ln]
    dark, light = float(rows[-1][2]), float(rows[-1][4])
    assert dark < light                # the more cohesive type gathers inside
    run = bs.io.open_run(tmp_path / "sort.h5")
    assert run.series("same_type_fraction")["value"][-1] > start + 0.2
    assert_picture(tmp_path / "sort.png")


def test_physicell_template_tiny(tmp_path):
    out = run_example("physicell_template.py", 60, 2, tmp_path / "t", cwd=tmp_path)
    assert "note:" not in out  # biosim expresses every part of the template
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert rows[0][:3] == ["0.0", "60", "60"] and float(rows[0][3]) == pytest.approx(16.83, abs=0.01)
    assert int(rows[-1][1]) >= 60 and 14.0 < float(rows[-1][3]) < 17.0  # divided, grew back
    run = bs.io.open_run(tmp_path / "t" / "template.h5")
    assert np.all(run.agents(-1)["position"][:, 2] == 0.0)  # the 2-D template stays in its plane
    assert "picture:" in out or "no picture:" in out


def test_cancer_immune_tiny(tmp_path):
    out = run_example("cancer_immune.py", 60, 15, 2, tmp_path / "c", cwd=tmp_path)
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert rows[0] == ["0.0", "60", "0", "0"]
    run = bs.io.open_run(tmp_path / "c" / "cancer_immune.h5")
    last = run.agents(-1)
    assert last["damage"].max() > 0 and set(run.populations) == {"tumour", "tcell"}  # attacks did damage
    assert last["rule_migration_speed"][last["type"] == 1].min() < 1.0  # contact stopped some T cells


def test_physicell_rules_tiny(tmp_path):
    out = run_example("physicell_rules.py", 20, 2, tmp_path / "r", cwd=tmp_path)
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert rows[0][:4] == ["0.0", "20", "0", "20"]
    assert float(rows[-1][4]) > 7.2e-4  # oxygen raised cycle entry above the base rate
    run = bs.io.open_run(tmp_path / "r" / "rules.h5")
    assert "rule_attack_tumor" in run.agents(-1)


def test_every_example_has_a_test():
    tested = {"spheroid.py", "compare_mechanics.py", "soma_clustering.py", "tumour_spheroid.py",
              "custom_rule.py", "epidemiology_sir.py", "cell_sorting.py", "physicell_template.py",
              "cancer_immune.py", "physicell_rules.py", "pyramidal_cell.py"}
    assert {f for f in os.listdir(EXAMPLES) if f.endswith(".py")} == tested


def test_pyramidal_cell_grows_up_and_down_writes_swc_and_renders(tmp_path):
    out = run_example("pyramidal_cell.py", 150, tmp_path, cwd=tmp_path)
    assert "after 150 steps" in out
    run = bs.io.open_run(tmp_path / "pyramidal_cell.h5")
    a = run.agents(-1)
    apical, basal = run.populations.index("apical"), run.populations.index("basal")
    up = a["distal"][a["type"] == apical][:, 2]
    down = a["distal"][a["type"] == basal][:, 2]
    assert up.max() > 100 and down.min() < -40  # towards its cue, at up to 1.67 and 0.83 µm/min for 90 min
    lines = (tmp_path / "neuron.swc").read_text().splitlines()[1:]
    assert lines[0].split()[1] == "1" and len(lines) == len(a["uid"])
    assert {line.split()[1] for line in lines[1:]} == {"3", "4"}
    if "rendered" in out:
        assert (tmp_path / "pyramidal_cell.png").stat().st_size > 10_000


def test_the_readmes_first_script_grows_a_spheroid_with_a_necrotic_core(tmp_path):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    code = readme.split("## A first script", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    (tmp_path / "first.py").write_text(code.replace("progress=True", "progress=False"))
    out = run_example_file(tmp_path / "first.py", cwd=tmp_path)
    assert "at 600.0 min" in out
    df = bs.io.open_run(tmp_path / "tumour.h5").frame(-1)
    counts = df["population"].value_counts()
    assert counts["live"] > 1000 and counts["necrotic"] > 200  # oxygen ran out inside
    assert (tmp_path / "counts.png").stat().st_size > 10_000
    assert_picture(tmp_path / "tumour.png")


def run_example_file(path, cwd):
    r = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout
