"""Array inputs: Zarr (v2, v3, OME-Zarr 0.4 and 0.5), N5, HDF5 and MRC files written with
their own libraries, discovered, read lazily, ingested by the real workflow and compared
with the array and with the same run from a TIFF folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import tree_hashes

import pystack3d_dask as p3d
from pystack3d_dask.errors import InputError, StoreError
from pystack3d_dask.io.array_readers import z_blocks
from pystack3d_dask.io.arrays import array_kind, discover_array
from pystack3d_dask.io.tiff import lazy_stack
from pystack3d_dask.store import Store

h5py = pytest.importorskip("h5py")
mrcfile = pytest.importorskip("mrcfile")
ts = pytest.importorskip("tensorstore")

SHAPE = (6, 64, 48)


def _stack(dtype: str = "uint16", shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    high = 250 if dtype == "uint8" else 60000
    return (np.random.default_rng(seed).random(shape) * high).astype(dtype)


def _zarr(path: Path, data: np.ndarray, chunks: tuple[int, ...] | None = None, **kw) -> Path:
    chunks = chunks or (1,) * (data.ndim - 2) + data.shape[-2:]
    arr = zarr.create_array(str(path), shape=data.shape, chunks=chunks, dtype=data.dtype, **kw)
    arr[...] = data
    return path


def _ome(path: Path, data: np.ndarray, version: str = "0.4", unit: str = "nanometer",
         scale: tuple[float, float, float] = (50.0, 10.0, 10.0), z0: float = 100.0,
         labels: tuple[str, ...] = ("SE2", "InLens"), axes: bool = True) -> Path:
    """An OME-Zarr image of (c, z, y, x) ``data`` and its half-resolution level 1."""
    fmt = 2 if version == "0.4" else 3
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    levels = [data, data[:, :, ::2, ::2]]
    for i, level in enumerate(levels):
        arr = root.create_array(str(i), shape=level.shape, chunks=(1, 1, *level.shape[2:]),
                                dtype=level.dtype)
        arr[...] = level
    image = {"version": version, "datasets": [
        {"path": str(i), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, scale[0], scale[1] * 2**i, scale[2] * 2**i]},
            {"type": "translation", "translation": [0.0, z0, 0.0, 0.0]}]}
        for i in range(len(levels))]}
    if axes:
        image["axes"] = [{"name": "c", "type": "channel"}] + [
            {"name": a, "type": "space", "unit": unit} for a in "zyx"]
    meta = {"multiscales": [image], "omero": {"channels": [{"label": v} for v in labels]}}
    root.attrs.update(meta if version == "0.4" else {"ome": {"version": version, **meta}})
    return path


def _n5(path: Path, data: np.ndarray, resolution=(5.0, 5.0, 20.0)) -> Path:
    """An N5 dataset as Java tools write it: dimensions and resolution x first."""
    spec = {"driver": "n5", "kvstore": {"driver": "file", "path": str(path)},
            "metadata": {"dimensions": list(data.shape[::-1]), "blockSize": [32, 32, 4],
                         "dataType": str(data.dtype), "compression": {"type": "raw"}},
            "create": True}
    ts.open(spec).result().write(data.T).result()
    attrs = json.loads((path / "attributes.json").read_text())
    attrs.update({"resolution": list(resolution), "units": ["nm", "nm", "nm"]})
    (path / "attributes.json").write_text(json.dumps(attrs))
    return path


def _h5(path: Path, data: np.ndarray, key: str = "/volume/data", **kw) -> str:
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(key, data=data, **kw)
        ds.attrs["element_size_um"] = [0.05, 0.01, 0.01]
    return f"{path}:{key}"


def _mrc(path: Path, data: np.ndarray) -> Path:
    with mrcfile.new(str(path)) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (100.0, 100.0, 500.0)  # angstrom, x y z
    return path


def _tiffs(folder: Path, data: np.ndarray) -> Path:
    import tifffile

    folder.mkdir()
    for k, img in enumerate(data):
        tifffile.imwrite(folder / f"slice_{k:04d}_z={k:.4f}um.tif", img)
    return folder


def _run(tmp_path: Path, location, store: str = "out.zarr", area=(4, 44, 6, 60),
         **input_table) -> p3d.RunResult:
    wf = {"project_dir": str(location), "process_steps": ["cropping"],
          "cropping": {"area": list(area)}, "store": {"path": str(tmp_path / store)}}
    if input_table:
        wf["input"] = input_table
    return p3d.run(wf, progress=False)


def _input(tmp_path: Path, store: str = "out.zarr"):
    return Store(tmp_path / store, create=False).open_dataset("input")


def _final(tmp_path: Path, store: str = "out.zarr") -> np.ndarray:
    return p3d.open_result(tmp_path / store).values


# -- discovery and reading, no store ----------------------------------------------------------
def test_kind_of_each_input(tmp_path):
    assert array_kind(str(_zarr(tmp_path / "a.zarr", _stack()))) == "zarr"
    assert array_kind("s3://bucket/key.zarr") == "zarr"
    assert array_kind(str(tmp_path / "f.H5") + ":/x") == "hdf5"
    assert array_kind(str(tmp_path / "f.rec")) == "mrc"
    assert array_kind(str(_n5(tmp_path / "a.n5", _stack()))) == "n5"
    (tmp_path / "tiffs").mkdir()
    assert array_kind(str(tmp_path / "tiffs")) is None


def test_z_blocks_follow_the_input_chunks():
    assert z_blocks(6, 0, 4, 100) == (4, 2)
    assert z_blocks(9, 2, 4, 100) == (2, 4, 3)  # ind_min 2 starts inside the first chunk
    assert z_blocks(3, 1, 8, 100) == (3,)
    assert sum(z_blocks(6, 0, 1, 100)) == 6


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_each_format_reads_as_the_array(tmp_path, dtype):
    data = _stack(dtype)
    inputs = {"zarr": str(_zarr(tmp_path / "a.zarr", data, (4, 32, 32))),
              "zarr2": str(_zarr(tmp_path / "v2.zarr", data, zarr_format=2)),
              "n5": str(_n5(tmp_path / "a.n5", data)),
              "hdf5": _h5(tmp_path / "a.h5", data, chunks=(2, 32, 48))}
    if dtype != "uint8":  # mrcfile stores uint8 as uint16 (mode 6)
        inputs["mrc"] = str(_mrc(tmp_path / "a.mrc", data))
    for kind, location in inputs.items():
        source = discover_array(location, ind_min=1, ind_max=4)
        stack = lazy_stack(source)
        assert stack.dtype == data.dtype, kind
        np.testing.assert_array_equal(stack.values[0], data[1:5], err_msg=kind)
        np.testing.assert_array_equal(source.read(0, 2), data[3], err_msg=kind)


def test_blocks_read_each_input_chunk_once(tmp_path):
    source = discover_array(str(_zarr(tmp_path / "a.zarr", _stack(), (4, 32, 32))), ind_min=1)
    assert lazy_stack(source).data.chunks[1] == (3, 2)  # z 1-3, then 4-5: chunk rows


def test_metadata_gives_z_and_pixel_size(tmp_path):
    data = _stack(shape=(2, *SHAPE))
    ome = discover_array(str(_ome(tmp_path / "o.zarr", data)), ind_min=2)
    np.testing.assert_allclose(ome.z, 0.1 + 0.05 * np.arange(2, 6))  # nm -> um, translated
    assert ome.pixel_size == pytest.approx(0.01) and ome.channels == ["SE2", "InLens"]
    assert ome.z_source == "OME-Zarr"
    level1 = discover_array(str(tmp_path / "o.zarr"), level=1)
    assert level1.shape == (32, 24) and level1.pixel_size == pytest.approx(0.02)
    n5 = discover_array(str(_n5(tmp_path / "a.n5", _stack())))
    np.testing.assert_allclose(n5.z, 0.02 * np.arange(6))
    assert n5.pixel_size == pytest.approx(0.005)
    h5 = discover_array(_h5(tmp_path / "a.h5", _stack()))
    np.testing.assert_allclose(h5.z, 0.05 * np.arange(6))
    mrc = discover_array(str(_mrc(tmp_path / "a.mrc", _stack())))
    np.testing.assert_allclose(mrc.z, 0.05 * np.arange(6))
    assert mrc.pixel_size == pytest.approx(0.01)
    # the user's values win over the metadata's
    mine = discover_array(str(tmp_path / "a.mrc"), z_spacing=0.2, pixel_size=0.3)
    np.testing.assert_allclose(mine.z, 0.2 * np.arange(6))
    assert mine.pixel_size == 0.3 and mine.z_source == "[input] z_spacing"


def test_dims_map_other_orders(tmp_path):
    data = _stack(shape=(2, *SHAPE))  # c, z, y, x
    zcyx = np.ascontiguousarray(data.transpose(1, 0, 2, 3))
    location = str(_zarr(tmp_path / "zcyx.zarr", zcyx, (1, 1, 64, 48)))
    stack = lazy_stack(discover_array(location, dims="zcyx"))
    np.testing.assert_array_equal(stack.values, data)
    tczyx = str(_zarr(tmp_path / "t.zarr", data[None], (1, 1, 1, 64, 48)))
    np.testing.assert_array_equal(lazy_stack(discover_array(tczyx, dims=list("tczyx"))).values,
                                  data)


def test_a_missing_library_is_named_with_its_extra(tmp_path, monkeypatch):
    import pystack3d_dask.io.array_readers as readers

    location = _h5(tmp_path / "a.h5", _stack())
    real = readers.importlib.import_module

    def no_h5py(name, *args):
        if name == "h5py":
            raise ImportError("No module named 'h5py'")
        return real(name, *args)

    monkeypatch.setattr(readers.importlib, "import_module", no_h5py)
    with pytest.raises(InputError, match=r"pip install 'pystack3d-dask\[hdf5\]'") as err:
        discover_array(location)
    assert str(tmp_path / "a.h5") in str(err.value)


# -- bad inputs: a clear error, before the store is created -----------------------------------
def _bad_inputs(tmp_path: Path) -> list[tuple[str, dict, str]]:
    data = _stack()
    two_d = _zarr(tmp_path / "flat.zarr", data[0], (64, 48))
    h5 = tmp_path / "b.h5"
    _h5(h5, data)
    no_axes = _ome(tmp_path / "noaxes.zarr", _stack(shape=(2, *SHAPE)), axes=False)
    ome = _ome(tmp_path / "ok.zarr", _stack(shape=(2, *SHAPE)))
    with mrcfile.new(str(tmp_path / "one.mrc")) as mrc:
        mrc.set_data(data[0])
    int16 = _zarr(tmp_path / "int16.zarr", data.astype("int16"))
    return [
        (str(two_d), {}, "expected 3"),
        (f"{h5}:/volume", {}, "a group, not a dataset"),
        (f"{h5}:/nothing", {}, "/volume/data"),
        (str(no_axes), {}, "without 'axes'"),
        (str(ome), {"level": 5}, "level = 5 does not exist"),
        (str(_zarr(tmp_path / "c.zarr", data)), {"dims": "czyx"}, "dims"),
        (str(tmp_path / "c.zarr"), {"dims": "zqx"}, "'q' is no axis"),
        (str(int16), {}, "dtype int16 is not supported"),
        (str(tmp_path / "one.mrc"), {}, "expected a 3-D volume"),
    ]


def test_bad_inputs_are_named_and_nothing_is_written(tmp_path):
    for location, table, says in _bad_inputs(tmp_path):
        wf = {"project_dir": location, "process_steps": ["cropping"],
              "cropping": {"area": [0, 10, 0, 10]}, "store": {"path": str(tmp_path / "s.zarr")}}
        if table:
            wf["input"] = table
        with pytest.raises(InputError) as err:
            p3d.run(wf, progress=False)
        assert says in str(err.value), (location, str(err.value))
        assert location.split(":/")[0] in str(err.value)
        assert not (tmp_path / "s.zarr").exists(), location


# -- the workflow, end to end -------------------------------------------------------------------
def test_zarr_input_ingests_as_the_array_and_matches_the_tiff_run(tmp_path):
    data = _stack()
    _run(tmp_path, _tiffs(tmp_path / "tiffs", data), "tiff.zarr")
    for name, chunks in (("slices", None), ("cubes", (4, 32, 32))):
        _run(tmp_path, _zarr(tmp_path / f"{name}.zarr", data, chunks), f"{name}.out.zarr")
        ds = _input(tmp_path, f"{name}.out.zarr")
        np.testing.assert_array_equal(ds["stack"].values[0], data)
        np.testing.assert_array_equal(_final(tmp_path, f"{name}.out.zarr"),
                                      _final(tmp_path, "tiff.zarr"))
        np.testing.assert_allclose(ds["max"].values[0], data.max(axis=(1, 2)))
        assert ds.attrs["source"]["kind"] == "zarr"
        assert ds.attrs["source"]["root"] == str((tmp_path / f"{name}.zarr").resolve())


def test_ome_zarr_input_takes_its_z_channels_and_level(tmp_path):
    data = _stack(shape=(2, *SHAPE))
    for version in ("0.4", "0.5"):
        location = _ome(tmp_path / f"v{version}.zarr", data, version)
        _run(tmp_path, location, f"{version}.out.zarr")
        ds = _input(tmp_path, f"{version}.out.zarr")
        np.testing.assert_array_equal(ds["stack"].values, data)
        np.testing.assert_allclose(ds["z"].values, 0.1 + 0.05 * np.arange(6))
        np.testing.assert_allclose(ds["x"].values[:3], [0.0, 0.01, 0.02])
        assert list(ds["channel"].values) == ["SE2", "InLens"]
        assert ds.attrs["source"]["z_source"] == "OME-Zarr"
    wf_input = {"level": 1, "z_spacing": 0.5}
    _run(tmp_path, tmp_path / "v0.4.zarr", "level1.zarr", (2, 20, 2, 30), **wf_input)
    ds = _input(tmp_path, "level1.zarr")
    np.testing.assert_array_equal(ds["stack"].values, data[:, :, ::2, ::2])
    np.testing.assert_allclose(ds["z"].values, 0.5 * np.arange(6))  # the user's spacing wins


def test_hdf5_mrc_n5_inputs_end_to_end(tmp_path):
    data = _stack()
    _run(tmp_path, _tiffs(tmp_path / "tiffs", data), "tiff.zarr")
    inputs = {"h5": (_h5(tmp_path / "a.h5", data, chunks=(4, 32, 32)), 0.05),
              "mrc": (_mrc(tmp_path / "a.mrc", data), 0.05),
              "n5": (_n5(tmp_path / "a.n5", data), 0.02)}
    for name, (location, dz) in inputs.items():
        _run(tmp_path, location, f"{name}.zarr")
        ds = _input(tmp_path, f"{name}.zarr")
        np.testing.assert_array_equal(ds["stack"].values[0], data, err_msg=name)
        np.testing.assert_allclose(ds["z"].values, dz * np.arange(6), err_msg=name)
        np.testing.assert_array_equal(_final(tmp_path, f"{name}.zarr"),
                                      _final(tmp_path, "tiff.zarr"), err_msg=name)


def test_input_path_wins_over_project_dir(tmp_path, monkeypatch):
    data = _stack()
    _h5(tmp_path / "a.h5", data)
    monkeypatch.chdir(tmp_path)  # a dictionary's relative paths: against the current folder
    wf = {"project_dir": str(tmp_path / "nowhere"), "process_steps": ["cropping"],
          "cropping": {"area": [4, 44, 6, 60]}, "input": {"path": "a.h5:/volume/data"},
          "store": {"path": str(tmp_path / "out.zarr")}}
    p3d.run(wf, progress=False)
    ds = _input(tmp_path)
    assert ds.attrs["source"]["root"] == f"{(tmp_path / 'a.h5').resolve()}:/volume/data"
    np.testing.assert_array_equal(ds["stack"].values[0], data)


# -- no copy ------------------------------------------------------------------------------------
def test_slice_chunked_zarr_is_linked_not_copied(tmp_path):
    data = _stack()
    data[3] = 0  # zarr writes no chunk for a slice of fill values: written the usual way
    location = _zarr(tmp_path / "in.zarr", data, compressors=[zarr.codecs.ZstdCodec(level=5)])
    before = tree_hashes(location)
    result = _run(tmp_path, location)
    ds = _input(tmp_path)
    np.testing.assert_array_equal(ds["stack"].values[0], data)
    np.testing.assert_allclose(ds["mean"].values[0], data.mean(axis=(1, 2)))
    assert ds.attrs["linked_chunks"] == 5 and result.reports[0].chunks_computed == 1
    files = sorted((tmp_path / "out.zarr" / "input" / "stack").glob("c.*"))
    assert sorted(os.stat(f).st_nlink for f in files) == [1] + [2] * 5
    assert tree_hashes(location) == before
    assert [r.status for r in _run(tmp_path, location).reports] == ["reused", "reused"]
    assert tree_hashes(location) == before


def test_other_layouts_are_copied(tmp_path):
    data = _stack()
    for name, kw in (("blosc", {"compressors": [zarr.codecs.BloscCodec()]}),
                     ("sharded", {"chunks": (1, 32, 48), "shards": (2, 64, 48)})):
        _run(tmp_path, _zarr(tmp_path / f"{name}.zarr", data, **kw), f"{name}.out.zarr")
        ds = _input(tmp_path, f"{name}.out.zarr")
        assert ds.attrs.get("linked_chunks", 0) == 0, name
        np.testing.assert_array_equal(ds["stack"].values[0], data)


# -- identity ----------------------------------------------------------------------------------
def test_changed_metadata_or_file_is_refused(tmp_path):
    data = _stack()
    location = _zarr(tmp_path / "in.zarr", data)
    _run(tmp_path, location)
    zarr.open_array(str(location), mode="r+").attrs["note"] = "edited"
    with pytest.raises(StoreError, match="different version of zarr.json"):
        _run(tmp_path, location)
    h5 = _h5(tmp_path / "a.h5", data)
    _run(tmp_path, h5, "h5.zarr")
    os.utime(tmp_path / "a.h5")  # touched only: the pixels are compared, and match
    assert _run(tmp_path, h5, "h5.zarr").reports[0].status == "reused"
    with h5py.File(tmp_path / "a.h5", "r+") as f:
        f["/volume/data"][2, 10, 10] += 1
    os.utime(tmp_path / "a.h5", ns=(1, 1))
    with pytest.raises(StoreError, match="differ"):
        _run(tmp_path, h5, "h5.zarr")
    with pytest.raises(StoreError, match="another input"):
        _run(tmp_path, _mrc(tmp_path / "a.mrc", data), "h5.zarr")


def test_a_zarr_url_is_read_through_fsspec(tmp_path):
    """A URL goes to zarr's fsspec store as it is, with [input] storage_options (fsspec's
    in-memory file system here; S3 through the same code path)."""
    data = _stack()
    url = f"memory://p3d-test/{tmp_path.name}/in.zarr"
    _zarr(url, data, (2, 64, 48))
    _run(tmp_path, url, storage_options={})
    ds = _input(tmp_path)
    np.testing.assert_array_equal(ds["stack"].values[0], data)
    assert ds.attrs["source"]["root"] == url
    assert [m["path"] for m in ds.attrs["manifest"]] == ["zarr.json"]
    assert _run(tmp_path, url, storage_options={}).reports[0].status == "reused"


def test_four_d_input_from_ind_min_is_linked_slice_for_slice(tmp_path):
    data = _stack(shape=(2, *SHAPE))
    location = _zarr(tmp_path / "in.zarr", data)
    wf = {"project_dir": str(location), "ind_min": 2, "process_steps": ["cropping"],
          "cropping": {"area": [4, 44, 6, 60]}, "store": {"path": str(tmp_path / "out.zarr")}}
    p3d.run(wf, progress=False)
    ds = _input(tmp_path)
    np.testing.assert_array_equal(ds["stack"].values, data[:, 2:])
    np.testing.assert_allclose(ds["z"].values, np.arange(2, 6))
    assert ds.attrs["linked_chunks"] == 8 and list(ds["channel"].values) == ["0", "1"]


def test_a_store_inside_the_input_array_is_said(tmp_path):
    location = _zarr(tmp_path / "in.zarr", _stack())
    with pytest.warns(UserWarning, match="inside the input folder"):
        _run(tmp_path, location, "in.zarr/results.zarr")


def test_non_finite_float_slices_are_named_with_their_count(tmp_path):
    data = _stack("float32")
    data[2, 3, 4] = np.nan
    data[2, 5, 6] = np.inf
    location = _zarr(tmp_path / "float.zarr", data)
    with pytest.raises(InputError, match=r"1 NaN and 1 infinite pixel values") as err:
        _run(tmp_path, location)
    assert str(location) in str(err.value) and "slices" in str(err.value)
    assert not Store(tmp_path / "out.zarr", create=False).is_complete("input")
