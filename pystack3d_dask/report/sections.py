"""Cut planes and a 3D view of a (channel, z, y, x) stack.

Of a checkpoint, the report reads only what it draws: the x-z and y-z cuts through the
middle and the volume's front and side faces are rows and columns kept as each slice was
written (``cut_rows``, ``cut_columns``), and the x-y section and the top face one slice
each. Of any other lazy stack, a section is a dask slice, so only its chunks are read,
one slice at a time: an x-z or y-z section reads every slice once but keeps one row or
column of each, never the stack.
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import xarray as xr

__all__ = ["Sections", "cut_planes", "draw_cube", "draw_sections", "group_views",
           "span", "volume_faces"]


class Sections(dict):
    """``{"xy": DataArray (y, x), "xz": (z, x), "yz": (z, y)}`` and where they were cut."""


def cut_planes(stack: xr.DataArray, z: float | None = None, y: float | None = None,
               x: float | None = None, channel: int | str = 0) -> Sections:
    """The x-y section at ``z``, the x-z section at ``y`` and the y-z section at ``x``.

    Parameters
    ----------
    stack
        (channel, z, y, x), lazy (as :func:`pystack3d_dask.open_result` gives it).
    z, y, x
        Coordinates of the cuts (nearest slice, row, column), by default the middle.
    channel
        Position or label of the channel.

    Returns
    -------
    Sections
        Computed 2D DataArrays with their coordinates; ``.attrs`` of each names the cut.
    """
    sel = stack.isel(channel=channel) if isinstance(channel, int) else stack.sel(channel=channel)
    where = {}
    for dim, value in (("z", z), ("y", y), ("x", x)):
        coord = sel[dim].values
        index = len(coord) // 2 if value is None else int(np.abs(coord - value).argmin())
        where[dim] = index
    names = {"xy": "z", "xz": "y", "yz": "x"}
    # one compute: the x-z and y-z sections share each slice's read
    parts = dask.compute(*[sel.isel({dim: where[dim]}) for dim in names.values()])
    out = Sections()
    for (name, dim), part in zip(names.items(), parts):
        part.attrs = {"cut": dim, "index": where[dim], "at": float(sel[dim].values[where[dim]])}
        out[name] = part
    return out


def span(first: float, last: float) -> tuple[float, float]:
    """An axis range for an image's extent: ``(first, last)``, widened by half a unit on
    each side when both are equal (a stack of one slice), which matplotlib cannot draw."""
    first, last = float(first), float(last)
    return (first - 0.5, last + 0.5) if first == last else (first, last)


def _named(values: np.ndarray, ds: xr.Dataset, dims: tuple[str, str], cut: str,
           index: int) -> xr.DataArray:
    part = xr.DataArray(np.asarray(values), dims=dims,
                        coords={d: np.asarray(ds[d].values) for d in dims if d in ds.coords})
    part.attrs = {"cut": cut, "index": index, "at": float(ds[cut].values[index])}
    return part


def group_views(store: Any, group: str, ds: xr.Dataset | None = None
                ) -> tuple[Sections, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The middle cut planes (:func:`cut_planes`) and the three visible faces (see
    :func:`volume_faces`) of a store group's first channel, from the rows and columns
    kept when it was written and two slices; by reading its stack where a group has no
    such rows (a store written by an earlier version)."""
    from ..store.checkpoints import CUT_NAMES

    ds = store.open_dataset(group) if ds is None else ds
    if not all(name in ds for name in CUT_NAMES):
        return cut_planes(ds["stack"]), volume_faces(ds["stack"])
    rows = np.asarray(ds[CUT_NAMES[0]][0].values)
    columns = np.asarray(ds[CUT_NAMES[1]][0].values)
    at_rows = ds[CUT_NAMES[0]].attrs["rows"]
    at_columns = ds[CUT_NAMES[1]].attrs["columns"]
    nz = ds.sizes["z"]
    middle = store.read_slice(group, 0, nz // 2)
    top = middle if nz == 1 else store.read_slice(group, 0, nz - 1)
    cuts = Sections(xy=_named(middle, ds, ("y", "x"), "z", nz // 2),
                    xz=_named(rows[:, 0], ds, ("z", "x"), "y", int(at_rows[0])),
                    yz=_named(columns[:, 0], ds, ("z", "y"), "x", int(at_columns[0])))
    return cuts, (top, rows[:, 1], columns[:, 1])


def _limits(parts: list[np.ndarray], cap: int = 200_000) -> tuple[float, float]:
    """0.5 and 99.5 percentiles of the values of ``parts`` (an even sample of at most
    ``cap`` of them)."""
    values = np.concatenate([np.ravel(p) for p in parts])
    if not values.size:
        return 0.0, 1.0
    values = values[:: max(1, values.size // cap)]
    lo, hi = np.percentile(values.astype(np.float64), [0.5, 99.5])
    return float(lo), float(hi)


def draw_sections(before: Sections | None, after: Sections, title: str = "") -> Any:
    """An image (Pillow): the three sections of the step's input (top row, when given)
    and output (bottom row), on the same grey scale per row."""
    from .raster import grey, panels_image

    rows = [("input", before), ("output", after)] if before is not None else [("output", after)]
    grid = []
    for label, sections in rows:
        lo, hi = _limits([p.values for p in sections.values()])
        row = []
        for name in ("xy", "xz", "yz"):
            part = sections[name]
            at = part.attrs
            rdim, cdim = part.dims
            axes = ((cdim, *span(part[cdim].values[0], part[cdim].values[-1])),
                    (rdim, *span(part[rdim].values[0], part[rdim].values[-1])))
            row.append((grey(part.values, lo, hi),
                        f"{label}: {name} at {at['cut']} = {at['at']:g}", axes))
        grid.append(row)
    return panels_image(grid, title)


def volume_faces(stack: xr.DataArray, channel: int | str = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three visible faces of a lazy (channel, z, y, x) stack: its last slice (y, x),
    the first row of each slice (z, x) and the last column of each slice (z, y)."""
    sel = stack.isel(channel=channel) if isinstance(channel, int) else stack.sel(channel=channel)
    nz, nx = sel.sizes["z"], sel.sizes["x"]
    top, front, side = dask.compute(sel.isel(z=nz - 1).data, sel.isel(y=0).data,
                                    sel.isel(x=nx - 1).data)
    return np.asarray(top), np.asarray(front), np.asarray(side)


def draw_cube(stack: xr.DataArray | None = None, channel: int | str = 0, title: str = "",
              faces: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Any:
    """An image (Pillow): the volume's three visible faces (the last slice, the first
    row, the last column) in an oblique view, from ``faces`` (:func:`volume_faces`) or
    read from ``stack``."""
    from .raster import cube_image, grey

    top, front, side = faces if faces is not None else volume_faces(stack, channel)
    lo, hi = _limits([top, front, side])
    return cube_image(grey(top, lo, hi), grey(front, lo, hi), grey(side, lo, hi), title)
