"""TIFF input, discovery: find the slices and check that they form one stack.

Three layouts are accepted, as in PyStack3D: a folder of single-page TIFF files, one
sub-folder of such files per detector channel, or one multi-page TIFF file. Files are
sorted in natural order (``slice_2`` before ``slice_10``), then ``ind_min`` and
``ind_max`` (both inclusive) select positions in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .tiff_headers import check_dtype, check_headers, file_fingerprint, read_header
from .tiff_names import (
    TIFF_SUFFIXES,
    check_channel_z,
    in_z_order,
    natural_key,
    z_positions,
)

__all__ = ["SliceSource", "discover", "slice_folders"]

#: The metadata documents of a Zarr or N5 input, in its manifest (hashed whole).
_METADATA_NAMES = ("zarr.json", ".zarray", ".zgroup", ".zattrs", "attributes.json")


def slice_folders(root: Path, channels: list[str]) -> list[Path]:
    """The folders holding an input's slices: each channel's sub-folder of ``root``
    (channel ``"."``: ``root`` itself), or the folder of a multi-page TIFF ``root``."""
    if root.is_file():
        return [root.parent]
    return [root if c == "." else root / c for c in channels]


@dataclass
class SliceSource:
    """Where every slice of the input comes from.

    Attributes
    ----------
    files
        ``files[c][k]``: the file of channel ``c``, slice ``k``. For a multi-page TIFF,
        the single file, repeated.
    pages
        Page index of each slice in its file (all 0 for single-page files).
    offsets
        For a multi-page TIFF, the file offset of each slice's page (its IFD), so that a
        slice is read without walking the pages before it; None for single-page files.
    z
        z position of each slice, micrometres.
    channels
        Channel names.
    shape, dtype
        Shape (y, x) and dtype of every slice.
    array
        For an array input (Zarr, N5, HDF5, MRC: :mod:`.arrays`), where it is and how
        to read it (an :class:`~.array_readers.ArrayRef`); ``files`` is then empty and
        ``pages`` holds each slice's index along the array's z axis. None for TIFF.
    pixel_size
        An array input's pixel size (um) from its metadata or ``[input] pixel_size``.
    z_source
        Where an array input's z positions came from (its metadata, or the spacing).
    """

    root: Path
    files: list[list[Path]]
    pages: list[int]
    z: np.ndarray
    channels: list[str]
    shape: tuple[int, int]
    dtype: np.dtype
    z_from_names: bool
    manifest: list[dict[str, Any]] = field(default_factory=list)
    beam_current: np.ndarray | None = None
    beam_current_unit: str = ""
    offsets: list[int] | None = None
    array: Any = None
    pixel_size: float | None = None
    z_source: str = ""

    @property
    def nz(self) -> int:
        """Number of slices."""
        return len(self.pages)

    @property
    def location(self) -> str:
        """The input's identity as a place: the TIFF folder (resolved), or the array's
        absolute path or URL (``file.h5:/dataset`` for HDF5)."""
        return str(self.root.resolve()) if self.array is None else self.array.name

    def read(self, c: int, k: int) -> np.ndarray:
        """Slice ``k`` of channel ``c``, read now, whatever the kind of input."""
        if self.array is not None:
            from .array_readers import read_slab

            return read_slab(self.array, c, k, k + 1)[0]
        from .tiff import read_slice

        return read_slice(self.files[c][k], self.pages[k], self.shape, self.dtype,
                          None if self.offsets is None else self.offsets[k])

    def slices_from(self, paths: set[str]) -> list[tuple[int, int, str]]:
        """``(channel, slice, manifest path)`` of every slice read from one of the
        manifest's ``paths``: for an array input, every slice when its data file (HDF5,
        MRC) is among them; none for its metadata documents, hashed whole."""
        if self.array is None:
            return [(c, k, rel) for c, files in enumerate(self.files) for k, file in
                    enumerate(files) if (rel := str(file.relative_to(self.root))) in paths]
        data = [p for p in paths if not p.endswith(_METADATA_NAMES)]
        return [(c, k, data[0]) for c in range(len(self.channels))
                for k in range(self.nz)] if data else []

    def manifest_identity(self) -> list[tuple[str, int, str]]:
        """Manifest without modification times: what identifies the input's content."""
        return [(m["path"], m["size"], m["sha256_ends"]) for m in self.manifest]


def _path_kind(path: Path) -> str:
    """``"dir"``, ``"file"`` or ``"missing"``.

    Python's ``exists`` and ``is_dir`` raise on a path below a folder without
    permission, instead of answering: turned into a message naming the path.
    """
    try:
        if path.is_dir():
            return "dir"
        return "file" if path.exists() else "missing"
    except OSError as exc:
        raise InputError(f"cannot access {path}: {exc.strerror or exc}; expected a path this "
                         "user can read") from None


def _check_is_file(path: Path) -> None:
    """Refuse an entry named like a slice that is no readable file, rather than leave a
    gap in z without a word."""
    if path.is_file():
        return
    if path.is_symlink():
        raise InputError(f"{path}: a link to {path.readlink()}, which does not exist (an "
                         "offline share?); expected every .tif/.tiff entry of the input to "
                         "be a readable slice: reconnect its target or remove the link")
    raise InputError(f"{path}: named like a slice but not a file; expected every .tif/.tiff "
                     "entry of the input to be a readable slice: rename or move it")


def _tiffs_in(folder: Path) -> list[Path]:
    """The .tif/.tiff files of a folder in natural order (macOS ``._*`` forks left out).

    Raises
    ------
    InputError
        For a missing, unlistable or non-folder ``folder``, or an entry named like a
        slice that is not a readable file.
    """
    kind = _path_kind(folder)
    if kind == "missing":
        raise InputError(f"input folder not found: {folder}; expected a folder of TIFF slices")
    if kind == "file":
        raise InputError(f"expected a folder of TIFF slices, got a file: {folder}")
    try:
        named = [p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES]
    except OSError as exc:  # e.g. a folder without read permission
        raise InputError(f"cannot list the input folder {folder}: {exc.strerror or exc}; "
                         "expected a folder this user can read") from None
    # macOS writes "._name" resource forks beside files copied from its disks: never slices
    files = [p for p in named if not p.name.startswith("._")]
    for path in files:
        _check_is_file(path)
    files.sort(key=lambda p: natural_key(p.name))
    return files


def _no_tiff_message(folder: Path) -> str:
    """Why a folder without slices was looked at, and where the slices may be instead."""
    message = (f"no .tif/.tiff files in {folder}: expected the slices there as single-page "
               "TIFF files (project_dir, or one sub-folder per name in channels)")
    try:
        # a forgotten project_dir points at the workflow file's folder, which usually
        # holds the slices' folder: name it, since that is the likely fix
        with_tiffs = sorted((p.name for p in folder.iterdir() if p.is_dir() and any(
            c.suffix.lower() in TIFF_SUFFIXES for c in p.iterdir())), key=natural_key)
    except OSError:
        with_tiffs = []
    if with_tiffs:
        shown = ", ".join(repr(name) for name in with_tiffs[:5])
        message += (f"; its sub-folder(s) {shown} hold TIFF files: set project_dir to the "
                    "folder of the slices, or list the sub-folders in channels")
    return message


def _channel_files(root: Path, channels: list[str], ind_min: int, ind_max: int
                   ) -> list[list[Path]]:
    """Each channel's selected slices, ``ind_min`` to ``ind_max`` of its natural order.

    Raises
    ------
    InputError
        For a missing channel folder, a folder without slices, an ``ind_min`` past the
        last slice, or channels with different numbers of slices.
    """
    per_channel: list[list[Path]] = []
    for channel in channels:
        folder = root / channel
        if channel != "." and _path_kind(folder) == "missing":
            raise InputError(f"channel folder not found: {folder}; expected one sub-folder "
                             f"of {root} per name in channels = {channels}")
        files = _tiffs_in(folder)
        if not files:
            raise InputError(_no_tiff_message(folder))
        count = len(files)
        files = files[ind_min:ind_max + 1]
        if not files:
            raise InputError(f"ind_min = {ind_min} is past the last slice of {folder} "
                             f"(no slice selected): expected ind_min <= {count - 1}, the "
                             f"position of its last slice ({count} slices)")
        per_channel.append(files)
    lengths = {len(f) for f in per_channel}
    if len(lengths) > 1:
        counts = ", ".join(f"{c!r}: {len(f)}" for c, f in zip(channels, per_channel))
        raise InputError(f"channels have different numbers of slices ({counts}); "
                         "expected the same number in every channel folder")
    return per_channel


def discover(project_dir: str | Path, channels: list[str] | None = None, ind_min: int = 0,
             ind_max: int = 99999, policy: str = "slice_{slice_nb}_z={z_coord}um.tif",
             z_spacing: float = 1.0, check: bool = True) -> SliceSource:
    """Find the input slices and check that they form one stack.

    Parameters
    ----------
    project_dir
        Folder of slices, folder of channel sub-folders, or one multi-page TIFF file.
    channels
        Channel sub-folder names; ``["."]`` (default) for slices directly in the folder.
    ind_min, ind_max
        First and last position kept in the sorted list of files, both inclusive.
    policy
        PyStack3D file-name pattern carrying the z position (micrometres).
    z_spacing
        Slice spacing used when the names do not follow the policy (and for pages of a
        multi-page TIFF).
    check
        Read every file's header to check shapes and dtypes (the first offender is
        named) and build the manifest.

    Returns
    -------
    SliceSource

    Raises
    ------
    InputError
        Missing, unreadable or empty folder, unreadable file, mixed shapes or dtypes,
        channels of different lengths or z positions, unsupported dtype, names with a
        malformed number or a z shared by two slices.
    """
    root = Path(project_dir)
    channels = list(channels or ["."])
    kind = _path_kind(root)
    if kind == "file":
        return _discover_multipage(root, ind_min, ind_max, z_spacing)
    if kind == "missing":
        raise InputError(f"input folder not found: {root}; expected project_dir to be a "
                         "folder of TIFF slices or one multi-page TIFF file")
    per_channel = _channel_files(root, channels, ind_min, ind_max)
    # z_positions and in_z_order warn at stacklevel 3: called from here, their warnings
    # point at discover's caller
    z, from_names = z_positions(per_channel[0], policy, z_spacing)
    if from_names:
        per_channel, z = in_z_order(per_channel, z)
        check_channel_z(channels, per_channel, z, policy)
    source = SliceSource(root=root, files=per_channel, pages=[0] * len(per_channel[0]), z=z,
                         channels=channels, shape=(0, 0), dtype=np.dtype(np.uint8),
                         z_from_names=from_names)
    if check:
        found = check_headers(root, per_channel)
        source.shape, source.dtype, source.manifest = found.shape, found.dtype, found.manifest
        if found.beam_current is not None:
            source.beam_current = found.beam_current
            source.beam_current_unit = found.beam_current_unit
    else:
        _, shape, dtype = read_header(per_channel[0][0])
        source.shape, source.dtype = (shape[0], shape[1]), dtype
    return source


def _discover_multipage(path: Path, ind_min: int, ind_max: int, z_spacing: float) -> SliceSource:
    """The pages ``ind_min`` to ``ind_max`` of one multi-page TIFF file as the stack."""
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise InputError(f"{path}: expected a folder of slices or a multi-page .tif file")
    offsets: list[int] = []
    npages, shape, dtype = read_header(path, offsets=offsets)
    if len(shape) != 2:
        raise InputError(f"{path}: pages of shape {shape}; expected 2D grey-level pages")
    check_dtype(path, dtype)
    pages = list(range(npages))[ind_min:ind_max + 1]
    if not pages:
        raise InputError(f"{path}: ind_min = {ind_min} is past the last page ({npages - 1}): "
                         f"expected ind_min <= {npages - 1}")
    entry = {"path": path.name}
    entry.update(file_fingerprint(path))
    return SliceSource(root=path.parent, files=[[path] * len(pages)], pages=pages,
                       z=np.asarray(pages, dtype=float) * z_spacing, channels=["."],
                       shape=(shape[0], shape[1]), dtype=dtype, z_from_names=False,
                       manifest=[entry], offsets=[offsets[k] for k in pages])
