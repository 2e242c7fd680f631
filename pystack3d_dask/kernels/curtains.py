"""Curtain removal by column runs: the stripes of a FIB-SEM slice estimated as thin,
edge-anchored runs of one level along the milling direction, and subtracted alone."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .destriping import _along, _block_mean, array_module
from .stats import robust_std

__all__ = ["column_profile"]


def _stripe_runs(hp: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each column of ``hp`` (rows: blocks along the stripes), the run of rows
    anchored at the top or the bottom edge, and its level, that best explain the column
    as one stripe plus zero elsewhere (least absolute deviations): curtains start at the
    milled edge and run some way along the slice."""
    n = hp.shape[0]
    best = np.abs(hp).sum(axis=0)  # no stripe at all
    start = np.zeros(hp.shape[1], dtype=np.int64)
    stop = np.zeros(hp.shape[1], dtype=np.int64)
    level = np.zeros(hp.shape[1], dtype=hp.dtype)
    absolute = np.abs(hp)
    for c in cuts:
        for lo, hi in ((0, c), (n - c, n)):
            part = hp[lo:hi]
            value = np.median(part, axis=0)
            cost = (np.abs(part - value).sum(axis=0) + absolute[:lo].sum(axis=0)
                    + absolute[hi:].sum(axis=0))
            better = cost < best
            best = np.where(better, cost, best)
            start = np.where(better, lo, start)
            stop = np.where(better, hi, stop)
            level = np.where(better, value, level)
    return start, stop, level


def column_profile(img: Any, width: int = 31, k: float = 4.0, anchor: float = 0.4,
                   angle: float = 0.0) -> Any:
    """Remove curtains as what they are: thin stripes, constant along the milling
    direction over a run that starts at the slice's edge.

    Only the stripe component is estimated, so the structure is left alone: a
    running median ``width`` pixels across the stripes takes away the structure larger
    than a stripe; what remains, averaged over blocks of rows, is a column profile in
    which a stripe stays the same over a long run of rows, while structure (features
    shorter than about half the run) and noise do not. A column is a stripe candidate
    when its median over the whole slice, or over the first or last ``anchor`` of its
    rows, stands more than ``k`` robust deviations out of all the columns' medians; each
    candidate gets the edge-anchored run and level that fit it best, which is then
    subtracted from those rows alone, if it looks like a stripe: one level along the
    run, standing out of the noise (:func:`_stripe_like`). Other columns are not
    touched.

    Parameters
    ----------
    img
        One slice (Y, X), NumPy or CuPy (computed on the host).
    width
        Width (pixels) of the running median across the stripes: wider than the widest
        stripe, narrower than the structure.
    k
        Detection threshold, in robust standard deviations of the column medians.
    anchor
        Shortest stripe run detected, as a fraction of the slice's height.
    angle
        Stripes' angle from the vertical (degrees), as for :func:`wavelet_fourier`.

    Returns
    -------
    array
        Float image, same shape (float32 for 8- and 16-bit and float32 input).
    """
    xp = array_module(img)
    if xp is not np:
        return xp.asarray(column_profile(xp.asnumpy(img), width, k, anchor, angle))
    exact = np.float32 if img.dtype.itemsize <= 4 else np.float64
    work = np.asarray(img, dtype=exact)
    return _along(work, angle, lambda a: _column_profile_vertical(a, width, k, anchor))


def _column_profile_vertical(work: np.ndarray, width: int, k: float, anchor: float
                             ) -> np.ndarray:
    ny, nx = work.shape
    # blocks of rows: the profile is averaged along the stripes anyway; 4 rows a block
    # cost a quarter and give levels between the grey levels of an integer image
    block = max(1, min(4, ny // 32))
    rows = _block_mean(work, block, 0) if block > 1 else work
    hp = rows - ndimage.median_filter(rows, size=(1, min(width | 1, nx - (nx % 2 == 0))),
                                      mode="reflect")
    n = hp.shape[0]
    m = max(1, round(anchor * n))
    medians = np.stack([np.median(hp, axis=0), np.median(hp[:m], axis=0),
                        np.median(hp[n - m:], axis=0)])
    spread = np.maximum(robust_std(medians), 1e-6 * (1 + np.abs(work).max()))
    candidates = (np.abs(medians) > k * spread[:, None]).any(axis=0)
    candidates = ndimage.binary_dilation(candidates)  # a stripe's shoulders
    cols = np.flatnonzero(candidates)
    if not cols.size:
        return work.copy()
    cuts = np.unique(np.linspace(0, n, 17).round().astype(np.int64)[1:])
    cuts = cuts[cuts >= m // 2]
    start, stop, level = _stripe_runs(hp[:, cols], cuts)
    # noise of one block of hp, from the differences of consecutive blocks of every
    # column (structure changes little from one block to the next, noise entirely)
    noise = robust_std(np.diff(hp, axis=0).ravel()) / np.sqrt(2.0)
    keep = _stripe_like(hp[:, cols], start, stop, level, noise)
    out = work.copy()
    for j, lo, hi, value in zip(cols[keep], start[keep] * block, stop[keep] * block, level[keep]):
        # the last block takes the rows left over by the blocking
        out[lo: ny if hi >= n * block else hi, j] -= value
    return out


def _stripe_like(hp: np.ndarray, start: np.ndarray, stop: np.ndarray, level: np.ndarray,
                 noise: float, spread: float = 2.0, z: float = 3.0, corr: float = 4.0
                 ) -> np.ndarray:
    """Which fitted runs look like a stripe rather than structure or noise.

    A stripe is one level along its run: the run's values must scatter about the level
    no more than ``spread`` times ``noise``, the noise of one block of ``hp`` (a pore or
    particle edge that a column crosses varies along it). And the level must stand out
    of that noise: ``z`` standard errors of a mean over the run, counting ``corr``
    blocks as one (the structure left in ``hp`` is correlated over a few blocks).
    """
    keep = level != 0
    for i in np.flatnonzero(keep):
        run = hp[start[i]:stop[i], i]
        scatter = float(robust_std(run))  # about the run's median, which is its level
        significant = abs(level[i]) >= z * noise * np.sqrt(corr / run.size)
        keep[i] = scatter <= spread * noise and significant
    return keep
