"""VSNR destriping (Fehrenbach, Weiss and Lorenzo, IEEE TIP 21, 4420, 2012) on the CPU,
written for speed: the same ADMM iterations and constants as pyvsnr's NumPy code, so the
results agree with pyvsnr's to within a grey level, in less of its time
(docs/performance.md).

The problem is ``min_x ||D (u0 - psi * x)||_1 + ||x||^2 / 2`` with ``D = (D1, D2)`` the
periodic finite differences along x and y and ``psi`` the stripe filter; pyvsnr's ADMM
works on ``A = D psi*``. Where the time goes, and what this version does about it:

- **FFTs.** pyvsnr transforms ``A x`` and ``A^T y`` component by component: four FFTs an
  iteration. But ``D`` is a two-tap difference, exact and cheap in real space, so
  ``A^T (y1, y2) = psi^T * (D1^T y1 + D2^T y2)`` takes one forward FFT and
  ``A x = D (psi * x)`` one inverse FFT: two an iteration, and the last ``psi * x`` is
  the stripe estimate itself. Slices after cropping often have prime sizes (983 x 982),
  where an FFT costs several times a power of two's: halving their number is most of the
  gain. ``scipy.fft`` (pocketfft) is used on float32: faster here than pyFFTW's
  interface, deterministic (the same bits on every run, which a resumed run relies
  on), and free of Python's GIL while it transforms.
- **Per-slice set-up.** The filter depends on the slice only through the norm of the
  (normalised) slice, a scalar factor: its spectrum and ``|psi|^2 (|d1|^2 + |d2|^2)``
  are computed once per slice shape and filter list, and ``D u0`` in real space.
- **Memory traffic.** The element-wise passes run block of rows by block of rows, in
  the CPU cache, in place, and form the next ``D^T (y - m)`` in the same pass (``y - m``
  is never a whole array: two slice-sized buffers fewer); ``hypot`` (much slower
  than a square root in NumPy) and the boolean mask of the shrinkage become
  ``max(1 - 1 / (beta |t|), 0)``; pyvsnr's convergence criterion is not computed when
  no threshold is set.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.fft as sfft

__all__ = ["filter_spectrum", "vsnr_slice"]

#: Float32 bytes per block of rows in the element-wise passes (fits in a CPU's L2 cache).
BLOCK_BYTES = 1 << 18


def _gabor(n0: int, n1: int, sigma_x: float, sigma_y: float, theta_deg: float) -> np.ndarray:
    """pyvsnr's Gabor pattern (phase 0, no modulation), centred as pyvsnr centres it."""
    theta = np.radians(theta_deg)
    x = (n1 / 2.0 + 1.0) - np.arange(n1, dtype=np.float64)[None, :]
    y = (n0 / 2.0 + 1.0) - np.arange(n0, dtype=np.float64)[:, None]
    x_t = x * np.cos(theta) + y * np.sin(theta)
    y_t = y * np.cos(theta) - x * np.sin(theta)
    return np.exp(-0.5 * ((x_t / sigma_x) ** 2 + (y_t / sigma_y) ** 2)) * (
        np.sqrt(sigma_x * sigma_y) / np.pi)


def _differences(n0: int, n1: int) -> tuple[np.ndarray, np.ndarray]:
    """Spectra of the periodic finite differences along x and along y (pyvsnr's d1, d2)."""
    d1 = np.zeros((n0, n1), np.float32)
    d1[0, 0], d1[0, n1 - 1] = 1, -1
    d2 = np.zeros((n0, n1), np.float32)
    d2[0, 0], d2[n0 - 1, 0] = 1, -1
    return sfft.rfft2(d1), sfft.rfft2(d2)


def _filter_key(filters: Sequence[dict[str, Any]]) -> tuple:
    return tuple(tuple(sorted((k, tuple(v) if isinstance(v, list | tuple) else v)
                              for k, v in spec.items())) for spec in filters)


@functools.lru_cache(maxsize=4)
def _unit_filter(shape: tuple[int, int], key: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The spectrum of the stripe filter of a slice of norm 1, and
    ``|psi|^2 (|d1|^2 + |d2|^2)`` (float32), for a slice shape and filter list."""
    n0, n1 = shape
    psi = filter_spectrum([dict(spec) for spec in key], shape)
    fpsi = sfft.rfft2(psi)
    fd1, fd2 = _differences(n0, n1)
    power = (np.square(np.abs(fpsi)) * (np.square(np.abs(fd1)) + np.square(np.abs(fd2))))
    fpsi.setflags(write=False)
    power.setflags(write=False)
    return fpsi, power.astype(np.float32)


def filter_spectrum(filters: Sequence[dict[str, Any]], shape: tuple[int, int],
                    norm: float = 1.0) -> np.ndarray:
    """The stripe filter psi (real, float32) of a slice of ``shape`` whose normalised
    values have the L2 norm ``norm``: the inverse transform of the square root of
    ``sum |PSI_i|^2 / alpha_i``, each pattern weighted by its noise level relative to
    ``norm``, as in pyvsnr (psi scales with the square root of ``norm``)."""
    n0, n1 = shape
    fd1, fd2 = _differences(n0, n1)
    afd1, afd2 = np.abs(fd1), np.abs(fd2)
    n0n1 = float(n0 * n1)
    total: np.ndarray | float = 0.0
    for spec in filters:
        if spec["name"] == "Dirac":
            pattern = np.zeros((n0, n1), np.float32)
            pattern[0, 0] = 1
        elif spec["name"] == "Gabor":
            sigma = spec["sigma"]
            pattern = _gabor(n0, n1, float(sigma[0]), float(sigma[1]), float(spec["theta"]))
        else:
            raise ValueError(f"unknown VSNR filter {spec['name']!r}: expected 'Dirac' or "
                             "'Gabor'")
        power = np.square(np.abs(sfft.rfft2(pattern)))
        peak = max(float((afd1 * power).max()), float((afd2 * power).max()))
        alpha = np.sqrt(n0n1) * n0n1**2 * peak / (norm * float(spec["noise_level"]))
        total = total + power / alpha
    return sfft.irfft2(np.sqrt(total), s=(n0, n1), norm="forward").astype(np.float32)


def _blocks(n0: int, n1: int) -> list[tuple[slice, slice]]:
    """Blocks of rows ``b`` and the rows just below them ``b + 1`` (the last block's
    stops one row short: its last row's neighbour, row 0, is done apart)."""
    rows = max(8, BLOCK_BYTES // (4 * n1))
    out = []
    for i in range(0, n0, rows):
        j = min(i + rows, n0)
        out.append((slice(i, j), slice(i + 1, min(j + 1, n0))))
    return out


def _difference_into(w: np.ndarray, out1: np.ndarray, out2: np.ndarray, b: slice,
                     below: slice) -> None:
    """``out1 = w - w(x + 1)`` and ``out2 = w - w(y + 1)`` (periodic) on the rows ``b``."""
    wb = w[b]
    np.subtract(wb[:, :-1], wb[:, 1:], out=out1[:, :-1])
    np.subtract(wb[:, -1], wb[:, 0], out=out1[:, -1])
    k = below.stop - below.start
    np.subtract(wb[:k], w[below], out=out2[:k])
    if k < wb.shape[0]:  # the slice's last row: its neighbour below is row 0
        np.subtract(wb[-1], w[0], out=out2[-1])


def _adjoint_rows(t1: np.ndarray, t2: np.ndarray, above: np.ndarray | None,
                  out: np.ndarray) -> None:
    """``D1^T t1 + D2^T t2`` (``t1 - t1(x - 1) + t2 - t2(y - 1)``, periodic in x) on a
    block of rows, ``above`` being ``t2``'s row just above the block (``None`` for the
    first block, whose row 0 waits for the slice's last row: see :func:`vsnr_slice`)."""
    np.add(t1, t2, out=out)
    out[:, 1:] -= t1[:, :-1]
    out[:, 0] -= t1[:, -1]
    out[1:] -= t2[:-1]
    if above is not None:
        out[0] -= above


def vsnr_slice(img: np.ndarray, filters: Sequence[dict[str, Any]], maxit: int = 100,
               beta: float = 10.0, cvg_threshold: float = 0.0) -> np.ndarray:
    """Remove the stripes described by ``filters`` from one slice.

    Parameters
    ----------
    img
        One slice (Y, X), any real dtype.
    filters
        pyvsnr filters: ``{"name": "Gabor", "noise_level", "sigma": [sx, sy], "theta"}``
        or ``{"name": "Dirac", "noise_level"}``.
    maxit
        Number of ADMM iterations (fewer if ``cvg_threshold`` is reached).
    beta
        ADMM penalty parameter.
    cvg_threshold
        Stop when ``max |x_k - x_{k-1}| / max |x_k|`` (in Fourier space) falls to it;
        0 runs ``maxit`` iterations, as pyvsnr does.

    Returns
    -------
    numpy.ndarray
        The slice's shape and dtype; integer slices are clipped to ``[0, max]`` and
        truncated, as pyvsnr (``norm=False``) does.
    """
    u0 = np.asarray(img, dtype=np.float32)
    vmax = np.float32(u0.max())
    if not vmax > 0 or int(maxit) < 1:  # pyvsnr would divide by a zero maximum (NaN)
        return np.array(img, copy=True)
    u0 = u0 / vmax
    beta32 = np.float32(beta)
    fpsi, gain = _scaled_filter(u0, filters, beta32)
    stripes = _admm_stripes(u0, fpsi, gain, beta32, int(maxit), cvg_threshold)
    u = u0 - stripes
    u *= vmax
    if np.issubdtype(img.dtype, np.integer):
        np.clip(u, 0, np.iinfo(img.dtype).max, out=u)
    return u.astype(img.dtype)


def _scaled_filter(u0: np.ndarray, filters: Sequence[dict[str, Any]], beta32: np.float32
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The stripe filter's spectrum for a normalised slice, and the x-update's gain.

    Parameters
    ----------
    u0
        The slice divided by its maximum (float32).
    filters
        pyvsnr filters, as :func:`vsnr_slice` takes them.
    beta32
        ADMM penalty parameter, float32.

    Returns
    -------
    fpsi : numpy.ndarray
        ``F(psi)`` (rfft2 layout), scaled by the square root of ``u0``'s L2 norm.
    gain : numpy.ndarray
        ``conj(psi) beta / (1 + beta |psi|^2 (|d1|^2 + |d2|^2))``, which turns
        ``F(D^T (y - m))`` into ``F(x)``.
    """
    unit_fpsi, unit_power = _unit_filter(u0.shape, _filter_key(filters))
    norm = np.float32(np.linalg.norm(u0))
    fpsi = unit_fpsi * np.sqrt(norm)
    gain = np.conj(fpsi)
    gain *= beta32 / (1 + (beta32 * norm) * unit_power)
    return fpsi, gain


def _converged(fx: np.ndarray, fx_old: np.ndarray, cvg_threshold: float) -> bool:
    """pyvsnr's criterion: ``max |x_k - x_{k-1}| / max |x_k|`` (Fourier space) at most
    ``cvg_threshold``, or ``x_k`` all zero."""
    top = float(np.abs(fx).max())
    return top == 0 or float(np.abs(fx - fx_old).max()) / top <= cvg_threshold


def _admm_stripes(u0: np.ndarray, fpsi: np.ndarray, gain: np.ndarray, beta32: np.float32,
                  maxit: int, cvg_threshold: float) -> np.ndarray:
    """The stripes ``psi * x`` of a normalised slice after the ADMM iterations.

    Parameters
    ----------
    u0
        The slice divided by its maximum (float32).
    fpsi, gain
        From :func:`_scaled_filter`.
    beta32
        ADMM penalty parameter, float32.
    maxit
        Number of iterations, at least 1 (fewer if ``cvg_threshold`` is reached).
    cvg_threshold
        See :func:`vsnr_slice`; 0 runs ``maxit`` iterations.

    Returns
    -------
    numpy.ndarray
        The stripe estimate (float32), to subtract from ``u0``.
    """
    n0, n1 = u0.shape
    du1 = np.empty_like(u0)
    du2 = np.empty_like(u0)
    blocks = _blocks(n0, n1)
    for b, below in blocks:
        _difference_into(u0, du1[b], du2[b], b, below)

    m1 = np.zeros((n0, n1), np.float32)  # the scaled duals lambda / beta
    m2 = np.zeros_like(m1)
    # D^T (y - m), the x-update's input (y - m is 0 at the start); y - m itself only
    # ever exists a block at a time, in the cache
    adjoint = np.zeros_like(m1)
    rows = blocks[0][0].stop
    work = tuple(np.empty((rows, n1), np.float32) for _ in range(4))
    above = np.empty(n1, np.float32)
    neg_inv_beta = np.float32(-1.0) / beta32
    fx: np.ndarray | None = None
    for _ in range(maxit):
        fx_old, fx = fx, sfft.rfft2(adjoint)
        fx *= gain
        stop = cvg_threshold > 0 and fx_old is not None and _converged(fx, fx_old,
                                                                         cvg_threshold)
        stripes = sfft.irfft2(fx * fpsi, s=(n0, n1), overwrite_x=True)  # psi * x
        _update_duals(stripes, (du1, du2), (m1, m2), adjoint, blocks, work, above,
                      neg_inv_beta)
        if stop:
            break
    return stripes


def _update_duals(stripes: np.ndarray, du: tuple[np.ndarray, np.ndarray],
                  m: tuple[np.ndarray, np.ndarray], adjoint: np.ndarray,
                  blocks: list[tuple[slice, slice]], work: tuple[np.ndarray, ...],
                  above: np.ndarray, neg_inv_beta: np.float32) -> None:
    """One iteration's y- and m-updates, block of rows by block of rows, in place; forms
    the next x-update's input ``D^T (y - m)`` in ``adjoint`` in the same pass.

    Parameters
    ----------
    stripes
        ``psi * x`` of this iteration.
    du
        ``D u0``: the differences of the normalised slice along x and y.
    m
        The scaled duals (``lambda / beta``) along x and y, updated in place.
    adjoint
        Overwritten with ``D^T (y - m)``.
    blocks
        :func:`_blocks` of the slice.
    work
        Four float32 buffers of a block's rows each.
    above
        A row's buffer: ``t2``'s row just above the current block.
    neg_inv_beta
        ``-1 / beta``, float32.
    """
    du1, du2 = du
    m1, m2 = m
    w1, w2, w3, w4 = work
    eps = np.finfo(np.float32).eps
    # In r = A x + m - D u0 (pyvsnr's t is -r): the y-update is y = D u0 + s r with
    # the shrink factor s, then m = (1 - s) r, and the next input y - m = D u0 + s r - m
    for b, below in blocks:
        k = b.stop - b.start
        r1, r2, s_, q = w1[:k], w2[:k], w3[:k], w4[:k]
        _difference_into(stripes, r1, r2, b, below)  # A x
        r1 += m1[b]
        r1 -= du1[b]
        r2 += m2[b]
        r2 -= du2[b]
        np.multiply(r1, r1, out=s_)
        np.multiply(r2, r2, out=q)
        s_ += q
        np.sqrt(s_, out=s_)
        s_ += eps
        np.divide(neg_inv_beta, s_, out=s_)
        s_ += 1
        np.maximum(s_, 0, out=s_)  # the shrink factor: 0 where |r| <= 1 / beta
        np.subtract(1, s_, out=q)
        np.multiply(q, r1, out=m1[b])
        np.multiply(q, r2, out=m2[b])
        r1 *= s_
        r1 += du1[b]
        r1 -= m1[b]  # t1 = y1 - m1
        r2 *= s_
        r2 += du2[b]
        r2 -= m2[b]
        _adjoint_rows(r1, r2, above if b.start else None, adjoint[b])
        above[:] = r2[-1]
    adjoint[0] -= above  # row 0's neighbour above is the last row
