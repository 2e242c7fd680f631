"""TIFF input, headers: every slice's shape and dtype checked from its header alone, the
manifest of fingerprints that identifies the input, and the Fibics beam current.

Nothing here reads pixel data: a header costs a few kilobytes of a file, so thousands of
slices are checked before any task runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import tifffile

from ..errors import InputError
from .zeiss import FIBICS_TAG, beam_current

__all__ = [
    "SUPPORTED_DTYPES",
    "StackHeaders",
    "check_dtype",
    "check_finite",
    "check_headers",
    "file_fingerprint",
    "read_header",
]

SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float32)
_HASH_SPAN = 64 * 1024


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Size, modification time and a hash of the first and last 64 KiB of a file.

    Cheap enough for thousands of slices, and it changes when a file is replaced.
    """
    stat = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as fid:
        digest.update(fid.read(_HASH_SPAN))
        if stat.st_size > _HASH_SPAN:
            fid.seek(max(stat.st_size - _HASH_SPAN, _HASH_SPAN))
            digest.update(fid.read(_HASH_SPAN))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_ends": digest.hexdigest()}


def read_header(path: Path, tags: dict[str, Any] | None = None,
                offsets: list[int] | None = None) -> tuple[int, tuple[int, ...], np.dtype]:
    """Number of pages, shape and dtype of a TIFF file, from its header only; with
    ``tags``, the Fibics XML (tag 51023) of its first page is put in ``tags["fibics"]``
    (None when absent), read in the same pass.

    With ``offsets``, the file offset of every page's IFD is appended to it, in page
    order: each slice of a multi-page file is then read by seeking to its page
    (:func:`.tiff.read_slice`), where finding page ``k`` from the file's start walks the
    ``k`` pages before it, which made ingest quadratic in the pages.

    Raises
    ------
    InputError
        When the file is not a readable TIFF file, naming it.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            npages = len(tif.pages)
            page = tif.pages[0]
            if tags is not None:
                tag = page.tags.get(FIBICS_TAG)
                tags["fibics"] = None if tag is None else tag.value
            if offsets is not None:
                tif.pages.useframes = True  # the offsets without parsing every page's tags
                offsets.extend(int(p.offset) for p in tif.pages)
            return npages, tuple(page.shape), np.dtype(series.dtype)
    except Exception as exc:  # tifffile raises many types for damaged files
        raise InputError(f"{path}: not a readable TIFF file ({type(exc).__name__}: {exc}); "
                         "expected every .tif/.tiff file of the input to be a TIFF image: "
                         "replace or remove it") from None


def check_dtype(path: Path, dtype: np.dtype) -> None:
    """Refuse a dtype other than uint8, uint16 and float32, naming the file."""
    if dtype not in [np.dtype(d) for d in SUPPORTED_DTYPES]:
        raise InputError(f"{path}: dtype {dtype} is not supported; expected uint8, uint16 or "
                         "float32")


def check_finite(img: np.ndarray, where: str) -> None:
    """Refuse float pixels that are NaN or infinite, naming where they were read
    (``where``: the file, the page or the slices), with how many of each."""
    if img.dtype.kind != "f":
        return
    # a float64 sum is finite exactly when every pixel is (it cannot overflow from
    # float32 values), and needs no temporary mask on the common path
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, which is the answer sought
        if np.isfinite(img.sum(dtype=np.float64)):
            return
    n_nan = int(np.count_nonzero(np.isnan(img)))
    n_inf = int(np.count_nonzero(np.isinf(img)))
    raise InputError(f"{where}: {n_nan} NaN and {n_inf} infinite pixel values; expected "
                     "finite values in float slices (replace them, e.g. with "
                     "numpy.nan_to_num, before running)")


class StackHeaders(NamedTuple):
    """What the headers of an input's slices say about the stack.

    Attributes
    ----------
    shape, dtype
        Shape (y, x) and dtype of every slice.
    manifest
        One entry per file (``path`` relative to the input's root, then
        :func:`file_fingerprint`'s keys), channel by channel.
    beam_current, beam_current_unit
        The first channel's beam current per slice (NaN where a slice has none) and its
        unit, when some slice carries a Fibics tag with one; else None and ``""``.
    """

    shape: tuple[int, int]
    dtype: np.dtype
    manifest: list[dict[str, Any]]
    beam_current: np.ndarray | None
    beam_current_unit: str


def _first_slice(first: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the first slice, refused unless 2D and of a supported dtype."""
    _, shape0, dtype0 = read_header(first)
    if len(shape0) != 2:
        raise InputError(f"{first}: slice of shape {shape0}; expected a 2D grey-level image "
                         "(RGB and multi-sample slices are not supported)")
    check_dtype(first, dtype0)
    return shape0, dtype0


def check_headers(root: Path, files: list[list[Path]]) -> StackHeaders:
    """Check that every slice has the first slice's shape and dtype, and fingerprint them.

    Parameters
    ----------
    root
        The input's folder: the manifest's paths are relative to it.
    files
        ``files[c][k]``: the file of channel ``c``, slice ``k``.

    Returns
    -------
    StackHeaders

    Raises
    ------
    InputError
        For an unreadable file, a first slice that is not 2D or of an unsupported
        dtype, or a slice whose shape or dtype differs from the first's (the first
        offender is named).
    """
    first = files[0][0]
    shape0, dtype0 = _first_slice(first)
    manifest = []
    currents: list[float | None] = []
    unit = ""
    for c, channel_files in enumerate(files):
        for path in channel_files:
            tags: dict[str, Any] = {}
            _, shape, dtype = read_header(path, tags if c == 0 else None)
            if c == 0:
                value, found_unit = beam_current(tags.get("fibics"), str(path))
                currents.append(value)
                unit = unit or found_unit
            if shape != shape0:
                raise InputError(f"{path}: shape {shape} differs from {shape0} of {first}; "
                                 "expected every slice to have the same shape")
            if dtype != dtype0:
                raise InputError(f"{path}: dtype {dtype} differs from {dtype0} of {first}; "
                                 "expected every slice to have the same dtype")
            entry = {"path": str(path.relative_to(root))}
            entry.update(file_fingerprint(path))
            manifest.append(entry)
    per_slice = None
    if any(v is not None for v in currents):  # Fibics slices: the beam current per slice
        per_slice = np.array([np.nan if v is None else v for v in currents])
    return StackHeaders((shape0[0], shape0[1]), dtype0, manifest, per_slice, unit)
