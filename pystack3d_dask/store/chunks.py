"""Whole-chunk reads and writes of the store's stacks without zarr-python's per-call
machinery, for the codecs this package writes.

zarr-python 3 runs every chunk read or write through its asyncio event loop, most of
it Python holding the GIL, which serialises the threads of a step. For an array whose
codecs are exactly ``bytes`` (little-endian) followed by nothing or by ``zstd`` — what
:class:`~pystack3d_dask.store.checkpoints.Store` creates by default — a chunk file is the raw
little-endian bytes of the chunk, compressed by zstd or not. This module reads and
writes such files directly (numcodecs' Zstd, the same library zarr uses), with the
same write-to-temporary-then-rename that zarr's LocalStore uses, and falls back to
zarr for any other layout. zarr stays the authority on the metadata and the layout;
the tests read back through zarr what is written here.
"""

from __future__ import annotations

import functools
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BytesCodec, ZstdCodec

from .location import StoreRef, StoreTarget, zarr_store

__all__ = ["FastChunks", "array_handle", "fast_chunks", "read_block", "slab_chunks", "slab_size",
           "slice_bytes", "stored_slice"]

#: Bytes of slices that one task reads, corrects and writes together (a *slab*), and
#: the most slices in a slab. On disk every slice stays a chunk of its own; in the dask
#: graph, small slices go a few at a time: a task costs the threaded scheduler and its
#: graph about as long as reading, cropping and writing a small slice (a few hundred
#: pixels square). Slices of SLAB_BYTES or more go one at a time, so a task holds
#: at most a few MiB, or one slice, whatever the depth of the stack.
SLAB_BYTES = 4 << 20
MAX_SLAB = 8


def slice_bytes(shape: Sequence[int], dtype: Any) -> int:
    """Bytes of one slice of an array whose last two dimensions are (y, x)."""
    return int(shape[-2]) * int(shape[-1]) * np.dtype(dtype).itemsize


def slab_size(slice_bytes: int) -> int:
    """Slices per slab for slices of ``slice_bytes`` (1 to :data:`MAX_SLAB`)."""
    return int(min(max(SLAB_BYTES // max(int(slice_bytes), 1), 1), MAX_SLAB))


def slab_chunks(n: int, slice_bytes: int) -> tuple[int, ...]:
    """Chunks along z of ``n`` slices of ``slice_bytes`` each: slabs of
    :func:`slab_size`, the last one shorter."""
    k = slab_size(slice_bytes)
    return tuple(min(k, n - start) for start in range(0, n, k)) or (0,)


@dataclass(frozen=True)
class FastChunks:
    """Direct access to the whole chunks of one zarr v3 array on a local file system."""

    folder: Path
    chunk_shape: tuple[int, ...]
    dtype: np.dtype
    codec: numcodecs.abc.Codec | None
    encode_key: object

    def path(self, index: tuple[int, ...]) -> Path:
        """File of the chunk at chunk-grid ``index``."""
        return self.folder / self.encode_key(index)

    def write(self, index: tuple[int, ...], chunk: np.ndarray) -> None:
        """Write one whole chunk: a temporary file renamed into place, so that a chunk
        file is whole or absent even when the process is killed."""
        data = np.ascontiguousarray(chunk, dtype=self.dtype.newbyteorder("<"))
        if data.shape != self.chunk_shape:
            raise ValueError(f"chunk of shape {data.shape}, expected {self.chunk_shape}")
        payload = self.codec.encode(data) if self.codec is not None else data.tobytes()
        target = self.path(index)
        temporary = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")
        try:
            temporary.write_bytes(payload)
        except FileNotFoundError:  # the first chunk of its folder: create the folder
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(payload)
        temporary.replace(target)

    def read(self, index: tuple[int, ...]) -> np.ndarray:
        """Read one whole chunk (FileNotFoundError when it was never written)."""
        with open(self.path(index), "rb") as fid:
            payload = fid.read()
        raw = self.codec.decode(payload) if self.codec is not None else payload
        out = np.frombuffer(raw, dtype=self.dtype.newbyteorder("<")).reshape(self.chunk_shape)
        return out.astype(self.dtype)  # a writable copy, as zarr returns


@functools.lru_cache(maxsize=64)
def fast_chunks(store: StoreTarget, path: str, token: str = "") -> FastChunks | None:
    """Direct chunk access to an array, or None when its layout is not the simple one
    (other codecs, sharding, big-endian bytes), in which case zarr must be used.

    ``token`` (the content fingerprint) keeps a cached handle from serving a replaced
    array of another shape.
    """
    if isinstance(store, StoreRef):  # object storage: through zarr
        return None
    try:
        array = zarr.open_array(store, path=path, mode="r", zarr_format=3)
    except Exception:
        return None
    meta = array.metadata
    if getattr(meta, "zarr_format", 2) != 3 or sys.byteorder != "little":
        return None
    codecs = tuple(meta.codecs)
    if not codecs or not isinstance(codecs[0], BytesCodec):
        return None
    if codecs[0].endian is not None and codecs[0].endian.value != "little":
        return None
    if len(codecs) == 1:
        codec = None
    elif len(codecs) == 2 and isinstance(codecs[1], ZstdCodec):
        codec = numcodecs.Zstd(level=codecs[1].level, checksum=codecs[1].checksum)
    else:
        return None
    if array.shards is not None:
        return None
    return FastChunks(Path(store) / path, tuple(array.chunks), np.dtype(array.dtype), codec,
                      meta.encode_chunk_key)


@functools.lru_cache(maxsize=64)
def array_handle(store: StoreTarget, path: str, token: str = "") -> zarr.Array:
    """A zarr handle on an array of the store, kept per process, array and content
    fingerprint (``token``): opening reads zarr.json, which would otherwise be done once
    per chunk; the token keeps a worker from reusing the handle of a replaced array of
    another shape."""
    array = zarr.open_array(zarr_store(store), path=path, mode="r+", zarr_format=3)
    return array.with_config({"write_empty_chunks": True})


# a handle on a store on object storage holds its parent's event loop: not for a child
os.register_at_fork(after_in_child=array_handle.cache_clear)


def stored_slice(store: StoreTarget, group: str, c: int, z: int, token: str) -> np.ndarray:
    """Slice (c, z) of a group's stack, read directly (zarr for another layout)."""
    fast = fast_chunks(store, f"{group}/stack", token)
    return fast.read((c, z, 0, 0))[0, 0] if fast is not None else array_handle(
        store, f"{group}/stack", token)[c, z]


def read_block(store: StoreTarget, path: str, token: str, block_info: dict | None = None
               ) -> np.ndarray:
    """The slab of slices of a block (channel c, slices z0 to z1), one chunk each."""
    (c, _), (z0, z1) = block_info[None]["array-location"][:2]
    fast = fast_chunks(store, path, token)
    if fast is None:  # through zarr, which fetches the slab's chunks at once
        return array_handle(store, path, token)[c:c + 1, z0:z1]
    if z1 - z0 == 1:
        return fast.read((c, z0, 0, 0))
    out = np.empty((1, z1 - z0, *fast.chunk_shape[2:]), dtype=fast.dtype)
    for z in range(z0, z1):
        out[0, z - z0] = fast.read((c, z, 0, 0))[0, 0]
    return out
