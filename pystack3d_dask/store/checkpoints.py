"""The Zarr v3 store: layout, checkpoints, resume.

Layout::

    STORE/                      root attributes: layout version, package version, workflow
      input/                    the ingested stack (an xarray Dataset)
      steps/01_cropping/        one group per checkpointed step, in the workflow's order
      steps/02_.../

Every group is an xarray Dataset: variable ``stack`` with dims (channel, z, y, x) and
chunks (1, 1, Y, X), per-slice statistics ``min``, ``max``, ``mean`` (channel, z), and
attributes: the step's name and parameters, its fingerprint, timings and ``complete``.

A checkpoint is written chunk by chunk. zarr's LocalStore writes each chunk to a
temporary file and renames it into place, so a chunk file is whole or absent even after
a SIGKILL: the chunks present are the ones finished, and a resumed write computes only
the others. Each task returns its slice's statistics (those of slices already on disk
are read back on resume); ``complete`` is set last, after every chunk and the
statistics are on disk.
"""

from __future__ import annotations

import base64
import functools
import inspect
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
import zarr.codecs

from .._version import __version__
from ..errors import StoreError
from ..kernels.stats import cut_indices, slice_cuts, slice_stats
from ..runtime.faults import fault_point
from .chunks import fast_chunks, slab_chunks, slab_size, slice_bytes

__all__ = ["INPUT_GROUP", "LAYOUT_VERSION", "Store", "WriteReport", "make_compressors"]

LAYOUT_VERSION = 1
#: The group of the ingested input slices (steps are under ``steps/``).
INPUT_GROUP = "input"
_ROOT_KEY = "pystack3d_dask"
STAT_NAMES = ("min", "max", "mean")
#: Rows and columns of every slice kept as it is written (see
#: :func:`~pystack3d_dask.kernels.stats.slice_cuts`): (channel, z, cut_row, x) and
#: (channel, z, cut_column, y), their positions in the attributes ``rows`` and ``columns``.
CUT_NAMES = ("cut_rows", "cut_columns")
#: Attributes that open_stack sets on a stack it reads, not array metadata to write.
_RUNTIME_ATTRS = ("group", "fingerprint")
#: Chunk files named ``c.0.12.0.0``, all in the array's folder. zarr's default (``/``)
#: makes two folders per slice (``c/0/12/0/0``): creating them cost 0.6 ms a slice here,
#: more than compressing and writing the slice, and removing them as much again.
CHUNK_KEY_ENCODING = {"name": "default", "separator": "."}


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


@functools.lru_cache(maxsize=64)
def _array(store: str, path: str, token: str = "") -> zarr.Array:
    # One handle per process, array and content fingerprint (``token``): opening reads
    # zarr.json, which would otherwise be done once per chunk; the token keeps a
    # worker from reusing the handle of a replaced array of another shape.
    return zarr.open_array(store, path=path, mode="r+").with_config({"write_empty_chunks": True})


def _derive(img: np.ndarray, c: int, derived: Sequence[Callable[[np.ndarray, int], Any]],
            sources: Sequence[Any] = ()) -> list[np.ndarray]:
    """Statistics and cuts of ``img``, then each derived quantity: of ``img``, or of the
    slice of its source where ``sources`` has one (a (1, 1, y, x) block; None: ``img``)."""
    sources = list(sources) or [None] * len(derived)
    return [slice_stats(img), *slice_cuts(img)] + [np.asarray(f(img if s is None else np.asarray(s)[0, 0], c))
                                 for f, s in zip(derived, sources)]


def _write_extras(extra_blocks: Sequence[Any], extra_specs: Sequence[tuple[str, bool]],
                  store: str, group: str, c: int, z: int, k: int, token: str) -> None:
    """Write slice (c, z)'s per-slice extras, the ``k``-th slice of their slab blocks
    (None: an extra without channel, written with channel 0 only)."""
    for (name, with_channel), extra in zip(extra_specs, extra_blocks):
        if extra is None:
            continue
        value = np.asarray(extra)[0, k] if with_channel else np.asarray(extra)[k]
        index = (c, z) if with_channel else (z,)
        _array(store, f"{group}/{name}", token)[index] = value


def _stored_slice(store: str, group: str, c: int, z: int, token: str) -> np.ndarray:
    fast = fast_chunks(store, f"{group}/stack", token)
    return fast.read((c, z, 0, 0))[0, 0] if fast is not None else _array(
        store, f"{group}/stack", token)[c, z]


def _write_slab(block: np.ndarray | None, extra_blocks: Sequence[Any],
                extra_specs: Sequence[tuple[str, bool]], store: str, group: str, c: int,
                z0: int, n: int, todo: Sequence[int], token: str = "",
                derived: Sequence[Callable[[np.ndarray, int], Any]] = (),
                sources: Sequence[Any] = (), shard: bool = False) -> list[list[np.ndarray]]:
    """Write the slices ``z0 + k`` (``k`` in ``todo``) of a slab of ``n`` slices of
    channel ``c``, each slice's extras before it (so that a slice on disk always has
    what goes with it); return every slice's statistics (min, max, mean) and derived
    quantities (of the source slices given in ``sources``, see :func:`_derive`). Slices
    not in ``todo`` are on disk already: theirs are computed from the files (``block``
    is None when no slice of the slab is to be written).

    With ``shard``, the slab is one whole shard, written in one zarr write (a shard is
    rewritten whole on every update: two tasks writing into one shard would lose
    slices)."""
    todo = set(todo)
    imgs = [np.asarray(block)[0, k] if k in todo else None for k in range(n)]
    for k in sorted(todo):
        _write_extras(extra_blocks, extra_specs, store, group, c, z0 + k, k, token)
    if shard:
        _array(store, f"{group}/stack", token)[c, z0:z0 + n] = np.asarray(block)[0]
    elif todo:
        fast = fast_chunks(store, f"{group}/stack", token)
        for k in sorted(todo):
            if fast is not None:
                fast.write((c, z0 + k, 0, 0), imgs[k][None, None])
            else:
                _array(store, f"{group}/stack", token)[c, z0 + k] = imgs[k]
    out = []
    for k in range(n):
        img = imgs[k] if imgs[k] is not None else _stored_slice(store, group, c, z0 + k, token)
        out.append(_derive(img, c, derived, [None if s is None else np.asarray(s)[:, k:k + 1]
                                             for s in sources]))
    return out


def _read_block(store: str, path: str, token: str, block_info: dict | None = None) -> np.ndarray:
    """The slab of slices of a block (channel c, slices z0 to z1), one chunk file each."""
    (c, _), (z0, z1) = block_info[None]["array-location"][:2]
    fast = fast_chunks(store, path, token)
    if z1 - z0 == 1:
        return fast.read((c, z0, 0, 0))
    out = np.empty((1, z1 - z0, *fast.chunk_shape[2:]), dtype=fast.dtype)
    for z in range(z0, z1):
        out[0, z - z0] = fast.read((c, z, 0, 0))[0, 0]
    return out


def _slabbed(stack: xr.DataArray, per_shard: int) -> da.Array:
    """The stack's dask array in the blocks its write goes by: one channel, whole slices,
    and along z the slabs it comes in (split where longer than
    :func:`~.chunks.slab_size`) or, in a sharded array, exactly the shards."""
    nc, nz, ny, nx = stack.shape
    one = slice_bytes(stack.shape, stack.dtype)
    data = stack.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=(1, slab_chunks(nz, one), ny, nx))
    if per_shard > 1:
        zs = tuple(min(per_shard, nz - s) for s in range(0, nz, per_shard))
    elif max(data.chunks[1], default=1) > slab_size(one):
        zs = slab_chunks(nz, one)
    else:
        zs = data.chunks[1]
    wanted = ((1,) * nc, zs, (ny,), (nx,))
    return data if data.chunks == wanted else data.rechunk(wanted)


def _along_z(value: xr.DataArray, zchunks: tuple[int, ...]) -> da.Array:
    """A per-slice extra in the z blocks of its stack's write (one channel a block)."""
    data = value.data
    if value.dims[:2] == ("channel", "z"):
        wanted = ((1,) * data.shape[0], zchunks, *((n,) for n in data.shape[2:]))
    else:
        wanted = (zchunks, *((n,) for n in data.shape[1:]))
    return data if data.chunks == wanted else data.rechunk(wanted)


def _call_compute(compute: Callable[..., Sequence[Any]] | None, tasks: list[Any],
                  weights: list[int]) -> Sequence[Any]:
    """``compute(tasks)``, with the slices of each task as ``weights`` for a compute that
    takes them (the executor's, for its progress bar)."""
    if compute is None:
        return dask.compute(*tasks)
    try:
        takes_weights = "weights" in inspect.signature(compute).parameters
    except (TypeError, ValueError):  # no signature (some builtins)
        takes_weights = False
    return compute(tasks, weights=weights) if takes_weights else compute(tasks)


def _split_extras(extras: dict[str, xr.DataArray]) -> tuple[dict, dict]:
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


def _xarray_attrs(value: xr.DataArray, coordinates: Sequence[str]) -> tuple[dict, Any]:
    """The array attributes and fill value that xarray's ``to_zarr`` (zarr v3) writes for
    a variable: its attributes (JSON-ready), ``coordinates`` naming the non-index
    coordinates along its dims, and for floating point a NaN ``_FillValue`` (stored as
    the base64 of a little-endian float64, whatever the dtype, as xarray does)."""
    attrs: dict[str, Any] = {}
    for key, val in value.attrs.items():
        if key in _RUNTIME_ATTRS:
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


def _zarr_dtype(values: np.ndarray) -> Any:
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


def _non_index_coords(template: xr.Dataset) -> dict[str, tuple[str, ...]]:
    """The coordinates of ``template`` that are not a dimension's index, with their dims."""
    return {name: coord.dims for name, coord in template.coords.items()
            if name not in template.dims}


def _coords_along(non_index: dict[str, tuple[str, ...]], dims: Sequence[str]) -> list[str]:
    """The non-index coordinates that a variable of ``dims`` lists (xarray's
    ``coordinates`` attribute): those whose dims are all among its own."""
    return sorted(n for n, coord_dims in non_index.items() if set(coord_dims) <= set(dims))


def _create_in_memory(path: str, group: str, template: xr.Dataset) -> bool:
    """Create ``group`` with the variables of ``template`` (all in memory), their values
    and the metadata xarray's ``to_zarr`` writes for them (tests/store/test_store_metadata.py
    compares the two), with zarr directly; False, having written nothing, where one
    needs xarray's encoding.

    xarray took 40-60 ms a group for the coordinates and small outputs of a step (its
    encoding pipeline, then a zarr call per array and per attribute); this is a zarr
    call or two per array.
    """
    dtypes = {name: _zarr_dtype(np.asarray(var.values)) for name, var in template.variables.items()}
    if any(dtype is None for dtype in dtypes.values()):
        return False
    non_index = _non_index_coords(template)
    attached: set[str] = set()
    meta: dict[str, tuple[dict, Any]] = {}
    for name, var in template.variables.items():
        names: list[str] = []
        if name in template.data_vars:
            names = _coords_along(non_index, var.dims)
            attached.update(names)
        meta[name] = _xarray_attrs(xr.DataArray(var), names)
    unattached = sorted(set(non_index) - attached)
    zarr.create_group(path, path=group, overwrite=True, zarr_format=3,
                      attributes={"coordinates": " ".join(unattached)} if unattached else {})
    for name, var in template.variables.items():
        attrs, fill = meta[name]
        arr = zarr.create_array(path, name=f"{group}/{name}", shape=var.shape,
                                chunks=var.shape or None, dtype=dtypes[name],
                                fill_value=fill, dimension_names=list(var.dims),
                                attributes=attrs, zarr_format=3, overwrite=True)
        if var.size:
            arr[...] = np.asarray(var.values)
    return True


def _slice_chunks(value: xr.DataArray) -> tuple[int, ...]:
    lead = 2 if value.dims[:2] == ("channel", "z") else 1
    return (1,) * lead + tuple(value.shape[lead:])


@dataclass
class WriteReport:
    """What a checkpoint write did."""

    group: str
    status: str  # "reused", "computed" or "resumed"
    chunks_total: int
    chunks_computed: int
    seconds: float


class Store:
    """A pystack3d-dask Zarr v3 store on a local (or shared) file system.

    Parameters
    ----------
    path
        Folder of the store; created when absent.
    compressors
        Codecs for new arrays (see :func:`make_compressors`).
    create
        Create the store when absent (else an error).
    shard_slices
        Slices per Zarr v3 shard of new stacks (1: no sharding, one file per slice).
        A shard is written whole by one task.
    """

    def __init__(self, path: str | Path, compressors: Sequence[Any] | None = None,
                 create: bool = True, shard_slices: int = 1) -> None:
        self.path = Path(path).resolve()
        self.compressors = list(make_compressors() if compressors is None else compressors)
        if not isinstance(shard_slices, int) or shard_slices < 1:
            raise StoreError(f"shard_slices = {shard_slices!r}: expected an integer >= 1")
        self.shard_slices = shard_slices
        self._check_or_create(create)

    # -- layout -------------------------------------------------------------------------
    def _check_or_create(self, create: bool) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise StoreError(f"store path {path} is a file; expected a folder (a Zarr store)")
        if path.is_dir() and (path / "zarr.json").exists():
            try:
                attrs = dict(zarr.open_group(str(path), mode="r").attrs)
            except Exception as exc:
                raise StoreError(f"{path}: not a readable Zarr v3 store ({exc})") from None
            info = attrs.get(_ROOT_KEY)
            if info is None:
                raise StoreError(f"{path} is a Zarr store not made by pystack3d-dask; "
                                 "refusing to write into it")
            if info.get("layout_version", 0) > LAYOUT_VERSION:
                raise StoreError(f"{path} has layout version {info['layout_version']}, newer "
                                 f"than this package's ({LAYOUT_VERSION}); upgrade pystack3d-dask")
            return
        if path.is_dir() and any(path.iterdir()):
            raise StoreError(f"store path {path} is a non-empty folder that is not a Zarr "
                             "store; choose another path")
        if not create:
            raise StoreError(f"no store at {path}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            root = zarr.open_group(str(path), mode="w", zarr_format=3)
        except OSError as exc:
            raise StoreError(f"cannot create the store {path}: {exc.strerror or exc}; expected "
                             "a location this user can write to: choose another [store] path "
                             "(or --store)") from None
        root.attrs[_ROOT_KEY] = {"layout_version": LAYOUT_VERSION, "created_by": __version__}

    @property
    def info(self) -> dict[str, Any]:
        """This package's root attributes of the store."""
        return dict(zarr.open_group(str(self.path), mode="r").attrs.get(_ROOT_KEY, {}))

    def update_info(self, **values: Any) -> None:
        """Update this package's root attributes."""
        root = zarr.open_group(str(self.path), mode="r+")
        info = dict(root.attrs.get(_ROOT_KEY, {}))
        info.update(values)
        root.attrs[_ROOT_KEY] = info

    def group_dir(self, group: str) -> Path:
        """Folder of a group."""
        return self.path / group

    def has_group(self, group: str) -> bool:
        """Whether the group exists (complete or not)."""
        return (self.group_dir(group) / "zarr.json").exists()

    def attrs(self, group: str) -> dict[str, Any] | None:
        """A group's attributes, or None when it does not exist."""
        if not self.has_group(group):
            return None
        try:
            return dict(zarr.open_group(str(self.path), path=group, mode="r").attrs)
        except Exception:
            return None

    def update_attrs(self, group: str, **values: Any) -> None:
        """Update a group's attributes."""
        # one write of zarr.json: ``attrs.update`` writes it once per key (eleven times
        # when a group is created)
        zarr.open_group(str(self.path), path=group, mode="r+").update_attributes(values)

    def is_complete(self, group: str, fingerprint: str | None = None) -> bool:
        """Whether the group is complete (with this fingerprint, when given)."""
        attrs = self.attrs(group)
        if not attrs or not attrs.get("complete"):
            return False
        return fingerprint is None or attrs.get("fingerprint") == fingerprint

    def is_removed(self, group: str, fingerprint: str | None = None) -> bool:
        """Whether the group was complete (with this fingerprint, when given) and its
        slices were removed by the retention policy: its small outputs remain."""
        attrs = self.attrs(group)
        if not attrs or not attrs.get("removed"):
            return False
        return fingerprint is None or attrs.get("fingerprint") == fingerprint

    def group_bytes(self, group: str, name: str | None = None, only_here: bool = False) -> int:
        """Bytes on disk of a group (or of one of its arrays), each file counted once
        even when hard-linked twice below it; ``only_here``: only the files no other
        group links (what deleting them frees)."""
        folder = self.group_dir(group) / (name or "")
        if not folder.is_dir():
            return 0
        seen: dict[int, int] = {}
        for path in folder.rglob("*"):
            if path.is_file():
                stat = path.stat()
                if not only_here or stat.st_nlink == 1:
                    seen[stat.st_ino] = stat.st_size
        return sum(seen.values())

    def remove_slices(self, group: str, reason: str) -> int:
        """Remove a complete group's slices (its ``stack`` array), keep everything else
        (statistics, extras, parameters, fingerprint) and record it; returns the bytes
        freed. The group is no longer complete: a run that needs its slices computes them
        again from the nearest group that has them.

        ``complete`` is cleared before anything is deleted, so that a crash in between
        leaves a group that is recomputed, never one marked complete without slices.
        """
        if not self.is_complete(group):
            raise StoreError(f"{self.path}: group {group!r} is not complete; only complete "
                             "checkpoints lose their slices")
        freed = self.group_bytes(group, "stack", only_here=True)
        self.update_attrs(group, complete=False, removed=True, removed_at=time.time(),
                          removed_bytes=freed, removed_reason=reason)
        shutil.rmtree(self.group_dir(group) / "stack", ignore_errors=True)
        _array.cache_clear()
        fast_chunks.cache_clear()
        return freed

    def step_groups(self) -> list[str]:
        """Groups under ``steps/``, in order."""
        steps = self.path / "steps"
        if not steps.is_dir():
            return []
        return sorted(f"steps/{p.name}" for p in steps.iterdir()
                      if (p / "zarr.json").exists())

    def delete_group(self, group: str) -> None:
        """Remove a group and everything in it."""
        folder = self.group_dir(group)
        if folder.exists():
            shutil.rmtree(folder)
        _array.cache_clear()
        fast_chunks.cache_clear()

    def clear(self) -> None:
        """Remove every group (input and steps), keeping the store itself."""
        for name in ("input", "steps"):
            self.delete_group(name)
        self.update_info(workflow=[])

    # -- reading ------------------------------------------------------------------------
    def open_dataset(self, group: str, chunks: Any = "auto") -> xr.Dataset:
        """A group as a lazy xarray Dataset: dask arrays, or with ``chunks=None``
        xarray's lazily indexed arrays (a selection reads its chunks directly, without a
        graph: for reading a few small pieces)."""
        if not self.has_group(group):
            raise StoreError(f"{self.path}: no group {group!r}")
        kwargs = {} if chunks == "auto" else {"chunks": chunks}
        return xr.open_zarr(str(self.path), group=group, consolidated=False, zarr_format=3,
                            **kwargs)

    def load_extras(self, group: str, names: Sequence[str]) -> dict[str, xr.DataArray] | None:
        """In-memory copies of a group's extra arrays, or None when one is missing."""
        if not all((self.group_dir(group) / name / "zarr.json").exists() for name in names):
            return None
        ds = self.open_dataset(group)
        return {name: ds[name].load() for name in names}

    def open_stack(self, group: str, ds: xr.Dataset | None = None) -> xr.DataArray:
        """A group's stack as a lazy DataArray (channel, z, y, x) in slabs of a few
        slices (one file per slice, see :func:`~.chunks.slab_chunks`; ``ds``: the
        group's Dataset, when the caller has already opened it)."""
        ds = self.open_dataset(group) if ds is None else ds
        stack = ds["stack"]
        token = ds.attrs.get("fingerprint") or ""
        fast = fast_chunks(str(self.path), f"{group}/stack", token)
        if fast is not None and fast.chunk_shape == (1, 1, *stack.shape[2:]):
            reader = functools.partial(_read_block, str(self.path), f"{group}/stack", token)
            zs = slab_chunks(stack.shape[1], slice_bytes(stack.shape, stack.dtype))
            data = da.map_blocks(reader, chunks=((1,) * stack.shape[0], zs,
                                                 (stack.shape[2],), (stack.shape[3],)),
                                 dtype=stack.dtype, meta=np.empty((0,) * 4, stack.dtype),
                                 name=f"read-{group.replace('/', '-')}-{token[:16]}")
            stack = stack.copy(data=data)
        stack.attrs.update({"group": group, "fingerprint": ds.attrs.get("fingerprint"),
                            "store": str(self.path)})
        return stack

    def slice_count(self, group: str) -> int:
        """Slices of a group's stack, all channels, from the metadata of its statistics
        (kept when the slices are removed)."""
        shape = zarr.open_array(str(self.path), path=f"{group}/{STAT_NAMES[0]}", mode="r").shape
        return int(shape[0] * shape[1])

    def read_slice(self, group: str, c: int, z: int) -> np.ndarray:
        """One stored slice (channel ``c``, index ``z``), read at once without a graph."""
        token = (self.attrs(group) or {}).get("fingerprint") or ""
        return _stored_slice(str(self.path), group, c, z, token)

    # -- writing ------------------------------------------------------------------------
    def _chunk_file(self, group: str, c: int, z: int) -> Path:
        """File of slice (c, z): its chunk, or the shard holding it (written whole)."""
        arr = _array(str(self.path), f"{group}/stack")
        per_shard = arr.shards[1] if arr.shards is not None else 1
        key = arr.metadata.encode_chunk_key((c, z // per_shard, 0, 0))
        return self.group_dir(group) / "stack" / key

    def _shard_slices(self, group: str, fingerprint: str) -> int:
        """Slices per shard of a group's stack (0: not sharded)."""
        shards = _array(str(self.path), f"{group}/stack", fingerprint).shards
        return int(shards[1]) if shards is not None else 0

    def missing_chunks(self, group: str, shape: tuple[int, ...]) -> list[tuple[int, int]]:
        """The (channel, z) slices of a group not yet on disk."""
        folder = self.group_dir(group) / "stack"
        try:  # one listing, not a stat per slice (chunk files of "/" stores are nested)
            present = {entry.name for entry in os.scandir(folder) if entry.is_file()}
        except FileNotFoundError:
            present = set()
        out = []
        for c in range(shape[0]):
            for z in range(shape[1]):
                path = self._chunk_file(group, c, z)
                if not (path.name in present if path.parent == folder else path.exists()):
                    out.append((c, z))
        return out

    def _matches(self, group: str, stack: xr.DataArray, fingerprint: str,
                 extras: dict[str, xr.DataArray]) -> bool:
        attrs = self.attrs(group)
        if not attrs or attrs.get("fingerprint") != fingerprint:
            return False
        if not all((self.group_dir(group) / name / "zarr.json").exists() for name in extras):
            return False
        try:
            arr = zarr.open_array(str(self.path), path=f"{group}/stack", mode="r")
        except Exception:
            return False
        return arr.shape == stack.shape and arr.dtype == stack.dtype

    def _create(self, group: str, stack: xr.DataArray, attrs: dict[str, Any],
                extras: dict[str, xr.DataArray]) -> None:
        ny, nx = stack.shape[2:]
        sliced, whole = _split_extras(extras)
        per_shard = min(self.shard_slices, stack.shape[1])
        # xarray writes what is in memory (coordinates, whole extras) with its values;
        # the lazy arrays (stack, per-slice extras) are created empty here, with the
        # metadata xarray gives them (tests/store/test_store_metadata.py compares the two). xarray's
        # own metadata-only write (to_zarr(compute=False)) builds a dask graph that
        # imports distributed: 0.2 s and 13 MiB per process, for nothing.
        lazy = {"stack": stack, **sliced}
        coords = {name: coord.variable.load() for value in lazy.values()
                  for name, coord in value.coords.items()}
        template = xr.Dataset(whole, coords=coords)
        for var in template.variables.values():
            for key in _RUNTIME_ATTRS:
                var.attrs.pop(key, None)
        if not _create_in_memory(str(self.path), group, template):
            template.to_zarr(str(self.path), group=group, mode="w", zarr_format=3,
                             consolidated=False)
        non_index = _non_index_coords(template)
        attached: set[str] = set()
        for name, value in lazy.items():
            if name == "stack":
                chunks = (1, 1, ny, nx)
                shards = (1, per_shard, ny, nx) if per_shard > 1 else None
                compressors: Any = self.compressors
            else:
                chunks, shards, compressors = _slice_chunks(value), None, "auto"
            names = _coords_along(non_index, value.dims)
            attached.update(names)
            meta_attrs, fill = _xarray_attrs(value, names)
            zarr.create_array(str(self.path), name=f"{group}/{name}", shape=value.shape,
                              chunks=chunks, shards=shards, dtype=value.dtype,
                              compressors=compressors, fill_value=fill,
                              chunk_key_encoding=CHUNK_KEY_ENCODING,
                              dimension_names=list(value.dims), attributes=meta_attrs,
                              zarr_format=3, overwrite=True)
        # xarray listed at group level the coordinates it found no variable for; those
        # now held by a lazy array are listed there instead
        node = zarr.open_group(str(self.path), path=group, mode="r+")
        listed = set(str(node.attrs.get("coordinates", "")).split())
        if listed & attached:
            rest = dict(node.attrs)
            rest.pop("coordinates")
            if listed - attached:
                rest["coordinates"] = " ".join(sorted(listed - attached))
            node.attrs.put(rest)
        # attributes last: a group without a fingerprint is recreated, never resumed
        self.update_attrs(group, **attrs, complete=False)

    def write(self, group: str, stack: xr.DataArray, fingerprint: str,
              attrs: dict[str, Any] | None = None,
              compute: Callable[[list[Any]], Sequence[Any]] | None = None,
              extras: dict[str, xr.DataArray] | None = None,
              derived: dict[str, Any] | None = None, link_from: str | None = None,
              started: float | None = None) -> WriteReport:
        """Write a lazy stack as a checkpoint, resuming a partial write of the same
        fingerprint, and mark it complete.

        Parameters
        ----------
        group
            Group path, e.g. ``steps/01_cropping``.
        stack
            Lazy (channel, z, y, x) DataArray backed by dask (any chunks; it is written
            one slab of slices a task, see :func:`~.chunks.slab_chunks`, one slice a
            file).
        fingerprint
            Identity of the content; a group with another fingerprint is replaced.
        attrs
            Attributes stored with the group (parameters, provenance).
        compute
            ``compute(delayed_list) -> results``: runs the tasks on the chosen
            scheduler; one that takes a ``weights`` keyword also gets the slices of
            each task (for a progress bar). Default: ``dask.compute``.
        extras
            Arrays stored beside the stack: lazy ones along z (dims ``(channel, z, ...)``
            or ``(z, ...)``) are written slice by slice with the stack; in-memory ones
            are written whole when the group is created.
        derived
            ``name -> Derived``: per-slice quantities computed from each output slice
            by the task that writes it, stored as (channel, z, *dims) at the end.
        link_from
            A complete group whose slices are ``stack`` unchanged (a step that only
            computes small outputs): its chunk files are hard-linked into this group, no
            byte copied, when both have the same layout and file system; otherwise (or
            for what could not be linked) the slices are written as usual.

        started
            ``time.perf_counter()`` when the step began (its preparation included): the
            ``seconds`` recorded count from then. Default: when this call began.

        Returns
        -------
        WriteReport
        """
        if stack.dims != ("channel", "z", "y", "x"):
            raise StoreError(f"stack dims {stack.dims}: expected (channel, z, y, x)")
        start = time.perf_counter()
        if self.is_complete(group, fingerprint):
            return WriteReport(group, "reused", int(np.prod(stack.shape[:2])), 0, 0.0)

        extras = dict(extras or {})
        resumed = self._matches(group, stack, fingerprint, extras)
        if resumed:
            # a killed writer can leave the temporary files of the chunks it was writing
            for stray in self.group_dir(group).rglob("*.partial"):
                stray.unlink(missing_ok=True)
        else:
            self.delete_group(group)
            self._create(group, stack, {"fingerprint": fingerprint, **(attrs or {}),
                                        "started": time.time(), "extras": sorted(extras)},
                         extras)
        per_shard = self._shard_slices(group, fingerprint)
        data = _slabbed(stack, per_shard)
        missing = self.missing_chunks(group, stack.shape)
        if link_from is not None and missing and not _split_extras(extras)[0] and not derived:
            self._link_chunks(link_from, group, missing)
            missing = self.missing_chunks(group, stack.shape)
        # unoptimised, so that the stack and its extras share their task keys: each
        # slab is computed once, and dask.compute optimises the whole graph
        blocks = data.to_delayed(optimize_graph=False)
        zchunks = data.chunks[1]
        sliced, _ = _split_extras(extras)
        specs = [(name, value.dims[0] == "channel") for name, value in sliced.items()]
        extra_blocks = [_along_z(value, zchunks).to_delayed(optimize_graph=False)
                        for value in sliced.values()]

        def pick(c: int, j: int) -> list[Any]:
            out = []
            for (_, with_channel), delayed_blocks in zip(specs, extra_blocks):
                if with_channel:
                    out.append(delayed_blocks[(c, j) + (0,) * (delayed_blocks.ndim - 2)])
                else:
                    out.append(delayed_blocks[(j,) + (0,) * (delayed_blocks.ndim - 1)]
                               if c == 0 else None)
            return out

        derived = dict(derived or {})
        funcs = [d.func for d in derived.values()]
        # a source's slab is a key of the graph (the step's input, read once for the
        # step and for the quantity), handed to the task that writes the output slab
        source_blocks = [None if d.source is None else
                         d.source.rechunk({0: 1, 1: zchunks, 2: -1, 3: -1}).to_delayed(
                             optimize_graph=False) for d in derived.values()]
        sharded = per_shard > 0
        write = dask.delayed(_write_slab, pure=False)
        todo = set(missing)
        tasks, weights = [], []
        bounds = np.concatenate([[0], np.cumsum(zchunks)]).astype(int)
        for c in range(stack.shape[0]):
            for j in range(len(zchunks)):
                z0, z1 = int(bounds[j]), int(bounds[j + 1])
                ks = [z - z0 for z in range(z0, z1) if (c, z) in todo]
                block = blocks[c, j, 0, 0] if ks else None  # nothing computed for a done slab
                sources = [None if b is None else b[c, j, 0, 0] for b in source_blocks]
                tasks.append(write(block, pick(c, j) if ks else [], specs, str(self.path),
                                   group, c, z0, z1 - z0, ks, fingerprint, funcs, sources,
                                   sharded and bool(ks)))
                weights.append(z1 - z0)
        # one result per slice, in (channel, z) order: the order the tasks were made in
        results = [values for block in _call_compute(compute, tasks, weights)
                   for values in block]
        slices = list(np.ndindex(*stack.shape[:2]))
        still = self.missing_chunks(group, stack.shape)
        if still:
            raise StoreError(f"{group}: {len(still)} slices were not written (first: channel "
                             f"{still[0][0]}, z index {still[0][1]})")
        fault_point("chunks-written", group)
        per_slice = {}
        for (c, z), values in zip(slices, results):
            for name, value in zip(["_stats", *CUT_NAMES, *derived], values):
                if name not in per_slice:
                    per_slice[name] = np.empty((*stack.shape[:2], *np.shape(value)),
                                               dtype=np.asarray(value).dtype)
                per_slice[name][c, z] = value
        self._finish(group, per_slice, {n: d.dims for n, d in derived.items()},
                     {n: d.attrs for n, d in derived.items()})
        fault_point("mark-complete", group)
        seconds = time.perf_counter() - (start if started is None else started)
        self.update_attrs(group, complete=True, finished=time.time(), seconds=seconds,
                          chunks_computed=len(missing))
        status = "resumed" if resumed and len(missing) < int(np.prod(stack.shape[:2])) else "computed"
        return WriteReport(group, status, int(np.prod(stack.shape[:2])), len(missing), seconds)

    def _link_chunks(self, source: str, group: str, missing: list[tuple[int, int]]) -> int:
        """Hard-link the chunk files of ``source`` into ``group`` for the ``missing``
        slices; returns how many were linked. Nothing is linked unless both arrays have
        the same shape, dtype, chunks, shards and codecs (so that the files are valid
        here byte for byte), and linking stops at the first file system that refuses.

        A link is created whole or not at all, so a kill leaves a resumable group;
        removing the source's slices later leaves these files in place.
        """
        if not self.is_complete(source):
            return 0
        try:
            src = zarr.open_array(str(self.path), path=f"{source}/stack", mode="r")
            dst = zarr.open_array(str(self.path), path=f"{group}/stack", mode="r")
        except Exception:
            return 0
        same = (src.shape == dst.shape and src.dtype == dst.dtype and src.chunks == dst.chunks
                and src.shards == dst.shards
                and src.metadata.codecs == dst.metadata.codecs
                and src.metadata.fill_value == dst.metadata.fill_value)
        if not same:
            return 0
        linked = 0
        for c, z in missing:
            if dst.shards is not None and z % dst.shards[1]:
                continue  # one link per shard file
            target = self._chunk_file(group, c, z)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(self._chunk_file(source, c, z), target)
            except FileExistsError:
                continue
            except OSError:  # no hard links here (another file system, FAT, some NFS)
                break
            linked += 1
        return linked

    def _finish(self, group: str, per_slice: dict[str, np.ndarray],
                dims: dict[str, tuple[str, ...]],
                attrs: dict[str, dict[str, Any]] | None = None) -> None:
        """Write the per-slice statistics (``min``, ``max``, ``mean``), cuts
        (:data:`CUT_NAMES`) and derived quantities as data variables of dims (channel,
        z, ...), with their ``attrs``."""
        stats = per_slice.pop("_stats")
        arrays = {name: (stats[..., i], ()) for i, name in enumerate(STAT_NAMES)}
        ny, nx = per_slice[CUT_NAMES[1]].shape[-1], per_slice[CUT_NAMES[0]].shape[-1]
        rows, columns = cut_indices(ny, nx)
        arrays.update({CUT_NAMES[0]: (per_slice.pop(CUT_NAMES[0]), ("cut_row", "x")),
                       CUT_NAMES[1]: (per_slice.pop(CUT_NAMES[1]), ("cut_column", "y"))})
        attrs = {**(attrs or {}), CUT_NAMES[0]: {"rows": list(rows)},
                 CUT_NAMES[1]: {"columns": list(columns)}}
        arrays.update({name: (values, dims[name]) for name, values in per_slice.items()})
        # zarr directly rather than xarray: xarray's append would replace the group's
        # attributes (the fingerprint among them)
        for name, (values, extra_dims) in arrays.items():
            zarr.create_array(str(self.path), name=f"{group}/{name}", data=values,
                              dimension_names=("channel", "z", *extra_dims),
                              attributes=to_json((attrs or {}).get(name) or {}),
                              overwrite=True)


def to_json(value: Any) -> Any:
    """A JSON-compatible copy of parameters (tuples to lists, numpy scalars to Python)."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist")
                                 else str(o)))
