"""The metadata of the store's groups, as xarray writes and reads it.

Groups are created with zarr directly, with the attributes, fill values, dimension names
and ``coordinates`` lists that xarray's ``to_zarr`` (zarr v3) gives the same variables,
so that ``xarray.open_zarr`` reads every group as a Dataset
(``tests/store/test_store_metadata.py`` compares the two byte for byte).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr
import zarr.codecs

from ..errors import StoreError
from .location import LocalFiles, ObjectFiles, StoreTarget, files_of

__all__ = ["create_group", "fingerprint", "make_compressors", "split_extras", "to_json"]

#: Chunk files named ``c.0.12.0.0``, all in the array's folder. zarr's default (``/``)
#: makes two folders per slice (``c/0/12/0/0``), to create and to remove again, which
#: costs more than compressing and writing the slice.
CHUNK_KEY_ENCODING = {"name": "default", "separator": "."}
#: Attributes that open_stack sets on a stack it reads, not array metadata to write.
RUNTIME_ATTRS = ("group", "fingerprint")


def make_compressors(name: str = "zstd", level: int = 3) -> list[Any]:
    """zarr v3 codecs for a compressor name (``zstd``, ``blosc-zstd``, ``blosc-lz4``, ``none``)."""
    if name == "none":
        return []
    if name == "zstd":
        return [zarr.codecs.ZstdCodec(level=level)]
    if name in ("blosc-zstd", "blosc-lz4"):
        return [zarr.codecs.BloscCodec(cname=name.split("-")[1], clevel=min(level, 9),
                                       shuffle=zarr.codecs.BloscShuffle.bitshuffle)]
    raise StoreError(f"unknown compressor {name!r}: expected zstd, blosc-zstd, blosc-lz4 or none")


def split_extras(extras: dict[str, xr.DataArray]) -> tuple[dict, dict]:
    """Per-slice (lazy, along z) and whole (in memory) extras."""
    sliced, whole = {}, {}
    for name, value in extras.items():
        if isinstance(value.data, da.Array):
            if not (value.dims[:2] == ("channel", "z") or value.dims[:1] == ("z",)):
                raise StoreError(f"lazy extra output {name!r} has dims {value.dims}; expected "
                                 "(channel, z, ...) or (z, ...)")
            sliced[name] = value
        else:
            whole[name] = value
    return sliced, whole




def xarray_attrs(value: xr.DataArray, coordinates: Sequence[str]) -> tuple[dict, Any]:
    """The array attributes and fill value that xarray's ``to_zarr`` (zarr v3) writes for
    a variable: its attributes (JSON-ready), ``coordinates`` naming the non-index
    coordinates along its dims, and for floating point a NaN ``_FillValue`` (stored as
    the base64 of a little-endian float64, whatever the dtype, as xarray does)."""
    attrs: dict[str, Any] = {}
    for key, val in value.attrs.items():
        if key in RUNTIME_ATTRS:
            continue
        attrs[key] = val.tolist() if isinstance(val, np.ndarray | np.generic) else val
    if coordinates:
        attrs["coordinates"] = " ".join(coordinates)
    dtype = np.dtype(value.dtype)
    if dtype.kind == "f":
        attrs["_FillValue"] = base64.standard_b64encode(
            np.array(np.nan, dtype="<f8").tobytes()).decode("ascii")
        return attrs, np.nan
    return attrs, None


def zarr_dtype(values: np.ndarray) -> Any:
    """The dtype to create an in-memory variable with, as xarray's ``to_zarr`` would
    (object arrays of strings: zarr's variable-length ``string``); None where xarray
    encodes the values first (dates, mixed objects): those go through xarray."""
    if values.dtype.kind in "biufU":
        return values.dtype
    if values.dtype.kind == "T":  # NumPy's StringDType, as xarray reads strings back
        return str
    if values.dtype.kind == "O" and all(isinstance(v, str) for v in values.ravel().tolist()):
        return str
    return None


def non_index_coords(template: xr.Dataset) -> dict[str, tuple[str, ...]]:
    """The coordinates of ``template`` that are not a dimension's index, with their dims."""
    return {name: coord.dims for name, coord in template.coords.items()
            if name not in template.dims}


def coords_along(non_index: dict[str, tuple[str, ...]], dims: Sequence[str]) -> list[str]:
    """The non-index coordinates that a variable of ``dims`` lists (xarray's
    ``coordinates`` attribute): those whose dims are all among its own."""
    return sorted(n for n, coord_dims in non_index.items() if set(coord_dims) <= set(dims))


def create_in_memory(memory: Any, group: str, template: xr.Dataset) -> bool:
    """Create ``group`` in the zarr store ``memory`` with the variables of ``template``
    (all in memory), their values and the metadata xarray's ``to_zarr`` writes for them
    (tests/store/test_store_metadata.py compares the two), with zarr directly; False,
    having written nothing, where one needs xarray's encoding.

    xarray's own write goes through its encoding pipeline, then a zarr call per array
    and per attribute; this is a zarr call or two per array.
    """
    dtypes = {name: zarr_dtype(np.asarray(var.values)) for name, var in template.variables.items()}
    if any(dtype is None for dtype in dtypes.values()):
        return False
    non_index = non_index_coords(template)
    attached: set[str] = set()
    meta: dict[str, tuple[dict, Any]] = {}
    for name, var in template.variables.items():
        names: list[str] = []
        if name in template.data_vars:
            names = coords_along(non_index, var.dims)
            attached.update(names)
        meta[name] = xarray_attrs(xr.DataArray(var), names)
    unattached = sorted(set(non_index) - attached)
    zarr.create_group(memory, path=group, overwrite=True, zarr_format=3,
                      attributes={"coordinates": " ".join(unattached)} if unattached else {})
    for name, var in template.variables.items():
        attrs, fill = meta[name]
        arr = zarr.create_array(memory, name=f"{group}/{name}", shape=var.shape,
                                chunks=var.shape or None, dtype=dtypes[name],
                                fill_value=fill, dimension_names=list(var.dims),
                                attributes=attrs, zarr_format=3, overwrite=True)
        if var.size:
            arr[...] = np.asarray(var.values)
    return True


def staged_store() -> tuple[Any, dict[str, Any]]:
    """An empty in-memory zarr store and the dict of its keys. Groups and arrays are
    built there by zarr itself, then published to the store in one batch: built in
    place, each array costs a dozen round trips to object storage (zarr's checks of
    the parents and of what exists), one after the other."""
    from zarr.storage import MemoryStore

    keys: dict[str, Any] = {}
    return MemoryStore(store_dict=keys), keys


def publish(files: LocalFiles | ObjectFiles, keys: Mapping[str, Any], prefixes: Sequence[str],
            last: Sequence[str] = ()) -> None:
    """Write the keys of a :func:`staged_store` below ``prefixes`` to the store
    (``files``) at once, then those in ``last``."""
    first = {key: value.to_bytes() for key, value in keys.items() if key not in last
             and any(key.startswith(f"{prefix}/") for prefix in prefixes)}
    files.put_all(first)
    files.put_all({key: keys[key].to_bytes() for key in last})


def slice_chunks(value: xr.DataArray) -> tuple[int, ...]:
    """Chunks of a per-slice extra: one (channel, z) slice, or one z, a chunk."""
    lead = 2 if value.dims[:2] == ("channel", "z") else 1
    return (1,) * lead + tuple(value.shape[lead:])


def create_group(path: StoreTarget, group: str, stack: xr.DataArray, attrs: dict[str, Any],
                 extras: dict[str, xr.DataArray], compressors: Sequence[Any],
                 shard_slices: int) -> None:
    """Create ``group`` for ``stack`` and its ``extras``: the lazy arrays empty, with the
    metadata xarray gives them, what is in memory with its values; ``attrs`` last, with
    ``complete = False`` (a group without a fingerprint is recreated, never resumed)."""
    ny, nx = stack.shape[2:]
    sliced, whole = split_extras(extras)
    per_shard = min(shard_slices, stack.shape[1])
    # xarray writes what is in memory (coordinates, whole extras) with its values;
    # the lazy arrays (stack, per-slice extras) are created empty here, with the
    # metadata xarray gives them (tests/store/test_store_metadata.py compares the two):
    # xarray's own metadata-only write (to_zarr(compute=False)) builds a dask graph that
    # imports distributed in every process, for nothing.
    lazy = {"stack": stack, **sliced}
    coords = {name: coord.variable.load() for value in lazy.values()
              for name, coord in value.coords.items()}
    template = xr.Dataset(whole, coords=coords)
    for var in template.variables.values():
        for key in RUNTIME_ATTRS:
            var.attrs.pop(key, None)
    memory, keys = staged_store()
    if not create_in_memory(memory, group, template):
        template.to_zarr(memory, group=group, mode="w", zarr_format=3, consolidated=False)
    non_index = non_index_coords(template)
    attached: set[str] = set()
    for name, value in lazy.items():
        if name == "stack":
            chunks = (1, 1, ny, nx)
            shards = (1, per_shard, ny, nx) if per_shard > 1 else None
            codecs: Any = list(compressors)
        else:
            chunks, shards, codecs = slice_chunks(value), None, "auto"
        names = coords_along(non_index, value.dims)
        attached.update(names)
        meta_attrs, fill = xarray_attrs(value, names)
        zarr.create_array(memory, name=f"{group}/{name}", shape=value.shape, chunks=chunks,
                          shards=shards, dtype=value.dtype, compressors=codecs,
                          fill_value=fill, chunk_key_encoding=CHUNK_KEY_ENCODING,
                          dimension_names=list(value.dims), attributes=meta_attrs,
                          zarr_format=3, overwrite=True)
    # xarray listed at group level the coordinates it found no variable for; those
    # now held by a lazy array are listed there instead
    node = zarr.open_group(memory, path=group, mode="r+", zarr_format=3)
    listed = set(str(node.attrs.get("coordinates", "")).split())
    rest = dict(node.attrs)
    if listed & attached:
        rest.pop("coordinates")
        if listed - attached:
            rest["coordinates"] = " ".join(sorted(listed - attached))
    node.attrs.put({**rest, **attrs, "complete": False})
    files = files_of(path)
    files.remove(group)
    # the parents zarr would have made (``steps``), then the group, its attributes last
    parents = [f"{group.rsplit('/', i)[0]}/zarr.json" for i in range(group.count("/"), 0, -1)]
    files.put_all({key: keys[key].to_bytes() for key in parents if not files.exists(key)})
    publish(files, keys, [group], last=[f"{group}/zarr.json"])


def to_json(value: Any) -> Any:
    """A JSON-compatible copy of parameters (tuples to lists, numpy scalars to Python)."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist")
                                 else str(o)))


def fingerprint(payload: Mapping[str, Any]) -> str:
    """SHA-256 of a JSON-serialisable payload, keys sorted."""
    text = json.dumps(to_json(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
