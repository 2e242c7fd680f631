"""Defects of the detector frame: background, gain, noise and the padded border.

They belong to the detector, not to the sample, so they act after the drift, on the
frame the detector sees: the background, the gain and the noise in fractions of the
data range (in that order), the border in output units at the very end.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...errors import InputError
from ..checks import check_gain_range, check_pad_widths, fraction, nonnegative_int
from ..material import cast
from .base import Acquisition, Defect

__all__ = ["Background", "Gain", "Noise", "Padding", "background_field"]

#: Range of the random border widths, in pixels.
_PAD_RANGE = (12, 20)
#: Smallest sample region (rows or columns) worth generating.
_MIN_VALID = 8
#: Terms of the background polynomial.
BKG_TERMS: tuple[str, ...] = ("1", "x", "y", "y^2", "z", "x*z")


@dataclass(frozen=True, kw_only=True)
class Padding(Defect):
    """Constant dark border around the sample region (aimed at ``cropping``).

    Parameters
    ----------
    widths : tuple of 4 int, optional
        Border widths ``(top, bottom, left, right)``; by default random in 12-20 px
        (top != bottom, left != right), capped to a fifth of the frame.
    value : float
        Border value, as a fraction of the data range.
    """

    widths: tuple[int, int, int, int] | None = None
    value: float = 0.03

    name: ClassVar[str] = "padding"
    stream: ClassVar[int] = 1
    stage: ClassVar[str] = "output"
    keywords: ClassVar[dict[str, str]] = {"pad_widths": "widths", "pad_value": "value"}

    def check(self) -> Padding:
        """Validate ``value`` (a fraction) and ``widths`` (4 integers >= 0, or None)."""
        value = fraction("pad_value", self.value)
        widths = None if self.widths is None else check_pad_widths(self.widths)
        return dataclasses.replace(self, widths=widths, value=value)

    def draw(self, acq: Acquisition, rng: np.random.Generator) -> None:
        """Record the border widths and value; refuse a border leaving too little sample."""
        _, ny, nx = acq.shape
        # The widths are resolved (and validated) even when padding is off so that the
        # recorded valid region always describes the same frame layout.
        widths = _random_widths(rng, ny, nx) if self.widths is None else self.widths
        if not self.on:
            widths = (0, 0, 0, 0)
        top, bottom, left, right = widths
        if ny - top - bottom < _MIN_VALID or nx - left - right < _MIN_VALID:
            raise InputError(f"pad_widths {widths} leave fewer than {_MIN_VALID} rows or "
                             f"columns of a ({ny}, {nx}) frame; give smaller pad_widths")
        acq.pad_widths = widths
        acq.pad_value = (float(cast(np.array([self.value * acq.scale]), acq.dtype)[0])
                         if self.on else 0.0)

    def apply(self, img: np.ndarray, acq: Acquisition, rng: np.random.Generator,
              i: int) -> np.ndarray:
        """Set the border of ``img`` (in output units) to the border value."""
        top, bottom, left, right = acq.pad_widths
        ny, nx = img.shape
        value = self.value * acq.scale
        img[:top] = value
        img[ny - bottom:] = value
        img[:, :left] = value
        img[:, nx - right:] = value
        return img

    def record(self) -> dict[str, float]:
        """The border value; the widths, resolved, are recorded as ``pad_widths``."""
        return {"pad_value": self.value}


@dataclass(frozen=True, kw_only=True)
class Background(Defect):
    """Additive 3D polynomial in x, y, y², z and x·z (aimed at ``bkg_removal``).

    Parameters
    ----------
    amplitude : float
        Largest absolute value of the background, as a fraction of the data range.
    """

    amplitude: float = 0.1

    name: ClassVar[str] = "background"
    stream: ClassVar[int] = 2
    stage: ClassVar[str] = "frame"
    rank: ClassVar[int] = 0
    keywords: ClassVar[dict[str, str]] = {"bkg_amplitude": "amplitude"}

    def check(self) -> Background:
        """Validate ``amplitude`` (a fraction)."""
        return dataclasses.replace(self, amplitude=fraction("bkg_amplitude", self.amplitude))

    def draw(self, acq: Acquisition, rng: np.random.Generator) -> None:
        """Record the polynomial's coefficients, in output units (zero when off)."""
        acq.bkg_coeffs = (_draw_background(rng, self.amplitude * acq.scale) if self.on
                          else dict.fromkeys(BKG_TERMS, 0.0))

    def apply(self, img: np.ndarray, acq: Acquisition, rng: np.random.Generator,
              i: int) -> np.ndarray:
        """Add the background of the slice's original index."""
        nz, ny, nx = acq.shape
        return img + background_field(acq.bkg_coeffs, int(acq.kept[i]), nz, ny, nx) / acq.scale


@dataclass(frozen=True, kw_only=True)
class Gain(Defect):
    """Blocks of slices multiplied by a factor (aimed at ``intensity_rescaling``).

    Parameters
    ----------
    factor_range : tuple of 2 float
        Range of the factors (factors within 0.05 of 1 are redrawn).
    n_jumps : int
        Number of blocks of slices with a gain jump (never on the first slice).
    """

    factor_range: tuple[float, float] = (0.85, 1.2)
    n_jumps: int = 3

    name: ClassVar[str] = "gain"
    stream: ClassVar[int] = 3
    stage: ClassVar[str] = "frame"
    rank: ClassVar[int] = 1
    keywords: ClassVar[dict[str, str]] = {"gain_range": "factor_range",
                                          "n_gain_jumps": "n_jumps"}

    def check(self) -> Gain:
        """Validate ``factor_range`` (away from 1) and ``n_jumps`` (an integer >= 0)."""
        return dataclasses.replace(self, factor_range=check_gain_range(self.factor_range),
                                   n_jumps=nonnegative_int("n_gain_jumps", self.n_jumps))

    def draw(self, acq: Acquisition, rng: np.random.Generator) -> None:
        """Record the gain of each acquired slice (1 outside the jumps, or when off)."""
        acq.gain = self.factors(acq.n_kept, rng) if self.on else np.ones(acq.n_kept)

    def factors(self, n_kept: int, rng: np.random.Generator) -> np.ndarray:
        """Per-slice gains: 1 except for :attr:`n_jumps` blocks of random factors."""
        gains = np.ones(n_kept)
        if n_kept < 2:
            return gains
        max_len = max(1, n_kept // 15)
        lo, hi = self.factor_range
        for _ in range(self.n_jumps):
            start = int(rng.integers(1, n_kept))
            length = int(rng.integers(1, max_len + 1))
            factor = 1.0
            # A factor too close to 1 would be a jump nobody can see or test.
            for _ in range(100):
                factor = float(rng.uniform(lo, hi))
                if abs(factor - 1.0) >= 0.05:
                    break
            gains[start:start + length] = factor
        return gains

    def apply(self, img: np.ndarray, acq: Acquisition, rng: np.random.Generator,
              i: int) -> np.ndarray:
        """Multiply the slice by its gain."""
        return img * acq.gain[i] if acq.gain[i] != 1.0 else img


@dataclass(frozen=True, kw_only=True)
class Noise(Defect):
    """Gaussian plus signal-dependent (shot-like) noise.

    Parameters
    ----------
    sigma : float
        Standard deviation of the additive Gaussian noise (fraction of the range).
    shot : float
        Signal-dependent noise: its variance is ``shot**2 * value``.
    """

    sigma: float = 0.02
    shot: float = 0.03

    name: ClassVar[str] = "noise"
    stream: ClassVar[int] = 7
    stage: ClassVar[str] = "frame"
    rank: ClassVar[int] = 2
    keywords: ClassVar[dict[str, str]] = {"noise_sigma": "sigma", "shot_noise": "shot"}

    def check(self) -> Noise:
        """Validate ``sigma`` and ``shot`` (fractions)."""
        return dataclasses.replace(self, sigma=fraction("noise_sigma", self.sigma),
                                   shot=fraction("shot_noise", self.shot))

    def apply(self, img: np.ndarray, acq: Acquisition, rng: np.random.Generator,
              i: int) -> np.ndarray:
        """Add noise of standard deviation ``sqrt(sigma² + shot² · max(img, 0))``."""
        sigma = np.sqrt(self.sigma**2 + self.shot**2 * np.clip(img, 0.0, None))
        return img + sigma * rng.standard_normal(img.shape)


def background_field(coeffs: dict[str, float], index: int, nz: int, ny: int,
                     nx: int) -> np.ndarray:
    """Background of original slice ``index`` of an ``(nz, ny, nx)`` stack.

    Parameters
    ----------
    coeffs : dict
        Coefficients of :data:`BKG_TERMS`, over ``x`` (columns), ``y`` (rows counted
        from the bottom) and ``z`` (original slice indices), each normalised to
        ``[-1, 1]``.
    index, nz, ny, nx : int
        The slice and the stack's shape.

    Returns
    -------
    numpy.ndarray
        ``(ny, nx)`` float64 field, in the units of the coefficients.
    """
    x = np.linspace(-1.0, 1.0, nx)[None, :]
    # Rows counted from the bottom, as in PyStack3D's coordinates.
    y = np.linspace(1.0, -1.0, ny)[:, None] if ny > 1 else np.zeros((1, 1))
    z = 2.0 * index / (nz - 1) - 1.0 if nz > 1 else 0.0
    return (coeffs["1"] + coeffs["x"] * x + coeffs["y"] * y + coeffs["y^2"] * y**2
            + coeffs["z"] * z + coeffs["x*z"] * x * z) * np.ones((ny, nx))


def _draw_background(rng: np.random.Generator, amplitude: float) -> dict[str, float]:
    """Polynomial coefficients of a zero-mean background, max |B| <= amplitude."""
    signs = rng.choice([-1.0, 1.0], size=5)
    mags = rng.uniform([0.6, 0.2, 0.5, 0.4, 0.2], [1.0, 0.5, 1.0, 0.8, 0.5])
    c_x, c_y, c_y2, c_z, c_xz = signs * mags
    # |x|, |y|, |z|, |x z| <= 1 and |y^2 - 1/3| <= 2/3, so this bounds |B| by amplitude.
    norm = abs(c_x) + abs(c_y) + abs(c_y2) * 2 / 3 + abs(c_z) + abs(c_xz)
    c_x, c_y, c_y2, c_z, c_xz = (c * amplitude / norm for c in (c_x, c_y, c_y2, c_z, c_xz))
    # The constant term centres y^2 so that the background averages to ~0 and adds no
    # overall offset (bkg_removal with preserve_avg then recovers the truth's mean).
    values = (-c_y2 / 3, c_x, c_y, c_y2, c_z, c_xz)
    return {k: float(v) for k, v in zip(BKG_TERMS, values, strict=True)}


def _random_widths(rng: np.random.Generator, ny: int, nx: int) -> tuple[int, int, int, int]:
    """Random border widths, capped to a fifth of the frame, opposite ones different."""
    top, bottom, left, right = (int(v) for v in rng.integers(_PAD_RANGE[0], _PAD_RANGE[1] + 1,
                                                                size=4))
    # Small test frames: keep most of the frame as sample.
    top, bottom = _asymmetric(top, bottom, max(1, ny // 5))
    left, right = _asymmetric(left, right, max(1, nx // 5))
    return top, bottom, left, right


def _asymmetric(a: int, b: int, cap: int) -> tuple[int, int]:
    """Cap two opposite border widths and make them differ.

    A symmetric border would hide a top/bottom (or left/right) mix-up in area maths.
    """
    a, b = min(a, cap), min(b, cap)
    if a == b:
        b = a - 1 if a > 0 else 1
    return a, b
