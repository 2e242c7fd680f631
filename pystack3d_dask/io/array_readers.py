"""Array inputs, reading: the slices of one block of a Zarr, N5, HDF5 or MRC array, in the
task that needs them.

An :class:`ArrayRef` says where the array is and how its axes map to (channel, z, y,
x); it holds only strings and numbers, so it travels in the dask graph and to other
processes. The open file or array is kept per process (and per ``token``, the input's
identity) by :func:`array_reader`: h5py files and tensorstore handles cannot be
pickled, and opening one per block would read the metadata again each time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ..errors import InputError
from ..store.chunks import slab_chunks, slice_bytes
from ..store.location import is_url
from .tiff_headers import check_finite

__all__ = ["EXTRAS", "ArrayRef", "array_blocks", "array_reader", "close_readers", "read_slab",
           "require"]

#: The optional library each format needs, and the extra that installs it.
EXTRAS = {"hdf5": ("h5py", "hdf5"), "mrc": ("mrcfile", "mrc"), "n5": ("tensorstore", "n5")}


def require(kind: str, where: str) -> Any:
    """The library reading ``kind``, imported; a missing one is named with its extra."""
    module, extra = EXTRAS[kind]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"{where}: reading {kind.upper()} input needs {module}, which is not "
                         f"installed; expected it installed: pip install "
                         f"'pystack3d-dask[{extra}]'") from None


@dataclass(frozen=True)
class ArrayRef:
    """Where an array input is and how to read its slices.

    Attributes
    ----------
    kind
        ``"zarr"``, ``"n5"``, ``"hdf5"`` or ``"mrc"``.
    location
        Absolute path of the folder (Zarr, N5) or file (HDF5, MRC), or a URL (Zarr).
    key
        The dataset in an HDF5 file, or the level's array in an OME-Zarr group.
    axes
        One letter per dimension of the array as read (for N5, in C order, the reverse
        of its ``attributes.json``): see :mod:`.array_meta`.
    offset
        Index along z of the stack's first slice (``ind_min``).
    depth
        Slices per input chunk along z: the blocks of the lazy stack follow them.
    storage_options
        JSON of the fsspec options of a URL.
    token
        The input's identity (its manifest's fingerprint): a cached handle is never
        reused for a changed input.
    """

    kind: str
    location: str
    key: str = ""
    axes: str = "zyx"
    offset: int = 0
    depth: int = 1
    storage_options: str = "{}"
    token: str = ""

    @property
    def remote(self) -> bool:
        """Whether the array is read through a URL."""
        return is_url(self.location)

    @property
    def name(self) -> str:
        """The input as the user names it: ``file.h5:/dataset`` for HDF5, else its
        location."""
        return f"{self.location}:{self.key}" if self.kind == "hdf5" else self.location

    def identity(self) -> dict[str, Any]:
        """What identifies the stack read, beside the location and the manifest."""
        return {"kind": self.kind, "key": self.key, "axes": self.axes, "offset": self.offset}


def open_zarr(location: str, key: str, storage_options: dict[str, Any]) -> Any:
    """A zarr array or group, read only; a URL through fsspec with ``storage_options``."""
    import zarr

    if is_url(location):
        url = f"{location.rstrip('/')}/{key}" if key else location
        return zarr.open(url, mode="r", storage_options=storage_options or None)
    return zarr.open(str(Path(location) / key) if key else location, mode="r")


def _open(ref: ArrayRef) -> Any:
    """The array object of ``ref``, indexable with numpy's basic indexing."""
    if ref.kind == "zarr":
        return open_zarr(ref.location, ref.key, json.loads(ref.storage_options))
    if ref.kind == "hdf5":
        return require("hdf5", ref.name).File(ref.location, "r")[ref.key]
    if ref.kind == "mrc":
        return require("mrc", ref.name).mmap(ref.location, mode="r", permissive=True)
    if ref.kind == "n5":
        ts = require("n5", ref.name)
        spec = {"driver": "n5", "kvstore": {"driver": "file", "path": ref.location}}
        # N5 lists the dimensions x first (Fortran order): reversed, the array is in
        # C order, as every other format is read
        return ts.open(spec, read=True).result().T
    raise InputError(f"{ref.location}: unknown array kind {ref.kind!r}")


@functools.lru_cache(maxsize=16)
def array_reader(ref: ArrayRef, pid: int) -> Any:
    """The open array of ``ref``, kept per process (``pid``: a forked worker opens its
    own, as HDF5 requires) and per input identity (``ref.token``)."""
    return _open(ref)


def close_readers() -> None:
    """Let go of the arrays this process holds open (an HDF5 file open for reading
    cannot be opened for writing, even by the same user in the same notebook)."""
    array_reader.cache_clear()


def read_slab(ref: ArrayRef, c: int, z0: int, z1: int) -> np.ndarray:
    """Slices ``z0`` to ``z1`` (stack indices) of channel ``c`` as a (z, y, x) array.

    Raises
    ------
    InputError
        When the array cannot be read (naming it), or float slices hold NaN or
        infinite values.
    """
    index: list[Any] = []
    for letter in ref.axes:
        index.append({"c": c, "t": 0, "z": slice(ref.offset + z0, ref.offset + z1)}.get(
            letter, slice(None)))
    try:
        handle = array_reader(ref, os.getpid())
        data = handle.data[tuple(index)] if ref.kind == "mrc" else handle[tuple(index)]
        if ref.kind == "n5":
            data = data.read().result()
        data = np.asarray(data)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{ref.name}: cannot read slices {z0} to {z1 - 1} "
                         f"({type(exc).__name__}: {exc}); the input may be truncated, "
                         "changed or unreachable") from None
    kept = [letter for letter in ref.axes if letter in "zyx"]
    data = np.transpose(data, [kept.index(letter) for letter in "zyx"])
    data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("="))
    check_finite(data, f"{ref.name} (slices {z0} to {z1 - 1})")
    return data


def _read_block(ref: ArrayRef, block_info: dict | None = None) -> np.ndarray:
    """One block of the lazy stack: channel c, slices z0 to z1."""
    (c, _), (z0, z1) = block_info[None]["array-location"][:2]
    return read_slab(ref, c, z0, z1)[None]


def z_blocks(n: int, offset: int, depth: int, one_slice: int) -> tuple[int, ...]:
    """Blocks along z of ``n`` slices from index ``offset`` of an input chunked by
    ``depth`` slices: one input chunk-row each, so that every chunk is read once (the
    first and last blocks shorter where the selection starts or ends inside a chunk);
    slabs of a few slices when the input has one slice per chunk."""
    if depth <= 1:
        return slab_chunks(n, one_slice)
    first = min(depth - offset % depth, n)
    rest = n - first
    return (first, *([depth] * (rest // depth)), *((rest % depth,) if rest % depth else ()))


def array_blocks(ref: ArrayRef, nc: int, nz: int, shape: tuple[int, int], dtype: np.dtype
                 ) -> da.Array:
    """The input as a lazy (channel, z, y, x) dask array: one task per channel and block
    of :func:`z_blocks`, each opening (once per process) and reading the array itself."""
    chunks = ((1,) * nc, z_blocks(nz, ref.offset, ref.depth, slice_bytes(shape, dtype)),
              (shape[0],), (shape[1],))
    name = hashlib.sha256(repr(ref).encode()).hexdigest()[:16]
    return da.map_blocks(functools.partial(_read_block, ref), chunks=chunks, dtype=dtype,
                         meta=np.empty((0, 0, 0, 0), dtype=dtype),
                         name=f"read-{ref.kind}-{name}")
