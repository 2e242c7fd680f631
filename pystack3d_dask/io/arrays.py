"""Array inputs, discovery: a Zarr array (v2 or v3, local or a URL), an OME-Zarr image, an
N5 dataset, an HDF5 dataset (``file.h5:/path``) or an MRC file as the stack to correct.

:func:`array_kind` tells such an input from a TIFF one by its name and the files in it;
:func:`discover_array` reads its metadata only (shape, dtype, chunks, axes, voxel size)
and returns the :class:`~.tiff_discovery.SliceSource` the workflow ingests, whose slices
are read later, block by block (:mod:`.array_readers`). The manifest that identifies
the input is made of its metadata documents (and, for HDF5 and MRC, the file itself):
a Zarr or N5 input's chunk contents are not hashed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..store.location import is_url
from .array_meta import (
    axes_from_dims,
    check_axes,
    default_axes,
    n5_scales,
    ome_axes,
    ome_scales,
    to_um,
)
from .array_readers import ArrayRef, open_zarr, require
from .tiff_discovery import SliceSource
from .tiff_headers import check_dtype, file_fingerprint

__all__ = ["HDF5_SUFFIXES", "MRC_SUFFIXES", "array_kind", "discover_array", "split_hdf5"]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
MRC_SUFFIXES = (".mrc", ".mrcs", ".rec", ".st", ".map")
_HDF5 = re.compile(r"^(.*?\.(?:" + "|".join(s[1:] for s in HDF5_SUFFIXES) + r"))(?::(.*))?$",
                   re.IGNORECASE)
_METADATA_DOCS = ("zarr.json", ".zarray", ".zgroup", ".zattrs")


def split_hdf5(location: str) -> tuple[str, str] | None:
    """``(file, dataset)`` of ``file.h5:/dataset`` (dataset ``""`` when not given), or None
    for a name that is no HDF5 file."""
    found = _HDF5.match(str(location))
    return (found.group(1), found.group(2) or "") if found else None


def array_kind(location: str) -> str | None:
    """``"zarr"``, ``"n5"``, ``"hdf5"`` or ``"mrc"`` for an array input, None for a TIFF
    one (a folder of slices, a multi-page file, or a path that does not exist)."""
    if is_url(location):
        return "zarr"
    if split_hdf5(location) is not None:
        return "hdf5"
    path = Path(location)
    if path.suffix.lower() in MRC_SUFFIXES:
        return "mrc"
    try:
        if any((path / doc).is_file() for doc in _METADATA_DOCS):
            return "zarr"
        if (path / "attributes.json").is_file():
            return "n5"
    except OSError:  # a folder this user cannot read: the TIFF discovery names the problem
        return None
    return None


@dataclass
class _Found:
    """What a format's metadata says, before the axes are mapped."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...] | None
    key: str = ""
    axes: str | None = None
    scales: dict[str, tuple[float, float]] = field(default_factory=dict)
    scale_source: str = ""
    channels: list[str] | None = None
    manifest: list[dict[str, Any]] = field(default_factory=list)
    root: Path | None = None


def _doc_entry(location: str, relative: str, storage_options: dict[str, Any]
               ) -> dict[str, Any] | None:
    """A manifest entry of a metadata document, hashed whole (None when absent). A
    remote document has no modification time here (0)."""
    if not is_url(location):
        path = Path(location) / relative
        return {"path": relative, **file_fingerprint(path)} if path.is_file() else None
    import fsspec

    fs, root = fsspec.core.url_to_fs(location, **storage_options)
    try:
        data = fs.cat_file(f"{root.rstrip('/')}/{relative}")
    except FileNotFoundError:
        return None
    return {"path": relative, "size": len(data), "mtime_ns": 0,
            "sha256_ends": hashlib.sha256(data).hexdigest()}


def _zarr_manifest(location: str, key: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    prefixes = ["", f"{key}/"] if key else [""]
    entries = (_doc_entry(location, prefix + doc, options)
               for prefix in prefixes for doc in _METADATA_DOCS)
    return [e for e in entries if e is not None]


def _probe_zarr(location: str, level: int, options: dict[str, Any]) -> _Found:
    import zarr

    try:
        node = open_zarr(location, "", options)
    except ImportError as exc:
        raise InputError(f"{location}: {exc}; a URL needs fsspec and the package of its "
                         "protocol (s3fs for s3://)") from None
    except Exception as exc:
        raise InputError(f"{location}: not a readable Zarr array or group "
                         f"({type(exc).__name__}: {exc}); expected a Zarr array or an "
                         "OME-Zarr image") from None
    if isinstance(node, zarr.Array):
        return _Found(tuple(node.shape), np.dtype(node.dtype), tuple(node.chunks),
                      manifest=_zarr_manifest(location, "", options))
    attrs = dict(node.attrs)
    ome = attrs.get("ome", attrs)  # OME-NGFF 0.5 nests its metadata under "ome"
    multiscales = ome.get("multiscales") if isinstance(ome, dict) else None
    if not multiscales:
        arrays = sorted(node.array_keys())[:5]
        raise InputError(f"{location}: a Zarr group that is no OME-Zarr image (no "
                         "'multiscales' in its attributes); expected a Zarr array, an OME-Zarr "
                         f"image, or the path of one of its arrays ({arrays or 'none found'})")
    image = multiscales[0]
    datasets = image.get("datasets", [])
    if not 0 <= level < len(datasets):
        raise InputError(f"{location}: [input] level = {level} does not exist; expected a "
                         f"level from 0 to {len(datasets) - 1} (the image has {len(datasets)})")
    key = str(datasets[level]["path"])
    array = node.get(key)
    if not isinstance(array, zarr.Array):
        raise InputError(f"{location}: level {level} names {key!r}, which is no array")
    found = _Found(tuple(array.shape), np.dtype(array.dtype), tuple(array.chunks), key=key,
                   manifest=_zarr_manifest(location, key, options), scale_source="OME-Zarr")
    found.axes = ome_axes(image.get("axes"), array.shape, location)
    found.scales = ome_scales(found.axes, image.get("axes"),
                              datasets[level].get("coordinateTransformations"),
                              image.get("coordinateTransformations"), location)
    labels = [ch.get("label") for ch in (ome.get("omero") or {}).get("channels", [])]
    if labels and all(isinstance(v, str) and v for v in labels):
        found.channels = labels
    return found


def _probe_n5(location: str) -> _Found:
    require("n5", location)
    try:
        attrs = json.loads((Path(location) / "attributes.json").read_text())
        shape = tuple(int(n) for n in attrs["dimensions"])[::-1]
        dtype = np.dtype(attrs["dataType"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{location}: not an N5 dataset ({type(exc).__name__}: {exc}); "
                         "expected attributes.json with 'dimensions' and 'dataType'") from None
    block = attrs.get("blockSize")
    found = _Found(shape, dtype, tuple(int(n) for n in block)[::-1] if block else None,
                   manifest=[_doc_entry(location, "attributes.json", {})], scale_source="N5")
    if isinstance(attrs.get("axes"), list) and len(attrs["axes"]) == len(shape):
        found.axes = "".join(str(a).lower()[:1] for a in attrs["axes"])[::-1]
    found.scales = {"_attrs": attrs}  # mapped once the axes are known
    return found


def _hdf5_datasets(h5: Any) -> list[str]:
    names: list[str] = []
    h5.visititems(lambda name, obj: names.append(f"/{name} {obj.shape}")
                  if hasattr(obj, "shape") and len(names) < 5 else None)
    return names


def _probe_hdf5(location: str) -> _Found:
    path, key = split_hdf5(location)
    h5py = require("hdf5", location)
    if not Path(path).is_file():
        raise InputError(f"{location}: HDF5 file {path} not found; expected file.h5:/dataset")
    try:
        with h5py.File(path, "r") as h5:
            obj = h5.get(key) if key else None
            if not isinstance(obj, h5py.Dataset):
                what = ("no dataset given" if not key else
                        "a group, not a dataset" if obj is not None else "not in the file")
                raise InputError(f"{location}: {what}; expected file.h5:/path/to/dataset, a "
                                 f"dataset of 3 or 4 dimensions; datasets found: "
                                 f"{', '.join(_hdf5_datasets(h5)) or 'none'}")
            found = _Found(tuple(obj.shape), np.dtype(obj.dtype), obj.chunks, key=obj.name,
                           scale_source="HDF5 element_size_um")
            size = obj.attrs.get("element_size_um")
    except OSError as exc:
        raise InputError(f"{location}: not a readable HDF5 file ({exc})") from None
    if size is not None and len(np.ravel(size)) == len(found.shape):
        found.scales = {"_per_axis": [float(v) for v in np.ravel(size)]}
    found.root = Path(path).resolve().parent
    found.manifest = [{"path": Path(path).name, **file_fingerprint(Path(path))}]
    return found


def _probe_mrc(location: str) -> _Found:
    mrcfile = require("mrc", location)
    try:
        with mrcfile.mmap(location, mode="r", permissive=True) as mrc:
            shape, dtype = tuple(mrc.data.shape), mrc.data.dtype.newbyteorder("=")
            voxel = mrc.voxel_size
    except (OSError, ValueError) as exc:
        raise InputError(f"{location}: not a readable MRC file ({exc})") from None
    if len(shape) != 3:
        raise InputError(f"{location}: an MRC image of shape {shape}; expected a 3-D volume "
                         "or image stack (z, y, x)")
    found = _Found(shape, np.dtype(dtype), None, axes="zyx", scale_source="MRC voxel size")
    if float(voxel.z) > 0 and float(voxel.y) > 0:  # 0: the file gives no voxel size
        found.scales = {a: (to_um(float(getattr(voxel, a)), "angstrom", location), 0.0)
                        for a in "zyx"}
    found.root = Path(location).resolve().parent
    found.manifest = [{"path": Path(location).name, **file_fingerprint(Path(location))}]
    return found


def _map_axes(found: _Found, dims: Any, where: str) -> None:
    """Set ``found.axes`` (``[input] dims`` wins over the metadata) and turn the formats'
    raw scales into ``axis -> (scale, translation)``."""
    if dims:
        found.axes = axes_from_dims(dims, found.shape, where)
    elif found.axes is None:
        found.axes = default_axes(found.shape, where)
    else:
        found.axes = check_axes(found.axes, found.shape, where)
    if "_attrs" in found.scales:
        found.scales = n5_scales(found.scales["_attrs"], found.axes, where)
    elif "_per_axis" in found.scales:
        per_axis = found.scales["_per_axis"]
        found.scales = {a: (per_axis[i], 0.0) for i, a in enumerate(found.axes) if a in "zyx"}


def discover_array(location: str, level: int = 0, dims: Any = None,
                   storage_options: dict[str, Any] | None = None, ind_min: int = 0,
                   ind_max: int = 99999, z_spacing: float | None = None,
                   pixel_size: float | None = None, default_spacing: float = 1.0
                   ) -> SliceSource:
    """The stack of an array input, from its metadata alone (no slice is read).

    Parameters
    ----------
    location
        Zarr or N5 folder, Zarr URL, ``file.h5:/dataset`` or MRC file.
    level
        Level of an OME-Zarr image (0: full resolution).
    dims
        ``[input] dims``: which dimension is which (e.g. ``"zcyx"``); default: the OME
        axes, else (z, y, x) for 3-D and (c, z, y, x) for 4-D.
    storage_options
        fsspec options of a URL.
    ind_min, ind_max
        First and last z index kept, both inclusive.
    z_spacing, pixel_size
        Set explicitly by the user (None: not set): they win over the metadata.
    default_spacing
        Slice spacing when neither the user nor the metadata gives one.

    Returns
    -------
    SliceSource
        With ``array`` set; ``z`` in micrometres; ``z_source`` saying where z came from.

    Raises
    ------
    InputError
        For an unreadable input, a missing library, axes that do not map to (channel,
        z, y, x), a level or dataset that does not exist, an unsupported dtype or an
        ``ind_min`` past the last slice.
    """
    options = dict(storage_options or {})
    kind = array_kind(location)
    if kind in ("zarr", "n5") and not is_url(location) and not Path(location).is_dir():
        raise InputError(f"{location}: not found; expected a Zarr or N5 folder")
    found = {"zarr": lambda: _probe_zarr(location, level, options),
             "n5": lambda: _probe_n5(location), "hdf5": lambda: _probe_hdf5(location),
             "mrc": lambda: _probe_mrc(location)}[kind]()
    _map_axes(found, dims, location)
    check_dtype(location, found.dtype)
    axes, shape = found.axes, found.shape
    nz = shape[axes.index("z")]
    positions = list(range(nz))[ind_min:ind_max + 1]
    if not positions:
        raise InputError(f"{location}: ind_min = {ind_min} is past the last slice "
                         f"({nz - 1}); expected ind_min <= {nz - 1}")
    nc = shape[axes.index("c")] if "c" in axes else 1
    channels = found.channels if found.channels and len(found.channels) == nc else [
        str(i) for i in range(nc)]
    index = np.asarray(positions, dtype=float)
    if z_spacing is not None:
        z, z_source = index * z_spacing, "[input] z_spacing"
    elif "z" in found.scales:
        scale, shift = found.scales["z"]
        z, z_source = shift + index * scale, found.scale_source
    else:
        z, z_source = index * default_spacing, "[input] z_spacing (default)"
    if pixel_size is None and "y" in found.scales:
        pixel_size = found.scales["y"][0]
    depth = found.chunks[axes.index("z")] if found.chunks else 1
    manifest = found.manifest
    token = hashlib.sha256(json.dumps([(m["path"], m["size"], m["sha256_ends"])
                                       for m in manifest]).encode()).hexdigest()
    resolved = location if is_url(location) else str(Path(location).resolve())
    if kind == "hdf5":
        resolved = str(Path(split_hdf5(location)[0]).resolve())
    ref = ArrayRef(kind, resolved, found.key, axes, positions[0], int(depth),
                   json.dumps(options, sort_keys=True), token)
    root = found.root or (Path(resolved) if not is_url(location) else Path())
    return SliceSource(root=root, files=[], pages=positions, z=z, channels=channels,
                       shape=(shape[axes.index("y")], shape[axes.index("x")]),
                       dtype=found.dtype, z_from_names=False, manifest=manifest,
                       array=ref, pixel_size=pixel_size, z_source=z_source)
