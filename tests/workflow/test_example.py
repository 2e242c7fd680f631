"""The shipped example workflow, ``pystack3d-dask init`` and ``python -m pystack3d_dask``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pystack3d_dask import __version__
from pystack3d_dask.errors import InputError
from pystack3d_dask.workflow.config import load_workflow
from pystack3d_dask.workflow.example import example_text, write_example


def test_example_written_with_its_comments_and_the_given_input(tmp_path):
    folder = tmp_path / 'data "raw"\\slices'
    path = write_example(tmp_path / "w.toml", project_dir=folder)
    text = path.read_text()
    assert text.count("project_dir = ") == 1
    assert "# first slice kept" in text  # the comments are the documentation: kept
    wf = load_workflow(path)
    assert wf.project_dir == folder
    assert wf.process_steps == ["cropping", "destriping", "cropping_final"]
    assert wf.steps["cropping"]["area"] == [15, 326, 18, 283]


def test_example_default_input_is_the_demo_beside_it(tmp_path):
    wf = load_workflow(write_example(tmp_path / "workflow.toml"))
    assert wf.project_dir == tmp_path / "pystack3d-dask-demo" / "data" / "slices"
    assert example_text() == (tmp_path / "workflow.toml").read_text()


def test_existing_file_kept_unless_overwrite(tmp_path):
    path = tmp_path / "workflow.toml"
    path.write_text("mine")
    with pytest.raises(InputError, match=r"workflow\.toml already exists; pass --overwrite"):
        write_example(path)
    assert path.read_text() == "mine"
    write_example(path, overwrite=True)
    assert "project_dir" in path.read_text()


def test_python_m_runs_the_command_and_init_writes_the_file(tmp_path):
    version = subprocess.run([sys.executable, "-m", "pystack3d_dask", "--version"],
                             capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"pystack3d-dask {__version__}"
    done = subprocess.run([sys.executable, "-m", "pystack3d_dask", "init", "--project-dir",
                           "slices"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "workflow written to workflow.toml" in done.stderr
    assert load_workflow(tmp_path / "workflow.toml").project_dir == tmp_path / "slices"
    again = subprocess.run([sys.executable, "-m", "pystack3d_dask", "init"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert again.returncode == 2
    assert "already exists" in again.stderr
