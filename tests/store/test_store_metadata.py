"""A checkpoint group's metadata is the one xarray writes for the same Dataset.

``Store._create`` writes the in-memory variables with xarray and creates the lazy ones
(the stack, per-slice extras) with zarr directly; here every zarr.json it writes is
compared with those of xarray's metadata-only write (``to_zarr(compute=False)``) of the
whole template, and the groups are read back through xarray.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from pystack3d_dask.store import CHUNK_KEY_ENCODING, Store
from pystack3d_dask.store.metadata import slice_chunks as _slice_chunks
from pystack3d_dask.store.metadata import split_extras as _split_extras


def _xarray_create(store: Store, group: str, stack: xr.DataArray,
                   extras: dict[str, xr.DataArray]) -> None:
    ny, nx = stack.shape[2:]
    sliced, whole = _split_extras(extras)
    variables = {"stack": stack.copy(data=da.zeros(stack.shape, chunks=stack.shape,
                                                   dtype=stack.dtype))}
    encoding = {"stack": {"chunks": (1, 1, ny, nx), "compressors": store.compressors,
                          "chunk_key_encoding": CHUNK_KEY_ENCODING}}
    for name, value in sliced.items():
        variables[name] = value.copy(data=da.zeros(value.shape, chunks=value.shape,
                                                   dtype=value.dtype))
        encoding[name] = {"chunks": _slice_chunks(value),
                          "chunk_key_encoding": CHUNK_KEY_ENCODING}
    variables.update(whole)
    xr.Dataset(variables).to_zarr(str(store.path), group=group, mode="w", compute=False,
                                  zarr_format=3, consolidated=False, encoding=encoding)


def _metadata(root: Path) -> dict[str, dict]:
    out = {str(f.relative_to(root)): json.loads(f.read_text()) for f in root.rglob("zarr.json")}
    out["zarr.json"]["attributes"].pop("complete", None)
    return out


def _cases() -> dict[str, tuple[xr.DataArray, dict[str, xr.DataArray]]]:
    z = np.arange(4) * 0.01
    u8 = xr.DataArray(da.zeros((2, 4, 5, 6), chunks=(1, 1, 5, 6), dtype="u1"),
                      dims=("channel", "z", "y", "x"),
                      coords={"channel": ["SE2", "ESB"], "z": z},
                      attrs={"units": "grey level", "pair": np.arange(2)})
    beam = da.from_array(np.linspace(1.0, 2.0, 4), chunks=4)
    f4 = u8.astype("f4").assign_coords(beam_current=("z", beam))
    f4_extras = {
        "shift": xr.DataArray(da.zeros((2, 4, 3), chunks=(1, 1, 3)), dims=("channel", "z", "k"),
                              coords={"k": ["a", "b", "c"]}),
        "tmat": xr.DataArray(da.zeros((4, 3, 3), chunks=(1, 3, 3)), dims=("z", "r", "c")),
        "count": xr.DataArray(da.zeros((2, 4), chunks=(1, 1), dtype="i8"), dims=("channel", "z")),
        "means": xr.DataArray(np.ones((2, 4)), dims=("channel", "z")),
        "table": xr.DataArray(np.arange(3.0), dims=("q",), coords={"q": [1, 2, 3]}),
    }
    u16 = u8.astype("u2").assign_coords(beam_current=("z", np.linspace(1.0, 2.0, 4)))
    return {"uint8": (u8, {}), "float32, extras, beam": (f4, f4_extras),
            "uint16, beam, no extra": (u16, {})}


def _refuse(*args, **kwargs):
    raise AssertionError("xarray's to_zarr was called")


@pytest.mark.parametrize("case", list(_cases()))
def test_create_writes_xarray_metadata(tmp_path, case, monkeypatch):
    stack, extras = _cases()[case]
    ours, ref = Store(tmp_path / "ours.zarr"), Store(tmp_path / "ref.zarr")
    with monkeypatch.context() as patch:  # these dtypes take the direct zarr path
        patch.setattr(xr.Dataset, "to_zarr", _refuse)
        ours._create("g", stack, {}, extras)
    _xarray_create(ref, "g", stack, extras)
    assert _metadata(ours.path / "g") == _metadata(ref.path / "g")
    ds = xr.open_zarr(str(ours.path), group="g", zarr_format=3, consolidated=False)
    assert set(ds.data_vars) == {"stack", *extras}
    assert set(ds.coords) == set(stack.coords) | {c for e in extras.values() for c in e.coords}
    for name, coord in stack.coords.items():
        np.testing.assert_array_equal(ds[name].values, np.asarray(coord.values))
    assert ds["stack"].dtype == stack.dtype
    if stack.dtype.kind == "f":
        assert np.isnan(ds["stack"].encoding["_FillValue"])


def test_create_does_not_import_distributed(tmp_path):
    # xarray's metadata-only write imports distributed (0.2 s, 13 MiB) through dask
    code = (
        "import sys, dask.array as da, numpy as np, xarray as xr\n"
        "from pystack3d_dask.store.checkpoints import Store\n"
        "s = xr.DataArray(da.zeros((1, 3, 4, 5), chunks=(1, 1, 4, 5), dtype='u1'),\n"
        "                 dims=('channel', 'z', 'y', 'x'), coords={'z': [0.0, 1.0, 2.0]})\n"
        f"Store({str(tmp_path / 's.zarr')!r})._create('g', s, {{}}, {{}})\n"
        "print('distributed' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_create_leaves_what_xarray_encodes_to_xarray(tmp_path):
    """Dates need xarray's encoding (units, calendar): the group is then written by
    xarray, with the same metadata as its own write."""
    stack, _ = _cases()["uint8"]
    extras = {"when": xr.DataArray(np.array(["2026-01-02", "2026-03-04"], dtype="M8[ns]"),
                                   dims=("k",))}
    for name, extra in extras.items():
        ours, ref = Store(tmp_path / f"ours-{name}.zarr"), Store(tmp_path / f"ref-{name}.zarr")
        ours._create("g", stack, {}, {name: extra})
        _xarray_create(ref, "g", stack, {name: extra})
        assert _metadata(ours.path / "g") == _metadata(ref.path / "g")
        ds = xr.open_zarr(str(ours.path), group="g", zarr_format=3, consolidated=False)
        np.testing.assert_array_equal(ds[name].values, extra.values)
