"""Array inputs, no copy: a local Zarr v3 array already laid out as the store lays out its
``input/stack`` (one slice per chunk, the same codecs) is hard-linked into the store,
chunk file by chunk file, rather than read and written again.

The rule (:func:`linkable_chunks`): the input is a local Zarr v3 array of integers (float
slices are read, to be checked for NaN and infinite values), of axes (z, y, x)
or (c, z, y, x), chunks (1, Y, X) or (1, 1, Y, X), not sharded, whose codecs are
``bytes`` (little-endian) then ``zstd`` where the store compresses with zstd (any level:
a zstd frame decodes whatever level wrote it), or ``bytes`` alone where the store does
not compress, on the store's file system. Slices whose chunk file is absent in the input
(its fill value) or that cannot be linked are written the usual way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .tiff_discovery import SliceSource

__all__ = ["array_attrs", "linkable_chunks"]


def array_attrs(source: SliceSource) -> dict[str, Any]:
    """What the input group records of an array input: its kind, key, axes, where z and
    the pixel size came from."""
    ref = source.array
    return {"kind": ref.kind, "key": ref.key, "axes": ref.axes, "z_index_first": ref.offset,
            "z_source": source.z_source, "pixel_size": source.pixel_size,
            "chunk_depth": ref.depth}


def _same_codecs(codecs: Sequence[Any], compressors: Sequence[Any]) -> bool:
    """Whether chunk files of ``codecs`` are files of a store array of ``compressors``
    byte for byte (what :func:`~pystack3d_dask.store.chunks.fast_chunks` reads)."""
    from zarr.codecs import BytesCodec, ZstdCodec

    if not codecs or not isinstance(codecs[0], BytesCodec) or sys.byteorder != "little":
        return False
    if codecs[0].endian is not None and codecs[0].endian.value != "little":
        return False
    store_zstd = [type(c) for c in compressors] == [ZstdCodec]
    if store_zstd:
        return len(codecs) == 2 and isinstance(codecs[1], ZstdCodec)
    return not compressors and len(codecs) == 1


def linkable_chunks(source: SliceSource, store: Path, compressors: Sequence[Any],
                    shard_slices: int) -> Callable[[int, int], Path | None] | None:
    """``file(c, z)``: the input's chunk file of slice (c, z) of the stack, to hard-link
    into the store; None when the input is not laid out as the store's ``input/stack``
    (see the module's rule)."""
    import zarr

    ref = source.array
    # float slices are read, not linked: the reader refuses NaN and infinite values
    # (io.tiff_headers.check_finite), which a linked chunk would carry in unseen
    if (ref.kind != "zarr" or ref.remote or shard_slices > 1 or ref.axes not in ("zyx", "czyx")
            or source.dtype.kind == "f"):
        return None
    folder = Path(ref.location) / ref.key
    try:
        array = zarr.open_array(str(folder), mode="r")
        same_device = folder.stat().st_dev == Path(store).stat().st_dev
    except Exception:
        return None
    ny, nx = source.shape
    if (array.metadata.zarr_format != 3 or array.shards is not None or not same_device
            or tuple(array.chunks) != (1,) * (len(ref.axes) - 2) + (ny, nx)
            or array.dtype != source.dtype
            or not _same_codecs(tuple(array.metadata.codecs), compressors)):
        return None
    encode, offset = array.metadata.encode_chunk_key, ref.offset

    def chunk_file(c: int, z: int) -> Path:
        index = (z + offset, 0, 0) if ref.axes == "zyx" else (c, z + offset, 0, 0)
        return folder / encode(index)

    return chunk_file
