"""Sphinx configuration of biosim's documentation site (``make docs``).

The gallery runs every example in ``examples/`` at the small sizes below
(``ARGS``), writing its files under ``_build/gallery_out``; PyVista's
scraper collects the pictures ``bs.viz.render`` makes, matplotlib's the
figures.  ``BIOSIM_DOCS_GALLERY=0`` builds the pages without running the
examples (``BIOSIM_DOCS_GALLERY=spheroid``: only the examples whose file
name matches)."""
import os
import re

import pyvista

import biosim

pyvista.OFF_SCREEN = True
pyvista.BUILDING_GALLERY = True  # render() leaves its plotters open for the scraper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "_build", "gallery_out")

project = "biosim"
author = "the biosim developers"
copyright = "the biosim developers"
release = version = getattr(biosim, "__version__", "")

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax",
              "sphinx_gallery.gen_gallery"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_heading_anchors = 3
exclude_patterns = ["_build", "gallery/*.ipynb"]
# the guide's links to the repository's own files (examples/, benchmarks/) are files, not pages
suppress_warnings = ["myst.xref_missing", "myst.header", "config.cache"]
autodoc_member_order = "bysource"
autodoc_typehints = "none"
napoleon_numpy_docstring = True
napoleon_google_docstring = False

html_theme = "pydata_sphinx_theme"
html_title = "biosim"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}


def _out(name, *parts):
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, *parts) if parts else folder


# each example's arguments in the gallery: seconds each, outputs under _build/gallery_out
ARGS = {
    "cancer_immune": lambda: ["100", "20", "2", _out("cancer_immune")],
    "cell_sorting": lambda: ["400", "600", _out("cell_sorting", "sort.h5")],
    "compare_mechanics": lambda: ["200", "400", _out("compare_mechanics", "compare_mechanics.png")],
    "custom_rule": lambda: ["20", "500", _out("custom_rule", "custom_rule.png")],
    "epidemiology_sir": lambda: ["600", "200", "2", _out("epidemiology_sir", "sir.png")],
    "physicell_rules": lambda: ["20", "2", _out("physicell_rules")],
    "physicell_template": lambda: ["100", "2", _out("physicell_template")],
    "pyramidal_cell": lambda: ["300", _out("pyramidal_cell")],
    "soma_clustering": lambda: ["2000", "2000", _out("soma_clustering", "soma_clustering.png")],  # passes
    "spheroid": lambda: ["60", "600", _out("spheroid", "spheroid.h5")],
    "tumour_spheroid": lambda: ["300", "4", _out("tumour_spheroid", "tumour.h5")],
}


def reset_argv(gallery_conf, script_vars):
    name = os.path.splitext(os.path.basename(script_vars["src_file"]))[0]
    return ARGS[name]() if name in ARGS else []


_gallery = os.environ.get("BIOSIM_DOCS_GALLERY", "1")
sphinx_gallery_conf = {
    "examples_dirs": os.path.join(HERE, "..", "examples"),
    "gallery_dirs": "gallery",
    "filename_pattern": r".*\.py" if _gallery in ("1", "0") else rf".*({re.escape(_gallery)}).*\.py",
    "plot_gallery": _gallery != "0",
    "image_scrapers": ("pyvista", "matplotlib"),
    "reset_argv": reset_argv,
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "ignore_pattern": r"(__init__|conftest)\.py",
    "abort_on_example_error": True,
    "run_stale_examples": True,
}
