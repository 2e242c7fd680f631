"""The ground truth of a synthetic stack as a Zarr store, and reading it back."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from .synthetic import Synthetic

__all__ = ["load_truth", "truth_dataset"]


def load_truth(path: str | Path) -> Any:
    """Open the truth written by :func:`.synthetic.write_synthetic`, lazily.

    Parameters
    ----------
    path : str or pathlib.Path
        The output folder of :func:`.synthetic.write_synthetic` or its ``truth.zarr``
        store.

    Returns
    -------
    xarray.DataArray
        ``truth`` (z, y, x), dask-backed; the store's attributes (defect metadata) are
        merged into its ``attrs``.

    Raises
    ------
    InputError
        If no truth store is found at ``path``.
    """
    import xarray as xr

    p = Path(path)
    if p.is_dir() and (p / "truth.zarr").is_dir():
        p = p / "truth.zarr"
    if not (p.is_dir() and (p / "zarr.json").is_file()):
        raise InputError(f"path must be a synthetic output folder or its truth.zarr store, "
                         f"got {path!s}")
    ds = xr.open_zarr(p, consolidated=False)
    if "truth" not in ds:
        raise InputError(f"path {path!s} holds no 'truth' variable")
    truth = ds["truth"]
    truth.attrs = {**ds.attrs, **truth.attrs}
    return truth


def truth_dataset(syn: Synthetic) -> Any:
    """The truth (valid region) and the defect metadata as an xarray Dataset."""
    import xarray as xr

    rows, cols = syn.valid_rows, syn.valid_cols
    ny, nx = syn.truth.shape[1:]
    meta = {
        "valid_area": [int(v) for v in syn.valid_area],
        "pad_widths": [int(v) for v in syn.pad_widths],
        "pad_value": float(syn.pad_value),
        "frame_shape": [int(ny), int(nx)],
        "kept": [int(v) for v in syn.kept],
        "missing": [int(v) for v in syn.missing],
        "curtain_slices": [int(v) for v in syn.curtain_slices],
        "jump_slice": syn.jump_slice,
        "bkg_coeffs": {k: float(v) for k, v in syn.bkg_coeffs.items()},
        "dz": float(syn.dz),
        "dtype": syn.dtype.name,
        "data_range": float(syn.data_range),
        "seed": syn.seed,
        "options": _jsonable(syn.options),
        "shift_convention": "acquired[i] = scipy.ndimage.shift(truth[kept[i]], (shift_y, shift_x))",
    }
    truth = xr.DataArray(
        syn.truth[:, rows, cols],
        dims=("z", "y", "x"),
        coords={
            "z": ("z", syn.z_truth.astype(np.float64), {"units": "um"}),
            "y": ("y", np.arange(ny, dtype=np.int64)[rows], {"units": "pixel"}),
            "x": ("x", np.arange(nx, dtype=np.int64)[cols], {"units": "pixel"}),
        },
        attrs={"description": "defect-free synthetic volume (valid region)",
               "valid_area": meta["valid_area"], "data_range": meta["data_range"]},
    )
    dims = ("slice",)
    ds = xr.Dataset(
        {
            "truth": truth,
            "kept": (dims, syn.kept.astype(np.int64)),
            "z_acquired": (dims, syn.z.astype(np.float64), {"units": "um"}),
            "shift_y": (dims, syn.shifts[:, 0].astype(np.float64), {"units": "pixel"}),
            "shift_x": (dims, syn.shifts[:, 1].astype(np.float64), {"units": "pixel"}),
            "gain": (dims, syn.gain.astype(np.float64)),
            "curtains": (dims, syn.curtains.astype(bool)),
        },
        attrs=meta,
    )
    # One chunk per slice: quality scoring and viewers read the truth slice by slice.
    ds["truth"].encoding["chunks"] = (1, *ds["truth"].shape[1:])
    return ds


def _jsonable(value: Any) -> Any:
    """``value`` with tuples as lists and numpy scalars as Python ones, for JSON attributes."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
