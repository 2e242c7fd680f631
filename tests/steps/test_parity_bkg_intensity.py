"""Parity with PyStack3D: the same synthetic stack and workflow, step by step.

cropping -> bkg_removal -> intensity_rescaling -> intensity_rescaling_area, run by the
reference package (pip ``pystack3d``) in a child process and by this project, compared
slice by slice after every step.
"""

from __future__ import annotations

import copy
import tomllib

import numpy as np
import pytest
from helpers import run_ours
from pystack3d_runner import requires_pystack3d, run_pystack3d_subprocess

import pystack3d_dask as p3d
from pystack3d_dask.datasets.synthetic import write_synthetic

STEPS = ["cropping", "bkg_removal", "intensity_rescaling", "intensity_rescaling_area"]

pytestmark = [requires_pystack3d, pytest.mark.slow]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    files = write_synthetic(tmp_path_factory.mktemp("parity") / "syn", shape=(20, 96, 110),
                            seed=2)
    return files, tomllib.loads(files.workflow.read_text())


def _within(ours: np.ndarray, ref: np.ndarray, tol: int) -> float:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    return float((np.abs(ours.astype(np.int64) - ref.astype(np.int64)) <= tol).mean())


@pytest.mark.parametrize(("bkg", "tol"), [
    ({"dim": 3, "orders": [1, 2, 1], "weight_func": "None"}, 1),
    ({"dim": 3, "orders": [1, 2, 1], "weight_func": "HuberT", "preserve_avg": True}, 2),
    ({"dim": 3, "poly_basis": "1 + x + y + x*y + z", "weight_func": "Hampel"}, 2),
    ({"orders": [2, 2], "weight_func": "None", "skip_factors": [5, 5]}, 1),
    ({"orders": [1, 1], "weight_func": "HuberT", "skip_factors": [10, 10]}, 2),
], ids=["3d-none", "3d-huber-preserve", "3d-hampel-basis", "2d-none", "2d-huber"])
def test_same_workflow_same_output(synthetic, tmp_path, bkg, tol):
    files, workflow = synthetic
    params = copy.deepcopy(workflow)
    table = {"cross_terms": True, "threshold_min": workflow["bkg_removal"]["threshold_min"],
             "skip_factors": [10, 10, 10] if bkg.get("dim") == 3 else [10, 10]}
    table.update(bkg)
    if table.get("dim") != 3:
        table.pop("dim", None)
    params["bkg_removal"] = table
    params["intensity_rescaling"] = {"nbins": 256, "filter_size": 5}
    params["intensity_rescaling_area"] = {"area": [10, 50, 10, 50], "threshold_min": 20,
                                          "factors_range": [0.8, 1.2]}
    ref = run_pystack3d_subprocess(files.slices_dir, params, STEPS, tmp_path / "ps3d",
                                   nproc=1, plots=False, timeout=600).raise_on_error()

    result = run_ours(files.slices_dir, params, STEPS, tmp_path / "ours.zarr")
    for step in STEPS:
        ours = p3d.open_result(result.store, step).values[0]
        need = 0.999 if step.startswith("intensity") else 1.0
        share = _within(ours, ref[step].stack, tol if step == "bkg_removal" else 1)
        assert share >= need, f"{step}: {share:.5f} of pixels within tolerance"
