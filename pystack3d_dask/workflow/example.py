"""The example workflow file shipped with the package (``pystack3d-dask init``), and the
one way workflow files are written (``init``, ``metadata --out``)."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from ..errors import InputError

__all__ = ["EXAMPLE_WORKFLOW", "example_text", "write_example", "write_workflow_file"]

#: The shipped example, inside the package: ``pystack3d_dask/configs/example.toml``.
EXAMPLE_WORKFLOW = "configs/example.toml"

_PROJECT_DIR = re.compile(r'^project_dir = "[^"]*"', re.M)


def example_text(project_dir: str | Path | None = None) -> str:
    """The text of the example workflow file, comments included.

    Parameters
    ----------
    project_dir
        The input (folder of slices or multi-page TIFF) to write in it; by default the
        slices that ``pystack3d-dask demo`` writes in the current folder.
    """
    text = resources.files("pystack3d_dask").joinpath(EXAMPLE_WORKFLOW).read_text("utf-8")
    if project_dir is not None:
        # a TOML basic string escapes as JSON does (backslashes of Windows paths included)
        text = _PROJECT_DIR.sub(lambda _: f"project_dir = {json.dumps(str(project_dir))}",
                                text, count=1)
    return text


def write_example(path: str | Path = "workflow.toml", project_dir: str | Path | None = None,
                  overwrite: bool = False) -> Path:
    """Write the example workflow file to ``path`` and return it.

    Raises
    ------
    InputError
        When ``path`` exists and ``overwrite`` is false.
    """
    return write_workflow_file(path, example_text(project_dir), overwrite)


def write_workflow_file(path: str | Path, text: str, overwrite: bool = False) -> Path:
    """Write a workflow file (``init``, ``metadata --out``), never replacing one unasked.

    Raises
    ------
    InputError
        When ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
