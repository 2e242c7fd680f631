"""Destriping kernels: VSNR (through pyvsnr), wavelet-Fourier filtering (Münch et al.
2009), and a per-slice stripe score.

Every kernel takes the array module of its input: a NumPy slice is processed on the
CPU, a CuPy slice (or batch of slices) on its GPU.
"""

from __future__ import annotations

import functools
import math
import types
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import ConfigError

__all__ = [
    "array_module",
    "auto_threshold",
    "check_wavelet",
    "pyvsnr_vsnr",
    "stripe_score",
    "vsnr",
    "wavelet_fourier",
]

#: Score of a slice with no stripes: the measure is a ratio of two directions.
ISOTROPIC = 1.0
#: Threshold used when the scores do not split into two groups.
FALLBACK_THRESHOLD = 1.5
#: Lowest threshold the automatic rule may choose (a margin above isotropy).
MIN_AUTO_THRESHOLD = 1.25


def array_module(a: Any) -> types.ModuleType:
    """``cupy`` for a CuPy array, else ``numpy`` (CuPy is never imported for NumPy input)."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


class _NumpyWithFFT(types.ModuleType):
    """NumPy's namespace with another FFT module. pyvsnr's CPU entry point assigns
    ``numpy.fft = pyfftw...`` for the whole process; its array code only reads
    ``xp.fft``, so handing it this namespace gives it the faster FFT without changing
    ``numpy.fft`` for anyone else (and without a race between threads)."""

    def __init__(self, fft: types.ModuleType) -> None:
        super().__init__("numpy_with_fft")
        self.fft = fft

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


@functools.lru_cache(maxsize=1)
def _cpu_namespace() -> types.ModuleType:
    try:
        import pyfftw
        import pyfftw.interfaces.numpy_fft as fft

        pyfftw.interfaces.cache.enable()  # plans re-used from slice to slice
    except ImportError:  # pyvsnr depends on pyfftw, but scipy.fft is as exact
        import scipy.fft as fft
    return _NumpyWithFFT(fft)


def vsnr(img: Any, filters: list[dict[str, Any]], maxit: int = 100, cvg_threshold: float = 0.0,
         beta: float = 10.0) -> Any:
    """Remove the stripe patterns described by ``filters`` with VSNR.

    NumPy slices go to this package's kernel (:func:`~pystack3d_dask.kernels.vsnr.vsnr_slice`,
    pyvsnr's iterations made faster); CuPy batches to pyvsnr's CuPy code.

    Parameters
    ----------
    img
        One slice (Y, X) or a batch (B, Y, X), NumPy or CuPy.
    filters
        pyvsnr filters: ``{"name": "Gabor", "noise_level", "sigma": [sx, sy], "theta"}``
        or ``{"name": "Dirac", "noise_level"}``.
    maxit, cvg_threshold, beta
        Iteration limit, convergence threshold and ADMM parameter (pyvsnr's).

    Returns
    -------
    array
        Same shape, dtype and array module as ``img``; integer images are clipped to
        ``[0, max]`` and truncated, as PyStack3D's call of pyvsnr (``norm=False``) does.
    """
    xp = array_module(img)
    if xp is np:
        from .vsnr import vsnr_slice

        if img.ndim == 2:
            return vsnr_slice(img, filters, maxit, beta, cvg_threshold)
        return np.stack([vsnr_slice(one, filters, maxit, beta, cvg_threshold) for one in img])
    return pyvsnr_vsnr(img, filters, maxit, cvg_threshold, beta)


def pyvsnr_vsnr(img: Any, filters: list[dict[str, Any]], maxit: int = 100,
                cvg_threshold: float = 0.0, beta: float = 10.0) -> Any:
    """VSNR by pyvsnr itself (NumPy through pyFFTW, or CuPy): the reference that
    :func:`vsnr` is tested against, and its GPU path. Same parameters and result."""
    from pyvsnr.vsnr2d import vsnr2d_py

    xp = array_module(img)
    namespace = xp if xp is not np else _cpu_namespace()
    out = vsnr2d_py(img, [dict(f) for f in filters], maxit=int(maxit), xp=namespace,
                    beta=float(beta), norm=False, cvg_threshold=float(cvg_threshold))
    out = out.reshape(img.shape)  # pyvsnr squeezes a batch of one
    return xp.asarray(out) if xp is not np else out


def check_wavelet(wavelet: str, level: int, shape: tuple[int, int] | None = None) -> list[str]:
    """Refuse a wavelet PyWavelets does not know, or a level deeper than the slice can
    be halved (``floor(log2(min(shape)))``); return a warning for a level deeper than
    ``pywt.dwtn_max_level``, where every coefficient feels the border (PyWavelets warns
    and goes on, as PyStack3D does with its default level 4 on small slices)."""
    import pywt

    if wavelet not in pywt.wavelist(kind="discrete"):
        raise ConfigError(f"[destriping] wavelet_decomposition.wavelet = {wavelet!r} is not a "
                          "discrete wavelet of PyWavelets; expected one of pywt.wavelist("
                          "kind='discrete'), such as 'coif3', 'db4', 'sym8', 'haar'")
    if shape is None:
        return []
    deepest = math.floor(math.log2(max(min(shape), 1)))
    if level > deepest:
        raise ConfigError(f"[destriping] wavelet_decomposition.level = {level} is too deep for "
                          f"slices of {shape[0]} x {shape[1]}: the largest valid level is "
                          f"{deepest} (each level halves the slice)")
    clean = pywt.dwtn_max_level(shape, wavelet)
    if level > clean:
        return [f"[destriping] wavelet_decomposition.level = {level} with {wavelet!r} on slices "
                f"of {shape[0]} x {shape[1]}: beyond level {clean} every coefficient feels the "
                "slice border"]
    return []


def _damp_vertical(band: np.ndarray, sigma: float) -> np.ndarray:
    """Damp the low vertical frequencies of a detail band, column by column: a vertical
    stripe is constant along y, so its energy sits at frequency 0 along axis 0."""
    import scipy.fft

    n = band.shape[0]
    k = np.arange(n // 2 + 1, dtype=band.dtype)
    keep = 1 - np.exp(-(k**2) / (2 * sigma**2))
    return scipy.fft.irfft(scipy.fft.rfft(band, axis=0) * keep[:, None], n=n, axis=0)


def _wavelet_vertical(img: np.ndarray, wavelet: str, level: int, sigma: float) -> np.ndarray:
    import pywt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # said once, by check_wavelet
        coeffs = pywt.wavedec2(img, wavelet, level=level)
    damped = [coeffs[0]]
    for horizontal, vertical, diagonal in coeffs[1:]:
        damped.append((horizontal, _damp_vertical(vertical, sigma), diagonal))
    out = pywt.waverec2(damped, wavelet)
    # odd sizes come back one pixel larger
    return out[: img.shape[0], : img.shape[1]]


def _rotated(img: np.ndarray, angle: float) -> np.ndarray:
    return ndimage.rotate(img, angle, reshape=True, order=1, mode="reflect")


def _centre_crop(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    top = (img.shape[0] - shape[0]) // 2
    left = (img.shape[1] - shape[1]) // 2
    return img[top: top + shape[0], left: left + shape[1]]


def _along(work: np.ndarray, angle: float, vertical: Callable[[np.ndarray], np.ndarray]
           ) -> np.ndarray:
    """``vertical`` (a destriper of vertical stripes) applied to stripes at ``angle``:
    0 as is, 90 by transposition (exact), other angles on the rotated slice, whose
    stripe estimate alone is rotated back, so the image itself is not interpolated."""
    turn = angle % 180.0
    if turn == 0:
        return vertical(work)
    if turn == 90:
        return vertical(work.T).T
    turned = _rotated(work, -angle)
    stripes = turned - vertical(turned)
    return work - _centre_crop(_rotated(stripes, angle), work.shape)


def wavelet_fourier(img: Any, wavelet: str = "coif3", level: int = 4, sigma: float = 4.0,
                    angle: float = 0.0) -> Any:
    """Wavelet-Fourier destriping (Münch, Trtik, Marone and Stampanoni, Opt. Express 17,
    8567, 2009): decompose, damp the low vertical frequencies of every vertical detail
    band by ``1 - exp(-k^2 / (2 sigma^2))``, reconstruct.

    Parameters
    ----------
    img
        One slice (Y, X), NumPy or CuPy (PyWavelets runs on the CPU: a CuPy slice is
        moved to the host and back, so the GPU gains nothing for this method).
    wavelet, level, sigma
        PyWavelets wavelet name, decomposition level, damping width (frequency index).
    angle
        Angle of the stripes from the vertical, in degrees, with the sign convention of
        ``scipy.ndimage.rotate`` (stripes that ``rotate(vertical_stripes, angle)`` gives).
        0: vertical (PyStack3D); 90: horizontal (exact, by transposition); other angles
        rotate the slice, estimate the stripes, and rotate only that estimate back, so the
        image itself is not interpolated.

    Returns
    -------
    array
        Float image, same shape: float32 for float32, 8- and 16-bit input, else float64.
    """
    xp = array_module(img)
    if xp is not np:
        return xp.asarray(wavelet_fourier(xp.asnumpy(img), wavelet, level, sigma, angle))
    # 8- and 16-bit values are exact in float32, which halves the memory traffic of the
    # transforms
    exact = np.float32 if img.dtype.itemsize <= 2 else np.float64
    work = img if img.dtype.kind == "f" else img.astype(exact)
    return _along(work, angle, lambda a: _wavelet_vertical(a, wavelet, level, sigma))


def _median5(a: np.ndarray, axis: int) -> np.ndarray:
    """Running median of 5 along ``axis`` (edges reflected as ``scipy.ndimage`` does),
    with a min/max network: several times faster than ``median_filter``."""
    pad = [(0, 0)] * a.ndim
    pad[axis] = (2, 2)
    p = np.pad(a, pad, mode="symmetric")
    n = a.shape[axis]
    v = [p[(slice(None),) * axis + (slice(i, i + n),)] for i in range(5)]
    low = np.maximum(np.minimum(v[0], v[1]), np.minimum(v[2], v[3]))
    high = np.minimum(np.maximum(v[0], v[1]), np.maximum(v[2], v[3]))
    return np.maximum(np.minimum(low, high), np.minimum(np.maximum(low, high), v[4]))


def _block_mean(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    n = a.shape[axis] // k * k
    # k strided slices added: much faster than a reshape and a mean over a short axis
    parts = [a[i:n:k] if axis == 0 else a[:, i:n:k] for i in range(k)]
    total = parts[0].copy()
    for part in parts[1:]:
        total += part
    return total / np.float32(k)


def stripe_score(img: Any, angle: float = 0.0, block: int = 4) -> float:
    """How much a slice is striped along ``angle`` (0: vertical stripes).

    Thin structures are isolated by a running median high-pass of 5 pixels across the
    stripes, then averaged along them: a stripe adds up coherently, texture and noise
    do not. The same is done in the other direction, and the score is the ratio of the
    two profiles' standard deviations: about 1 for a slice without stripes (whatever
    its noise and contrast), above 1 with stripes. Blocks of ``block`` pixels along each
    direction are averaged first, which keeps the stripes and costs a quarter.
    """
    xp = array_module(img)
    if xp is not np:
        img = xp.asnumpy(img)
    a = np.asarray(img, dtype=np.float32)
    if angle % 180.0:
        a = _rotated(a, -angle)
    ky = max(1, min(block, a.shape[0] // 8))
    kx = max(1, min(block, a.shape[1] // 8))
    vertical = _block_mean(a, ky, 0)  # rows averaged: vertical stripes kept
    horizontal = _block_mean(a, kx, 1)
    columns = (vertical - _median5(vertical, 1)).mean(axis=0).std()
    rows = (horizontal - _median5(horizontal, 0)).mean(axis=1).std()
    if rows == 0:
        return math.inf if columns > 0 else ISOTROPIC
    return float(columns / rows)


def auto_threshold(scores: np.ndarray) -> float:
    """Score threshold separating striped from clean slices.

    :data:`FALLBACK_THRESHOLD` (1.5: stripes make the profile across them half as
    variable again as the one along them), lowered towards :data:`MIN_AUTO_THRESHOLD`
    when the log-scores split into two groups (Otsu; the upper group's median at least
    1.3 times the lower one's) whose gap lies lower. A stack striped everywhere is so
    treated everywhere, a clean one nowhere, and a strongly striped slice is never left
    out because others are more striped still.
    """
    values = np.log(np.asarray(scores, dtype=np.float64).ravel())
    values = values[np.isfinite(values)]
    if values.size < 2 or np.ptp(values) == 0:
        return FALLBACK_THRESHOLD
    ordered = np.sort(values)
    n = ordered.size
    best, split = -1.0, None
    cumsum = np.cumsum(ordered)
    for i in range(1, n):  # between-class variance of the split after i values
        w0, w1 = i / n, (n - i) / n
        m0 = cumsum[i - 1] / i
        m1 = (cumsum[-1] - cumsum[i - 1]) / (n - i)
        between = w0 * w1 * (m0 - m1) ** 2
        if between > best:
            best, split = between, i
    low, high = ordered[:split], ordered[split:]
    if np.exp(np.median(high) - np.median(low)) < 1.3:
        return FALLBACK_THRESHOLD
    gap = math.exp((low[-1] + high[0]) / 2)
    return float(min(max(gap, MIN_AUTO_THRESHOLD), FALLBACK_THRESHOLD))
