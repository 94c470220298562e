"""Sphinx configuration of the geoalign documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html`` after
``pip install -e ".[docs]"``.  The notebook gallery renders the executed copies in
``docs/gallery/`` (written by ``python docs/run_gallery.py``) without executing them again.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import importlib.util  # noqa: E402

_missing = [m for m in ("numpydoc", "myst_nb", "pydata_sphinx_theme") if importlib.util.find_spec(m) is None]
if _missing:
    raise ImportError(f"the documentation needs the [docs] extra: pip install -e \".[docs]\" "
                      f"(missing: {', '.join(_missing)})")

import geoalign  # noqa: E402

project = "geoalign"
author = "geoalign developers"
copyright = "geoalign developers"  # noqa: A001 - Sphinx's name
release = version = geoalign.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "run_gallery.py", "gallery/timings.json"]
root_doc = "index"

# API reference: one page per public object, from the numpydoc docstrings.
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Notebooks: render the committed outputs, never execute during the build.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings = [
    # notebook outputs may hold ANSI colour codes from tqdm; text is still rendered
    "mystnb.unknown_mime_type",
]

intersphinx_mapping = {}

html_theme = "pydata_sphinx_theme"
html_title = f"geoalign {release}"
html_theme_options = {
    "navigation_depth": 3,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path = []
