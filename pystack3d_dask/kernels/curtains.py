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
    touched. The running median is taken three times, each time of the slice less the
    stripes found before, so that wide stripes and stripes side by side are not taken
    for structure.

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


def _column_profile_vertical(work: np.ndarray, width: int, k: float, anchor: float,
                             passes: int = 3) -> np.ndarray:
    ny, nx = work.shape
    # blocks of rows: the profile is averaged along the stripes anyway; 4 rows a block
    # cost a quarter and give levels between the grey levels of an integer image
    block = max(1, min(4, ny // 32))
    rows = _block_mean(work, block, 0) if block > 1 else work
    size = (1, min(width | 1, nx - (nx % 2 == 0)))
    tiny = 1e-6 * (1 + float(np.abs(work).max()))
    level = ndimage.median_filter(rows, size=size, mode="reflect")
    stripes = _fit_stripes(rows - level, k, anchor, tiny)
    for _ in range(passes - 1):
        # the structure's level across the columns, taken again from the slice less the
        # stripes found so far: a wide stripe, or stripes side by side, fill much of the
        # running median's window and would otherwise be taken for structure (and their
        # neighbours for stripes of the other sign). Only columns within the window's
        # reach of a stripe change.
        near = ndimage.binary_dilation(stripes.any(axis=0), iterations=size[1] // 2)
        if not near.any():
            break
        _update_level(level, rows - stripes, near, size)
        found = _fit_stripes(rows - level, k, anchor, tiny)
        if np.array_equal(found, stripes):
            break
        stripes = found
    out = work.copy()
    full = stripes.shape[0] * block
    out[:full] -= np.repeat(stripes, block, axis=0) if block > 1 else stripes
    if full < ny:
        out[full:] -= stripes[-1]  # the last block takes the rows left over by the blocking
    return out


def _update_level(level: np.ndarray, rows: np.ndarray, near: np.ndarray,
                  size: tuple[int, int]) -> None:
    """``level`` (the running median of ``size`` across the columns) recomputed from
    ``rows`` on the columns ``near`` marks, in place: each run of such columns is
    filtered with the window's reach on both sides, so that it comes out as a filter of
    the whole slice would give it."""
    half = size[1] // 2
    labels, n = ndimage.label(near)
    for lo_hi in ndimage.find_objects(labels)[:n]:
        lo, hi = lo_hi[0].start, lo_hi[0].stop
        a, b = max(lo - half, 0), min(hi + half, rows.shape[1])
        part = ndimage.median_filter(rows[:, a:b], size=size, mode="reflect")
        # lo:hi lie at least ``half`` from a cut that is not the slice's edge: their
        # windows hold their true neighbours only, never the mirrored part
        level[:, lo:hi] = part[:, lo - a:hi - a]


def _fit_stripes(hp: np.ndarray, k: float, anchor: float, tiny: float) -> np.ndarray:
    """The stripes of ``hp`` (blocks of rows less the structure's level): each stripe
    candidate's edge-anchored run set to its level where it looks like a stripe, zero
    elsewhere."""
    n = hp.shape[0]
    m = max(1, round(anchor * n))
    medians = np.stack([np.median(hp, axis=0), np.median(hp[:m], axis=0),
                        np.median(hp[n - m:], axis=0)])
    spread = np.maximum(robust_std(medians), tiny)
    candidates = (np.abs(medians) > k * spread[:, None]).any(axis=0)
    candidates = ndimage.binary_dilation(candidates)  # a stripe's shoulders
    cols = np.flatnonzero(candidates)
    stripes = np.zeros_like(hp)
    if not cols.size:
        return stripes
    cuts = np.unique(np.linspace(0, n, 17).round().astype(np.int64)[1:])
    cuts = cuts[cuts >= m // 2]
    start, stop, level = _stripe_runs(hp[:, cols], cuts)
    # noise of one block of hp, from the differences of consecutive blocks of every
    # column (structure changes little from one block to the next, noise entirely)
    noise = robust_std(np.diff(hp, axis=0).ravel()) / np.sqrt(2.0)
    # how much a column of hp scatters along its length, structure included
    typical = float(np.median(robust_std(hp)))
    keep = _stripe_like(hp[:, cols], start, stop, level, noise, typical)
    for j, lo, hi, value in zip(cols[keep], start[keep], stop[keep], level[keep]):
        stripes[lo:hi, j] = value
    return stripes


def _stripe_like(hp: np.ndarray, start: np.ndarray, stop: np.ndarray, level: np.ndarray,
                 noise: float, typical: float, spread: float = 2.0, z: float = 3.0,
                 corr: float = 4.0) -> np.ndarray:
    """Which fitted runs look like a stripe rather than structure or noise.

    A stripe is one level along its run: the run's values must scatter about the level
    no more than ``spread`` times ``typical``, the scatter of a column of ``hp`` (noise
    and what structure the running median leaves; a column along a pore's or particle's
    edge scatters more). And the level must stand out of that scatter (or of ``noise``,
    the noise of one block, if larger): ``z`` standard errors of a mean over the run,
    counting ``corr`` blocks as one (the structure left in ``hp`` is correlated over a
    few blocks).
    """
    keep = level != 0
    scatter = np.zeros(level.shape, dtype=np.float64)
    # runs share a few (start, stop) pairs: one vectorised scatter per pair
    for lo, hi in set(zip(start[keep].tolist(), stop[keep].tolist())):
        same = keep & (start == lo) & (stop == hi)
        scatter[same] = robust_std(hp[lo:hi, same], axis=0)  # about the level, the median
    length = np.maximum(stop - start, 1)
    significant = np.abs(level) >= z * np.maximum(scatter, noise) * np.sqrt(corr / length)
    return keep & significant & (scatter <= spread * typical)
