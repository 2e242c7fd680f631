"""Per-slice statistics."""

from __future__ import annotations

import numpy as np

__all__ = ["cut_indices", "robust_std", "slice_cuts", "slice_stats"]


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


def cut_indices(ny: int, nx: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The rows and the columns that :func:`slice_cuts` keeps of a (ny, nx) slice: the
    middle row and the first (the x-z cut plane and the volume's front face), the
    middle column and the last (the y-z cut plane and its side face)."""
    return (ny // 2, 0), (nx // 2, nx - 1)


def slice_cuts(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows (2, nx) and columns (2, ny) of one slice named by :func:`cut_indices`:
    kept as each slice is written, they give the report its x-z and y-z views of a
    stack without reading the stack again."""
    img = np.asarray(img)
    rows, cols = cut_indices(*img.shape)
    return img[list(rows), :], np.ascontiguousarray(img[:, list(cols)].T)


def robust_std(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Normalised median absolute deviation from the median along ``axis``: the standard
    deviation for Gaussian values, unmoved by a few outliers (striped columns, slices
    with a gain jump)."""
    centre = np.median(values, axis=axis, keepdims=True)
    return 1.4826 * np.median(np.abs(values - centre), axis=axis)
