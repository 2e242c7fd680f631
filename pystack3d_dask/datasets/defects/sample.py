"""Defects of the sample and of the slicing: missing slices, drift and curtains.

Curtains are milled into the sample face and so move with it: they are added before
the drift shifts the slice, in the frame enlarged by the hidden margin the drift
brings into view. Missing slices decide which slices are acquired at all, so they are
drawn first.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import ndimage

from ...errors import InputError
from ..checks import float_pair, fraction, nonnegative_float, nonnegative_int
from .base import Acquisition, Defect

__all__ = ["Curtains", "Drift", "Missing"]


@dataclass(frozen=True, kw_only=True)
class Missing(Defect):
    """A few slices dropped, so z is not uniform (aimed at ``resampling``).

    Parameters
    ----------
    fraction : float
        Fraction of the slices dropped (at most 0.5; at least one slice when on),
        never the first or the last.
    """

    fraction: float = 0.07

    name: ClassVar[str] = "missing"
    stream: ClassVar[int] = 6
    draw_rank: ClassVar[int] = 0
    keywords: ClassVar[dict[str, str]] = {"missing_fraction": "fraction"}

    def check(self) -> Missing:
        """Validate ``fraction`` (in ``[0, 0.5]``)."""
        return dataclasses.replace(self, fraction=fraction("missing_fraction", self.fraction,
                                                           upper=0.5))

    def draw(self, acq: Acquisition, rng: np.random.Generator) -> None:
        """Record the kept and the dropped original indices."""
        nz = acq.shape[0]
        share = self.fraction if self.on else 0.0
        n_missing = 0
        if share > 0 and nz >= 3:
            n_missing = min(max(1, round(share * nz)), nz - 2)
        dropped = np.sort(rng.choice(np.arange(1, nz - 1), size=n_missing, replace=False)) \
            if n_missing else np.empty(0, dtype=np.int64)
        acq.kept = np.setdiff1d(np.arange(nz), dropped).astype(np.int64)
        acq.missing = dropped.astype(np.int64)


@dataclass(frozen=True, kw_only=True)
class Drift(Defect):
    """Sub-pixel random walk in (y, x) plus one jump (aimed at ``registration_*``).

    Acquired slice ``i`` shows the sample moved by ``shifts[kept[i]]``: ``+dy`` rows
    and ``+dx`` columns. The walk is drawn even when the drift is off: its size sets
    the hidden margin, hence the truth, which must not depend on the drift switch.

    Parameters
    ----------
    step : float
        Standard deviation, in pixels, of each step of the random walk.
    jump : tuple of 2 float
        ``(dy, dx)`` jump, in pixels, added from one slice (in the middle third) on.
    """

    step: float = 0.25
    jump: tuple[float, float] = (4.0, -6.0)

    name: ClassVar[str] = "drift"
    stream: ClassVar[int] = 4
    stage: ClassVar[str] = "sample"
    rank: ClassVar[int] = 1
    draw_rank: ClassVar[int] = 1
    keywords: ClassVar[dict[str, str]] = {"drift_step": "step", "drift_jump": "jump"}

    def check(self) -> Drift:
        """Validate ``step`` (>= 0) and ``jump`` (two finite numbers)."""
        return dataclasses.replace(self, step=nonnegative_float("drift_step", self.step),
                                   jump=float_pair("drift_jump", self.jump))

    def draw(self, acq: Acquisition, rng: np.random.Generator) -> None:
        """Record the margin and, when on, the shifts and the jump's slice."""
        walk, jump_slice = self.walk(acq.shape[0], acq.kept, rng)
        acq.margin = math.ceil(float(np.abs(walk).max())) + 4  # + cubic-spline support
        if self.on:
            acq.shifts, acq.jump_slice = walk, jump_slice
        else:
            acq.shifts, acq.jump_slice = np.zeros_like(walk), None

    def walk(self, nz: int, kept: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, int | None]:
        """Random walk of (dy, dx) over the original slices, zero at slice 0, with the jump.

        Returns
        -------
        walk : numpy.ndarray
            ``(nz, 2)`` shifts in pixels.
        jump_slice : int or None
            Original index from which the jump applies (None without a candidate).
        """
        steps = rng.normal(0.0, self.step, size=(nz, 2))
        steps[0] = 0.0
        walk = np.cumsum(steps, axis=0)
        # The jump lands on an acquired slice of the middle third so that it is seen as
        # one large step between two consecutive acquired slices.
        lo, hi = nz // 3, max(nz // 3 + 1, (2 * nz) // 3)
        candidates = kept[(kept >= max(lo, 1)) & (kept < hi)]
        if candidates.size == 0:
            candidates = kept[1:]
        jump_slice = int(rng.choice(candidates)) if candidates.size else None
        if jump_slice is not None:
            walk[jump_slice:] += np.asarray(self.jump, dtype=np.float64)
        return walk, jump_slice

    def apply(self, img: np.ndarray, acq: Acquisition, rng: np.random.Generator,
              i: int) -> np.ndarray:
        """Shift the slice by its drift (cubic spline, edges repeated)."""
        dy, dx = acq.shifts[acq.kept[i]]
        if dy != 0 or dx != 0:
            img = ndimage.shift(img, (dy, dx), order=3, mode="nearest")
        return img


@dataclass
class _Stripes:
    """Stripe positions shared by the curtain slices (in the margin-enlarged frame)."""

    center: np.ndarray  # column of each stripe
    sigma: np.ndarray  # half-width (Gaussian sigma) in pixels
    amplitude: np.ndarray  # fraction of the range, signed
    length: np.ndarray  # rows covered from the top
    n_rows: int
    n_cols: int


@dataclass(frozen=True, kw_only=True)
class Curtains(Defect):
    """Vertical stripes on a subset of the slices (aimed at ``destriping``).

    Parameters
    ----------
    fraction : float
        Fraction of the acquired slices that carry curtains (0 < f <= 1; never all of
        them when there are two or more).
    amplitude : float
        Typical stripe amplitude, as a fraction of the data range.
    count : int
        Number of stripe positions (each curtain slice shows a random subset).
    """

    fraction: float = 0.35
    amplitude: float = 0.08
    count: int = 12

    name: ClassVar[str] = "curtains"
    stream: ClassVar[int] = 5
    stage: ClassVar[str] = "sample"
    rank: ClassVar[int] = 0
    keywords: ClassVar[dict[str, str]] = {"curtain_fraction": "fraction",
                                          "curtain_amplitude": "amplitude",
                                          "n_curtains": "count"}

    def check(self) -> Curtains:
        """Validate the parameters; when on, ``fraction > 0`` and ``count >= 1``."""
        amplitude = fraction("curtain_amplitude", self.amplitude)
        share = fraction("curtain_fraction", self.fraction)
        count = nonnegative_int("n_curtains", self.count)
        if self.on and (share <= 0 or count == 0):
            raise InputError("curtains need curtain_fraction > 0 and n_curtains >= 1 "
                             "(or curtains=False)")
        return dataclasses.replace(self, fraction=share, amplitude=amplitude, count=count)

    def draw(self, acq: Acquisition, rng: np.random.Generator) -> None:
        """Record which acquired slices carry curtains; keep the stripe pool for them."""
        n_kept = acq.n_kept
        acq.curtains = np.zeros(n_kept, dtype=bool)
        if not self.on:
            return
        size = acq.shape[1] + 2 * acq.margin, acq.shape[2] + 2 * acq.margin
        acq.drawn[self.name] = self._pool(rng, *size)
        n_curt = min(max(1, round(self.fraction * n_kept)), max(1, n_kept - 1))
        acq.curtains[rng.choice(n_kept, size=n_curt, replace=False)] = True

    def _pool(self, rng: np.random.Generator, n_rows: int, n_cols: int) -> _Stripes:
        """Stripe positions shared by all curtain slices, as milling curtains persist in x."""
        n = self.count
        thin = rng.random(n) < 0.7
        sigma = np.where(thin, rng.uniform(0.5, 1.2, n), rng.uniform(2.0, 4.0, n))
        amp = self.amplitude * rng.uniform(0.6, 1.2, n) * rng.choice([-1.0, 1.0], n,
                                                                     p=[0.3, 0.7])
        full = rng.random(n) < 0.6
        length = np.where(full, n_rows, (rng.uniform(0.4, 0.9, n) * n_rows).astype(int))
        center = rng.uniform(0, n_cols - 1, n)
        return _Stripes(center, sigma, amp, length.astype(int), n_rows, n_cols)

    def apply(self, img: np.ndarray, acq: Acquisition, rng: np.random.Generator,
              i: int) -> np.ndarray:
        """Add curtains to a slice drawn to carry them: a random subset of the pool."""
        if not acq.curtains[i]:
            return img
        stripes: _Stripes = acq.drawn[self.name]
        cols = np.arange(stripes.n_cols, dtype=np.float64)
        rows = np.arange(stripes.n_rows, dtype=np.float64)[:, None]
        curtains = np.zeros((stripes.n_rows, stripes.n_cols))
        active = rng.random(stripes.center.size) < 0.75
        if not active.any():
            active[rng.integers(stripes.center.size)] = True
        for j in np.flatnonzero(active):
            profile = np.exp(-0.5 * ((cols - stripes.center[j]) / stripes.sigma[j]) ** 2)
            profile *= stripes.amplitude[j] * rng.uniform(0.7, 1.3)
            # Curtains start at the milled top edge; partial ones fade out over 10 rows.
            taper = np.clip((stripes.length[j] - rows) / 10.0, 0.0, 1.0)
            curtains += taper * profile[None, :]
        return img + curtains
