"""``bkg_removal``: subtract a polynomial background, fitted per slice (2D) or once over
the whole stack (3D), with PyStack3D's parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import ConfigError
from ..kernels.background import (
    constant_index,
    fit_samples,
    fit_slice,
    grid_positions,
    remove_background,
    sample_coordinates,
    sample_slice,
    stack_design,
)
from ..kernels.dtype import cast_to
from ..kernels.polynomial import (
    Powers,
    parse_poly_basis,
    powers_from_orders,
    term_names,
)
from ..kernels.robust import mean_prediction
from ..params import Param, boolean, integer, number, numbers, string
from .base import StepOutput, check_thresholds, map_slice_values, map_slices

__all__ = [
    "DEFAULT_MAX_SAMPLES",
    "PARAMS",
    "apply",
    "basis",
    "check",
    "prepare",
    "prepared_names",
    "validate",
]

#: Parameters of the [bkg_removal] table (the workflow file's keys, their checks and defaults).
PARAMS: dict[str, Param] = {
    "dim": Param(integer(2, 3), None, "2 or 3 (with poly_basis)"),
    "poly_basis": Param(string(), None, 'polynomial basis such as "1 + x + y + x*y + z"'),
    "orders": Param(numbers(None, integers=True, minimum=0), None, "[ox, oy] or [ox, oy, oz]"),
    "cross_terms": Param(boolean, False, "all products of powers up to each order"),
    "skip_factors": Param(numbers(None, integers=True, minimum=1), None,
                          "fit sample: every s-th pixel per axis"),
    "skip_averaging": Param(boolean, False, "area-averaged down-sampling instead of decimation"),
    "threshold_min": Param(number(), None, "pixels below are left out of the fit"),
    "threshold_max": Param(number(), None, "pixels above are left out of the fit"),
    "skip_median": Param(boolean, False,
                         "each sample is the median of the valid pixels of its skip block, "
                         "so that a second phase (pores, particles) does not pull the fit. "
                         "Not in PyStack3D"),
    "weight_func": Param(string(("HuberT", "Hampel", "TukeyBiweight", "None")), "HuberT",
                         "robust weights (TukeyBiweight: redescending, gives no weight to "
                         "samples of another phase; not in PyStack3D)"),
    "preserve_avg": Param(boolean, False, "keep the mean of the stack (3D only)"),
    "max_samples": Param(integer(1), 1_000_000,
                         "cap of the 3D fit sample (memory O(samples x terms))"),
}

#: Cap of the 3D fit sample: its memory is O(samples x terms), whatever the stack depth.
DEFAULT_MAX_SAMPLES: int = PARAMS["max_samples"].default


def basis(params: dict[str, Any]) -> tuple[Powers, int]:
    """The terms of the fit and its dimension (2: per slice; 3: the whole stack).

    ``poly_basis`` (with ``dim``, default 3 when it names z) takes precedence over
    ``orders`` (with ``cross_terms``), as in PyStack3D.
    """
    if params.get("poly_basis"):
        expr = params["poly_basis"]
        dim = params.get("dim") or (3 if "z" in expr else 2)
        return parse_poly_basis(expr, dim), dim
    if params.get("orders") is not None:
        orders = params["orders"]
        if len(orders) not in (2, 3):
            raise ConfigError(f"[bkg_removal] orders = {orders}: expected [ox, oy] or [ox, oy, oz]")
        return powers_from_orders(orders, bool(params.get("cross_terms"))), len(orders)
    raise ConfigError("[bkg_removal] needs 'orders' (with 'cross_terms') or 'poly_basis' "
                      '(e.g. orders = [1, 2, 1], or poly_basis = "1 + x + y + x*y + z")')


def validate(**params: Any) -> None:
    """The table's checks that need no data (basis, thresholds, skip factors, ...), run
    before any work."""
    _checked(params)


def _checked(params: dict[str, Any]) -> tuple[Powers, int, list[int]]:
    powers, dim = basis(params)
    check_thresholds("bkg_removal", params.get("threshold_min"), params.get("threshold_max"))
    skip = params.get("skip_factors") or [10] * dim
    if len(skip) != dim:
        raise ConfigError(f"[bkg_removal] skip_factors = {skip}: expected {dim} values for a "
                          f"{dim}D basis")
    if params.get("skip_median") and params.get("skip_averaging"):
        raise ConfigError("[bkg_removal] skip_averaging and skip_median are both true: each "
                          "sample is either the mean or the median of its block; set one")
    if params.get("preserve_avg") and dim != 3:
        raise ConfigError("[bkg_removal] preserve_avg = true needs the 3D background (a basis "
                          "with a z term, or 3 orders)")
    max_samples = params.get("max_samples") or DEFAULT_MAX_SAMPLES
    if max_samples < len(powers):
        raise ConfigError(f"[bkg_removal] max_samples = {max_samples}: expected at least the "
                          f"number of terms ({len(powers)})")
    return powers, dim, [int(s) for s in skip]


def prepared_names(**params: Any) -> list[str]:
    """What :func:`prepare` returns: the 3D coefficients (nothing for a 2D fit)."""
    return ["coefs_3d"] if basis(params)[1] == 3 else []


# -- 3D ---------------------------------------------------------------------------------

def _slice_sample(img: np.ndarray, c: int, z: int, rows: np.ndarray, cols: np.ndarray,
                  tmin: float | None, tmax: float | None, block: tuple[int, int] | None
                  ) -> np.ndarray:
    return sample_slice(img, rows, cols, tmin, tmax, block, median=block is not None)


def _fit_3d(samples: np.ndarray, zpos: np.ndarray, rows: np.ndarray, cols: np.ndarray,
            shape: tuple[int, int], powers: Powers, weight_func: str | None,
            preserve_avg: bool, block: tuple[int, int] | None = None) -> np.ndarray:
    """One channel's 3D coefficients from the (n_slices, n_points) sample (of the
    blocks of size ``block`` starting at the grid points, when given)."""
    xs, ys = sample_coordinates(rows, cols, shape, block)
    zs = np.asarray(zpos, dtype=np.float64)

    def design_of(index: np.ndarray) -> Callable[[slice], np.ndarray]:
        return stack_design(index, xs, ys, zs, powers)

    coefs, index = fit_samples(samples.ravel(), design_of, len(powers), weight_func)
    if preserve_avg and index.size:
        # the constant that gives the removed background a zero mean over the sample
        i0 = constant_index(powers)
        coefs[i0] = -(mean_prediction(design_of(index), coefs, index.size) - coefs[i0])
    return coefs


def prepare(stack: xr.DataArray, compute: Callable[[list[Any]], list[Any]],
            **params: Any) -> dict[str, xr.DataArray]:
    """Fit the 3D background once per channel from a decimated sample of the stack.

    Each sampled slice (every ``skip_factors[2]``) contributes its pixels on the
    decimated grid (with ``skip_median``, the medians of the skip blocks), thinned to
    keep the whole sample under ``max_samples``; the fit runs on that sample alone, so
    memory does not grow with the stack.
    """
    powers, dim, skip = _checked(params)
    if dim != 3:
        return {}
    nc, nz, ny, nx = stack.shape
    kept = np.arange(0, nz, skip[2])
    cap = max((params.get("max_samples") or DEFAULT_MAX_SAMPLES) // len(kept), 1)
    rows, cols = grid_positions((ny, nx), (skip[1], skip[0]), cap)
    block = (skip[1], skip[0]) if params.get("skip_median") else None
    sub = stack.data[:, ::skip[2]]
    samples = map_slice_values(_slice_sample, sub, (rows.size,), np.float64, rows=rows,
                               cols=cols, tmin=params.get("threshold_min"),
                               tmax=params.get("threshold_max"), block=block)
    zpos = kept / max(nz - 1, 1)
    # the sample is capped by max_samples: it comes back to fit here, which saves
    # building a dask graph around an array graph for one task
    (values,) = compute([samples])
    coefs = np.stack([_fit_3d(values[c], zpos, rows, cols, (ny, nx), powers,
                              params.get("weight_func"), bool(params.get("preserve_avg")),
                              block)
                      for c in range(nc)])
    return {"coefs_3d": xr.DataArray(
        coefs, dims=("channel", "term"),
        coords={"channel": stack["channel"].values, "term": term_names(powers)},
        attrs={"powers": [list(p) for p in powers]})}


def _apply_3d_slice(img: np.ndarray, c: int, z: int, coefs: np.ndarray, nz: int,
                    powers: Powers, tmin: float | None, tmax: float | None,
                    keep_constant: bool, rounding: bool = False) -> np.ndarray:
    zpos = z / max(nz - 1, 1)
    out = remove_background(img, coefs[c], powers, zpos, tmin, tmax, keep_constant)
    return cast_to(out, img.dtype, rounding)


# -- 2D ---------------------------------------------------------------------------------

def _fit_2d_slice(img: np.ndarray, c: int, z: int, powers: Powers, skip: list[int],
                  tmin: float | None, tmax: float | None, weight_func: str | None,
                  averaging: bool, median: bool = False) -> np.ndarray:
    # skip_factors are [sx, sy]: columns first, as PyStack3D's basis uses them
    coefs, n_used = fit_slice(img, powers, (skip[1], skip[0]), tmin, tmax, weight_func,
                              averaging, median)
    return np.append(coefs, n_used)


def _apply_2d_block(block: np.ndarray, fits: np.ndarray, powers: Powers, tmin: float | None,
                    tmax: float | None, rounding: bool = False) -> np.ndarray:
    """The slices of a block, each less its own fitted background (``fits``: their
    coefficients and pixel counts, one row a slice)."""
    out = np.empty_like(block)
    for k in range(block.shape[1]):
        fitted = remove_background(block[0, k], fits[0, k, :-1], powers, 0.0, tmin, tmax)
        out[0, k] = cast_to(fitted, block.dtype, rounding)
    return out


def apply(stack: xr.DataArray, prepared: dict[str, xr.DataArray], rounding: bool = False,
          **params: Any) -> StepOutput:
    """The per-slice graph: fit (2D) and subtract, cast back to the input dtype."""
    powers, dim, skip = _checked(params)
    tmin, tmax = params.get("threshold_min"), params.get("threshold_max")
    data = stack.data
    nz = stack.shape[1]
    names = term_names(powers)
    if dim == 3:
        out = map_slices(_apply_3d_slice, data,
                         {"coefs": np.asarray(prepared["coefs_3d"].values)}, stack.dtype,
                         nz=nz, powers=powers, tmin=tmin, tmax=tmax,
                         keep_constant=bool(params.get("preserve_avg")), rounding=rounding)
        return StepOutput(stack.copy(data=out))
    fits = map_slice_values(_fit_2d_slice, data, (len(powers) + 1,), np.float64,
                            powers=powers, skip=skip, tmin=tmin, tmax=tmax,
                            weight_func=params.get("weight_func"),
                            averaging=bool(params.get("skip_averaging")),
                            median=bool(params.get("skip_median")))
    out = da.blockwise(_apply_2d_block, "czyx", data, "czyx", fits, "cza", powers=powers,
                       tmin=tmin, tmax=tmax, rounding=rounding, dtype=stack.dtype,
                       concatenate=True)
    coords = {"channel": stack["channel"].values, "z": stack["z"].values}
    extras = {
        "coefs": xr.DataArray(fits[:, :, :-1], dims=("channel", "z", "term"),
                              coords={**coords, "term": names}),
        "fit_pixels": xr.DataArray(fits[:, :, -1], dims=("channel", "z"), coords=coords),
    }
    return StepOutput(stack.copy(data=out), extras)


def check(ds: xr.Dataset) -> list[str]:
    """Slices left unchanged because no pixel was inside the thresholds (2D fit)."""
    if "fit_pixels" not in ds:
        return []
    empty = np.argwhere(ds["fit_pixels"].values == 0)
    return [f"slice z = {float(ds['z'].values[z]):.4f} um (index {z}, channel "
            f"{ds['channel'].values[c]}) has no pixel inside the thresholds: left unchanged"
            for c, z in empty]
