"""``cropping`` and ``cropping_final``: keep an area of every slice."""

from __future__ import annotations

import warnings

import xarray as xr

from ..kernels.cropping import area_to_slices
from ..params import Param, area

__all__ = ["PARAMS", "apply", "cropping"]

#: Parameters of both cropping tables (the workflow file's keys, their checks and defaults).
PARAMS: dict[str, Param] = {
    "area": Param(area, None, "area kept [xmin, xmax, ymin, ymax], origin bottom-left"),
}


def cropping(stack: xr.DataArray, area: list[int] | None = None) -> xr.DataArray:
    """Keep an area of every slice.

    Parameters
    ----------
    stack
        (channel, z, y, x) stack, whole slices per chunk.
    area
        ``[xmin, xmax, ymin, ymax]`` in pixels, origin at the bottom-left of the image
        (PyStack3D's convention). An area past the image is clipped, with a warning.
        None keeps the whole slice.

    Returns
    -------
    xarray.DataArray
        The lazy cropped stack; its y and x coordinates keep the original positions.
    """
    if area is None:
        return stack
    rows, cols, notes = area_to_slices(area, (stack.sizes["y"], stack.sizes["x"]))
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    # dask slicing keeps the blocks: each output block reads its own input block
    return stack.isel(y=rows, x=cols)


def apply(stack: xr.DataArray, prepared: dict, area: list[int] | None = None,
          rounding: bool = False) -> xr.DataArray:
    """Registry entry of both cropping steps (nothing to prepare; ``rounding`` has
    nothing to round)."""
    return cropping(stack, area=area)
