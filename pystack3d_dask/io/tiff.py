"""TIFF input: find the slices, read their z positions, check them, read them lazily.

Three layouts are accepted, as in PyStack3D: a folder of single-page TIFF files, one
sub-folder of such files per detector channel, or one multi-page TIFF file. Files are
sorted in natural order (``slice_2`` before ``slice_10``), then ``ind_min`` and
``ind_max`` (both inclusive) select positions in that order.

This module reads the slices' pixels, lazily; it re-exports the names of the jobs before
that, each in a module of its own: :mod:`.tiff_names` (natural order, the file-name
policy, z from the names), :mod:`.tiff_headers` (shapes, dtypes and fingerprints from the
headers) and :mod:`.tiff_discovery` (the folders, :func:`discover`, :class:`SliceSource`).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import dask.array as da
import numpy as np
import tifffile
import xarray as xr

from ..errors import InputError
from ..store.chunks import slab_chunks, slice_bytes
from .array_readers import array_blocks
from .tiff_discovery import SliceSource, discover, slice_folders
from .tiff_headers import check_finite, file_fingerprint
from .tiff_names import natural_key, policy_regex

__all__ = [
    "SliceSource",
    "discover",
    "file_fingerprint",
    "lazy_stack",
    "natural_key",
    "policy_regex",
    "read_slice",
    "slice_folders",
]


def read_slice(path: str | Path, page: int, shape: tuple[int, int], dtype: np.dtype,
               offset: int | None = None) -> np.ndarray:
    """Read one slice and check it is what the header promised.

    Parameters
    ----------
    path, page
        The file, and the slice's page in it.
    shape, dtype
        What the header promised.
    offset
        File offset of the page's IFD (:attr:`.SliceSource.offsets`): the page is read
        there, in constant time, rather than found by walking the pages before it.

    Raises
    ------
    InputError
        When the file is truncated or corrupt, or a float slice holds NaN or infinite
        values, naming the file.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            if offset is None or page == 0:
                img = tif.pages[page].asarray()
            else:
                tif.filehandle.seek(offset)
                img = tifffile.TiffPage(tif, index=page).asarray()
    except Exception as exc:
        raise InputError(f"{path}: cannot read slice data ({type(exc).__name__}: {exc}); "
                         "the file may be truncated or corrupt") from None
    if img.shape != tuple(shape) or img.dtype != dtype:
        raise InputError(f"{path}: read {img.shape} {img.dtype}, expected {tuple(shape)} {dtype}")
    # checked here, in the task that reads the slice anyway: the check costs no second read
    check_finite(img, f"{path} (page {page})" if page else str(path))
    return img


def _read_block(source_files: list[list[str]], pages: list[int], offsets: list[int] | None,
                shape: tuple[int, int], dtype: np.dtype, block_info: dict | None = None
                ) -> np.ndarray:
    """The slab of slices z0 to z1 of channel c (a block of the lazy stack).

    Reads through this module's :func:`read_slice`, looked up when the block runs, so
    that a patch of ``pystack3d_dask.io.tiff.read_slice`` (the tests count reads with
    one) reaches every read.
    """
    (c, _), (z0, z1) = block_info[None]["array-location"][:2]
    out = np.empty((1, z1 - z0, *shape), dtype=dtype)
    for k in range(z0, z1):
        out[0, k - z0] = read_slice(source_files[c][k], pages[k], shape, dtype,
                                    None if offsets is None else offsets[k])
    return out


def lazy_stack(source: SliceSource, pixel_size: float | None = None) -> xr.DataArray:
    """The input as a lazy (channel, z, y, x) DataArray, one task per channel and slab of
    a few slices (:func:`~.chunks.slab_chunks`); for an array input whose chunks hold
    several slices, one task per chunk-row (:func:`~.array_readers.z_blocks`).

    Coordinates: ``channel`` names, ``z`` in micrometres, and ``y``/``x`` in
    micrometres when ``pixel_size`` is given, else in pixels of the original frame;
    ``beam_current`` along z when the slices carry a Fibics tag with ``Ext I``.
    """
    ny, nx = source.shape
    if source.array is not None:  # Zarr, N5, HDF5, MRC: blocks that follow its chunks
        data = array_blocks(source.array, len(source.channels), source.nz, source.shape,
                            source.dtype)
    else:
        files = [[str(p) for p in f] for f in source.files]
        reader = functools.partial(_read_block, files, list(source.pages), source.offsets,
                                   source.shape, source.dtype)
        data = da.map_blocks(
            reader,
            chunks=((1,) * len(files),
                    slab_chunks(source.nz, slice_bytes(source.shape, source.dtype)),
                    (ny,), (nx,)),
            dtype=source.dtype, meta=np.empty((0, 0, 0, 0), dtype=source.dtype),
            name=f"read-tiff-{hashlib.sha256(repr(files).encode()).hexdigest()[:16]}",
        )
    unit = "um" if pixel_size else "px"
    step = pixel_size or 1
    coords = {
        "channel": ("channel", np.array(source.channels, dtype=object)),
        "z": ("z", np.asarray(source.z, dtype=float), {"units": "um"}),
        "y": ("y", np.arange(ny) * step, {"units": unit}),
        "x": ("x", np.arange(nx) * step, {"units": unit}),
    }
    if source.beam_current is not None:
        coords["beam_current"] = ("z", source.beam_current,
                                  {"units": source.beam_current_unit or "unknown",
                                   "long_name": "beam current (Fibics Ext I)"})
    return xr.DataArray(data, dims=("channel", "z", "y", "x"), coords=coords, name="stack")
