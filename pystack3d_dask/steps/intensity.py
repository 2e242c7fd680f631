"""``intensity_rescaling`` (histogram matching along z) and ``intensity_rescaling_area``
(per-slice factors from the mean of an area), with PyStack3D's parameters."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import ConfigError, InputError
from ..kernels.cropping import area_to_slices
from ..kernels.dtype import cast_to
from ..kernels.histogram import (
    GAIN_QUANTILES,
    area_mean,
    bin_counts,
    fit_gains,
    histogram,
    mapped_histogram,
    match_histogram,
    matching_lut,
    reference_histograms,
)
from ..params import Param, area, integer, number, numbers, string
from .base import Compute, Derived, StepOutput, check_thresholds, map_slice_values, map_slices

__all__ = [
    "AREA_PARAMS",
    "RESCALING_PARAMS",
    "area_apply",
    "area_prepare",
    "area_prepared_names",
    "area_validate",
    "rescaling_apply",
    "rescaling_prepare",
    "rescaling_prepared_names",
]

#: Parameters of the [intensity_rescaling] table.
RESCALING_PARAMS: dict[str, Param] = {
    "nbins": Param(integer(2), 256, "number of histogram bins"),
    "filter_size": Param(integer(-1), 10, "-1: mean histogram; n: running mean over n slices"),
    "method": Param(string(("histogram", "gain")), "histogram",
                    "histogram: match every slice's histogram to the reference (PyStack3D); "
                    "gain: scale every slice by one factor fitted to the running median of "
                    "its neighbours' quantiles (keeps each histogram's shape). Not in PyStack3D"),
    "window": Param(integer(1), None, "gain method: slices of the running reference (default: "
                    "a fifth of the stack, at least 5). Not in PyStack3D"),
}

#: Parameters of the [intensity_rescaling_area] table.
AREA_PARAMS: dict[str, Param] = {
    "area": Param(area, None, "area of the reference means"),
    "threshold_min": Param(number(), None, "pixels below are left out of the means"),
    "threshold_max": Param(number(), None, "pixels above are left out of the means"),
    "factors_range": Param(numbers(2, minimum=0.0), [0.8, 1.2], "clip range of the factors"),
}



# -- intensity_rescaling ----------------------------------------------------------------

def _check_rescaling(stack: xr.DataArray, nbins: int, filter_size: int) -> None:
    if nbins < 2:
        raise ConfigError(f"[intensity_rescaling] nbins = {nbins}: expected an integer >= 2")
    nz = stack.sizes["z"]
    if filter_size == 0 or filter_size < -1 or filter_size > nz:
        raise ConfigError(f"[intensity_rescaling] filter_size = {filter_size}: expected -1 (mean "
                          f"of all slices) or 1 <= filter_size <= {nz} (the number of slices)")


def _slice_histogram(img: np.ndarray, c: int, z: int, ranges: np.ndarray, nbins: int
                     ) -> np.ndarray:
    return histogram(img, nbins, tuple(ranges[c]))


def _slice_counts(img: np.ndarray, c: int, z: int) -> np.ndarray:
    return np.bincount(img.ravel(), minlength=256)


def _histograms(data: da.Array, ranges: np.ndarray, nbins: int) -> da.Array:
    return map_slice_values(_slice_histogram, data, (nbins,), np.int64, ranges=ranges,
                            nbins=nbins)


def rescaling_prepared_names(method: str = "histogram", **params: Any) -> list[str]:
    """What :func:`rescaling_prepare` returns."""
    if method == "gain":
        return ["quantiles", "quantiles_ref", "factors"]
    return ["value_range", "histos_orig", "histos_ref"]


def _slice_quantiles(img: np.ndarray, c: int, z: int) -> np.ndarray:
    return np.quantile(img, GAIN_QUANTILES)


def default_window(nz: int) -> int:
    """Slices of the gain method's running reference: a fifth of the stack (at least
    5), so that a gain jump over up to a tenth of the slices leaves it unmoved."""
    return max(5, nz // 5) | 1


def _gain_prepare(stack: xr.DataArray, compute: Compute, window: int | None
                  ) -> dict[str, xr.DataArray]:
    nz = stack.sizes["z"]
    if window is not None and window < 1:
        raise ConfigError(f"[intensity_rescaling] window = {window}: expected an integer >= 1")
    size = default_window(nz) if window is None else window
    (quantiles,) = compute([map_slice_values(_slice_quantiles, stack.data,
                                             (len(GAIN_QUANTILES),), np.float64)])
    fits = [fit_gains(q, size) for q in quantiles]
    coords = {"channel": stack["channel"].values, "z": stack["z"].values}
    qdims = ("channel", "z", "quantile")
    qcoords = {**coords, "quantile": np.asarray(GAIN_QUANTILES)}
    return {"quantiles": xr.DataArray(quantiles, dims=qdims, coords=qcoords),
            "quantiles_ref": xr.DataArray(np.stack([r for _, r in fits]), dims=qdims,
                                          coords=qcoords, attrs={"window": int(size)}),
            "factors": xr.DataArray(np.stack([g for g, _ in fits]), dims=("channel", "z"),
                                    coords=coords)}


def rescaling_prepare(stack: xr.DataArray, compute: Compute, nbins: int = 256,
                      filter_size: int = 10, method: str = "histogram",
                      window: int | None = None) -> dict[str, xr.DataArray]:
    """Two reductions: the grey-level range of each channel, then every slice's
    histogram over it; from them, the reference histogram of every slice. With
    ``method = "gain"``: one reduction to a few quantiles per slice, and from them one
    gain per slice (:func:`~pystack3d_dask.kernels.histogram.fit_gains`)."""
    if method == "gain":
        return _gain_prepare(stack, compute, window)
    _check_rescaling(stack, nbins, filter_size)
    data = stack.data
    if data.dtype == np.uint8:
        # one pass: the 256 grey-level counts of every slice give both the range and
        # the histograms
        nc, nz = data.shape[:2]
        (counts,) = compute([map_slice_values(_slice_counts, data, (256,), np.int64)])
        present = counts.sum(axis=1) > 0
        ranges = np.array([[np.flatnonzero(p)[0], np.flatnonzero(p)[-1]] for p in present],
                          dtype=np.float64)
        hists = np.stack([[bin_counts(h, nbins, tuple(ranges[c])) for h in counts[c]]
                          for c in range(nc)])
    else:
        lows, highs = compute([data.min(axis=(1, 2, 3)), data.max(axis=(1, 2, 3))])
        ranges = np.stack([lows, highs], axis=1).astype(np.float64)
        (hists,) = compute([_histograms(data, ranges, nbins)])
    refs = np.stack([reference_histograms(h, filter_size) for h in hists])
    coords = {"channel": stack["channel"].values, "z": stack["z"].values}
    dims = ("channel", "z", "bin")
    out = {
        "value_range": xr.DataArray(ranges, dims=("channel", "bound"),
                                    coords={"channel": coords["channel"],
                                            "bound": np.array(["min", "max"], dtype=object)}),
        "histos_orig": xr.DataArray(hists, dims=dims, coords=coords),
        "histos_ref": xr.DataArray(refs, dims=dims, coords=coords),
    }
    if data.dtype == np.uint8:
        # every slice is mapped through a table of its 256 levels: the final histograms
        # follow from the level counts, and the slices' tasks need not count again
        cast = functools.partial(cast_to, dtype=data.dtype)
        final = np.stack([[mapped_histogram(counts[c, z],
                                            matching_lut(hists[c, z], refs[c, z],
                                                         tuple(ranges[c]), data.dtype, cast),
                                            nbins, tuple(ranges[c]))
                           for z in range(nz)] for c in range(nc)])
        out["histos_final"] = xr.DataArray(final, dims=dims, coords=coords)
    return out


def _match_slice(img: np.ndarray, c: int, z: int, refs: np.ndarray, origs: np.ndarray,
                 ranges: np.ndarray, rounding: bool = False) -> np.ndarray:
    return match_histogram(img, refs[c, z], tuple(ranges[c]),
                           cast=lambda levels: cast_to(levels, img.dtype, rounding),
                           hist=origs[c, z])


def rescaling_apply(stack: xr.DataArray, prepared: dict[str, xr.DataArray], nbins: int = 256,
                    filter_size: int = 10, method: str = "histogram", window: int | None = None,
                    rounding: bool = False) -> StepOutput:
    """Match every slice's histogram to its reference, or (``method = "gain"``) scale it
    by its gain, in its own task."""
    if method == "gain":
        out = map_slices(_scale_slice, stack.data,
                         {"factors": np.asarray(prepared["factors"].values)}, stack.dtype,
                         rounding=rounding)
        return StepOutput(stack.copy(data=out))
    # each slice's own histogram was counted by prepare: not counted again here
    tables = {"refs": np.asarray(prepared["histos_ref"].values),
              "origs": np.asarray(prepared["histos_orig"].values),
              "ranges": np.asarray(prepared["value_range"].values)}
    out = map_slices(_match_slice, stack.data, tables, stack.dtype, rounding=rounding)
    if "histos_final" in prepared:  # known from the level counts (uint8)
        return StepOutput(stack.copy(data=out))
    final = Derived(functools.partial(_slice_histogram, ranges=tables["ranges"], nbins=nbins),
                    ("bin",))
    return StepOutput(stack.copy(data=out), derived={"histos_final": final})


# -- intensity_rescaling_area -----------------------------------------------------------

def _check_area(params: dict[str, Any]) -> None:
    check_thresholds("intensity_rescaling_area", params.get("threshold_min"),
                     params.get("threshold_max"))
    low, high = params.get("factors_range") or (0.8, 1.2)
    if low > high:
        raise ConfigError(f"[intensity_rescaling_area] factors_range = {[low, high]} is reversed: "
                          "expected [min, max] with min <= max")


def area_validate(**params: Any) -> None:
    """Thresholds and factors range, checked before any work."""
    _check_area(params)


def area_prepared_names(**params: Any) -> list[str]:
    """What :func:`area_prepare` returns."""
    return ["means", "factors"]


def _slice_mean(img: np.ndarray, c: int, z: int, rows: slice, cols: slice,
                tmin: float | None, tmax: float | None) -> float:
    return area_mean(img, rows, cols, tmin, tmax)


def area_prepare(stack: xr.DataArray, compute: Compute, area: list[int] | None = None,
                 threshold_min: float | None = None, threshold_max: float | None = None,
                 factors_range: list[float] | None = None) -> dict[str, xr.DataArray]:
    """Mean of the area in every slice (one small reduction), then the factors:
    median of the means / the slice's mean, clipped to ``factors_range``."""
    params = {"threshold_min": threshold_min, "threshold_max": threshold_max,
              "factors_range": factors_range}
    _check_area(params)
    rows, cols = slice(None), slice(None)
    if area is not None:
        rows, cols, notes = area_to_slices(area, (stack.sizes["y"], stack.sizes["x"]))
        for note in notes:
            warnings.warn(f"[intensity_rescaling_area] {note}", UserWarning, stacklevel=2)
    means_lazy = map_slice_values(_slice_mean, stack.data, (), np.float64, rows=rows,
                                  cols=cols, tmin=threshold_min, tmax=threshold_max)
    (means,) = compute([means_lazy])
    bad = np.argwhere(~np.isfinite(means))
    if bad.size:
        c, z = bad[0]
        raise InputError(
            f"[intensity_rescaling_area] slice z = {float(stack['z'].values[z]):.4f} um (index "
            f"{z}, channel {stack['channel'].values[c]}) has no pixel of the area inside "
            f"[threshold_min, threshold_max] = [{threshold_min}, {threshold_max}]"
            + (f"; {len(bad) - 1} other slices too" if len(bad) > 1 else ""))
    low, high = factors_range or (0.8, 1.2)
    with np.errstate(divide="ignore"):
        factors = np.clip(np.median(means, axis=1, keepdims=True) / means, low, high)
    coords = {"channel": stack["channel"].values, "z": stack["z"].values}
    return {"means": xr.DataArray(means, dims=("channel", "z"), coords=coords),
            "factors": xr.DataArray(factors, dims=("channel", "z"), coords=coords)}


def _scale_slice(img: np.ndarray, c: int, z: int, factors: np.ndarray,
                 rounding: bool = False) -> np.ndarray:
    return cast_to(img * float(factors[c, z]), img.dtype, rounding)


def area_apply(stack: xr.DataArray, prepared: dict[str, xr.DataArray], rounding: bool = False,
               **params: Any) -> xr.DataArray:
    """Multiply every slice by its factor, cast back to the input dtype."""
    out = map_slices(_scale_slice, stack.data,
                     {"factors": np.asarray(prepared["factors"].values)}, stack.dtype,
                     rounding=rounding)
    return stack.copy(data=out)
