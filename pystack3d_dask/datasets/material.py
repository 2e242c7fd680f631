"""The defect-free material of the synthetic stacks and its output grey levels.

A porous material (matrix, dark pores, bright particles) built from thresholded Gaussian
random fields, in float32 with values in ``[0, 1]`` (fractions of the data range).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from scipy.special import ndtri

# Phase grey levels as fractions of the dtype range: kept well inside [0, 1] so that the
# background, a gain of 1.2 and the noise rarely saturate.
_PORE_LEVEL = 0.14
_MATRIX_LEVEL = 0.46
_PARTICLE_LEVEL = 0.72

# Structure scales (Gaussian sigmas, in voxels). Thresholded Gaussian random fields give
# features about 3-4 sigma across: large pores of 30-60 px, medium pores and particles of
# 8-15 px, and a grain-like fine texture.
_SIGMA_LARGE = 12.0
_SIGMA_MEDIUM = 3.5
_SIGMA_PARTICLE = 4.5
_SIGMA_FINE = 1.0


def porous_volume(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """Float32 volume in [0, 1]: matrix, pores and particles with multi-scale texture."""
    # Large pores with medium-scale rough walls; unit-variance fields, so the mix of two
    # independent ones with squared weights summing to 1 is unit-variance too.
    pore_field = _gaussian_field(rng, shape, _SIGMA_LARGE)
    pore_field *= 0.8
    medium = _gaussian_field(rng, shape, _SIGMA_MEDIUM)
    pore_field += 0.6 * medium
    # Edge widths (in field units) scaled by the typical field gradient, so the phase
    # boundaries are about one pixel wide: sharp, yet smooth enough to shift sub-pixel.
    pores = _soft_below(pore_field, ndtri(0.2), 0.6 / (_SIGMA_MEDIUM * math.sqrt(2)))
    del pore_field

    particle_field = _gaussian_field(rng, shape, _SIGMA_PARTICLE)
    particles = _soft_below(-particle_field, ndtri(0.09), 1 / (_SIGMA_PARTICLE * math.sqrt(2)))
    del particle_field
    particles *= 1.0 - pores  # particles sit in the matrix, not in the pores

    vol = pores * np.float32(_PORE_LEVEL)
    vol += particles * np.float32(_PARTICLE_LEVEL)
    vol += (1.0 - pores - particles) * np.float32(_MATRIX_LEVEL)
    del pores, particles
    # Grain-like texture plus gentle medium-scale shading of the phases.
    vol += np.float32(0.03) * _gaussian_field(rng, shape, _SIGMA_FINE)
    vol += np.float32(0.015) * medium
    np.clip(vol, 0.0, 1.0, out=vol)
    return vol


def _gaussian_field(rng: np.random.Generator, shape: tuple[int, int, int],
                    sigma: float) -> np.ndarray:
    """Unit-variance, zero-mean white noise low-passed by an isotropic Gaussian.

    Filtering in Fourier space costs the same for every sigma, unlike a spatial
    Gaussian filter, and white noise can be drawn directly as a spectrum.
    """
    fshape = tuple(scipy.fft.next_fast_len(n, real=True) for n in shape)
    spec_shape = (fshape[0], fshape[1], fshape[2] // 2 + 1)
    spec = rng.standard_normal((*spec_shape, 2), dtype=np.float32).view(np.complex64)[..., 0]
    for axis, n in enumerate(fshape):
        freq = scipy.fft.rfftfreq(n) if axis == 2 else scipy.fft.fftfreq(n)
        transfer = np.exp(-2.0 * (np.pi * sigma * freq) ** 2).astype(np.float32)
        spec *= transfer.reshape([-1 if a == axis else 1 for a in range(3)])
    out = scipy.fft.irfftn(spec, s=fshape, workers=-1, overwrite_x=True)
    del spec
    out = out[: shape[0], : shape[1], : shape[2]]
    out = out - np.float32(out.mean(dtype=np.float64))
    flat = out.reshape(-1)
    # A BLAS dot product is several times faster than ndarray.std on ~10^7 values.
    out *= np.float32(1.0 / math.sqrt(float(np.dot(flat, flat)) / flat.size))
    return out


def _soft_below(values: np.ndarray, threshold: float, width: float) -> np.ndarray:
    """Smooth indicator of ``values < threshold`` (1 below, 0 above), in float32."""
    out = np.subtract(np.float32(threshold), values, dtype=np.float32)
    out *= np.float32(1.0 / width)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Clip to the dtype range and cast by truncation, as PyStack3D's ``astype`` does."""
    hi = data_range(dtype)
    return np.clip(values, 0.0, hi).astype(dtype)


def data_range(dtype: np.dtype) -> float:
    """Full intensity range of ``dtype``: its maximum for an integer type, 1.0 for a float."""
    return float(np.iinfo(dtype).max) if dtype.kind in "iu" else 1.0

