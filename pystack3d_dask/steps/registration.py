"""``registration_calculation`` (pairwise pystackreg matrices, a task per slab of slices)
and ``registration_transformation`` (cumulative matrices applied slice by slice)."""

from __future__ import annotations

import warnings
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..errors import ConfigError, InputError
from ..kernels.cropping import area_to_slices
from ..kernels.dtype import cast_to
from ..kernels.registration import (
    axis_aligned_bounds,
    check_transformation,
    cumulative,
    inner_rectangle,
    outlier_pairs,
    remove_drift,
    remove_running_mean,
    valid_mask,
    warp_slice,
)
from ..params import Param, area, boolean, integer, number, numbers, string
from ..store.chunks import slab_chunks, slice_bytes
from .base import Compute, map_slices
from .registration_pairs import slab_pairs as _slab_pairs

__all__ = ["CALC_PARAMS", "TRANSFORM_PARAMS", "calc_apply", "calc_prepare", "calc_validate",
           "transform_apply", "transform_prepare"]

#: Parameters of the [registration_calculation] table.
CALC_PARAMS: dict[str, Param] = {
    "area": Param(area, None, "area used for the calculation"),
    "threshold": Param(number(), None, "binarise (img <= threshold) before registering"),
    "nb_blocks": Param(numbers(2, integers=True, minimum=1), [1, 1], "[p, q] blocks"),
    "gaussian_sigma": Param(number(0.0), 0.0,
                            "Gaussian smoothing (pixels) of both slices before registering "
                            "them; 0 = off (PyStack3D). Not in PyStack3D"),
    "bandpass": Param(numbers(2, minimum=0.0, increasing=True), None,
                      "[sigma_low, sigma_high] (pixels): register the difference of two "
                      "Gaussian smoothings of both slices; off by default (PyStack3D). "
                      "Not in PyStack3D"),
    "transformation": Param(
        string(("TRANSLATION", "RIGID_BODY", "SCALED_ROTATION", "AFFINE", "BILINEAR")),
        "TRANSLATION", "pystackreg transformation"),
    "max_shift": Param(number(0.0), None,
                       "largest shift (pixels) believed between consecutive slices; "
                       "default: a quarter of the registered area's smaller side. Not "
                       "in PyStack3D"),
    "on_outlier": Param(string(("error", "skip", "keep")), "error",
                        "a pair beyond max_shift or with a blank slice: error (names "
                        "it), skip (no shift) or keep (as found, as PyStack3D does). Not "
                        "in PyStack3D"),
}

#: Parameters of the [registration_transformation] table.
TRANSFORM_PARAMS: dict[str, Param] = {
    "nb_blocks": Param(numbers(2, integers=True, minimum=1), None, "[p, q] blocks"),
    "pre_calculated_tmats": Param(string(), None, "matrices file computed elsewhere"),
    "constant_drift": Param(numbers(2), None, "[dx, dy] drift removed per slice"),
    "box_size_averaging": Param(integer(1), None, "running-mean window of the matrices"),
    "subpixel": Param(boolean, True, "keep sub-pixel translations"),
    "mode": Param(string(("constant", "edge", "symmetric", "reflect", "wrap")), "constant",
                  "how pixels outside the image are filled"),
    "cropping": Param(boolean, False, "crop to the largest rectangle valid under all warps"),
}

MATRIX_DIMS = ("z", "block", "row", "col")


# -- registration_calculation -----------------------------------------------------------

def calc_validate(**params: Any) -> None:
    """``gaussian_sigma`` and ``bandpass`` are two ways of filtering the pair (one at most),
    and a band-pass leaves no grey levels to ``threshold``: checked before any work."""
    sigma, band = params.get("gaussian_sigma") or 0.0, params.get("bandpass")
    if sigma > 0 and band is not None:
        raise ConfigError(f"[registration_calculation] gaussian_sigma = {sigma} and bandpass = "
                          f"{list(band)} both filter the slices before registering them: give "
                          "one of them (bandpass = [s, high] includes a smoothing at s)")
    if band is not None and params.get("threshold") is not None:
        raise ConfigError(f"[registration_calculation] threshold = {params['threshold']} and "
                          f"bandpass = {list(band)}: the band-pass has no grey levels left to "
                          "threshold (its values are centred on 0); give one of them")


def calc_prepared_names(**params: Any) -> list[str]:
    """What :func:`calc_prepare` returns."""
    return ["tmats"]


def calc_prepare(stack: xr.DataArray, compute: Compute, area: list[int] | None = None,
                 threshold: float | None = None, nb_blocks: list[int] | None = None,
                 transformation: str = "TRANSLATION", gaussian_sigma: float = 0.0,
                 bandpass: list[float] | None = None, max_shift: float | None = None,
                 on_outlier: str = "error") -> dict[str, xr.DataArray]:
    """Register every slice of the first channel on the previous one: one task per slab
    of the stack, reading that slab and the one before it. The first slice gets the
    identity. With ``gaussian_sigma`` > 0 both slices of a pair are smoothed first, with
    ``bandpass = [low, high]`` both are replaced by the difference of their Gaussian
    smoothings at ``low`` and ``high`` pixels (for the registration only: the stack is
    unchanged). A pair with a blank slice, or shifted by more than ``max_shift`` pixels
    (default: a quarter of the registered area's smaller side), fails the step naming
    the slices (``on_outlier = "error"``), gets no shift (``"skip"``) or is kept as found
    (``"keep"``, PyStack3D's behaviour), with a warning."""
    calc_validate(gaussian_sigma=gaussian_sigma, bandpass=bandpass, threshold=threshold)
    check_transformation(transformation)  # before any slice is read
    band = None if bandpass is None else (float(bandpass[0]), float(bandpass[1]))
    blocks = tuple(nb_blocks or (1, 1))
    rows, cols = slice(None), slice(None)
    if area is not None:
        rows, cols, _ = area_to_slices(area, (stack.sizes["y"], stack.sizes["x"]))
    nz = stack.sizes["z"]
    # whole slices in slabs of a few (a no-op on a stack read from the store); a stack
    # given in other chunks through the Python API is cut the same way
    data = stack.data[:1].rechunk(
        {1: slab_chunks(nz, slice_bytes(stack.shape, stack.dtype)), 2: -1, 3: -1})
    slabs = data.to_delayed(optimize_graph=False)[0, :, 0, 0]
    starts = np.cumsum((0, *data.chunks[1][:-1]))
    pairs = dask.delayed(_slab_pairs, pure=True)
    zs = stack["z"].values
    tasks = [pairs(slabs[b - 1] if b else None, slabs[b], int(starts[b]), zs, rows, cols,
                   threshold, transformation, blocks, float(gaussian_sigma), band)
             for b in range(len(slabs))]
    found = compute(tasks) if nz > 1 else []
    tmats = np.empty((nz, blocks[0] * blocks[1], 3, 3))
    tmats[0] = np.identity(3)
    if found:
        tmats[1:] = np.concatenate(found)
    area_shape = (len(range(*rows.indices(stack.sizes["y"]))),
                  len(range(*cols.indices(stack.sizes["x"]))))
    limit = float(max_shift) if max_shift is not None else min(area_shape) / 4
    _handle_outliers(tmats, zs, limit, on_outlier, max_shift is None)
    return {"tmats": xr.DataArray(tmats, dims=MATRIX_DIMS,
                                  coords={"z": stack["z"].values},
                                  attrs={"transformation": transformation,
                                         "nb_blocks": list(blocks)})}


def _handle_outliers(tmats: np.ndarray, zs: np.ndarray, limit: float, on_outlier: str,
                     default_limit: bool) -> None:
    """Report the degenerate pairs of ``tmats`` (in place: ``"skip"`` sets them to the
    identity; ``"keep"`` leaves them, blank pairs aside, which get the identity too)."""
    bad = outlier_pairs(tmats, limit)
    if not bad.size:
        return
    what = []
    for k in bad[:5]:
        pair = f"z = {zs[k - 1]:.4f} -> {zs[k]:.4f} um (slices {k - 1} -> {k})"
        if not np.isfinite(tmats[k]).all():
            what.append(f"{pair}: a blank slice (one grey level in the registered area)")
        else:
            shift = float(np.max(np.hypot(tmats[k, :, 0, 2], tmats[k, :, 1, 2])))
            what.append(f"{pair}: shift {shift:.1f} px")
    more = f" and {bad.size - 5} more" if bad.size > 5 else ""
    bound = (f"max_shift = {limit:g} px" + (" (a quarter of the registered area's smaller "
                                           "side)" if default_limit else ""))
    listed = "; ".join(what) + more
    if on_outlier == "error":
        raise InputError(
            f"[registration_calculation] {bad.size} pair(s) cannot be registered ({bound}): "
            f"{listed}. Their shifts would crop the volume to a sliver; set on_outlier = "
            "\"skip\" to give them no shift, \"keep\" to use them as found, or raise "
            "max_shift if the drift is real")
    blank = ~np.isfinite(tmats).all(axis=(-2, -1)).all(axis=-1)
    replace = np.zeros(len(tmats), dtype=bool)
    replace[bad] = True
    if on_outlier == "keep":
        replace &= blank  # a blank pair has no shift to keep
    tmats[replace] = np.identity(3)
    done = "given no shift" if on_outlier == "skip" else "kept as found (blank ones: no shift)"
    warnings.warn(f"registration_calculation: {bad.size} pair(s) beyond {bound} {done}: "
                  f"{listed}", UserWarning, stacklevel=2)


def calc_apply(stack: xr.DataArray, prepared: dict[str, xr.DataArray], **params: Any
               ) -> xr.DataArray:
    """The stack is unchanged by the calculation; its matrices are stored beside it."""
    return stack


# -- registration_transformation --------------------------------------------------------

def transform_prepared_names(**params: Any) -> list[str]:
    """What :func:`transform_prepare` returns."""
    return ["tmats_cumul", "crop"]


def transform_prepare(stack: xr.DataArray, compute: Compute,
                      upstream: dict[str, xr.Dataset] | None = None,
                      nb_blocks: list[int] | None = None,
                      pre_calculated_tmats: str | None = None,
                      constant_drift: list[float] | None = None,
                      box_size_averaging: int | None = None, subpixel: bool = True,
                      mode: str = "constant", cropping: bool = False
                      ) -> dict[str, xr.DataArray]:
    """Cumulative matrices (with the drift options), and the largest rectangle valid
    under every warp when ``cropping``: from the matrices alone for translations, else a
    reduction (one mask per slice, AND-ed)."""
    source = (upstream or {}).get("registration_calculation")
    if pre_calculated_tmats is not None:
        tmats = np.load(pre_calculated_tmats)
        blocks = tuple(nb_blocks or (1, 1))
    elif source is not None and "tmats" in source:
        tmats = np.asarray(source["tmats"].values)
        blocks = tuple(nb_blocks or source["tmats"].attrs.get("nb_blocks", (1, 1)))
    else:
        raise ConfigError("registration_transformation needs the matrices of "
                          "registration_calculation: run that step before it (or give "
                          "pre_calculated_tmats)")
    tmats = np.array(tmats, dtype=np.float64).reshape(len(tmats), -1, 3, 3)
    if len(tmats) != stack.sizes["z"]:
        raise ConfigError(f"registration_transformation: {len(tmats)} matrices for "
                          f"{stack.sizes['z']} slices; the stack changed length since "
                          "registration_calculation")
    if tmats.shape[1] != blocks[0] * blocks[1]:
        raise ConfigError(f"registration_transformation: nb_blocks = {list(blocks)} but the "
                          f"matrices have {tmats.shape[1]} block(s)")
    if not subpixel:
        translations = tmats[:, :, :, 2]
        translations[np.abs(translations) < 1] = 0
    cumul = cumulative(tmats)
    if constant_drift is not None:
        cumul = remove_drift(cumul, constant_drift)
    if box_size_averaging is not None:
        cumul = remove_running_mean(cumul, max(box_size_averaging, 0))
    ny, nx = stack.shape[2:]
    crop = np.array([0, ny, 0, nx])
    if cropping:
        bounds = axis_aligned_bounds(cumul, (ny, nx))  # None for blocks, rotations, shears
        if bounds is None:
            masks = _valid_masks(cumul, (ny, nx), blocks)
            (valid,) = compute([masks.all(axis=0)])
            bounds = inner_rectangle(valid)
        crop = np.array(bounds)
        if crop[1] <= crop[0] or crop[3] <= crop[2]:
            raise ConfigError("registration_transformation: cropping = true leaves no pixel "
                              "valid under every warp (drift larger than the image)")
    return {
        "tmats_cumul": xr.DataArray(cumul, dims=MATRIX_DIMS, coords={"z": stack["z"].values},
                                    attrs={"nb_blocks": list(blocks)}),
        "crop": xr.DataArray(crop, dims=("bound",),
                             coords={"bound": np.array(["imin", "imax", "jmin", "jmax"],
                                                       dtype=object)}),
    }


def _mask_block(index: np.ndarray, cumul: np.ndarray, shape: tuple[int, int],
                blocks: tuple[int, int]) -> np.ndarray:
    return valid_mask(cumul[int(index[0])], shape, blocks)[None]


def _valid_masks(cumul: np.ndarray, shape: tuple[int, int], blocks: tuple[int, int]) -> da.Array:
    index = da.arange(len(cumul), chunks=1)
    return da.map_blocks(_mask_block, index, cumul=cumul, shape=shape, blocks=blocks,
                         new_axis=[1, 2], chunks=((1,) * len(cumul), (shape[0],), (shape[1],)),
                         dtype=bool)


def _warp_slice(img: np.ndarray, c: int, z: int, cumul: np.ndarray, blocks: tuple[int, int],
                mode: str, rounding: bool = False) -> np.ndarray:
    return cast_to(warp_slice(img, cumul[z], blocks, mode), img.dtype, rounding)


def transform_apply(stack: xr.DataArray, prepared: dict[str, xr.DataArray], mode: str = "constant",
                    cropping: bool = False, rounding: bool = False, **params: Any
                    ) -> xr.DataArray:
    """Warp every slice (every channel) with its cumulative matrices, in its own task;
    then keep the rectangle valid under every warp when ``cropping``."""
    cumul = np.asarray(prepared["tmats_cumul"].values)
    blocks = tuple(prepared["tmats_cumul"].attrs.get("nb_blocks", (1, 1)))
    out = map_slices(_warp_slice, stack.data, {"cumul": cumul}, stack.dtype, blocks=blocks,
                     mode=mode, rounding=rounding)
    result = stack.copy(data=out)
    if cropping:
        imin, imax, jmin, jmax = (int(v) for v in prepared["crop"].values)
        result = result.isel(y=slice(imin, imax), x=slice(jmin, jmax))
    return result
