"""Score a corrected stack against a ground truth, matching them by coordinates.

A corrected stack rarely lines up index for index with the truth: cropping removes
rows and columns, resampling moves the slices in z. :func:`quality` therefore pairs
the two by coordinate values: each result slice is compared with the truth
interpolated linearly at its z, over the y/x pixel coordinates both arrays hold. It
reads one slice at a time, so dask-backed stacks of any size can be scored.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["quality", "quality_table"]

# Result z within this fraction of the truth spacing of a truth slice is compared with
# that slice as is: z read back from file names carries 4 decimals only.
_Z_SNAP = 0.01


def quality(
    result: Any,
    truth: Any,
    data_range: float | None = None,
    *,
    channel: int | str | None = None,
    interpolate: bool = True,
) -> dict[str, float | int]:
    """Compare ``result`` with ``truth`` slice by slice, by coordinates.

    Parameters
    ----------
    result : xarray.DataArray
        Stack with dims ``(channel, z, y, x)`` or ``(z, y, x)`` (any order); ``y``
        and ``x`` coordinates are pixel indices of the original frame, ``z`` in the
        same unit as the truth's. A dim without coordinate counts 0, 1, 2, ...
    truth : xarray.DataArray
        Ground truth with dims ``(z, y, x)``.
    data_range : float, optional
        Intensity range for PSNR and SSIM. Default: the dtype range for an integer
        truth (255 for uint8), else ``truth.max() - truth.min()``.
    channel : int or str, optional
        Channel of ``result`` to score: an int picks by position, a str by label.
        Default: the first one.
    interpolate : bool
        Interpolate the truth linearly in z between its two neighbours of each result
        slice (default); if false, use the nearest truth slice.

    Returns
    -------
    dict
        ``psnr`` (dB, ``inf`` for identical data), ``ssim`` (mean over the slices),
        ``mae``, ``bias`` (mean of result - truth), ``rmse``, ``n_slices`` and
        ``n_pixels`` compared, ``n_skipped`` (result slices outside the truth's z
        range), ``n_nonfinite`` (NaN/inf result pixels left out of every score;
        slices holding some are left out of the SSIM) and ``data_range``.

    Raises
    ------
    InputError
        If the dims are not as expected, the z ranges or the y/x coordinates do not
        overlap, or ``data_range`` is not positive.
    """
    res, tru = _checked_pair(result, truth, channel)
    rng = _data_range(tru, data_range)
    res, tru = _common_yx(res, tru)

    z_tru = _coord(tru, "z").astype(np.float64)
    order = np.argsort(z_tru, kind="stable")
    z_sorted = z_tru[order]
    tol = _snap_tolerance(z_sorted)
    z_res = _coord(res, "z").astype(np.float64)

    plans = [_plan(zr, z_sorted, order, tol, interpolate) for zr in z_res]
    if not any(p is not None for p in plans):
        raise InputError(f"result and truth do not overlap in z: result "
                         f"{_span(z_res)}, truth {_span(z_tru)}")
    return _scores(res, tru, plans, rng).summary(len(plans), rng)


def _checked_pair(result: Any, truth: Any, channel: int | str | None) -> tuple[Any, Any]:
    """The result's channel and the truth, both checked and transposed to (z, y, x)."""
    res = _select_channel(_check_array("result", result), channel)
    tru = _check_array("truth", truth)
    for name, arr in (("result", res), ("truth", tru)):
        if set(arr.dims) != {"z", "y", "x"}:
            raise InputError(f"{name} must have dims (z, y, x) (plus 'channel' for result), "
                             f"got {tuple(arr.dims)}")
    return res.transpose("z", "y", "x"), tru.transpose("z", "y", "x")


def _common_yx(res: Any, tru: Any) -> tuple[Any, Any]:
    """Both arrays restricted to the y/x pixels they both hold."""
    sel_res: dict[str, Any] = {}
    sel_tru: dict[str, Any] = {}
    for dim in ("y", "x"):
        common, i_res, i_tru = np.intersect1d(_coord(res, dim), _coord(tru, dim),
                                              assume_unique=False, return_indices=True)
        if common.size == 0:
            raise InputError(f"result and truth share no {dim} coordinate: result "
                             f"{_span(_coord(res, dim))}, truth {_span(_coord(tru, dim))}")
        sel_res[dim] = _as_indexer(i_res)
        sel_tru[dim] = _as_indexer(i_tru)
    return res.isel(sel_res), tru.isel(sel_tru)


@dataclass
class _Sums:
    """Running sums of the differences over the compared slices."""

    sum_abs: float = 0.0
    sum_diff: float = 0.0
    sum_sq: float = 0.0
    n_pix: int = 0
    n_nonfinite: int = 0
    n_slices: int = 0
    ssims: list[float] = field(default_factory=list)

    def add(self, img: np.ndarray, ref: np.ndarray, rng: float, win: int) -> None:
        """Add one slice; its non-finite pixels are counted and left out."""
        from skimage.metrics import structural_similarity

        diff = img - ref
        finite = np.isfinite(diff)
        n_bad = int(diff.size - np.count_nonzero(finite))
        if n_bad:
            diff = diff[finite]
        self.n_nonfinite += n_bad
        self.n_slices += 1
        self.n_pix += diff.size
        self.sum_diff += float(diff.sum())
        self.sum_abs += float(np.abs(diff).sum())
        self.sum_sq += float(np.dot(diff.ravel(), diff.ravel()))
        if n_bad == 0 and win >= 3:
            self.ssims.append(float(structural_similarity(ref, img, data_range=rng,
                                                          win_size=win)))

    def summary(self, n_planned: int, rng: float) -> dict[str, float | int]:
        """The scores of :func:`quality`."""
        nan = float("nan")
        n_pix = self.n_pix
        mse = self.sum_sq / n_pix if n_pix else nan
        if not n_pix:
            psnr = nan
        elif mse == 0:
            psnr = math.inf
        else:
            psnr = 10.0 * math.log10(rng * rng / mse)
        return {
            "psnr": psnr,
            "ssim": float(np.mean(self.ssims)) if self.ssims else nan,
            "mae": self.sum_abs / n_pix if n_pix else nan,
            "bias": self.sum_diff / n_pix if n_pix else nan,
            "rmse": math.sqrt(mse) if n_pix else nan,
            "n_slices": self.n_slices,
            "n_pixels": n_pix,
            "n_skipped": n_planned - self.n_slices,
            "n_nonfinite": self.n_nonfinite,
            "data_range": rng,
        }


def _scores(res: Any, tru: Any, plans: list[Any], rng: float) -> _Sums:
    """Compare each planned result slice with its truth, a batch of slices at a time."""
    shape2d = (res.sizes["y"], res.sizes["x"])
    # slices are read a batch at a time (one graph each, not one per slice), in float64
    batch = max(1, min(32, (64 << 20) // max(1, 8 * shape2d[0] * shape2d[1])))
    truth_rows: dict[int, np.ndarray] = {}

    def truth_slices(needed: set[int]) -> None:
        """Keep the truth slices of ``needed`` in ``truth_rows`` (and only those)."""
        for i in list(truth_rows):
            if i not in needed:
                del truth_rows[i]
        todo = sorted(needed - set(truth_rows))
        if todo:
            block = np.asarray(tru.isel(z=todo).values, dtype=np.float64)
            truth_rows.update(zip(todo, block))

    win = min(7, *shape2d)
    win -= 1 - win % 2  # SSIM needs an odd window no larger than the image
    sums = _Sums()
    kept = [k for k, plan in enumerate(plans) if plan is not None]
    for b0 in range(0, len(kept), batch):
        ks = kept[b0:b0 + batch]
        needed = set()
        for k in ks:  # the nearest truth slice, and the second one where it weighs
            (i0, _), (i1, w1) = plans[k]
            needed.update((i0, i1) if w1 != 0 else (i0,))
        truth_slices(needed)
        block = np.asarray(res.isel(z=ks).values, dtype=np.float64)
        for k, img in zip(ks, block):
            (i0, w0), (i1, w1) = plans[k]
            ref = (truth_rows[i0] if w1 == 0
                   else w0 * truth_rows[i0] + w1 * truth_rows[i1])
            sums.add(img, ref, rng, win)
    return sums


def quality_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """Format several :func:`quality` results as an aligned text table.

    Parameters
    ----------
    rows : mapping of str to dict
        Row name to score dict (keys ``psnr``, ``ssim``, ``mae``, ``bias``; a missing
        key shows as ``-``).

    Returns
    -------
    str
        Header, rule and one line per row (no trailing newline).
    """
    if not isinstance(rows, Mapping):
        raise InputError(f"rows must be a mapping of name to score dict, got {type(rows).__name__}")
    columns = (("PSNR", "psnr", "{:.2f}"), ("SSIM", "ssim", "{:.4f}"),
               ("MAE", "mae", "{:.3f}"), ("bias", "bias", "{:+.3f}"))
    table = [["name", *(c[0] for c in columns)]]
    for name, scores in rows.items():
        if not isinstance(scores, Mapping):
            raise InputError(f"rows[{name!r}] must be a score dict, got {type(scores).__name__}")
        table.append([str(name), *(_fmt(scores.get(key), fmt) for _, key, fmt in columns)])
    widths = [max(len(r[j]) for r in table) for j in range(len(table[0]))]

    def line(cells: list[str]) -> str:
        # Names left-aligned, numbers right-aligned so their decimals line up.
        numbers = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([cells[0].ljust(widths[0]), *numbers]).rstrip()

    out = [line(table[0]), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in table[1:])
    return "\n".join(out)


def _fmt(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return fmt.format(v)


def _check_array(name: str, arr: Any) -> Any:
    import xarray as xr

    if not isinstance(arr, xr.DataArray):
        raise InputError(f"{name} must be an xarray.DataArray, got {type(arr).__name__}")
    return arr


def _select_channel(arr: Any, channel: int | str | None) -> Any:
    if "channel" not in arr.dims:
        if channel not in (None, 0):
            raise InputError(f"channel={channel!r} given but result has no 'channel' dim")
        return arr
    n = arr.sizes["channel"]
    if channel is None:
        channel = 0
    if isinstance(channel, (int, np.integer)) and not isinstance(channel, bool):
        if not -n <= channel < n:
            raise InputError(f"channel must be a position in [0, {n - 1}] or a label, "
                             f"got {channel}")
        return arr.isel(channel=int(channel))
    labels = _coord(arr, "channel")
    if channel not in list(labels):
        raise InputError(f"channel must be one of {list(labels)} or a position, got {channel!r}")
    return arr.sel(channel=channel)


def _coord(arr: Any, dim: Hashable) -> np.ndarray:
    if dim in arr.coords:
        return np.asarray(arr.coords[dim].values)
    return np.arange(arr.sizes[dim])


def _as_indexer(idx: np.ndarray) -> slice | np.ndarray:
    """A slice when the indices are a contiguous run: cheaper on dask than a list."""
    if idx.size and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _span(values: np.ndarray) -> str:
    if values.size == 0:
        return "(empty)"
    return f"[{values.min()}, {values.max()}]"


def _data_range(truth: Any, data_range: float | None) -> float:
    if data_range is not None:
        try:
            out = float(data_range)
        except (TypeError, ValueError):
            out = float("nan")
        if not (math.isfinite(out) and out > 0):
            raise InputError(f"data_range must be a positive number, got {data_range!r}")
        return out
    dtype = np.dtype(truth.dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(info.max) - float(info.min)
    if dtype.kind == "b":
        return 1.0
    out = float(truth.max()) - float(truth.min())
    if not (math.isfinite(out) and out > 0):
        raise InputError("data_range must be given: the float truth is constant or not finite")
    return out


def _snap_tolerance(z_sorted: np.ndarray) -> float:
    steps = np.diff(z_sorted)
    steps = steps[steps > 0]
    if steps.size:
        return _Z_SNAP * float(steps.min())
    scale = float(np.abs(z_sorted).max()) if z_sorted.size else 0.0
    return 1e-9 * max(1.0, scale)


def _plan(zr: float, z_sorted: np.ndarray, order: np.ndarray, tol: float,
          interpolate: bool) -> tuple[tuple[int, float], tuple[int, float]] | None:
    """Truth slices and weights for a result slice at ``zr``; None when out of range."""
    if not np.isfinite(zr) or zr < z_sorted[0] - tol or zr > z_sorted[-1] + tol:
        return None
    j = int(np.searchsorted(z_sorted, zr))
    lo, hi = max(j - 1, 0), min(j, z_sorted.size - 1)
    nearest = lo if abs(zr - z_sorted[lo]) <= abs(z_sorted[hi] - zr) else hi
    if not interpolate or abs(zr - z_sorted[nearest]) <= tol or lo == hi:
        return (int(order[nearest]), 1.0), (int(order[nearest]), 0.0)
    w1 = (zr - z_sorted[lo]) / (z_sorted[hi] - z_sorted[lo])
    return (int(order[lo]), 1.0 - w1), (int(order[hi]), w1)
