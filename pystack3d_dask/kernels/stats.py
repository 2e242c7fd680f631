"""Per-slice statistics."""

from __future__ import annotations

import numpy as np

__all__ = ["robust_std", "slice_stats"]


def slice_stats(img: np.ndarray) -> np.ndarray:
    """Minimum, maximum and mean of one slice, as float64.

    Parameters
    ----------
    img
        A 2D slice of any real dtype.

    Returns
    -------
    numpy.ndarray
        ``[min, max, mean]``; the mean is accumulated in float64 so that large uint16
        slices do not overflow or lose precision.
    """
    img = np.asarray(img)
    return np.array([img.min(), img.max(), img.mean(dtype=np.float64)], dtype=np.float64)


def robust_std(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Normalised median absolute deviation from the median along ``axis``: the standard
    deviation for Gaussian values, unmoved by a few outliers (striped columns, slices
    with a gain jump)."""
    centre = np.median(values, axis=axis, keepdims=True)
    return 1.4826 * np.median(np.abs(values - centre), axis=axis)
