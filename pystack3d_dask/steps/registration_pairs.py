"""The pairs of ``registration_calculation``: each slice filtered once and registered
on the slice before it with pystackreg, a slab of slices per task, in the process pool
(pystackreg holds the GIL)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ..kernels.registration import chain_matrices
from ..runtime.pool import run_gil_free

__all__ = ["pair", "slab_pairs"]


def _bandpass(img: np.ndarray, rows: slice, cols: slice, low: float, high: float,
              trim: bool = True) -> tuple[np.ndarray, tuple[int, int]]:
    """Difference of two Gaussian smoothings (sigmas in pixels, float32) of the area
    ``rows, cols`` of ``img``, and the (row, column) offset of what is returned within
    the area.

    The filters read the slice around the area (their 4-sigma reach), so the area is
    filtered exactly as in the whole slice. Where that reach passes the slice's own edge
    the filter sees mirrored content, which does not move with the sample: with ``trim``,
    those rows and columns are left out (unless that would leave fewer than 16).
    """
    reach = math.ceil(4 * high)  # scipy.ndimage.gaussian_filter's radius (truncate = 4)
    bounds = []
    for sl, n in ((rows, img.shape[0]), (cols, img.shape[1])):
        start, stop, _ = sl.indices(n)
        lo, hi = max(start - reach, 0), min(stop + reach, n)
        inner = (max(start, reach), min(stop, n - reach)) if trim else (start, stop)
        if inner[1] - inner[0] < 16:
            inner = (start, stop)
        bounds.append((lo, hi, inner, inner[0] - start))
    (r0, r1, (i0, i1), dr), (c0, c1, (j0, j1), dc) = bounds
    region = img[r0:r1, c0:c1].astype(np.float32)
    out = ndimage.gaussian_filter(region, low) if low > 0 else region.copy()
    out -= ndimage.gaussian_filter(region, high)
    return out[i0 - r0:i1 - r0, j0 - c0:j1 - c0], (dr, dc)


def _filtered(img: np.ndarray, rows: slice, cols: slice, threshold: float | None,
              nb_blocks: tuple[int, int], where: str | None, gaussian_sigma: float,
              bandpass: tuple[float, float] | None) -> tuple[np.ndarray, tuple[int, int]]:
    """What pystackreg sees of one slice: its area, filtered or thresholded, and the
    (row, column) offset of that within the area. ``where`` names a slice that is
    registered on another (its binary image must not be uniform); None for one that is
    only a reference."""
    offset = (0, 0)
    if bandpass is not None:
        # the low sigma removes the pixel noise as gaussian_sigma does; subtracting the
        # high one removes shading and the large features whose oblique walls read as
        # motion from one slice to the next (docs/migration.md has the figures). Blocks
        # are cut from the area as given, so only a single block may lose its edges.
        img, offset = _bandpass(img, rows, cols, *bandpass, trim=tuple(nb_blocks) == (1, 1))
    else:
        img = img[rows, cols]
    if gaussian_sigma > 0:
        # pixel noise is independent from slice to slice, so its registration error adds
        # up along the chain of pairs; smoothing on the scale of the noise removes most of
        # it (docs/migration.md has the figures)
        img = ndimage.gaussian_filter(img.astype(np.float32), gaussian_sigma)
    if threshold is not None:
        img = img <= threshold
        if where is not None and (not img.any() or img.all()):
            raise ConfigError(f"[registration_calculation] threshold = {threshold} leaves "
                              f"slice {where} uniform (every pixel on one side of it): "
                              "nothing to register")
        img = img.astype(np.uint8)  # pystackreg takes numbers
    return img, offset


def slab_pairs(previous: np.ndarray | None, slab: np.ndarray, z0: int, zs: np.ndarray,
                rows: slice, cols: slice, threshold: float | None, transformation: str,
                nb_blocks: tuple[int, int], gaussian_sigma: float = 0.0,
                bandpass: tuple[float, float] | None = None) -> np.ndarray:
    """Matrices of every slice of a slab (slices ``z0``, ``z0 + 1``, ... of the first
    channel) on the slice before it, the last of ``previous`` (None for the first slab,
    whose first slice gets no pair): (pairs, blocks, 3, 3).

    Each slice is filtered once, though it is in two pairs, and the slab's pairs go to
    the process pool in one call: a call per pair would send each slice twice and cost
    the scheduler a task per pair.
    """
    def filtered(k: int | None, img: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        # k: the slice registered on the one before it (None: the previous slab's last,
        # a reference here, checked in its own slab)
        where = None if not k else f"z = {float(zs[k]):.4f} um (index {k})"
        return _filtered(img, rows, cols, threshold, nb_blocks, where, gaussian_sigma,
                         bandpass)

    chain = [] if previous is None else [filtered(None, previous[0, -1])[0]]
    blank = [] if previous is None else [_blank(previous[0, -1], rows, cols)]
    offset = (0, 0)
    for j in range(slab.shape[1]):
        img, offset = filtered(z0 + j, slab[0, j])
        chain.append(img)
        blank.append(_blank(slab[0, j], rows, cols))
    if len(chain) < 2:
        return np.empty((0, nb_blocks[0] * nb_blocks[1], 3, 3))
    tmats = _register_chain(chain, offset, transformation, nb_blocks)
    # a pair with a blank slice has nothing to register: NaN, for calc_prepare to report
    pair_blank = np.logical_or(blank[:-1], blank[1:])
    tmats[pair_blank] = np.nan
    return tmats


def _blank(img: np.ndarray, rows: slice, cols: slice) -> bool:
    """Whether the registered area of a slice is one grey level (a slice lost by the
    microscope, a black frame): pystackreg finds an arbitrary shift there."""
    area = img[rows, cols]
    return bool(area.size == 0 or area.min() == area.max())


def _register_chain(chain: list[np.ndarray], offset: tuple[int, int], transformation: str,
                    nb_blocks: tuple[int, int]) -> np.ndarray:
    # the slices go to the pool in their own dtype (8x smaller than float64 for uint8);
    # pystackreg converts them to float64 itself
    tmats = run_gil_free(chain_matrices, chain, transformation, nb_blocks, what="pystackreg")
    if offset != (0, 0):
        # matrices found on the trimmed area, brought back to the area's own origin (a
        # pure translation is unchanged; a rotation is about another point)
        dr, dc = offset
        move = np.array([[1.0, 0.0, dc], [0.0, 1.0, dr], [0.0, 0.0, 1.0]])
        back = np.array([[1.0, 0.0, -dc], [0.0, 1.0, -dr], [0.0, 0.0, 1.0]])
        tmats = move @ tmats @ back
    return tmats


def pair(ref: np.ndarray, img: np.ndarray, rows: slice, cols: slice, threshold: float | None,
          transformation: str, nb_blocks: tuple[int, int], where: str = "",
          gaussian_sigma: float = 0.0, bandpass: tuple[float, float] | None = None
          ) -> np.ndarray:
    """The matrices of one slice on another (their (1, 1, Y, X) chunks): (blocks, 3, 3),
    as the step finds them."""
    ref_seen, _ = _filtered(ref[0, 0], rows, cols, threshold, nb_blocks, None,
                            gaussian_sigma, bandpass)
    img_seen, offset = _filtered(img[0, 0], rows, cols, threshold, nb_blocks, where,
                                 gaussian_sigma, bandpass)
    return _register_chain([ref_seen, img_seen], offset, transformation, nb_blocks)[0]

