"""PyStack3D users move over unchanged: its own default workflow file, files written like
its examples, its ``history`` key and its single multi-page TIFF input all run here on a
synthetic stack; every PyStack3D output has the store variable docs/migration.md names."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr
from helpers import tree_hashes

import pystack3d_dask as p3d
from pystack3d_dask.datasets.synthetic import write_synthetic

DOCS = Path(__file__).resolve().parents[2] / "docs" / "migration.md"
SHAPE = (40, 96, 112)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """Slices of a small synthetic stack (PyStack3D's file names), with defects."""
    return write_synthetic(tmp_path_factory.mktemp("mig") / "syn", shape=SHAPE).slices_dir


def _project(tmp_path: Path, slices: Path, toml_text: str, channel: str = ".") -> Path:
    """PyStack3D's layout: the workflow file and the slices (or channel folders) in one
    project folder, without project_dir."""
    project = tmp_path / "project"
    target = project if channel == "." else project / channel
    shutil.copytree(slices, target)
    (project / "params.toml").write_text(toml_text)
    return project / "params.toml"


def _documented_variables() -> dict[str, set[str]]:
    """step -> store variables named in the output table of docs/migration.md (a row
    without a group continues the step of the row above)."""
    table = DOCS.read_text().split("## Where PyStack3D's output files live in the store")[1]
    table = table.split("\n## ")[0]
    out: dict[str, set[str]] = {}
    step = None
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) != 3 or not cells[1].startswith("`"):
            continue
        store = cells[1]
        group = re.match(r"`steps/NN_(\w+)`: (.*)", store)
        if group:
            step, store = group.group(1), group.group(2)
        elif not re.match(r"`\w+` \(", store):
            step = None  # not a variable of a step (history, plots)
            continue
        if step and step != "<step>":
            out.setdefault(step, set()).update(re.findall(r"`(\w+)`", store))
    return out


def test_pystack3d_default_params_file_runs_unchanged(tmp_path, synthetic):
    from importlib.resources import files

    pytest.importorskip("pystack3d")
    text = (files("pystack3d") / "assets" / "params.toml").read_text()
    toml = _project(tmp_path, synthetic, text)
    before = tree_hashes(toml.parent)
    with pytest.warns(UserWarning) as seen:
        result = p3d.run(toml, store=tmp_path / "default.zarr", progress=False)
    messages = " ".join(str(w.message) for w in seen)
    assert "superseded" not in messages  # history = [] says nothing
    assert "clipped" in messages  # its areas [0, 99999, ...] are larger than any image
    steps = [r.name for r in result.reports[1:]]
    assert steps == ["cropping", "bkg_removal", "intensity_rescaling", "intensity_rescaling_area",
                     "registration_calculation", "registration_transformation", "destriping",
                     "resampling", "cropping_final"]
    assert all(r.status == "computed" for r in result.reports)
    assert tree_hashes(toml.parent) == before

    # every output PyStack3D writes has the variable the migration guide names
    documented = _documented_variables()
    assert {"bkg_removal", "intensity_rescaling", "intensity_rescaling_area",
            "registration_calculation", "registration_transformation", "destriping",
            "resampling"} <= set(documented)
    for report in result.reports[1:]:
        ds = xr.open_zarr(result.store, group=report.group, consolidated=False)
        for name in documented.get(report.name, set()) | {"stack", "min", "max", "mean"}:
            if name == "coefs" and report.name == "bkg_removal":
                continue  # the 2D coefficients; this file fits in 3D (coefs_3d)
            if name in ("fit_pixels",):
                continue
            assert name in ds.variables, f"{report.group} lacks {name} (docs/migration.md)"


# Files written the way PyStack3D's examples write theirs (its synthetic-stack, real-stack
# and performance examples): the same keys and kinds of values, sized for this stack.
EXAMPLE_LIKE = {
    "synthetic": """#input_dirname = ""
ind_min = 0
ind_max = 99999
channels = ["."]
nproc = 1
process_steps = [
    "cropping",
    "bkg_removal",
    "intensity_rescaling",
    "registration_calculation", "registration_transformation",
    "destriping",
    "resampling",
    #    "cropping_final"
]
history = []

[cropping]
area = [15, 95, 18, 80]

[bkg_removal]
dim = 3
orders = [1, 1, 1]
cross_terms = true
skip_factors = [5, 5, 5]
threshold_min = 5
preserve_avg = true

[intensity_rescaling]
nbins = 256
filter_size = -1

[destriping]
maxit = 30
cvg_threshold = 1e-2
filters = [{ name = "Gabor", noise_level = 200, sigma = [2, 80], theta = 10 }]

[registration_calculation]
threshold = 90
nb_blocks = [1, 1]
transformation = "TRANSLATION"

[registration_transformation]
subpixel = false
mode = "edge"
cropping = true

[resampling]
policy = "slice_{slice_nb}_z={z_coord}um.tif"
dz = 0.01

[cropping_final]
area = [2, 38, 4, 30]
""",
    "real_stack": """#project_dir = "C:\\\\Users\\\\..."
ind_min = 1
ind_max = 8
channels = ["SE2"]
nproc = 1
process_steps = [
    "cropping",
    "bkg_removal",
    "intensity_rescaling",
    "registration_calculation", "registration_transformation",
    #    "destriping",
    "resampling",
    #    "cropping_final"
]
history = ["cropping"]

[cropping]
area = [15, 95, 18, 80]

[bkg_removal]
orders = [2, 2, 0]
cross_terms = false
skip_factors = [10, 10, 10]
threshold_min = 64

[intensity_rescaling]
nbins = 256
filter_size = 5

[destriping]
maxit = 50
cvg_threshold = 1e-2
filters = [
    { name = "Gabor", noise_level = 30, sigma = [0.5, 80], theta = 0 },
    { name = "Gabor", noise_level = 80, sigma = [0.5, 200], theta = 0 }]

[registration_calculation]
area = [10, 70, 10, 50]
nb_blocks = [1, 1]
transformation = "TRANSLATION"
threshold = 64

[registration_transformation]
box_size_averaging = 4
mode = "edge"
cropping = false

[resampling]
policy = "slice_{slice_nb}_z={z_coord}um.tif"
dz = 0.01

[cropping_final]
area = [3, 60, 3, 50]
""",
}
# the performance example is the real-stack file with channels = ['.'] (single quotes)
# and ind_max = 9999
EXAMPLE_LIKE["performance"] = (EXAMPLE_LIKE["real_stack"]
                               .replace('channels = ["SE2"]', "channels = ['.']")
                               .replace("ind_max = 8", "ind_max = 9999")
                               .replace('history = ["cropping"]', "history = []"))


@pytest.mark.parametrize("name", sorted(EXAMPLE_LIKE))
def test_files_written_like_pystack3d_examples_run(tmp_path, synthetic, name):
    text = EXAMPLE_LIKE[name]
    channel = "SE2" if 'channels = ["SE2"]' in text else "."
    toml = _project(tmp_path, synthetic, text, channel)
    proc = subprocess.run([sys.executable, "-m", "pystack3d_dask.cli", "run", str(toml),
                           "--store", str(tmp_path / "ex.zarr"), "--quiet", "--no-report"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    if "history = []" in text:
        assert "superseded" not in proc.stderr
    else:  # PyStack3D's record of finished steps: reported, not obeyed
        assert "history = ['cropping']" in proc.stderr and "superseded" in proc.stderr
    res = subprocess.run([sys.executable, "-m", "pystack3d_dask.cli", "status",
                          str(tmp_path / "ex.zarr")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "partial" not in res.stdout
    out = p3d.open_result(tmp_path / "ex.zarr")
    assert out.attrs["group"].endswith("_resampling")
    nz_in = {"synthetic": None, "real_stack": 8, "performance": None}[name]
    if nz_in is not None:
        assert p3d.open_result(tmp_path / "ex.zarr", "input").sizes["z"] == nz_in
    assert list(out["channel"].values) == [channel]


def test_single_multipage_tiff_input(tmp_path, synthetic):
    """PyStack3D's other input: one multi-page TIFF file as project_dir."""
    slices = sorted(synthetic.glob("*.tif"))[:12]
    stack = np.stack([tifffile.imread(p) for p in slices])
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    toml = tmp_path / "wf.toml"
    toml.write_text('project_dir = "stack.tif"\nprocess_steps = ["cropping"]\n'
                    "[cropping]\narea = [10, 90, 10, 80]\n")
    result = p3d.run(toml, progress=False)
    out = p3d.open_result(result.store)
    assert out.sizes["z"] == 12
    ny = stack.shape[1]
    np.testing.assert_array_equal(out.values[0], stack[:, ny - 80:ny - 10, 10:90])
