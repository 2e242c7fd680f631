"""``resampling``: uniform slice spacing by linear interpolation along z."""

from __future__ import annotations

import hashlib
import warnings

import dask.array as da
import numpy as np
import xarray as xr
from dask.highlevelgraph import HighLevelGraph

from ..kernels.dtype import cast_to
from ..kernels.resampling import check_grid, interpolate, output_positions, plan
from ..params import DEFAULT_POLICY, Param, number, numbers, policy
from ..store.chunks import slab_chunks, slice_bytes
from .base import StepOutput

__all__ = ["PARAMS", "apply", "validate"]

#: Parameters of the [resampling] table (the workflow file's keys, their checks and defaults).
PARAMS: dict[str, Param] = {
    "policy": Param(policy, DEFAULT_POLICY, "file-name pattern carrying the z position"),
    "dz": Param(number(0.0, strict_min=True), None, "output slice spacing (um)"),
    "zpos_out": Param(numbers(None, increasing=True), None, "explicit output z positions (um)"),
}


def _slab_block(inputs: list[np.ndarray], first: int, lower: list[int], upper: list[int],
                z_lower: list[float], z_upper: list[float], z_out: list[float],
                rounding: bool = False) -> np.ndarray:
    """Output slices ``z_out``, each from its input neighbours ``lower`` and ``upper``
    (indices into the stack; ``inputs``: the consecutive input blocks holding them, the
    first starting at slice ``first``)."""
    slab = inputs[0] if len(inputs) == 1 else np.concatenate(inputs, axis=1)
    out = np.empty((1, len(z_out), *slab.shape[2:]), dtype=slab.dtype)
    for k, (lo, hi, zl, zu, z) in enumerate(zip(lower, upper, z_lower, z_upper, z_out)):
        out[0, k] = cast_to(interpolate(slab[0, lo - first], slab[0, hi - first], zl, zu, z),
                            slab.dtype, rounding)
    return out


def validate(dz: float | None = None, zpos_out: list[float] | None = None,
             **params: object) -> None:
    """The output grid's keys, checked before any slice is read (the z range they are
    checked against comes with the data)."""
    check_grid(dz, zpos_out)


def apply(stack: xr.DataArray, prepared: dict, policy: str | None = None,
          dz: float | None = None, zpos_out: list[float] | None = None,
          rounding: bool = False) -> StepOutput:
    """Resample the stack on a uniform z grid (``dz``) or on ``zpos_out``.

    Output slices go in slabs of a few (:func:`~..io.chunks.slab_chunks`), each a task
    that reads just the input blocks holding their neighbours (found from the z
    coordinate). ``policy`` is used at ingest, where z is read from the file names; it
    is accepted here for PyStack3D's files.
    """
    z_in = stack["z"].values.astype(np.float64)
    how = plan(z_in, output_positions(z_in, dz, zpos_out))
    if how.skipped:
        listed = ", ".join(f"{k} (z = {z_in[k]:.4f})" for k in how.skipped[:5])
        warnings.warn(f"resampling: {len(how.skipped)} slice(s) whose z does not increase are "
                      f"skipped: {listed}", UserWarning, stacklevel=2)
    nc, _, ny, nx = stack.shape
    data = stack.data
    wanted = ((1,) * nc, data.chunks[1], (ny,), (nx,))
    data = data if data.chunks == wanted else data.rechunk(wanted)
    starts = np.concatenate([[0], np.cumsum(data.chunks[1])]).astype(int)
    out_z = slab_chunks(len(how.z_out), slice_bytes(stack.shape, stack.dtype))
    out_starts = np.concatenate([[0], np.cumsum(out_z)]).astype(int)
    token = hashlib.sha256(data.name.encode() + how.z_out.tobytes() + bytes([rounding])).hexdigest()[:16]
    name = f"resample-{token}"
    dsk = {}
    for c in range(nc):
        for j in range(len(out_z)):
            part = slice(int(out_starts[j]), int(out_starts[j + 1]))
            lower = [int(k) for k in how.lower[part]]
            upper = [int(k) for k in how.upper[part]]
            b0 = int(np.searchsorted(starts, min(lower), side="right")) - 1
            b1 = int(np.searchsorted(starts, max(upper), side="right")) - 1
            dsk[(name, c, j, 0, 0)] = (
                _slab_block, [(data.name, c, b, 0, 0) for b in range(b0, b1 + 1)],
                int(starts[b0]), lower, upper, [float(z_in[k]) for k in lower],
                [float(z_in[k]) for k in upper], [float(z) for z in how.z_out[part]], rounding)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])
    chunks = ((1,) * nc, out_z, (ny,), (nx,))
    out = da.Array(graph, name, chunks, dtype=stack.dtype)
    coords = {k: v for k, v in stack.coords.items() if "z" not in v.dims}
    result = xr.DataArray(out, dims=stack.dims, coords={**coords, "z": ("z", how.z_out)},
                          attrs=stack.attrs, name=stack.name)
    result["z"].attrs.update(stack["z"].attrs)
    extras = {"z_input": xr.DataArray(z_in, dims=("z_input",)),
              "skipped": xr.DataArray(np.asarray(how.skipped, dtype=np.int64),
                                      dims=("skipped",))}
    return StepOutput(result, extras)
