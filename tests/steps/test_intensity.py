"""Intensity rescaling (histogram matching) and area factors."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from helpers import write_stack

import pystack3d_dask as p3d
from pystack3d_dask.errors import ConfigError, InputError
from pystack3d_dask.kernels.histogram import match_histogram, reference_histograms


def _run(tmp_path, folder, steps, **tables):
    wf = {"project_dir": str(folder), "process_steps": steps,
          "store": {"path": str(tmp_path / "s.zarr")}, **tables}
    return p3d.run(wf, progress=False)


def _gain_stack(tmp_path, n=10, gains=None):
    """Slices of the same texture, a few with a gain jump."""
    folder = tmp_path / "slices"
    rng = np.random.default_rng(4)
    base = rng.normal(120, 25, (40, 48))
    gains = gains if gains is not None else np.ones(n)
    data = np.stack([np.clip(base * g + rng.normal(0, 2, base.shape), 0, 255) for g in gains])
    data = data.astype(np.uint8)
    write_stack(folder, n=0)
    import tifffile
    for k, img in enumerate(data):
        tifffile.imwrite(folder / f"slice_{k:04d}_z={k * 0.01:.4f}um.tif", img)
    return folder, data


def test_reference_histograms():
    h = np.array([[0, 4, 0], [2, 2, 0], [4, 0, 2]])
    np.testing.assert_allclose(reference_histograms(h, -1), [[2, 2, 2 / 3]] * 3)
    np.testing.assert_array_equal(reference_histograms(h, 1), h)


def test_matching_to_itself_keeps_bin_centres():
    img = np.repeat(np.arange(8, dtype=np.float64), 10).reshape(8, 10)
    hist = np.histogram(img, bins=8, range=(0, 8))[0]
    out = match_histogram(img, hist, (0.0, 8.0))
    np.testing.assert_allclose(out, img + 0.5)  # each level maps to its own bin centre


def test_rescaling_evens_out_gain_jumps(tmp_path):
    gains = np.ones(10)
    gains[[3, 7]] = [1.25, 0.8]
    folder, data = _gain_stack(tmp_path, gains=gains)
    _run(tmp_path, folder, ["intensity_rescaling"],
         intensity_rescaling={"nbins": 128, "filter_size": -1})
    ds = xr.open_zarr(tmp_path / "s.zarr", group="steps/01_intensity_rescaling",
                      consolidated=False)
    before = data.reshape(10, -1).mean(axis=1)
    after = ds["mean"].values[0]
    assert np.ptp(before) > 30 and np.ptp(after) < 4
    assert ds["histos_orig"].shape == (1, 10, 128) and ds["histos_final"].shape == (1, 10, 128)
    np.testing.assert_array_equal(ds["histos_orig"].values[0].sum(axis=1), 40 * 48)
    np.testing.assert_allclose(ds["value_range"].values[0], [data.min(), data.max()])
    assert ds["stack"].dtype == np.uint8


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_final_histograms_are_those_of_the_written_slices(tmp_path, dtype):
    # uint8: predicted from each slice's level counts and lookup table, without the
    # pixels; other dtypes: counted from every written slice
    gains = np.linspace(0.8, 1.2, 8)
    folder, data = _gain_stack(tmp_path, n=8, gains=gains)
    if dtype == "uint16":
        import tifffile
        for k, f in enumerate(sorted(folder.glob("*.tif"))):
            tifffile.imwrite(f, data[k].astype(np.uint16) * 200 + k)
    _run(tmp_path, folder, ["intensity_rescaling"],
         intensity_rescaling={"nbins": 50, "filter_size": 3})
    ds = xr.open_zarr(tmp_path / "s.zarr", group="steps/01_intensity_rescaling",
                      consolidated=False)
    out = ds["stack"].values[0]
    assert out.dtype == np.dtype(dtype)
    vrange = tuple(ds["value_range"].values[0])
    expected = [np.histogram(img, bins=50, range=vrange)[0] for img in out]
    np.testing.assert_array_equal(ds["histos_final"].values[0], expected)


def test_area_factors(tmp_path):
    gains = np.ones(9)
    gains[4] = 1.1
    folder, data = _gain_stack(tmp_path, n=9, gains=gains)
    _run(tmp_path, folder, ["intensity_rescaling_area"],
         intensity_rescaling_area={"area": [0, 20, 0, 20], "factors_range": [0.5, 1.5]})
    ds = xr.open_zarr(tmp_path / "s.zarr", group="steps/01_intensity_rescaling_area",
                      consolidated=False)
    roi = data[:, 20:40, 0:20].reshape(9, -1).mean(axis=1)  # bottom-left 20 x 20
    np.testing.assert_allclose(ds["means"].values[0], roi)
    np.testing.assert_allclose(ds["factors"].values[0], np.median(roi) / roi)
    expected = np.clip(data[4] * (np.median(roi) / roi[4]), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(ds["stack"].values[0, 4], expected)
    _run(tmp_path, folder, ["intensity_rescaling_area"],
         intensity_rescaling_area={"area": [0, 20, 0, 20], "factors_range": [0.99, 1.0]})
    ds = xr.open_zarr(tmp_path / "s.zarr", group="steps/01_intensity_rescaling_area",
                      consolidated=False)
    assert ds["factors"].values.min() >= 0.99 and ds["factors"].values.max() <= 1.0


def test_area_without_pixels_in_thresholds_names_the_slice(tmp_path):
    folder, data = _gain_stack(tmp_path, n=5)
    import tifffile
    tifffile.imwrite(folder / "slice_0002_z=0.0200um.tif", np.zeros_like(data[2]))
    with pytest.raises(InputError, match=r"slice z = 0.0200 um \(index 2"):
        _run(tmp_path, folder, ["intensity_rescaling_area"],
             intensity_rescaling_area={"threshold_min": 10})
    assert not (tmp_path / "s.zarr" / "steps" / "01_intensity_rescaling_area").exists()


@pytest.mark.parametrize(("tables", "piece"), [
    ({"intensity_rescaling": {"filter_size": 0}}, "filter_size = 0"),
    ({"intensity_rescaling": {"filter_size": 50}}, r"filter_size = 50.*<= 6"),
    ({"intensity_rescaling": {"nbins": 1}}, "nbins"),
    ({"intensity_rescaling_area": {"factors_range": [1.2, 0.8]}}, "reversed"),
    ({"intensity_rescaling_area": {"threshold_min": 9, "threshold_max": 3}}, "threshold_min = 9"),
    ({"intensity_rescaling_area": {"area": [90, 95, 0, 5]}}, "outside the image"),
])
def test_bad_intensity_parameters(tmp_path, tables, piece):
    folder = tmp_path / "slices"
    write_stack(folder, n=6, dtype="uint8")
    with pytest.raises(ConfigError, match=piece):
        _run(tmp_path, folder, list(tables), **tables)
