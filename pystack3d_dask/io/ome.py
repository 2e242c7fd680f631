"""Export a step as OME-NGFF (OME-Zarr 0.5 on Zarr v3): a multiscale pyramid with
physical scales and channel names, readable by napari, neuroglancer and ome-zarr-py.

The arrays are written by dask, level by level, each level computed from the previous
one read back from disk (2 x 2 means in y and x, one slice per chunk), so the memory is
that of a few slices whatever the stack. The metadata is written by ome-zarr-py.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..errors import NotAvailableError, StoreError
from .export import protected_paths, same_path

__all__ = ["export_ome_zarr", "pyramid_shapes"]

#: Root attribute that marks an OME-Zarr as exported by this package.
EXPORT_KEY = "pystack3d_dask_export"

#: The pyramid stops when the smaller side of a slice would fall below this.
MIN_SIDE = 64


def pyramid_shapes(shape: tuple[int, int], levels: int | None = None) -> list[tuple[int, int]]:
    """(y, x) of every level: halved (rounded down) until the smaller side would go
    below :data:`MIN_SIDE` (at least one level), or ``levels`` levels."""
    shapes = [tuple(shape)]
    while (levels is None and min(shapes[-1]) // 2 >= MIN_SIDE) or (
            levels is not None and len(shapes) < levels):
        ny, nx = shapes[-1]
        if min(ny, nx) < 2:
            break
        shapes.append((ny // 2, nx // 2))
    return shapes


def _halve(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    ny, nx = block.shape[2] // 2 * 2, block.shape[3] // 2 * 2
    b = block[:, :, :ny, :nx].astype(np.float64)
    mean = (b[:, :, 0::2, 0::2] + b[:, :, 1::2, 0::2] + b[:, :, 0::2, 1::2]
            + b[:, :, 1::2, 1::2]) / 4
    if np.dtype(dtype).kind in "ui":
        mean = np.rint(mean)
    return mean.astype(dtype)


def _write_slice(block: np.ndarray, arr: Any, c: int, k: int) -> None:
    arr[c, k] = np.asarray(block)[0, 0]


def _spacing(stack: xr.DataArray, dim: str) -> tuple[float, float, str | None]:
    """(origin, step, unit) of a coordinate; unit None for pixels."""
    values = np.asarray(stack[dim].values, dtype=np.float64)
    unit = stack[dim].attrs.get("units")
    step = float(np.median(np.diff(values))) if len(values) > 1 else 1.0
    return float(values[0]), step or 1.0, ("micrometer" if unit == "um" else None)


def _check_target(out: Path, overwrite: bool, protected: list[Path]) -> None:
    """Refuse an ``out`` whose replacement would lose a file: anything but an OME-Zarr
    this package exported (and that only with ``overwrite``), the store, its input."""
    for path in protected:
        if same_path(out, path):
            raise StoreError(f"export target {out} is the store or its input folder ({path}); "
                             "choose another path")
    if not out.exists():
        return
    ours = False
    if out.is_dir() and (out / "zarr.json").is_file():
        try:
            meta = json.loads((out / "zarr.json").read_text(encoding="utf-8"))
            ours = EXPORT_KEY in (meta.get("attributes") or {})
        except (OSError, ValueError):
            ours = False
    if not ours:
        raise StoreError(f"export target {out} exists and is not an OME-Zarr exported by "
                         "pystack3d-dask; nothing is replaced, even with --overwrite: choose "
                         "a new path")
    if not overwrite:
        raise StoreError(f"{out} holds a previous export; pass --overwrite to replace it or "
                         "choose another path")


def export_ome_zarr(stack: xr.DataArray, out: str | Path, levels: int | None = None,
                    overwrite: bool = False,
                    compute: Callable[[list[Any]], Any] | None = None) -> list[tuple[int, ...]]:
    """Write a (channel, z, y, x) stack as an OME-Zarr multiscale image.

    Parameters
    ----------
    stack
        Lazy stack, e.g. from :func:`pystack3d_dask.open_result`.
    out
        The OME-Zarr folder to create (``.ome.zarr`` by convention).
    levels
        Number of levels; by default down to slices of about :data:`MIN_SIDE` pixels.
    overwrite
        Replace ``out`` when it is an OME-Zarr this package exported. Anything else at
        ``out`` (and the store or its input folder) is refused whatever ``overwrite``
        says.
    compute
        ``compute(list_of_dask_objects)``; default ``dask.compute``.

    Returns
    -------
    list of tuple
        The shape of every level.

    Notes
    -----
    z is kept at every level (one slice per chunk; slices are usually as far apart as
    several pixels in FIB-SEM). Scales: z from the slice positions (micrometres), y and x
    from the pixel size when the input gave one (micrometres), else 1 per pixel.
    """
    fmt, write_multiscales_metadata = _ome_zarr_writer()
    import zarr

    out = Path(out)
    _check_target(out, overwrite, protected_paths(stack))
    if out.exists():
        shutil.rmtree(out)  # a previous export of this package, checked above
    run = compute or (lambda objs: dask.compute(*objs))
    root = zarr.open_group(str(out), mode="w", zarr_format=3)
    # first: an export cut short is still known as one, and replaceable
    root.attrs[EXPORT_KEY] = {"store": stack.attrs.get("store"),
                              "group": stack.attrs.get("group")}
    nc, nz, ny, nx = stack.shape
    shapes = pyramid_shapes((ny, nx), levels)
    datasets = _write_levels(root, stack, shapes, run)
    write_multiscales_metadata(root, datasets, fmt=fmt, axes=_axes(stack),
                               name=str(stack.attrs.get("group", "stack")),
                               metadata={"omero": {"channels": _omero_channels(stack)}})
    return [(nc, nz, ly, lx) for ly, lx in shapes]


def _ome_zarr_writer() -> tuple[Any, Callable[..., Any]]:
    """ome-zarr-py's format 0.5 and its ``write_multiscales_metadata``.

    Raises
    ------
    NotAvailableError
        When ome-zarr-py (the ``ome`` extra) is not installed.
    """
    try:
        with warnings.catch_warnings():
            # ome-zarr's module deprecates its own Scaler on import; not ours to show
            warnings.simplefilter("ignore", DeprecationWarning)
            from ome_zarr.format import FormatV05
            from ome_zarr.writer import write_multiscales_metadata
    except ImportError as exc:  # an optional extra
        raise NotAvailableError("OME-Zarr export needs ome-zarr-py: pip install "
                                "'pystack3d-dask[ome]'") from exc
    return FormatV05(), write_multiscales_metadata


def _write_levels(root: Any, stack: xr.DataArray, shapes: list[tuple[int, int]],
                  run: Callable[[list[Any]], Any]) -> list[dict[str, Any]]:
    """Write every level of the pyramid, each from the previous one read back from disk.

    Parameters
    ----------
    root
        The OME-Zarr's root group (Zarr v3).
    stack
        The (channel, z, y, x) stack: level 0.
    shapes
        (y, x) of every level, from :func:`pyramid_shapes`.
    run
        ``run(list_of_dask_objects)``: computes the writes of one level.

    Returns
    -------
    list of dict
        The multiscales' ``datasets``: each level's path and coordinate transformations.
    """
    nc, nz, ny, nx = stack.shape
    dtype = np.dtype(stack.dtype)
    z0, dz, _ = _spacing(stack, "z")
    y0, dy, _ = _spacing(stack, "y")
    x0, dx, _ = _spacing(stack, "x")
    datasets = []
    source = stack.data.rechunk((1, 1, ny, nx))
    for level, (ly, lx) in enumerate(shapes):
        arr = root.create_array(str(level), shape=(nc, nz, ly, lx), chunks=(1, 1, ly, lx),
                                dtype=dtype, dimension_names=("c", "z", "y", "x"))
        if level == 0:
            data = source
        else:
            previous = da.from_zarr(root[str(level - 1)])
            data = previous.map_blocks(_halve, dtype, dtype=dtype,
                                       chunks=(1, 1, ly, lx))
        blocks = data.to_delayed()
        write = dask.delayed(_write_slice, pure=False)
        run([write(blocks[c, k, 0, 0], arr, c, k) for c in range(nc) for k in range(nz)])
        factor = 2 ** level
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, dz, dy * factor, dx * factor]},
            # pixel centres of a coarser level sit between those it averages
            {"type": "translation", "translation": [0.0, z0, y0 + dy * (factor - 1) / 2,
                                                    x0 + dx * (factor - 1) / 2]}]})
    return datasets


def _axes(stack: xr.DataArray) -> list[dict[str, str]]:
    """The multiscales' axes: c, then z, y and x in space (in micrometres where known)."""
    _, _, unit_y = _spacing(stack, "y")
    _, _, unit_x = _spacing(stack, "x")
    return [{"name": "c", "type": "channel"},
            {"name": "z", "type": "space", "unit": "micrometer"},
            {"name": "y", "type": "space", **({"unit": unit_y} if unit_y else {})},
            {"name": "x", "type": "space", **({"unit": unit_x} if unit_x else {})}]


def _omero_channels(stack: xr.DataArray) -> list[dict[str, Any]]:
    """The omero metadata of every channel: its name, white, and the dtype's full range
    as display window (0 to 1 for float stacks)."""
    dtype = np.dtype(stack.dtype)
    info = np.iinfo(dtype) if dtype.kind in "ui" else None
    return [{"label": str(c), "color": "FFFFFF", "active": True,
             "window": {"min": float(info.min) if info else 0.0,
                        "max": float(info.max) if info else 1.0,
                        "start": float(info.min) if info else 0.0,
                        "end": float(info.max) if info else 1.0}}
            for c in stack["channel"].values]
