"""The notebooks in notebooks/ are stored without outputs and run from top to bottom."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_are_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_python_api.ipynb",
                                          "03_slurm.ipynb"]
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.chdir(tmp_path)
    # a site's dask config, as jobqueue.yaml would give it (the one-node Slurm of CI
    # reaches its workers on the loopback interface)
    monkeypatch.setenv("DASK_JOBQUEUE__SLURM__INTERFACE", "lo")
    book = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(book, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    text = "\n".join(str(o.get("text", "")) for o in outputs)
    stderr = "\n".join(str(o.get("text", "")) for o in outputs if o.get("name") == "stderr")
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert "IProgress" not in stderr and "TqdmWarning" not in stderr
    if path.stem == "01_quickstart":
        assert "reused" in text and "computed" in text
        # the cut planes and the destriping figures, drawn in the notebook
        assert len(images) >= 3, [o.get("output_type") for o in outputs]
        assert any("text/html" in o.get("data", {}) and "<table>" in o["data"]["text/html"]
                   for o in outputs)  # RunResult's table
    if path.stem == "02_python_api":
        tasks = int(text.split(" tasks on ")[0].split()[-1])
        assert tasks > 50  # the workflow's tasks ran on the cluster's workers
        assert len(images) >= 1
    if path.stem == "03_slurm":
        slurm = shutil.which("sinfo") and subprocess.run(
            ["sinfo", "-h"], capture_output=True).returncode == 0
        assert ("running on SLURM" if slurm else "no SLURM here") in text
        assert int(text.split(" tasks on the cluster")[0].split()[-1]) > 10
