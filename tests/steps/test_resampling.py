"""Resampling to a uniform slice spacing."""

from __future__ import annotations

import tomllib

import dask.array as da
import numpy as np
import pytest
import tifffile
import xarray as xr
from helpers import run_ours
from pystack3d_runner import requires_pystack3d, run_pystack3d_subprocess

import pystack3d_dask as p3d
from pystack3d_dask.errors import ConfigError
from pystack3d_dask.kernels.resampling import output_positions, plan
from pystack3d_dask.steps import get_step


def _stack(values: np.ndarray, z: list[float]) -> xr.DataArray:
    data = np.broadcast_to(np.asarray(values, dtype=np.float32)[:, None, None],
                           (len(z), 3, 4)).copy()
    return xr.DataArray(da.from_array(data[None], chunks=(1, 1, 3, 4)),
                        dims=("channel", "z", "y", "x"),
                        coords={"channel": ["."], "z": ("z", np.asarray(z), {"units": "um"})})


def test_output_grid_is_pystack3ds():
    z_in = np.array([0.0, 0.01, 0.03, 0.04])
    np.testing.assert_allclose(output_positions(z_in, dz=0.01), [0, 0.01, 0.02, 0.03])
    np.testing.assert_allclose(output_positions(z_in, zpos_out=[0.005, 0.035]), [0.005, 0.035])
    with pytest.raises(ConfigError, match=r"outside the stack's z range \[0.0, 0.04\].*0.05"):
        output_positions(z_in, zpos_out=[0.01, 0.05])
    with pytest.raises(ConfigError, match="strictly increasing"):
        output_positions(z_in, zpos_out=[0.02, 0.01])
    with pytest.raises(ConfigError, match="dz = 0"):
        output_positions(z_in, dz=0)
    with pytest.raises(ConfigError, match="needs 'dz'"):
        output_positions(z_in)


def test_linear_interpolation_between_neighbours():
    stack = _stack([10, 20, 40, 50], [0.0, 0.01, 0.03, 0.04])
    out = get_step("resampling")(stack, dz=0.005, zpos_out=None)
    np.testing.assert_allclose(out["z"].values, np.arange(0, 0.04, 0.005))
    np.testing.assert_allclose(out.values[0, :, 0, 0],
                               [10, 15, 20, 25, 30, 35, 40, 45])
    assert out.dtype == np.float32


def test_non_increasing_slices_are_skipped_with_a_warning():
    z = [0.0, 0.01, 0.005, 0.02]
    how = plan(np.array(z), np.array([0.0, 0.01, 0.015]))
    assert how.skipped == [2]
    assert list(how.lower) == [0, 0, 1] and list(how.upper) == [0, 1, 3]
    with pytest.warns(UserWarning, match=r"skipped: 2 \(z = 0.0050\)"):
        out = get_step("resampling")(_stack([0, 10, 99, 20], z), dz=0.005)
    np.testing.assert_allclose(out.values[0, :, 0, 0], [0, 5, 10, 15])


def _input_blocks(out: xr.DataArray, inputs: str) -> dict[tuple, set[int]]:
    """For each output block, the z indices of the input blocks its task reads."""
    layer = out.data.dask.layers[out.data.name]
    return {key: {dep[2] for dep in layer[key][1]} for key in layer
            if layer[key][1] and layer[key][1][0][0] == inputs}


def test_each_output_slice_reads_its_two_input_neighbours():
    # slices of 4 MiB go one a task: each output slice reads its two neighbours
    z = [0.0, 0.01, 0.03, 0.04]
    big = xr.DataArray(da.zeros((1, 4, 1024, 1024), dtype=np.float32, chunks=(1, 1, 1024, 1024)),
                       dims=("channel", "z", "y", "x"), coords={"z": ("z", np.asarray(z))})
    out = get_step("resampling")(big, dz=0.015)
    assert out.data.chunks[1] == (1, 1, 1)  # z = 0, 0.015, 0.03
    blocks = _input_blocks(out, big.data.name)
    assert blocks[(out.data.name, 0, 1, 0, 0)] == {1, 2}
    # small slices go in slabs: each slab of outputs reads the input blocks holding
    # its neighbours, no other
    z_in = np.arange(40) * 0.01
    small = _stack(np.arange(40), list(z_in)).chunk({"z": 8})
    out = get_step("resampling")(small, dz=0.013)
    starts = np.concatenate([[0], np.cumsum(out.data.chunks[1])])
    for (_, _, j, _, _), read in _input_blocks(out, small.data.name).items():
        zs = np.arange(starts[j], starts[j + 1]) * 0.013
        lower = np.searchsorted(z_in, zs, side="right") - 1
        upper = np.minimum(lower + 1, 39)
        assert read == set(range(lower.min() // 8, upper.max() // 8 + 1))
    np.testing.assert_allclose(out.values[0, :, 0, 0], np.interp(out["z"].values, z_in,
                                                                  np.arange(40.0)), atol=1e-5)


def test_through_pipeline_with_integer_truncation(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    for k, (z, v) in enumerate([(0.0, 10), (0.02, 13), (0.03, 20)]):
        tifffile.imwrite(folder / f"slice_{k:04d}_z={z:.4f}um.tif", np.full((4, 5), v, np.uint8))
    wf = {"project_dir": str(folder), "process_steps": ["resampling"],
          "resampling": {"dz": 0.01}, "store": {"path": str(tmp_path / "s.zarr")}}
    p3d.run(wf, progress=False)
    ds = xr.open_zarr(tmp_path / "s.zarr", group="steps/01_resampling", consolidated=False)
    np.testing.assert_allclose(ds["z"].values, [0.0, 0.01, 0.02])
    np.testing.assert_array_equal(ds["stack"].values[0, :, 0, 0], [10, 11, 13])  # 11.5 -> 11
    np.testing.assert_allclose(ds["z_input"].values, [0.0, 0.02, 0.03])


@requires_pystack3d
@pytest.mark.slow
def test_parity_with_pystack3d(tmp_path):
    from pystack3d_dask.datasets.synthetic import write_synthetic

    files = write_synthetic(tmp_path / "syn", shape=(30, 64, 72), seed=3)
    params = tomllib.loads(files.workflow.read_text())
    ref = run_pystack3d_subprocess(files.slices_dir, params, ["resampling"], tmp_path / "ps3d",
                                   nproc=1, plots=False, timeout=600).raise_on_error()
    out = p3d.open_result(run_ours(files.slices_dir, params, ["resampling"],
                                   tmp_path / "ours.zarr").store)
    expected_z = [float(name.split("z=")[1][:-6]) for name in ref["resampling"].files]
    np.testing.assert_allclose(out["z"].values, expected_z, atol=5e-5)
    np.testing.assert_array_equal(out.values[0], ref["resampling"].stack)
