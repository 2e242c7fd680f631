"""``pystack3d_dask.steps.<name>(stack, **params)``: every registered step from Python
gives the workflow file's bytes, whatever the chunking and the scheduler."""

from __future__ import annotations

import inspect
from pathlib import Path

import dask
import numpy as np
import pytest
import tifffile
import xarray as xr
from scipy import ndimage

import pystack3d_dask as p3d
from pystack3d_dask import steps
from pystack3d_dask.errors import ConfigError
from pystack3d_dask.store.checkpoints import Store

#: A table per registered step that makes it do real work on the stack below.
TABLES = {
    "cropping": {"area": [4, 70, 6, 50]},
    "bkg_removal": {"dim": 2, "orders": [1, 2], "skip_factors": [2, 2]},
    "intensity_rescaling": {"nbins": 64, "filter_size": 5},
    "intensity_rescaling_area": {"area": [10, 60, 10, 40], "factors_range": [0.5, 1.5]},
    "registration_calculation": {"area": [8, 72, 8, 52]},
    "registration_transformation": {"cropping": True, "subpixel": True},
    "destriping": {"method": "column_profile", "only_striped": False},
    "resampling": {"dz": 0.015},
    "cropping_final": {"area": [0, 40, 2, 30]},
}
NEEDS = {"registration_transformation": ["registration_calculation"]}


@pytest.fixture(scope="module")
def slices(tmp_path_factory) -> Path:
    """14 uint16 slices of 60 x 80: smooth structure drifting by a pixel a slice, a
    vertical curtain, a brightness that varies along z, uneven z spacing."""
    folder = tmp_path_factory.mktemp("fn") / "slices"
    folder.mkdir()
    rng = np.random.default_rng(3)
    field = ndimage.gaussian_filter(rng.random((90, 110)), 3)
    field = (field - field.min()) / np.ptp(field)
    z = np.cumsum(np.r_[0, rng.uniform(0.008, 0.012, 13)])
    for k in range(14):
        img = field[10 + k // 2:70 + k // 2, 10 + k % 5:90 + k % 5] * 30000 + 8000
        img = img * (1 + 0.05 * np.sin(k)) + rng.normal(0, 300, img.shape)
        img[:, 37:40] += 4000
        tifffile.imwrite(folder / f"slice_{k:04d}_z={z[k]:.4f}um.tif",
                         np.clip(img, 0, 65535).astype(np.uint16))
    return folder


def _run(slices: Path, store: Path, names: list[str]) -> Store:
    wf = {"project_dir": str(slices), "process_steps": names, "store": {"path": str(store)},
          **{n: TABLES[n] for n in names}}
    p3d.run(wf, progress=False)
    return Store(store, create=False)


def _call(name: str, stack: xr.DataArray, **extra) -> xr.DataArray:
    if name == "registration_transformation":
        tmats = steps.registration_calculation(stack, **TABLES["registration_calculation"])
        return steps.registration_transformation(stack, tmats=tmats, **TABLES[name], **extra)
    return getattr(steps, name)(stack, **TABLES[name], **extra)


def test_every_registered_step_has_a_function_and_a_case():
    assert set(TABLES) == set(steps.available_steps())
    for name in steps.available_steps():
        func = getattr(steps, name)
        params = inspect.signature(func).parameters
        table = steps.get_step(name).params
        # the signature is the table: same keys, same defaults
        assert {k: params[k].default for k in table} == {k: p.default for k, p in table.items()}
        assert all(f"\n{key} :" in func.__doc__ for key in table)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_python_call_gives_the_workflow_files_bytes(tmp_path, slices, name):
    store = _run(slices, tmp_path / "run.zarr", [*NEEDS.get(name, []), name])
    group = next(g for g in store.step_groups() if g.endswith(name))
    expected = store.open_stack(group).values
    stack = store.open_stack("input")
    if name == "registration_calculation":
        tmats = steps.registration_calculation(stack, **TABLES[name])
        assert tmats.dims[0] == "z" and tmats.sizes["z"] == 14
        np.testing.assert_array_equal(tmats.values, store.open_dataset(group)["tmats"].values)
        return
    out = _call(name, stack)
    assert out.dims == ("channel", "z", "y", "x") and out.dtype == np.uint16
    got = out.values
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    if name not in ("cropping", "cropping_final"):
        assert not np.array_equal(got[:, :, :30, :30], stack.values[:, :got.shape[1], :30, :30])


@pytest.mark.parametrize("name", sorted(set(TABLES) - {"registration_calculation"}))
def test_result_does_not_depend_on_chunking_or_scheduler(tmp_path, slices, name):
    store = _run(slices, tmp_path / "in.zarr", ["cropping"])
    stack = store.open_stack("input")
    with dask.config.set(scheduler="synchronous"):
        one = _call(name, stack).values
    slabs = stack.chunk({"z": 4})
    with dask.config.set(scheduler="threads"):
        other = _call(name, slabs).values
    np.testing.assert_array_equal(one, other)


def test_outputs_dataset_is_shaped_like_the_checkpoint(tmp_path, slices):
    store = _run(slices, tmp_path / "run.zarr", ["destriping"])
    group = next(g for g in store.step_groups() if g.endswith("destriping"))
    stored = store.open_dataset(group)
    out = steps.destriping(store.open_stack("input"), **TABLES["destriping"], outputs=True)
    assert isinstance(out, xr.Dataset)
    stats = {"min", "max", "mean", "cut_rows", "cut_columns"}
    assert set(out.data_vars) == set(stored.data_vars) - stats
    for name in out.data_vars:
        assert out[name].dims == stored[name].dims, name
        np.testing.assert_allclose(out[name].values, stored[name].values, err_msg=name)


def test_bad_parameters_name_the_key_and_the_nearest_valid_one(tmp_path, slices):
    stack = _run(slices, tmp_path / "in.zarr", ["cropping"]).open_stack("input")
    with pytest.raises(ConfigError, match=r"unknown key 'orderz' of bkg_removal\(\) "
                                          r"\(did you mean 'orders'\?\)"):
        steps.bkg_removal(stack, orderz=[1, 1])
    with pytest.raises(ConfigError, match=r"\[intensity_rescaling\] nbins = 1 is invalid"):
        steps.intensity_rescaling(stack, nbins=1)
    with pytest.raises(ConfigError, match="weight_func = None is invalid"):
        steps.bkg_removal(stack, dim=2, orders=[1, 1], weight_func=None)
    with pytest.raises(ConfigError, match=r"give tmats="):
        steps.registration_transformation(stack)
    with pytest.raises(ConfigError, match="tmats must be"):
        steps.registration_transformation(stack, tmats=np.zeros((14, 2, 2)))
    with pytest.raises(ConfigError, match="dims \\(channel, z, y, x\\)"):
        steps.cropping(stack.values, area=[0, 10, 0, 10])


def test_python_defaults_are_the_workflow_files(tmp_path, slices):
    """bkg_removal from Python fits with HuberT weights, as the TOML table does."""
    store = _run(slices, tmp_path / "run.zarr", ["bkg_removal"])
    group = next(g for g in store.step_groups() if g.endswith("bkg_removal"))
    assert store.attrs(group)["params"]["weight_func"] == "HuberT"
    stack = store.open_stack("input")
    table = TABLES["bkg_removal"]
    huber = steps.bkg_removal(stack, **table).values
    plain = steps.bkg_removal(stack, **table, weight_func="None").values
    np.testing.assert_array_equal(huber, store.open_stack(group).values)
    assert not np.array_equal(huber, plain)
    # tuples and NumPy values are taken as the file's lists and numbers
    again = steps.bkg_removal(stack, dim=np.int64(2), orders=(1, 2), skip_factors=np.array([2, 2]))
    np.testing.assert_array_equal(again.values, huber)


def test_checkpoint_writes_reuses_and_resumes(tmp_path, slices, monkeypatch):
    import pystack3d_dask.store.write as store_mod

    stack = _run(slices, tmp_path / "in.zarr", ["cropping"]).open_stack("input")
    flat = steps.bkg_removal(stack, **TABLES["bkg_removal"])
    written = []
    write = store_mod._write_slab

    def counting(block, extra_blocks, extra_specs, store, group, c, z0, n, todo, *args):
        written.extend((c, z0 + k) for k in todo)
        return write(block, extra_blocks, extra_specs, store, group, c, z0, n, todo, *args)

    monkeypatch.setattr(store_mod, "_write_slab", counting)
    out = p3d.checkpoint(flat, tmp_path / "nb.zarr", "notebook/flat")
    assert len(written) == 14
    np.testing.assert_array_equal(out.values, flat.values)
    assert out.attrs["group"] == "notebook/flat"
    # the same graph again: reused, nothing computed
    written.clear()
    p3d.checkpoint(steps.bkg_removal(stack, **TABLES["bkg_removal"]), tmp_path / "nb.zarr",
                   "notebook/flat")
    assert written == []
    # an interrupted write resumes with the missing slices only
    store = Store(tmp_path / "nb.zarr")
    store.update_attrs("notebook/flat", complete=False)
    for z in (3, 9):
        store._chunk_file("notebook/flat", 0, z).unlink()
    p3d.checkpoint(flat, tmp_path / "nb.zarr", "notebook/flat")
    assert sorted(written) == [(0, 3), (0, 9)]
    np.testing.assert_array_equal(Store(tmp_path / "nb.zarr").open_stack("notebook/flat").values,
                                  flat.values)
    # a step's outputs Dataset: the arrays beside the stack are written too
    ds = p3d.checkpoint(steps.destriping(stack, **TABLES["destriping"], outputs=True),
                        tmp_path / "nb.zarr", "destriped")
    assert {"stack", "stripe_score", "stripe_score_out"} <= set(ds.data_vars)
    with pytest.raises(ConfigError, match="a run's own group"):
        p3d.checkpoint(flat, tmp_path / "nb.zarr", "steps/01_mine")
