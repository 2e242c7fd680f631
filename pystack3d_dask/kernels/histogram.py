"""Histogram matching along z, and area-mean factors (PyStack3D's two intensity steps)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from .background import fit_mask
from .stats import robust_std

__all__ = [
    "GAIN_QUANTILES",
    "area_mean",
    "bin_counts",
    "fit_gains",
    "histogram",
    "mapped_histogram",
    "match_histogram",
    "matching_lut",
    "reference_histograms",
]


def bin_counts(counts: np.ndarray, nbins: int, value_range: tuple[float, float]) -> np.ndarray:
    """Histogram over ``value_range`` of integer grey levels given by their counts
    (``counts[v]`` pixels of level v): the same bins as :func:`numpy.histogram` of the
    pixels, at the cost of one pass over the levels instead of the pixels."""
    levels = np.arange(len(counts))
    hist = np.histogram(levels, bins=nbins, range=value_range, weights=counts)[0]
    return np.rint(hist).astype(np.int64)


def histogram(img: np.ndarray, nbins: int, value_range: tuple[float, float]) -> np.ndarray:
    """Counts of ``img`` in ``nbins`` equal bins over ``value_range``.

    Integer images are counted per grey level first (``numpy.bincount``), which is
    several times faster than binning every pixel and gives the same counts.
    """
    img = np.asarray(img)
    if img.dtype.kind == "u" and img.dtype.itemsize <= 2:
        return bin_counts(np.bincount(img.ravel(), minlength=1 << (8 * img.dtype.itemsize)),
                          nbins, value_range)
    return np.histogram(img, bins=nbins, range=value_range)[0]


def reference_histograms(histograms: np.ndarray, filter_size: int) -> np.ndarray:
    """Target histogram of every slice: the mean over all slices (``filter_size = -1``) or
    a running mean over ``filter_size`` slices along z (edges reflected).

    The running mean of integer counts stays in integers, as in PyStack3D (a difference
    below one count per bin, kept for identical results).
    """
    histograms = np.asarray(histograms)
    if filter_size == -1:
        return np.broadcast_to(histograms.mean(axis=0, dtype=np.float64),
                               histograms.shape).copy()
    return uniform_filter1d(histograms, filter_size, axis=0).astype(np.float64)


def _matched_levels(hist: np.ndarray, reference: np.ndarray,
                    value_range: tuple[float, float]) -> np.ndarray:
    """The new value of each bin: where the reference's inverse CDF takes the bin's
    cumulative count."""
    nbins = len(reference)
    vmin, vmax = value_range
    hist = np.array(hist, dtype=np.float64)
    hist[hist == 0] = 1
    cdf = np.cumsum(hist)
    cdf /= cdf[-1]
    target = np.cumsum(np.asarray(reference, dtype=np.float64))
    target /= target.max()
    edges = np.linspace(vmin, vmax, nbins + 1)
    centres = (edges[1:] + edges[:-1]) / 2
    return np.interp(cdf, target, centres)


def _bin_index(values: np.ndarray, value_range: tuple[float, float], nbins: int) -> np.ndarray:
    vmin, vmax = value_range
    span = vmax - vmin if vmax > vmin else 1.0
    index = np.floor((values.astype(np.float64) - vmin) / span * nbins).astype(np.int64)
    return np.clip(index, 0, nbins - 1)


def matching_lut(hist: np.ndarray, reference: np.ndarray, value_range: tuple[float, float],
                 dtype: np.dtype, cast: Callable[[np.ndarray], np.ndarray] | None = None
                 ) -> np.ndarray:
    """The new grey level of every level of an integer dtype of up to 16 bits: the
    lookup table that :func:`match_histogram` applies to such an image."""
    cast = cast or (lambda values: values)
    levels = _matched_levels(hist, reference, value_range)
    values = np.arange(1 << (8 * np.dtype(dtype).itemsize), dtype=np.float64)
    return cast(levels[_bin_index(values, value_range, len(reference))])


def mapped_histogram(counts: np.ndarray, lut: np.ndarray, nbins: int,
                     value_range: tuple[float, float]) -> np.ndarray:
    """Histogram (as :func:`histogram`) of an integer image whose grey-level counts are
    ``counts`` once every level v is replaced by ``lut[v]``, without the image."""
    mapped = np.bincount(np.asarray(lut, dtype=np.int64), weights=counts,
                         minlength=len(counts))
    return bin_counts(mapped, nbins, value_range)


def match_histogram(img: np.ndarray, reference: np.ndarray,
                    value_range: tuple[float, float],
                    cast: Callable[[np.ndarray], np.ndarray] | None = None,
                    hist: np.ndarray | None = None) -> np.ndarray:
    """Map each grey level of ``img`` so that its cumulative histogram follows the
    reference's, by linear interpolation of the inverse reference CDF.

    Every pixel of a bin maps to one value, as in PyStack3D; empty bins count as one
    pixel so that the CDF is strictly increasing.

    Parameters
    ----------
    cast
        Applied to the new grey levels (e.g. back to the input dtype): on a lookup table
        of the levels for integer images, on the image otherwise.
    hist
        The image's own histogram over ``value_range``, when already known.

    Returns
    -------
    numpy.ndarray
        The matched image (float64 unless ``cast`` says otherwise).
    """
    cast = cast or (lambda values: values)
    nbins = len(reference)
    hist = histogram(img, nbins, value_range) if hist is None else hist
    img = np.asarray(img)
    if img.dtype.kind == "u" and img.dtype.itemsize <= 2:
        # one lookup table over the possible grey levels, then a gather per pixel
        # (np.take: a faster gather than fancy indexing for a small table)
        return np.take(matching_lut(hist, reference, value_range, img.dtype, cast), img)
    levels = _matched_levels(hist, reference, value_range)
    return cast(levels[_bin_index(img, value_range, nbins)])


def area_mean(img: np.ndarray, rows: slice, cols: slice, threshold_min: float | None,
              threshold_max: float | None) -> float:
    """Mean of the area's pixels inside the thresholds (NaN when there is none)."""
    roi = np.asarray(img[rows, cols], dtype=np.float64)
    mask = fit_mask(roi, threshold_min, threshold_max)
    return float(roi[mask].mean()) if mask.any() else float("nan")


#: Quantiles of a slice that :func:`fit_gains` compares with its neighbours'.
GAIN_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def fit_gains(quantiles: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """One gain per slice that brings its grey levels back to its neighbours'.

    The reference of a slice is the running median, over ``window`` slices along z, of
    each of its quantiles: a gain jump over fewer than half the window's slices does not
    move it, while the slow changes of the structure along z pass into it. The gain is
    the least-squares factor from the slice's quantiles to the reference's, so each
    slice is only scaled: its histogram keeps its shape (histogram matching reshapes it,
    which costs contrast and SSIM).

    Parameters
    ----------
    quantiles : numpy.ndarray
        ``(nz, nq)`` quantiles of every slice.
    window : int
        Slices of the running median (odd; clipped to the stack).

    Returns
    -------
    gains, reference : numpy.ndarray
        ``(nz,)`` factors (1 where a slice's quantiles are all 0, and where the factor
        is within three robust deviations of all the slices' factors from 1) and the
        ``(nz, nq)`` reference quantiles.
    """
    q = np.asarray(quantiles, dtype=np.float64)
    nz = q.shape[0]
    size = max(1, min(int(window), nz if nz % 2 else nz - 1)) | 1
    reference = median_filter(q, size=(size, 1), mode="nearest")
    num = (q * reference).sum(axis=1)
    den = (q * q).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gains = np.where(den > 0, num / den, 1.0)
    # a slice is only rescaled where its gain stands out of the slice-to-slice wobble
    # of the structure itself: rescaling that wobble would add error, not remove it
    wobble = gains - 1.0
    spread = robust_std(wobble)
    gains = np.where(np.abs(wobble) > 3.0 * spread, gains, 1.0)
    return gains, reference
