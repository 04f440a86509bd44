"""The documentation site builds (Sphinx, warnings as errors) with every
example's picture in the gallery, as `make docs` builds it."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import biosim as bs

pytest.importorskip("sphinx_gallery")
pytest.importorskip("pydata_sphinx_theme")
pytest.importorskip("myst_parser")
DOCS = Path(__file__).parent.parent / "docs"
EXAMPLES = Path(__file__).parent.parent / "examples"


def test_the_site_builds_with_every_examples_picture_and_the_api_reference(tmp_path):
    gallery = bs.viz.rendering_available()[0]
    env = {**os.environ, "BIOSIM_DOCS_GALLERY": "1" if gallery else "0"}
    r = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", str(DOCS),
                        str(tmp_path / "html")], capture_output=True, text=True, env=env, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    html = tmp_path / "html"
    names = sorted(p.stem for p in EXAMPLES.glob("*.py"))
    assert len(names) == 11
    for name in names:  # a page per example
        assert (html / "gallery" / f"{name}.html").exists(), name
    if gallery:  # and its picture, rendered now
        images = {p.name for p in (html / "_images").glob("sphx_glr_*.png")}
        missing = [n for n in names if not any(re.match(rf"sphx_glr_{n}_\d+\.png", i) for i in images)]
        assert not missing, f"examples without a picture in the gallery: {missing}"
    api = (html / "api.html").read_text()
    for name in ("biosim.Simulation", "run", "until", "NeuriteElongation", "to_anndata", "plot_counts", "show",
                 "UnitWarning", "write_swc", "sweep"):
        assert name in api, name
    for page in ("biodynamo", "physicell", "parallel", "guide/neurons", "guide/units"):
        assert (html / f"{page}.html").exists(), page
    assert "pydata" in (html / "index.html").read_text()
