"""Polynomial background of a slice (2D) or of the stack (3D): sample, fit, subtract.

Conventions are PyStack3D's: x = column / (W - 1), y = row / (H - 1) from the top row,
z = slice index / (n - 1); pixels outside ``[threshold_min, threshold_max]`` are left
out of the fit and unchanged in the output; the fitted constant is not subtracted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .polynomial import Powers, accumulate_outer, separable_factors, vandermonde
from .robust import Design, robust_lstsq

__all__ = [
    "constant_index",
    "design_rows",
    "fit_mask",
    "fit_samples",
    "fit_slice",
    "grid_positions",
    "remove_background",
    "sample_coordinates",
    "sample_slice",
    "stack_design",
]


def fit_mask(img: np.ndarray, threshold_min: float | None, threshold_max: float | None
             ) -> np.ndarray:
    """Pixels that take part in the fit (inside the thresholds, both inclusive)."""
    mask = np.ones(img.shape, dtype=bool)
    if threshold_min is not None:
        mask &= img >= threshold_min
    if threshold_max is not None:
        mask &= img <= threshold_max
    return mask


def constant_index(powers: Powers) -> int:
    """Index of the constant term."""
    return powers.index((0,) * len(powers[0]))


def grid_positions(shape: tuple[int, int], skip: tuple[int, int], max_points: int | None = None,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the decimated grid (every ``skip`` pixel from 0), thinned to
    at most ``max_points`` by a fixed random choice when given."""
    rows = np.arange(0, shape[0], skip[0])
    cols = np.arange(0, shape[1], skip[1])
    rr, cc = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
    if max_points is not None and rr.size > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(rr.size, max_points, replace=False))
        rr, cc = rr[keep], cc[keep]
    return rr, cc


def sample_slice(img: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                 threshold_min: float | None, threshold_max: float | None,
                 averaging: tuple[int, int] | None = None, median: bool = False
                 ) -> np.ndarray:
    """Values at the grid points (NaN where left out of the fit).

    With ``averaging = (sy, sx)``, each value is the mean (the median with ``median``)
    of the valid pixels of the sy x sx block starting at the grid point, instead of the
    pixel itself.
    """
    img = np.asarray(img, dtype=np.float64)
    mask = fit_mask(img, threshold_min, threshold_max)
    if averaging is None:
        return np.where(mask[rows, cols], img[rows, cols], np.nan)
    sy, sx = averaging
    height, width = img.shape
    ny, nx = -(-height // sy), -(-width // sx)
    pad = ((0, ny * sy - height), (0, nx * sx - width))
    if median:
        return _block_medians(np.pad(np.where(mask, img, np.nan), pad, constant_values=np.nan),
                              (sy, sx), rows // sy, cols // sx)
    vals = np.pad(np.where(mask, img, 0.0), pad).reshape(ny, sy, nx, sx).sum(axis=(1, 3))
    counts = np.pad(mask, pad).reshape(ny, sy, nx, sx).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, vals / counts, np.nan)
    return means[rows // sy, cols // sx]


def _block_medians(img: np.ndarray, block: tuple[int, int], brow: np.ndarray,
                   bcol: np.ndarray) -> np.ndarray:
    """Median of the finite values of the blocks (brow, bcol) of an image tiled exactly
    by ``block``; NaN for a block with none."""
    sy, sx = block
    tiles = img.reshape(img.shape[0] // sy, sy, img.shape[1] // sx, sx)
    vals = np.sort(tiles[brow, :, bcol, :].reshape(brow.size, sy * sx), axis=1)  # NaN last
    n = np.isfinite(vals).sum(axis=1)
    lo = np.take_along_axis(vals, np.maximum((n - 1) // 2, 0)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(vals, np.maximum(n // 2, 0)[:, None], axis=1)[:, 0]
    return np.where(n > 0, 0.5 * (lo + hi), np.nan)


def fit_samples(values: np.ndarray, design_of: Callable[[np.ndarray], Design], n_terms: int,
                weight_func: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Fit the basis to the finite samples; zeros when there is nothing to fit (PyStack3D
    leaves such a slice or stack unchanged).

    Parameters
    ----------
    values
        The samples, NaN where left out of the fit.
    design_of
        The design matrix (or its function of a slice of rows, see
        :func:`~.robust.robust_lstsq`) at the samples of the given flat positions.
    n_terms
        Number of terms of the basis.

    Returns
    -------
    coefs : numpy.ndarray
    index : numpy.ndarray
        Flat positions of the samples fitted.
    """
    index = np.flatnonzero(np.isfinite(values))
    if index.size == 0 or np.nanmin(values) == np.nanmax(values):
        return np.zeros(n_terms), index
    return robust_lstsq(design_of(index), values[index], weight_func), index


def stack_design(index: np.ndarray, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray,
                 powers: Powers) -> Callable[[slice], np.ndarray]:
    """The 3D design matrix at samples taken on one grid in every sampled slice, as a
    function of a slice of rows.

    ``index`` holds each fitted sample's flat position ``k * len(xs) + p`` (slice k,
    grid point p); its coordinates are found chunk by chunk, so the fit holds no
    coordinate array as long as the sample.
    """
    def rows(part: slice) -> np.ndarray:
        k, p = np.divmod(index[part], len(xs))
        return vandermonde([xs[p], ys[p], zs[k]], powers)

    return rows


def design_rows(coords: list[np.ndarray], powers: Powers) -> Callable[[slice], np.ndarray]:
    """The design matrix of the basis at the points, as a function of a slice of rows:
    the fit forms it a chunk at a time, so that its memory does not grow with the
    sample (forming a chunk costs about a millisecond)."""
    return lambda rows: vandermonde([c[rows] for c in coords], powers)


def sample_coordinates(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int],
                       block: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """x and y (PyStack3D's unit coordinates) of the grid points, or of the centres of
    the ``block``-sized blocks starting there."""
    height, width = shape
    if block is None:
        return cols / max(width - 1, 1), rows / max(height - 1, 1)
    xs = np.minimum(cols + (block[1] - 1) / 2, width - 1) / max(width - 1, 1)
    ys = np.minimum(rows + (block[0] - 1) / 2, height - 1) / max(height - 1, 1)
    return xs, ys


def fit_slice(img: np.ndarray, powers: Powers, skip: tuple[int, int],
              threshold_min: float | None = None, threshold_max: float | None = None,
              weight_func: str | None = "HuberT", averaging: bool = False,
              median: bool = False) -> tuple[np.ndarray, int]:
    """2D background coefficients of one slice (every ``skip`` pixel per axis; with
    ``averaging`` the mean of each skip block, with ``median`` its median)."""
    rows, cols = grid_positions(img.shape, skip)
    blocks = averaging or median
    values = sample_slice(img, rows, cols, threshold_min, threshold_max,
                          tuple(skip) if blocks else None, median)
    xs, ys = sample_coordinates(rows, cols, img.shape, tuple(skip) if blocks else None)
    coefs, index = fit_samples(values, lambda idx: design_rows([xs[idx], ys[idx]], powers),
                               len(powers), weight_func)
    return coefs, index.size


def remove_background(img: np.ndarray, coefs: np.ndarray, powers: Powers, zpos: float = 0.0,
                      threshold_min: float | None = None, threshold_max: float | None = None,
                      keep_constant: bool = False) -> np.ndarray:
    """``img - background`` as float64; pixels outside the thresholds unchanged.

    The constant term is left out of the background (PyStack3D), unless
    ``keep_constant`` (its ``preserve_avg``, where the constant was set so that the
    removed background has zero mean).
    """
    out = np.array(img, dtype=np.float64)
    left, right = separable_factors(coefs, powers, img.shape, zpos,
                                    skip_constant=not keep_constant)
    accumulate_outer(out, left, right, sign=-1.0)
    if threshold_min is None and threshold_max is None:
        return out
    np.copyto(out, img, where=~fit_mask(img, threshold_min, threshold_max), casting="unsafe")
    return out
