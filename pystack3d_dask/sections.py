"""Cut planes and a 3D view of a (channel, z, y, x) stack, read lazily.

A section is a dask slice of the stored stack, so only its chunks are read, one slice
at a time: an x-y section reads one chunk; an x-z or y-z section reads every slice once
but keeps one row or column of each, never the stack.
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import xarray as xr

__all__ = ["Sections", "cut_planes", "draw_cube", "draw_sections", "span"]


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


def _image(ax: Any, part: xr.DataArray, title: str, vmin: float, vmax: float) -> None:
    rows, cols = part.dims
    extent = [*span(part[cols].values[0], part[cols].values[-1]),
              *span(part[rows].values[-1], part[rows].values[0])]
    ax.imshow(part.values, cmap="gray", vmin=vmin, vmax=vmax, extent=extent, aspect="auto",
              interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(cols, fontsize=7)
    ax.set_ylabel(rows, fontsize=7)
    ax.tick_params(labelsize=6)


def draw_sections(before: Sections | None, after: Sections, title: str = "") -> Any:
    """A figure: the three sections of the step's input (top row, when given) and output
    (bottom row), on the same grey scale per row."""
    from .plots import subplots

    rows = [("input", before), ("output", after)] if before is not None else [("output", after)]
    fig, axes = subplots(len(rows), 3, figsize=(11, 3.4 * len(rows)), squeeze=False)
    for r, (label, sections) in enumerate(rows):
        values = np.concatenate([np.ravel(p.values) for p in sections.values()])
        vmin, vmax = np.percentile(values, [0.5, 99.5]) if values.size else (0, 1)
        for c, name in enumerate(("xy", "xz", "yz")):
            part = sections[name]
            at = part.attrs
            _image(axes[r, c], part, f"{label}: {name} at {at['cut']} = {at['at']:g}",
                   float(vmin), float(vmax))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def draw_cube(stack: xr.DataArray, channel: int | str = 0, max_size: int = 96,
              title: str = "") -> Any:
    """A figure: the volume's three visible faces (the last slice, the first row, the last
    column) in 3D, each read as a section and thinned to ``max_size`` pixels per side."""
    import matplotlib

    from .plots import new_figure

    sel = stack.isel(channel=channel) if isinstance(channel, int) else stack.sel(channel=channel)
    nz, ny, nx = (sel.sizes[d] for d in ("z", "y", "x"))
    sz, sy, sx = (max(1, -(-n // max_size)) for n in (nz, ny, nx))
    top, front, side = (np.asarray(a) for a in dask.compute(
        sel.isel(z=nz - 1, y=slice(None, None, sy), x=slice(None, None, sx)).data,
        sel.isel(y=0, z=slice(None, None, sz), x=slice(None, None, sx)).data,
        sel.isel(x=nx - 1, z=slice(None, None, sz), y=slice(None, None, sy)).data))
    values = np.concatenate([top.ravel(), front.ravel(), side.ravel()]).astype(np.float64)
    lo, hi = np.percentile(values, [0.5, 99.5])
    norm = matplotlib.colors.Normalize(lo, hi if hi > lo else lo + 1)
    cmap = matplotlib.colormaps["gray"]
    zs = np.arange(nz)[::sz]
    ys = np.arange(ny)[::sy]
    xs = np.arange(nx)[::sx]
    fig = new_figure((6, 5))
    ax = fig.add_subplot(projection="3d")
    X, Y = np.meshgrid(xs, ys)
    ax.plot_surface(X, Y, np.full_like(X, nz - 1, dtype=float), facecolors=cmap(norm(top)),
                    rstride=1, cstride=1, shade=False)
    X, Z = np.meshgrid(xs, zs)
    ax.plot_surface(X, np.zeros_like(X, dtype=float), Z, facecolors=cmap(norm(front)),
                    rstride=1, cstride=1, shade=False)
    Y, Z = np.meshgrid(ys, zs)
    ax.plot_surface(np.full_like(Y, nx - 1, dtype=float), Y, Z, facecolors=cmap(norm(side)),
                    rstride=1, cstride=1, shade=False)
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    ax.set_zlabel("slice")
    ax.set_box_aspect((nx, ny, max(nz, 1)))
    ax.set_title(title, fontsize=9)
    return fig
