"""TIFF input: find the slices, read their z positions, check them, read them lazily.

Three layouts are accepted, as in PyStack3D: a folder of single-page TIFF files, one
sub-folder of such files per detector channel, or one multi-page TIFF file. Files are
sorted in natural order (``slice_2`` before ``slice_10``), then ``ind_min`` and
``ind_max`` (both inclusive) select positions in that order.
"""

from __future__ import annotations

import functools
import hashlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import tifffile
import xarray as xr

from ..errors import InputError
from ..store.chunks import slab_chunks, slice_bytes
from .zeiss import FIBICS_TAG, beam_current

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

TIFF_SUFFIXES = (".tif", ".tiff")
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float32)
_HASH_SPAN = 64 * 1024


def slice_folders(root: Path, channels: list[str]) -> list[Path]:
    """The folders holding an input's slices: each channel's sub-folder of ``root``
    (channel ``"."``: ``root`` itself), or the folder of a multi-page TIFF ``root``."""
    if root.is_file():
        return [root.parent]
    return [root if c == "." else root / c for c in channels]


def natural_key(name: str) -> list[Any]:
    """Sort key putting ``slice_2`` before ``slice_10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


_FIELDS = {
    "slice_nb": r"[-+]?\d+",
    "z_coord": r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?",
}


def policy_regex(policy: str, loose: bool = False) -> re.Pattern[str]:
    """Compile a PyStack3D file-name policy such as ``slice_{slice_nb}_z={z_coord}um.tif``.

    Only the fields ``{slice_nb}`` and ``{z_coord}`` are understood; the rest of the
    pattern must match literally. ``loose``: each field matches any text, to tell a
    name with a malformed number from a name of another form.
    """
    out, pos = [], 0
    seen: set[str] = set()
    for match in re.finditer(r"\{(\w*)\}", policy):
        name = match.group(1)
        if name not in _FIELDS or name in seen:
            what = "unknown" if name not in seen else "repeated"
            raise InputError(f"file-name policy {policy!r}: {what} field {{{name}}}; "
                             "expected {slice_nb} and {z_coord}, each at most once")
        seen.add(name)
        out.append(re.escape(policy[pos:match.start()]))
        out.append(f"(?P<{name}>{'.+?' if loose else _FIELDS[name]})")
        pos = match.end()
    out.append(re.escape(policy[pos:]))
    return re.compile("".join(out) + r"\Z")


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
    z
        z position of each slice, micrometres.
    channels
        Channel names.
    shape, dtype
        Shape (y, x) and dtype of every slice.
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

    @property
    def nz(self) -> int:
        """Number of slices."""
        return len(self.pages)

    def manifest_identity(self) -> list[tuple[str, int, str]]:
        """Manifest without modification times: what identifies the input's content."""
        return [(m["path"], m["size"], m["sha256_ends"]) for m in self.manifest]


def _kind(path: Path) -> str:
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


def _tiffs_in(folder: Path) -> list[Path]:
    kind = _kind(folder)
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


def _fold_suffix(name: str) -> str:
    """``name`` with a .tif/.tiff extension in lower case: ``slice_1.TIF`` is a slice of
    the policy ``slice_{slice_nb}.tif``, as the listing already takes it."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{suffix.lower()}" if dot and f".{suffix.lower()}" in TIFF_SUFFIXES else name


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


def _header(path: Path, tags: dict[str, Any] | None = None
            ) -> tuple[int, tuple[int, ...], np.dtype]:
    """Number of pages, shape and dtype of a TIFF file, from its header only; with
    ``tags``, the Fibics XML (tag 51023) of its first page is put in ``tags["fibics"]``
    (None when absent), read in the same pass."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            npages = len(tif.pages)
            page = tif.pages[0]
            if tags is not None:
                tag = page.tags.get(FIBICS_TAG)
                tags["fibics"] = None if tag is None else tag.value
            return npages, tuple(page.shape), np.dtype(series.dtype)
    except Exception as exc:  # tifffile raises many types for damaged files
        raise InputError(f"{path}: not a readable TIFF file ({type(exc).__name__}: {exc}); "
                         "expected every .tif/.tiff file of the input to be a TIFF image: "
                         "replace or remove it") from None


def _parse_names(files: list[Path], policy: str) -> np.ndarray | None:
    """z positions read from the file names, or None when the names carry none.

    Raises
    ------
    InputError
        When some names follow the policy and others do not, when a field of a name
        that has the policy's form is not a number, or when two slices share a z.
    """
    regex = policy_regex(_fold_suffix(policy))
    if "z_coord" not in regex.groupindex:
        return None
    matches = [regex.match(_fold_suffix(p.name)) for p in files]
    loose = policy_regex(_fold_suffix(policy), loose=True)
    for path, match in zip(files, matches):
        if match is not None:
            continue
        shaped = loose.match(_fold_suffix(path.name))
        if shaped is None:
            continue
        # the name has the policy's form but a field is not a number: say which, rather
        # than fall back silently to z_spacing or blame the whole name
        for name, value in shaped.groupdict().items():
            if re.fullmatch(_FIELDS[name], value) is None:
                kind = "an integer" if name == "slice_nb" else "a number (micrometres)"
                raise InputError(f"{path}: {{{name}}} = {value!r} in the file name is not "
                                 f"{kind}; expected names following the policy {policy!r}")
    if not any(matches):
        return None
    if not all(matches):
        first = next(p for p, m in zip(files, matches) if m is None)
        raise InputError(f"{first}: file name does not follow the policy {policy!r} while "
                         "other slices do; rename it or fix the policy")
    z = np.array([float(m["z_coord"]) for m in matches])
    seen: dict[float, Path] = {}
    for path, value in zip(files, z):
        if value in seen:
            raise InputError(f"{path} and {seen[value].name} have the same z = {value:g} um "
                             "in their names; expected one z position per slice: remove the "
                             "duplicate file or correct its name")
        seen[value] = path
    return z


def _z_positions(files: list[Path], policy: str, spacing: float) -> tuple[np.ndarray, bool]:
    z = _parse_names(files, policy)
    if z is not None:
        return z, True
    warnings.warn(f"file names do not follow the policy {policy!r}: z = slice position x "
                  f"z_spacing ({spacing} um)", UserWarning, stacklevel=3)
    return np.arange(len(files)) * spacing, False


def _in_z_order(per_channel: list[list[Path]], z: np.ndarray
                ) -> tuple[list[list[Path]], np.ndarray]:
    """The slices sorted by the z of their names, saying so when the names' natural order
    is not that of z (a later slice with a smaller z would otherwise be dropped or
    misplaced by the steps that go along z)."""
    if np.all(np.diff(z) > 0):
        return per_channel, z
    order = np.argsort(z, kind="stable")
    k = int(np.flatnonzero(np.diff(z) <= 0)[0]) + 1
    files = per_channel[0]
    warnings.warn(f"{files[k].name} (z = {z[k]:g} um) comes after {files[k - 1].name} (z = "
                  f"{z[k - 1]:g} um) in the files' natural order: the slices are taken in the "
                  "order of the z in their names", UserWarning, stacklevel=3)
    return [[f[i] for i in order] for f in per_channel], z[order]


def _check_channel_z(channels: list[str], per_channel: list[list[Path]], z: np.ndarray,
                     policy: str) -> None:
    """Refuse channels whose names give other z positions than the first channel's."""
    for files in per_channel[1:]:
        other = _parse_names(files, policy)
        if other is None:
            continue  # names without z: the first channel's positions apply
        differ = np.flatnonzero(~np.isclose(other, z, rtol=1e-9, atol=1e-12))
        if differ.size:
            k = int(differ[0])
            raise InputError(f"{files[k]}: z = {other[k]:g} um differs from z = {z[k]:g} um of "
                             f"{per_channel[0][k]} (slice {k} of channel {channels[0]!r}); "
                             f"expected every channel to have the same z positions")


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
    kind = _kind(root)
    if kind == "file":
        return _discover_multipage(root, ind_min, ind_max, z_spacing)
    if kind == "missing":
        raise InputError(f"input folder not found: {root}; expected project_dir to be a "
                         "folder of TIFF slices or one multi-page TIFF file")

    per_channel: list[list[Path]] = []
    for channel in channels:
        folder = root / channel
        if channel != "." and _kind(folder) == "missing":
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

    z, from_names = _z_positions(per_channel[0], policy, z_spacing)
    if from_names:
        per_channel, z = _in_z_order(per_channel, z)
        _check_channel_z(channels, per_channel, z, policy)
    source = SliceSource(root=root, files=per_channel, pages=[0] * len(per_channel[0]), z=z,
                         channels=channels, shape=(0, 0), dtype=np.dtype(np.uint8),
                         z_from_names=from_names)
    if check:
        _check_headers(source)
    else:
        _, shape, dtype = _header(per_channel[0][0])
        source.shape, source.dtype = (shape[0], shape[1]), dtype
    return source


def _check_dtype(path: Path, dtype: np.dtype) -> None:
    if dtype not in [np.dtype(d) for d in SUPPORTED_DTYPES]:
        raise InputError(f"{path}: dtype {dtype} is not supported; expected uint8, uint16 or "
                         "float32")


def _check_headers(source: SliceSource) -> None:
    first = source.files[0][0]
    _, shape0, dtype0 = _header(first)
    if len(shape0) != 2:
        raise InputError(f"{first}: slice of shape {shape0}; expected a 2D grey-level image "
                         "(RGB and multi-sample slices are not supported)")
    _check_dtype(first, dtype0)
    manifest = []
    currents: list[float | None] = []
    unit = ""
    for c, files in enumerate(source.files):
        for path in files:
            tags: dict[str, Any] = {}
            _, shape, dtype = _header(path, tags if c == 0 else None)
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
            entry = {"path": str(path.relative_to(source.root))}
            entry.update(file_fingerprint(path))
            manifest.append(entry)
    source.shape, source.dtype, source.manifest = (shape0[0], shape0[1]), dtype0, manifest
    if any(v is not None for v in currents):  # Fibics slices: the beam current per slice
        source.beam_current = np.array([np.nan if v is None else v for v in currents])
        source.beam_current_unit = unit


def _discover_multipage(path: Path, ind_min: int, ind_max: int, z_spacing: float) -> SliceSource:
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise InputError(f"{path}: expected a folder of slices or a multi-page .tif file")
    npages, shape, dtype = _header(path)
    if len(shape) != 2:
        raise InputError(f"{path}: pages of shape {shape}; expected 2D grey-level pages")
    _check_dtype(path, dtype)
    pages = list(range(npages))[ind_min:ind_max + 1]
    if not pages:
        raise InputError(f"{path}: ind_min = {ind_min} is past the last page ({npages - 1}): "
                         f"expected ind_min <= {npages - 1}")
    entry = {"path": path.name}
    entry.update(file_fingerprint(path))
    return SliceSource(root=path.parent, files=[[path] * len(pages)], pages=pages,
                       z=np.asarray(pages, dtype=float) * z_spacing, channels=["."],
                       shape=(shape[0], shape[1]), dtype=dtype, z_from_names=False,
                       manifest=[entry])


def read_slice(path: str | Path, page: int, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """Read one slice and check it is what the header promised.

    Raises
    ------
    InputError
        When the file is truncated or corrupt, or a float slice holds NaN or infinite
        values, naming the file.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            img = tif.pages[page].asarray()
    except Exception as exc:
        raise InputError(f"{path}: cannot read slice data ({type(exc).__name__}: {exc}); "
                         "the file may be truncated or corrupt") from None
    if img.shape != tuple(shape) or img.dtype != dtype:
        raise InputError(f"{path}: read {img.shape} {img.dtype}, expected {tuple(shape)} {dtype}")
    # checked here, in the task that reads the slice anyway, so that the check costs no
    # second read; a float64 sum is finite exactly when every pixel is (it cannot
    # overflow from float32 values), and needs no temporary mask on the common path
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, which is the answer sought
        finite = img.dtype.kind != "f" or bool(np.isfinite(img.sum(dtype=np.float64)))
    if not finite:
        n_nan = int(np.count_nonzero(np.isnan(img)))
        n_inf = int(np.count_nonzero(np.isinf(img)))
        where = f" (page {page})" if page else ""
        raise InputError(f"{path}{where}: {n_nan} NaN and {n_inf} infinite pixel values; "
                         "expected finite values in float slices (replace them, e.g. with "
                         "numpy.nan_to_num, before running)")
    return img


def _read_block(source_files: list[list[str]], pages: list[int], shape: tuple[int, int],
                dtype: np.dtype, block_info: dict | None = None) -> np.ndarray:
    """The slab of slices z0 to z1 of channel c (a block of the lazy stack)."""
    (c, _), (z0, z1) = block_info[None]["array-location"][:2]
    out = np.empty((1, z1 - z0, *shape), dtype=dtype)
    for k in range(z0, z1):
        out[0, k - z0] = read_slice(source_files[c][k], pages[k], shape, dtype)
    return out


def lazy_stack(source: SliceSource, pixel_size: float | None = None) -> xr.DataArray:
    """The input as a lazy (channel, z, y, x) DataArray, one task per channel and slab of
    a few slices (:func:`~.chunks.slab_chunks`).

    Coordinates: ``channel`` names, ``z`` in micrometres, and ``y``/``x`` in
    micrometres when ``pixel_size`` is given, else in pixels of the original frame;
    ``beam_current`` along z when the slices carry a Fibics tag with ``Ext I``.
    """
    ny, nx = source.shape
    files = [[str(p) for p in f] for f in source.files]
    reader = functools.partial(_read_block, files, list(source.pages), source.shape, source.dtype)
    data = da.map_blocks(
        reader,
        chunks=((1,) * len(files), slab_chunks(source.nz, slice_bytes(source.shape, source.dtype)),
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
