"""Robust linear least squares by iteratively re-weighted least squares (IRLS).

M-estimators with the usual definitions (as in statsmodels' RLM, which PyStack3D uses):
Huber's t = 1.345, Hampel's a, b, c = 2, 4, 8 and Tukey's biweight c = 4.685, the scale re-estimated at every
iteration as the median absolute residual / 0.6745, starting from ordinary least
squares, and stopping when the summed criterion changes by less than ``tol`` or after
``maxiter`` iterations. The weighted least squares go through the normal equations,
accumulated over chunks of rows: memory is O(samples + chunk x terms).

References
----------
P. J. Huber, "Robust Statistics", Wiley, 1981. doi:10.1002/0471725250
F. R. Hampel et al., "Robust Statistics: The Approach Based on Influence Functions",
Wiley, 1986. doi:10.1002/9781118186435
A. E. Beaton and J. W. Tukey, "The fitting of power series, meaning polynomials,
illustrated on band-spectroscopic data", Technometrics 16, 147-185, 1974.
doi:10.1080/00401706.1974.10489171
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ..errors import ConfigError

__all__ = ["CHUNK", "WEIGHT_FUNCS", "mean_prediction", "robust_lstsq"]

_MAD_NORMAL = 0.6744897501960817  # Phi^-1(3/4): the MAD of a unit normal


def _huber(z: np.ndarray, t: float = 1.345) -> tuple[np.ndarray, np.ndarray]:
    a = np.abs(z)
    weights = np.where(a <= t, 1.0, t / np.maximum(a, t))
    rho = np.where(a <= t, 0.5 * z * z, t * a - 0.5 * t * t)
    return weights, rho


def _hampel(z: np.ndarray, a: float = 2.0, b: float = 4.0, c: float = 8.0
            ) -> tuple[np.ndarray, np.ndarray]:
    r = np.abs(z)
    safe = np.maximum(r, 1e-300)
    weights = np.select([r <= a, r <= b, r <= c],
                        [1.0, a / safe, a * (c - r) / (safe * (c - b))], 0.0)
    at_b = a * b - 0.5 * a * a
    at_c = at_b + a * (c - b) / 2.0
    rho = np.select([r <= a, r <= b, r <= c],
                    [0.5 * z * z, a * r - 0.5 * a * a,
                     at_b + a / (c - b) * (c * (r - b) - 0.5 * (r * r - b * b))], at_c)
    return weights, rho


def _tukey(z: np.ndarray, c: float = 4.685) -> tuple[np.ndarray, np.ndarray]:
    # Redescending: residuals beyond c scales get no weight at all, so a second phase
    # of the sample (pores, particles) stops pulling the fit once it is told apart.
    u2 = np.minimum((z / c) ** 2, 1.0)
    weights = (1.0 - u2) ** 2
    rho = c * c / 6.0 * (1.0 - (1.0 - u2) ** 3)
    return weights, rho


WEIGHT_FUNCS = {"HuberT": _huber, "Hampel": _hampel, "TukeyBiweight": _tukey}


Design = np.ndarray | Callable[[slice], np.ndarray]

#: Rows of the design matrix formed at a time: the fit never holds more than this many
#: rows of it, so its memory does not grow with the number of samples.
CHUNK = 1 << 16


def _chunks(n: int) -> Iterator[slice]:
    for start in range(0, n, CHUNK):
        yield slice(start, min(start + CHUNK, n))


def _rows(design: Design, n: int) -> Iterator[tuple[slice, np.ndarray]]:
    for rows in _chunks(n):
        yield rows, design[rows] if isinstance(design, np.ndarray) else design(rows)


def _wls(design: Design, values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Weighted least squares through the normal equations, accumulated by chunks."""
    gram, rhs = None, None
    for rows, block in _rows(design, len(values)):
        weighted = block if weights is None else block * weights[rows, None]
        g, r = weighted.T @ block, weighted.T @ values[rows]
        gram, rhs = (g, r) if gram is None else (gram + g, rhs + r)
    return np.linalg.lstsq(gram, rhs, rcond=None)[0]


def mean_prediction(design: Design, coefs: np.ndarray, n: int) -> float:
    """``(design @ coefs).mean()``, chunk by chunk (no array of n values)."""
    total = 0.0
    for _, block in _rows(design, n):
        total += float((block @ coefs).sum())
    return total / n


def _residuals(design: Design, values: np.ndarray, coefs: np.ndarray, out: np.ndarray
               ) -> np.ndarray:
    """``values - design @ coefs`` into ``out``, chunk by chunk."""
    for rows, block in _rows(design, len(values)):
        np.subtract(values[rows], block @ coefs, out=out[rows])
    return out


def _mad_scale(resid: np.ndarray, work: np.ndarray) -> float:
    """Median absolute residual / 0.6745, using ``work`` as scratch space."""
    np.abs(resid, out=work)
    return float(np.median(work, overwrite_input=True)) / _MAD_NORMAL


def _weigh(norm: Callable, resid: np.ndarray, scale: float, weights: np.ndarray) -> float:
    """The weights of the residuals at this scale (into ``weights``) and the summed
    criterion, chunk by chunk, so that the norm's temporaries stay O(chunk)."""
    total = 0.0
    for rows in _chunks(len(resid)):
        w, rho = norm(resid[rows] / scale)
        weights[rows] = w
        total += float(rho.sum())
    return total


def robust_lstsq(design: Design, values: np.ndarray, weight_func: str | None = "HuberT",
                 maxiter: int = 50, tol: float = 1e-8) -> np.ndarray:
    """Coefficients ``x`` minimising a robust criterion of ``values - design @ x``.

    Besides ``values``, the iterations hold three arrays of the same length (residuals,
    weights, scratch space for the median) and one chunk of the design matrix.

    Parameters
    ----------
    design
        (n, q) matrix, or a function returning its rows for a slice of row indices (so
        that the whole matrix is never formed).
    values
        (n,) observations, finite.
    weight_func
        ``"HuberT"``, ``"Hampel"``, ``"TukeyBiweight"``, or ``None`` / ``"None"`` for
        ordinary least squares.
    maxiter, tol
        Stopping rule of the iterations.

    Returns
    -------
    numpy.ndarray
        (q,) coefficients.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    coefs = _wls(design, values, None)
    if weight_func in (None, "None"):
        return coefs
    if weight_func not in WEIGHT_FUNCS:
        raise ConfigError(f"weight_func = {weight_func!r}: expected one of "
                          f"{', '.join(repr(k) for k in WEIGHT_FUNCS)} or 'None'")
    norm = WEIGHT_FUNCS[weight_func]
    resid, weights, work = np.empty(n), np.empty(n), np.empty(n)
    _residuals(design, values, coefs, resid)
    scale = _mad_scale(resid, work)
    if scale == 0.0:  # a perfect fit of at least half the points
        return coefs
    _weigh(norm, resid, scale, weights)
    criterion = np.inf
    for _ in range(maxiter):
        coefs = _wls(design, values, weights)
        _residuals(design, values, coefs, resid)
        scale = _mad_scale(resid, work)
        if scale == 0.0:
            break
        # the weights of the next iteration come from the same residuals and scale as
        # this criterion: both in one pass
        new = _weigh(norm, resid, scale, weights)
        if abs(new - criterion) <= tol:
            break
        criterion = new
    return coefs
