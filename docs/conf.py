"""Sphinx configuration: the README and the guides (Markdown, MyST), the API reference
(one page per public module, written at build time by ``_ext/p3d_api.py``) and the steps'
parameters (tables drawn from the code's schemas by ``_ext/p3d_params.py``).

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (``.ci/docs.sh``).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
# the checkout's code, not an installed copy: the pages describe the source they ship with
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]

from pystack3d_dask import __version__  # noqa: E402

project = "pystack3d-dask"
author = "pystack3d-dask developers"
copyright = "pystack3d-dask developers"
release = __version__
version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "numpydoc",
    "sphinx.ext.viewcode",
    "p3d_api",
    "p3d_params",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
# the guides' toctree lists the known guides, then globs the rest so that a new guide is
# picked up; when there is no other guide, that glob matches nothing, which is no error
suppress_warnings = ["toc.empty_glob"]

# Markdown: GitHub's heading anchors, so that the guides' links (design.md#task-overhead)
# work on the site as they do on GitHub
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# autodoc: each API page names its members itself (_ext/p3d_api.py), so that a name
# re-exported by several modules is documented once
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc sections say the types; signatures stay short
autodoc_preserve_defaults = True

# numpydoc: the sections rendered; no per-class member tables (autodoc lists the members,
# and numpydoc's tables would ask for stub pages that nothing generates)
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
numpydoc_xref_param_type = False

# unresolvable names in signatures and types (numpy, xarray, dask) are not errors: no
# intersphinx here, so that the build needs no network
nitpicky = False

html_theme = "pydata_sphinx_theme"
html_title = f"pystack3d-dask {version}"
html_theme_options = {
    "navigation_depth": 3,
    "show_toc_level": 2,
}
html_static_path: list[str] = []


def _no_signature_for_data(app, what, name, obj, options, signature, return_annotation):
    """A constant has no signature. numpydoc gives a callable one (the type alias
    ``list[tuple[int, ...]]``) its class's, which Sphinx 9 then fails to store
    (sphinx-doc/sphinx#14576: "error while formatting signature", docstring lost);
    answering first, with no signature to apply, keeps numpydoc's answer out."""
    return (None, None) if what == "data" else None


def setup(app):
    # before numpydoc's handler (priority 500)
    app.connect("autodoc-process-signature", _no_signature_for_data, priority=400)
