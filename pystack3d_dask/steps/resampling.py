"""``resampling``: uniform slice spacing by linear interpolation along z."""

from __future__ import annotations

import hashlib
import warnings

import dask.array as da
import numpy as np
import xarray as xr
from dask.highlevelgraph import HighLevelGraph

from ..kernels.dtype import cast_to
from ..kernels.resampling import interpolate, output_positions, plan
from .base import StepOutput

__all__ = ["apply"]


def _slice_block(lower: np.ndarray, upper: np.ndarray, z_lower: float, z_upper: float,
                 z: float) -> np.ndarray:
    out = interpolate(lower[0, 0], upper[0, 0], z_lower, z_upper, z)
    return cast_to(out, lower.dtype)[None, None]


def apply(stack: xr.DataArray, prepared: dict, policy: str | None = None,
          dz: float | None = None, zpos_out: list[float] | None = None) -> StepOutput:
    """Resample the stack on a uniform z grid (``dz``) or on ``zpos_out``.

    Each output slice is one task that reads exactly its two input neighbours (found
    from the z coordinate). ``policy`` is used at ingest, where z is read from the file
    names; it is accepted here for PyStack3D's files.
    """
    z_in = stack["z"].values.astype(np.float64)
    how = plan(z_in, output_positions(z_in, dz, zpos_out))
    if how.skipped:
        listed = ", ".join(f"{k} (z = {z_in[k]:.4f})" for k in how.skipped[:5])
        warnings.warn(f"resampling: {len(how.skipped)} slice(s) whose z does not increase are "
                      f"skipped: {listed}", UserWarning, stacklevel=2)
    data = stack.data.rechunk((1, 1, *stack.shape[2:]))
    nc = stack.shape[0]
    token = hashlib.sha256(data.name.encode() + how.z_out.tobytes()).hexdigest()[:16]
    name = f"resample-{token}"
    dsk = {}
    for c in range(nc):
        for j, (lo, hi, z) in enumerate(zip(how.lower, how.upper, how.z_out)):
            dsk[(name, c, j, 0, 0)] = (_slice_block, (data.name, c, int(lo), 0, 0),
                                       (data.name, c, int(hi), 0, 0), float(z_in[lo]),
                                       float(z_in[hi]), float(z))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])
    chunks = ((1,) * nc, (1,) * len(how.z_out), (stack.shape[2],), (stack.shape[3],))
    out = da.Array(graph, name, chunks, dtype=stack.dtype)
    coords = {k: v for k, v in stack.coords.items() if "z" not in v.dims}
    result = xr.DataArray(out, dims=stack.dims, coords={**coords, "z": ("z", how.z_out)},
                          attrs=stack.attrs, name=stack.name)
    result["z"].attrs.update(stack["z"].attrs)
    extras = {"z_input": xr.DataArray(z_in, dims=("z_input",)),
              "skipped": xr.DataArray(np.asarray(how.skipped, dtype=np.int64),
                                      dims=("skipped",))}
    return StepOutput(result, extras)
