"""Tests of the coordinate-matched quality scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from pystack3d_dask.datasets.quality import quality, quality_table
from pystack3d_dask.errors import InputError

NZ, NY, NX = 6, 20, 24
Y0, X0 = 10, 5  # the truth is the valid region of a larger frame


def make_truth(dtype: str = "uint8", seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random((NZ, NY, NX)), (0, 2, 2))
    smooth = (smooth - smooth.min()) / np.ptp(smooth)
    values = 20 + 200 * smooth + rng.normal(0, 5, smooth.shape)
    if np.dtype(dtype).kind == "u":
        values = np.clip(values, 0, 255).astype(dtype)
    else:
        values = (values / 255).astype(dtype)
    return xr.DataArray(
        values, dims=("z", "y", "x"),
        coords={"z": np.arange(NZ) * 0.01,
                "y": np.arange(Y0, Y0 + NY, dtype=np.int64),
                "x": np.arange(X0, X0 + NX, dtype=np.int64)},
    )


@pytest.fixture
def truth() -> xr.DataArray:
    return make_truth()


def test_identical(truth):
    q = quality(truth, truth)
    assert q["mae"] == 0 and q["bias"] == 0 and q["rmse"] == 0
    assert q["psnr"] == math.inf
    assert q["ssim"] == pytest.approx(1.0)
    assert q["n_slices"] == NZ and q["n_pixels"] == NZ * NY * NX
    assert q["data_range"] == 255 and q["n_skipped"] == 0


@pytest.mark.parametrize("offset", [3.0, -2.5])
def test_constant_offset(truth, offset):
    q = quality(truth.astype(np.float64) + offset, truth)
    assert q["bias"] == pytest.approx(offset)
    assert q["mae"] == pytest.approx(abs(offset))
    assert q["psnr"] == pytest.approx(20 * math.log10(255 / abs(offset)))
    assert q["ssim"] < 1.0


def test_data_range(truth):
    q = quality(truth.astype(np.float64) + 1.0, truth, data_range=100)
    assert q["psnr"] == pytest.approx(40.0)
    ft = make_truth("float32")
    q = quality(ft + np.float32(0.01), ft)
    rng = float(ft.max() - ft.min())
    assert q["data_range"] == pytest.approx(rng)
    assert q["psnr"] == pytest.approx(20 * math.log10(rng / 0.01), rel=1e-4)
    with pytest.raises(InputError, match="data_range"):
        quality(truth, truth, data_range=0)


def test_channel_selection(truth):
    both = xr.concat([truth.astype(float) + 2, truth.astype(float)], dim="channel")
    both = both.assign_coords(channel=["a", "b"]).transpose("channel", "z", "y", "x")
    assert quality(both, truth)["bias"] == pytest.approx(2.0)
    assert quality(both, truth, channel=1)["bias"] == pytest.approx(0.0)
    assert quality(both, truth, channel="b")["mae"] == pytest.approx(0.0)
    with pytest.raises(InputError, match="channel"):
        quality(both, truth, channel="c")
    with pytest.raises(InputError, match="channel"):
        quality(truth, truth, channel=1)


def test_cropped_result_compares_overlap_only(truth):
    crop = truth.isel(y=slice(3, 15), x=slice(4, 20))
    q = quality(crop, truth)
    assert q["mae"] == 0 and q["n_pixels"] == NZ * 12 * 16
    # Comparing by position instead of coordinates would be far off.
    shifted = crop.copy(data=truth.values[:, :12, :16])
    assert quality(shifted, truth)["mae"] > 5


def test_result_larger_than_truth(truth):
    # A result over the whole padded frame: only the truth's pixels are scored.
    frame = np.full((NZ, NY + 30, NX + 20), 255.0)
    frame[:, Y0:Y0 + NY, X0:X0 + NX] = truth.values
    result = xr.DataArray(frame, dims=("z", "y", "x"),
                          coords={"z": truth.z.values, "y": np.arange(NY + 30),
                                  "x": np.arange(NX + 20)})
    q = quality(result, truth)
    assert q["mae"] == 0 and q["n_pixels"] == truth.size


def test_dims_in_other_order(truth):
    q = quality(truth.transpose("x", "z", "y"), truth)
    assert q["mae"] == 0 and q["n_pixels"] == truth.size


def test_halfway_z_compares_to_average(truth):
    t = truth.values.astype(np.float64)
    z = truth.z.values
    mid = 0.5 * (t[1:] + t[:-1])
    result = xr.DataArray(mid, dims=("z", "y", "x"),
                          coords={"z": 0.5 * (z[1:] + z[:-1]), "y": truth.y, "x": truth.x})
    q = quality(result, truth)
    assert q["mae"] == pytest.approx(0.0, abs=1e-9)
    assert q["n_slices"] == NZ - 1
    # The nearest slice alone is not the average.
    assert quality(result, truth, interpolate=False)["mae"] > 1.0


def test_quarter_z_weights(truth):
    t = truth.values.astype(np.float64)
    result = xr.DataArray(0.75 * t[2:3] + 0.25 * t[3:4], dims=("z", "y", "x"),
                          coords={"z": [0.0225], "y": truth.y, "x": truth.x})
    assert quality(result, truth)["mae"] == pytest.approx(0.0, abs=1e-9)


def test_z_rounded_in_file_names_snaps_to_slice(truth):
    result = truth.assign_coords(z=np.round(truth.z.values + 3e-6, 4))
    assert quality(result, truth)["mae"] == 0


def test_partial_z_overlap_skips_outside(truth):
    result = truth.assign_coords(z=truth.z.values + 0.03)
    q = quality(result, truth)
    assert q["n_slices"] == NZ - 3 and q["n_skipped"] == 3


def test_no_overlap_errors(truth):
    with pytest.raises(InputError, match="z"):
        quality(truth.assign_coords(z=truth.z.values + 1.0), truth)
    with pytest.raises(InputError, match="x"):
        quality(truth.assign_coords(x=truth.x.values + 1000), truth)
    with pytest.raises(InputError, match="y"):
        quality(truth.assign_coords(y=truth.y.values - 1000), truth)
    with pytest.raises(InputError, match="dims"):
        quality(truth.rename(z="t"), truth)
    with pytest.raises(InputError, match="DataArray"):
        quality(truth.values, truth)


def test_dask_backed_inputs(truth):
    pytest.importorskip("dask")
    result = (truth.astype(np.float64) - 1.5).chunk({"z": 2})
    q = quality(result, truth.chunk({"z": 1}))
    assert q["bias"] == pytest.approx(-1.5) and q["n_pixels"] == truth.size


def test_nan_pixels_left_out(truth):
    result = truth.astype(np.float64) + 1.0
    result[0, 0, :3] = np.nan
    q = quality(result, truth)
    assert q["n_nonfinite"] == 3 and q["n_pixels"] == truth.size - 3
    assert q["mae"] == pytest.approx(1.0)
    assert math.isfinite(q["ssim"])


def test_quality_table(truth):
    rows = {"identity": quality(truth, truth),
            "offset": quality(truth.astype(float) + 3, truth),
            "partial": {"psnr": 30.0, "mae": float("nan")}}
    text = quality_table(rows)
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[0].split() == ["name", "PSNR", "SSIM", "MAE", "bias"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split()[:2] == ["identity", "inf"]
    off = lines[3].split()
    assert off[0] == "offset" and float(off[1]) == pytest.approx(38.59, abs=0.01)
    assert off[3] == "3.000" and off[4] == "+3.000"
    assert lines[4].split() == ["partial", "30.00", "-", "nan", "-"]
    # Columns are aligned: every bias value ends at the same position.
    ends = {len(line) for line in lines[2:]}
    assert len(ends) == 1
    with pytest.raises(InputError, match="rows"):
        quality_table([1, 2])
