"""Registration of a slice on the previous one (pystackreg), and the warps that apply it.

Matrices are pystackreg's 3 x 3 homogeneous matrices, one per block when the slices are
cut into ``nb_blocks = [p, q]`` blocks; the cumulative matrix of slice k is the product
of the pairwise ones up to k (PyStack3D's convention, applied by scikit-image's warp).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError

__all__ = [
    "TRANSFORMATIONS",
    "axis_aligned_bounds",
    "chain_matrices",
    "check_transformation",
    "cumulative",
    "inner_rectangle",
    "outlier_pairs",
    "pair_matrices",
    "remove_drift",
    "remove_running_mean",
    "valid_mask",
    "warp_slice",
]

TRANSFORMATIONS = ("TRANSLATION", "RIGID_BODY", "SCALED_ROTATION", "AFFINE")


def check_transformation(transformation: str) -> None:
    """Refuse a transformation the cumulative matrices cannot use, with the reason."""
    if transformation == "BILINEAR":
        raise ConfigError("transformation = 'BILINEAR' is refused, as in PyStack3D: a "
                          "bilinear warp is not an affine matrix, which the cumulative "
                          f"products need; use one of {list(TRANSFORMATIONS)}")
    if transformation not in TRANSFORMATIONS:
        raise ConfigError(f"transformation = {transformation!r}: expected one of "
                          f"{list(TRANSFORMATIONS)}")


def pair_matrices(ref: np.ndarray, img: np.ndarray, transformation: str = "TRANSLATION",
                  nb_blocks: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Matrices registering ``img`` on ``ref``, one per block: (p * q, 3, 3).

    Blocks are the ``p x q`` equal tiles of the image (rows first); a remainder at the
    bottom or right edge is left out, as in PyStack3D.
    """
    from pystackreg import StackReg

    check_transformation(transformation)
    reg = StackReg(getattr(StackReg, transformation))
    p, q = nb_blocks
    h, w = img.shape[0] // p, img.shape[1] // q
    out = []
    for i in range(p):
        for j in range(q):
            rows, cols = slice(i * h, (i + 1) * h), slice(j * w, (j + 1) * w)
            out.append(reg.register(ref[rows, cols], img[rows, cols]))
    return np.asarray(out)


def chain_matrices(chain: list[np.ndarray], transformation: str = "TRANSLATION",
                   nb_blocks: tuple[int, int] = (1, 1)) -> np.ndarray:
    """:func:`pair_matrices` of every slice of ``chain`` on the one before it:
    (len(chain) - 1, p * q, 3, 3)."""
    return np.asarray([pair_matrices(ref, img, transformation, nb_blocks)
                       for ref, img in zip(chain[:-1], chain[1:])])


def outlier_pairs(tmats: np.ndarray, max_shift: float) -> np.ndarray:
    """Indices of the slices whose matrix on the slice before it (any block) is NaN (a
    blank slice in the pair) or shifts by more than ``max_shift`` pixels."""
    shift = np.hypot(tmats[..., 0, 2], tmats[..., 1, 2])  # (z, blocks)
    bad = ~np.isfinite(tmats).all(axis=(-2, -1)) | (shift > max_shift)
    return np.flatnonzero(bad.any(axis=-1))


def cumulative(tmats: np.ndarray) -> np.ndarray:
    """Prefix products along z: ``cum[k] = cum[k - 1] @ tmats[k]`` (per block)."""
    out = np.empty_like(tmats, dtype=np.float64)
    out[0] = tmats[0]
    for k in range(1, len(tmats)):
        out[k] = out[k - 1] @ tmats[k]
    return out


def remove_drift(cumul: np.ndarray, drift: tuple[float, float]) -> np.ndarray:
    """Subtract ``k * [dx, dy]`` from the translation of slice k."""
    out = cumul.copy()
    k = np.arange(len(out))[:, None]
    out[:, :, 0, 2] -= k * drift[0]
    out[:, :, 1, 2] -= k * drift[1]
    return out


def remove_running_mean(cumul: np.ndarray, box_size: int) -> np.ndarray:
    """``T + I - running_mean(T)`` over ``box_size`` slices: keeps slow drift out of the
    correction."""
    if box_size in (0, 1):
        return cumul
    # imported here: the pool processes that run pair_matrices need no SciPy
    from scipy.ndimage import uniform_filter1d

    return cumul + np.identity(3) - uniform_filter1d(cumul, box_size, axis=0)


def _transform(tmats: np.ndarray, shape: tuple[int, int], nb_blocks: tuple[int, int]):
    from skimage.transform import AffineTransform, PiecewiseAffineTransform

    if tuple(nb_blocks) == (1, 1):
        return AffineTransform(matrix=tmats[0])
    # piecewise affine through the block centres, extended past the edges so that the
    # triangulation covers every pixel
    p, q = nb_blocks
    h, w = shape[0] // p, shape[1] // q
    src, dst = [], []
    for i in range(p):
        for j in range(q):
            tmat = tmats[i * q + j]
            x, y = w * (0.5 + j), h * (0.5 + i)
            points = [(x, y)]
            if j == 0:
                points.append((x - w, y))
            if j == q - 1:
                points.append((x + w, y))
            if i == 0:
                points.append((x, y - h))
            if i == p - 1:
                points.append((x, y + h))
            for px, py in points:
                src.append([px, py])
                dst.append(list((tmat @ np.array([px, py, 1.0]))[:2]))
    tform = PiecewiseAffineTransform()
    tform.estimate(np.asarray(src), np.asarray(dst))
    return tform


def _is_translation(tmats: np.ndarray, nb_blocks: tuple[int, int]) -> bool:
    m = np.asarray(tmats, dtype=np.float64).reshape(-1, 3, 3)
    return (tuple(nb_blocks) == (1, 1) and np.array_equal(m[0, :2, :2], np.identity(2))
            and np.array_equal(m[0, 2], [0.0, 0.0, 1.0]))


def _shift_bilinear(img: np.ndarray, tx: float, ty: float, mode: str) -> np.ndarray:
    """scikit-image's bilinear warp for a pure translation: the source point of every
    pixel has the same fractional part, so the warp is a weighted sum of four shifted
    views of the padded slice (a few array passes, not a loop over pixels). Same
    neighbours (``floor`` and ``ceil`` of the source point), same weights and order of
    operations, same border rules (``numpy.pad``'s, which scikit-image follows) and
    the same final clip to the input's range."""
    rows, cols = img.shape
    iy, ix = math.floor(ty), math.floor(tx)
    fy, fx = ty - iy, tx - ix
    # rows iy .. iy + rows - 1 (+ 1 below when there is a fractional part), and columns
    before_y, after_y = max(0, -iy), max(0, iy + (fy > 0))
    before_x, after_x = max(0, -ix), max(0, ix + (fx > 0))
    pad = ((before_y, after_y), (before_x, after_x))
    padded = (np.pad(img, pad, mode="constant", constant_values=np.nan) if mode == "constant"
              else np.pad(img, pad, mode=mode))
    y0, x0 = before_y + iy, before_x + ix
    # in place, into at most three slice-sized buffers: each fresh array of a slice's
    # size costs page faults that take as long as the arithmetic
    scratch = np.empty((rows, cols), dtype=padded.dtype) if fx != 0 else None

    def row(dy: int) -> np.ndarray:
        left = padded[y0 + dy: y0 + dy + rows, x0: x0 + cols]
        if scratch is None:
            return np.array(left)
        out = np.multiply(left, 1 - fx)
        right = padded[y0 + dy: y0 + dy + rows, x0 + 1: x0 + 1 + cols]
        out += np.multiply(right, fx, out=scratch)
        return out

    out = row(0)
    if fy != 0:
        out *= 1 - fy
        below = row(1)
        below *= fy
        out += below
    return np.clip(out, img.min(), img.max(), out=out)


def warp_slice(img: np.ndarray, tmats: np.ndarray, nb_blocks: tuple[int, int] = (1, 1),
               mode: str = "constant") -> np.ndarray:
    """Apply a slice's cumulative matrices (bilinear); outside the image: NaN with
    ``mode = "constant"``, else ``numpy.pad``'s rule of that name. Pure translations
    (the TRANSLATION registration) take a faster path with the same result."""
    if _is_translation(tmats, nb_blocks):
        m = np.asarray(tmats, dtype=np.float64).reshape(-1, 3, 3)[0]
        # 8- and 16-bit values (and float32 slices) are exact in float32, and the
        # interpolated values differ from float64's by ~1e-7 of the range: half the
        # memory traffic of this memory-bound warp
        exact = np.float32 if img.dtype.itemsize <= 2 or img.dtype == np.float32 else np.float64
        work = np.asarray(img, dtype=exact)
        return _shift_bilinear(work, float(m[0, 2]), float(m[1, 2]), mode)
    from skimage.transform import warp

    tform = _transform(tmats, img.shape, nb_blocks)
    return warp(np.asarray(img, dtype=np.float64), tform, mode=mode, cval=np.nan,
                preserve_range=True)


def valid_mask(tmats: np.ndarray, shape: tuple[int, int],
               nb_blocks: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Pixels that :func:`warp_slice` with ``mode = "constant"`` leaves finite.

    For one affine matrix, without warping anything: scikit-image's bilinear warp gives
    cval (NaN) where the source point's four neighbours ``floor``/``ceil`` are not all
    inside the image, that is outside ``0 <= row <= rows - 1``, ``0 <= col <= cols - 1``;
    the source point is computed with the same float64 expression, in the same order, so
    the mask is the same to the bit (tested). Piecewise warps (several blocks) and
    projective matrices are warped.
    """
    tmat = np.asarray(tmats, dtype=np.float64).reshape(-1, 3, 3)
    rows, cols = shape
    if tuple(nb_blocks) != (1, 1) or not np.array_equal(tmat[0, 2], [0.0, 0.0, 1.0]):
        return np.isfinite(warp_slice(np.ones(shape), tmat, nb_blocks))
    m = tmat[0]
    x = np.arange(cols, dtype=np.float64)[None, :]
    y = np.arange(rows, dtype=np.float64)[:, None]
    c = m[0, 0] * x + m[0, 1] * y + m[0, 2]
    r = m[1, 0] * x + m[1, 1] * y + m[1, 2]
    return (c >= 0) & (c <= cols - 1) & (r >= 0) & (r <= rows - 1)


def axis_aligned_bounds(cumul: np.ndarray, shape: tuple[int, int]
                        ) -> tuple[int, int, int, int] | None:
    """:func:`inner_rectangle` of the pixels valid under every warp, computed from the
    matrices alone when every one maps rows to rows and columns to columns (one block,
    no rotation or shear: the TRANSLATION registration); None otherwise.

    For such a matrix the source column of a pixel depends on its column only, and its
    row on its row (the zero terms add exactly 0.0 to :func:`valid_mask`'s expression),
    so each slice's valid pixels are a row interval times a column interval, and so is
    their intersection: its rows and columns are the AND of the 1D masks, O(rows + cols)
    a slice instead of O(rows x cols).
    """
    m = np.asarray(cumul, dtype=np.float64)
    if m.ndim != 4 or m.shape[1] != 1:
        return None
    m = m[:, 0]
    if (np.any(m[:, 0, 1] != 0) or np.any(m[:, 1, 0] != 0)
            or not np.array_equal(m[:, 2], np.broadcast_to([0.0, 0.0, 1.0], (len(m), 3)))):
        return None
    rows, cols = shape
    x = np.arange(cols, dtype=np.float64)[None, :]
    y = np.arange(rows, dtype=np.float64)[None, :]
    c = m[:, 0, 0, None] * x + m[:, 0, 2, None]
    r = m[:, 1, 1, None] * y + m[:, 1, 2, None]
    col_ok = ((c >= 0) & (c <= cols - 1)).all(axis=0)
    row_ok = ((r >= 0) & (r <= rows - 1)).all(axis=0)
    (imin, imax), (jmin, jmax) = _longest_run(row_ok), _longest_run(col_ok)
    if imax == imin or jmax == jmin:
        return 0, 0, 0, 0
    return imin, imax, jmin, jmax


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """``(start, stop)`` of the first longest run of True (``(0, 0)`` if none)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    if not edges.size:
        return 0, 0
    starts, stops = edges[::2], edges[1::2]
    k = int(np.argmax(stops - starts))
    return int(starts[k]), int(stops[k])


def inner_rectangle(valid: np.ndarray) -> tuple[int, int, int, int]:
    """Rows and columns ``(imin, imax, jmin, jmax)`` of the largest all-True rectangle.

    Row by row, the heights of the True runs above each pixel form a histogram whose
    largest rectangle is found with a stack; the first largest one wins.
    """
    best = (0, 0, 0, 0)  # height, width, first column, last row
    heights = np.zeros(valid.shape[1], dtype=np.int64)
    for row, line in enumerate(valid):
        heights = np.where(line, heights + 1, 0)
        stack: list[tuple[int, int]] = []  # (start column, height)
        for col, height in enumerate(heights.tolist()):
            start = col
            while stack and height < stack[-1][1]:
                start, top = stack.pop()
                if top * (col - start) > best[0] * best[1]:
                    best = (top, col - start, start, row)
            if not stack or height > stack[-1][1]:
                stack.append((start, height))
        end = valid.shape[1]
        for start, top in stack:  # what is left, from the bottom of the stack up
            if top * (end - start) > best[0] * best[1]:
                best = (top, end - start, start, row)
    height, width, col, row = best
    return row + 1 - height, row + 1, col, col + width
