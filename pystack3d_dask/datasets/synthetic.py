"""Synthetic FIB-SEM-like stacks whose defect-free ground truth is known.

:func:`generate` builds a porous material (matrix, dark pores, bright particles) as a
smooth 3D field, keeps it as the truth, then "acquires" it slice by slice with one
defect per correction step of PyStack3D:

=================  =================================================  ===================
defect             model                                               aimed at
=================  =================================================  ===================
padding            constant dark border around the sample region      ``cropping``
background         additive 3D polynomial (x, y, y², z, x·z)           ``bkg_removal``
gain               blocks of slices multiplied by a factor             ``intensity_rescaling``
drift              sub-pixel random walk in (y, x) plus one jump       ``registration_*``
curtains           vertical stripes on a subset of the slices         ``destriping``
missing            a few slices dropped, so z is not uniform           ``resampling``
noise              Gaussian plus signal-dependent (shot-like) noise   (all)
=================  =================================================  ===================

The acquisition order follows the physics: curtains are milled into the sample face and
so move with it (added before the drift), while the background, the gain, the noise and
the padding belong to the detector frame (applied after it).

:func:`write_synthetic` writes the acquired slices as PyStack3D-named TIFF files, the
truth as a Zarr v3 store and a PyStack3D workflow file that corrects the stack.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..io.export import slice_name
from ..workflow.profiles import DEFAULT_PROFILE
from .checks import (
    check_dtype,
    check_gain_range,
    check_pad_widths,
    check_seed,
    check_shape,
    float_pair,
    fraction,
    nonnegative_float,
    nonnegative_int,
    positive_float,
)
from .material import cast, data_range, porous_volume
from .truth_store import load_truth, truth_dataset
from .workflow_file import STEPS, workflow_toml

__all__ = [
    "STEPS",
    "Synthetic",
    "SyntheticFiles",
    "generate",
    "load_truth",
    "write_synthetic",
]

_PAD_RANGE = (12, 20)
_MIN_VALID = 8  # smallest sample region (rows or columns) worth generating


@dataclass
class Synthetic:
    """A synthetic acquisition and the ground truth it was made from.

    Per-acquired-slice arrays (``stack``, ``z``, ``kept``, ``shifts``, ``gain``,
    ``curtains``) have ``n_kept`` entries, aligned with each other; ``kept``,
    ``missing``, ``curtain_slices`` and ``jump_slice`` are *original* slice indices
    (indices into ``truth``). Intensities (``pad_value``, ``bkg_coeffs``) are in the
    units of the output dtype.

    Attributes
    ----------
    truth : numpy.ndarray
        Defect-free volume ``(nz, ny, nx)`` in the output dtype, on the full frame
        (the padded border included) and the uniform grid ``z_truth``.
    z_truth : numpy.ndarray
        ``arange(nz) * dz``, in micrometres.
    stack : numpy.ndarray
        Acquired slices ``(n_kept, ny, nx)`` in the output dtype.
    z : numpy.ndarray
        z positions of the acquired slices (``z_truth[kept]``).
    kept : numpy.ndarray
        Original indices of the acquired slices (increasing; first and last always kept).
    missing : numpy.ndarray
        Original indices of the dropped slices.
    shifts : numpy.ndarray
        ``(n_kept, 2)`` true drift ``(dy, dx)`` in pixels: ``stack[i]`` shows the
        sample moved by ``+dy`` rows and ``+dx`` columns
        (``scipy.ndimage.shift(truth[kept[i]], shifts[i])``), so registration must
        apply ``-shifts[i]``. ``shifts[0]`` is zero.
    jump_slice : int or None
        Original index from which the drift jump applies (None without drift).
    gain : numpy.ndarray
        Multiplicative gain of each acquired slice (1 outside the gain jumps).
    curtains : numpy.ndarray
        Boolean mask of the acquired slices carrying curtains.
    curtain_slices : numpy.ndarray
        Original indices of the slices carrying curtains.
    valid_rows, valid_cols : slice
        Sample (non-padded) region in array indices.
    valid_area : list of int
        The same region as a PyStack3D area ``[xmin, xmax, ymin, ymax]`` (pixels,
        origin at the bottom-left of the image).
    pad_widths : tuple of int
        Border widths ``(top, bottom, left, right)`` in pixels.
    pad_value : float
        Constant value of the border, in output units.
    bkg_coeffs : dict
        Background polynomial, in output units, over ``x``, ``y`` and ``z`` normalised to
        ``[-1, 1]``: x over the columns, y over the rows counted from the bottom
        (PyStack3D's convention), z over the original slice indices. See
        :meth:`background`.
    dz : float
        Slice spacing of the truth, in micrometres.
    dtype : numpy.dtype
        Output dtype.
    data_range : float
        Full intensity range of the output (dtype maximum; 1.0 for floats).
    seed : int or None
        Seed that was used.
    options : dict
        Every generation option, as resolved (for the record).
    """

    truth: np.ndarray = field(repr=False)
    z_truth: np.ndarray = field(repr=False)
    stack: np.ndarray = field(repr=False)
    z: np.ndarray = field(repr=False)
    kept: np.ndarray = field(repr=False)
    missing: np.ndarray
    shifts: np.ndarray = field(repr=False)
    jump_slice: int | None
    gain: np.ndarray = field(repr=False)
    curtains: np.ndarray = field(repr=False)
    curtain_slices: np.ndarray = field(repr=False)
    valid_rows: slice
    valid_cols: slice
    valid_area: list[int]
    pad_widths: tuple[int, int, int, int]
    pad_value: float
    bkg_coeffs: dict[str, float]
    dz: float
    dtype: np.dtype
    data_range: float
    seed: int | None
    options: dict[str, Any] = field(repr=False)

    @property
    def n_kept(self) -> int:
        """Number of acquired slices."""
        return int(self.stack.shape[0])

    @property
    def filenames(self) -> list[str]:
        """PyStack3D file names of the acquired slices (original index, 4-decimal z)."""
        return [slice_filename(int(k), float(z)) for k, z in zip(self.kept, self.z, strict=True)]

    def background(self, index: int) -> np.ndarray:
        """Background added to original slice ``index``, before the gain.

        Parameters
        ----------
        index : int
            Original slice index (0 to nz - 1).

        Returns
        -------
        numpy.ndarray
            ``(ny, nx)`` float64 field in output units (zero when the background defect
            was off).
        """
        nz, ny, nx = self.truth.shape
        if not 0 <= index < nz:
            raise InputError(f"index must be in [0, {nz - 1}], got {index}")
        return _eval_background(self.bkg_coeffs, index, nz, ny, nx)


@dataclass
class SyntheticFiles:
    """Paths written by :func:`write_synthetic`.

    Attributes
    ----------
    out_dir : pathlib.Path
        The output folder.
    slices_dir : pathlib.Path
        Folder of the acquired slices (``out_dir/slices``).
    slice_paths : list of pathlib.Path
        One TIFF file per acquired slice, in acquisition order.
    truth : pathlib.Path
        The truth Zarr store (``out_dir/truth.zarr``).
    workflow : pathlib.Path
        The PyStack3D workflow file (``out_dir/workflow.toml``).
    synthetic : Synthetic
        The in-memory data that was written.
    """

    out_dir: Path
    slices_dir: Path
    slice_paths: list[Path] = field(repr=False)
    truth: Path
    workflow: Path
    synthetic: Synthetic = field(repr=False)


slice_filename = slice_name  # PyStack3D's naming, shared with the TIFF export


# --------------------------------------------------------------------------- generation


def generate(
    shape: tuple[int, int, int] = (200, 300, 340),
    seed: int | None = 0,
    dz: float = 0.01,
    dtype: str | np.dtype = "uint8",
    *,
    padding: bool = True,
    background: bool = True,
    gain: bool = True,
    drift: bool = True,
    curtains: bool = True,
    missing: bool = True,
    noise: bool = True,
    pad_widths: tuple[int, int, int, int] | None = None,
    pad_value: float = 0.03,
    bkg_amplitude: float = 0.1,
    gain_range: tuple[float, float] = (0.85, 1.2),
    n_gain_jumps: int = 3,
    drift_step: float = 0.25,
    drift_jump: tuple[float, float] = (4.0, -6.0),
    curtain_fraction: float = 0.35,
    curtain_amplitude: float = 0.08,
    n_curtains: int = 12,
    missing_fraction: float = 0.07,
    noise_sigma: float = 0.02,
    shot_noise: float = 0.03,
) -> Synthetic:
    """Generate a synthetic FIB-SEM stack and its ground truth.

    Each defect draws from its own random stream, so switching one off leaves the
    others (and the truth) unchanged. The truth depends only on ``shape``, ``seed``,
    ``dz`` and the drift magnitude (which sets the hidden margin the drift brings into
    view).

    Parameters
    ----------
    shape : tuple of 3 int
        ``(nz, ny, nx)`` of the truth and of the acquired frame.
    seed : int or None
        Seed of every random draw.
    dz : float
        Slice spacing in micrometres; the truth lies at ``arange(nz) * dz``.
    dtype : str or numpy.dtype
        Output dtype: an integer type (values in ``[0, max]``) or a float type
        (values in ``[0, 1]``).
    padding, background, gain, drift, curtains, missing, noise : bool
        Switch each defect on or off.
    pad_widths : tuple of 4 int, optional
        Border widths ``(top, bottom, left, right)``; by default random in 12-20 px
        (top != bottom, left != right), capped to a fifth of the frame.
    pad_value : float
        Border value, as a fraction of the data range.
    bkg_amplitude : float
        Largest absolute value of the background, as a fraction of the data range.
    gain_range : tuple of 2 float
        Range of the gain factors of the jumps (factors within 0.05 of 1 are redrawn).
    n_gain_jumps : int
        Number of blocks of slices with a gain jump.
    drift_step : float
        Standard deviation, in pixels, of each step of the drift random walk.
    drift_jump : tuple of 2 float
        ``(dy, dx)`` jump, in pixels, added from one slice (in the middle third) on.
    curtain_fraction : float
        Fraction of the acquired slices that carry curtains (0 < f < 1).
    curtain_amplitude : float
        Typical stripe amplitude, as a fraction of the data range.
    n_curtains : int
        Number of stripe positions (each curtain slice shows a random subset).
    missing_fraction : float
        Fraction of the slices dropped (at least one when ``missing``), never the first
        or the last.
    noise_sigma : float
        Standard deviation of the additive Gaussian noise (fraction of the range).
    shot_noise : float
        Signal-dependent noise: its variance is ``shot_noise**2 * value``.

    Returns
    -------
    Synthetic
        The truth, the acquired stack and the defect metadata.

    Raises
    ------
    InputError
        On a bad argument.
    """
    nz, ny, nx = check_shape(shape)
    out_dtype = check_dtype(dtype)
    dz = positive_float("dz", dz)
    seed = check_seed(seed)
    pad_value = fraction("pad_value", pad_value)
    bkg_amplitude = fraction("bkg_amplitude", bkg_amplitude)
    curtain_amplitude = fraction("curtain_amplitude", curtain_amplitude)
    noise_sigma = fraction("noise_sigma", noise_sigma)
    shot_noise = fraction("shot_noise", shot_noise)
    missing_fraction = fraction("missing_fraction", missing_fraction, upper=0.5)
    curtain_fraction = fraction("curtain_fraction", curtain_fraction)
    drift_step = nonnegative_float("drift_step", drift_step)
    drift_jump = float_pair("drift_jump", drift_jump)
    gain_range = check_gain_range(gain_range)
    n_gain_jumps = nonnegative_int("n_gain_jumps", n_gain_jumps)
    n_curtains = nonnegative_int("n_curtains", n_curtains)
    if curtains and (curtain_fraction <= 0 or n_curtains == 0):
        raise InputError("curtains need curtain_fraction > 0 and n_curtains >= 1 "
                         "(or curtains=False)")
    options = {
        "shape": (nz, ny, nx), "seed": seed, "dz": dz, "dtype": out_dtype.name,
        "padding": padding, "background": background, "gain": gain, "drift": drift,
        "curtains": curtains, "missing": missing, "noise": noise,
        "pad_value": pad_value, "bkg_amplitude": bkg_amplitude, "gain_range": gain_range,
        "n_gain_jumps": n_gain_jumps, "drift_step": drift_step, "drift_jump": drift_jump,
        "curtain_fraction": curtain_fraction, "curtain_amplitude": curtain_amplitude,
        "n_curtains": n_curtains, "missing_fraction": missing_fraction,
        "noise_sigma": noise_sigma, "shot_noise": shot_noise,
    }

    # One independent stream per concern, so toggling a defect changes nothing else.
    streams = np.random.SeedSequence(seed).spawn(8)
    (rng_struct, rng_pad, rng_bkg, rng_gain, rng_drift, rng_curt, rng_miss,
     rng_noise) = (np.random.default_rng(s) for s in streams)

    scale = data_range(out_dtype)

    # Padding widths are resolved (and validated) even when padding is off so that the
    # recorded valid region always describes the same frame layout.
    widths = (_random_pad_widths(rng_pad, ny, nx) if pad_widths is None
              else check_pad_widths(pad_widths))
    if not padding:
        widths = (0, 0, 0, 0)
    top, bottom, left, right = widths
    if ny - top - bottom < _MIN_VALID or nx - left - right < _MIN_VALID:
        raise InputError(f"pad_widths {widths} leave fewer than {_MIN_VALID} rows or columns "
                         f"of a ({ny}, {nx}) frame; give smaller pad_widths")
    valid_rows = slice(top, ny - bottom)
    valid_cols = slice(left, nx - right)
    valid_area = [left, nx - right, bottom, ny - top]

    kept, dropped = _draw_missing(rng_miss, nz, missing_fraction if missing else 0.0)
    n_kept = kept.size

    # The walk is always drawn: it sets the hidden margin, hence the truth, which must
    # not depend on the drift switch.
    walk, jump_slice = _draw_drift(rng_drift, nz, kept, drift_step, drift_jump)
    margin = math.ceil(float(np.abs(walk).max())) + 4  # + cubic-spline support
    shifts_all = walk if drift else np.zeros_like(walk)
    if not drift:
        jump_slice = None

    gains_kept = (_draw_gain(rng_gain, n_kept, n_gain_jumps, gain_range) if gain
                  else np.ones(n_kept))

    sample = porous_volume(rng_struct, (nz, ny + 2 * margin, nx + 2 * margin))

    stripes = _draw_curtain_pool(rng_curt, ny + 2 * margin, nx + 2 * margin, n_curtains,
                                 curtain_amplitude)
    curtain_mask = np.zeros(n_kept, dtype=bool)
    if curtains:
        n_curt = min(max(1, round(curtain_fraction * n_kept)), max(1, n_kept - 1))
        curtain_mask[rng_curt.choice(n_kept, size=n_curt, replace=False)] = True

    bkg_coeffs = (_draw_background(rng_bkg, bkg_amplitude * scale) if background
                  else dict.fromkeys(_BKG_TERMS, 0.0))

    truth = np.empty((nz, ny, nx), dtype=out_dtype)
    stack = np.empty((n_kept, ny, nx), dtype=out_dtype)
    inner = (slice(margin, margin + ny), slice(margin, margin + nx))
    pos = {int(k): i for i, k in enumerate(kept)}
    for k in range(nz):
        # float64 on both paths so that, with every defect off, acquisition and truth go
        # through identical arithmetic and compare equal.
        clean = sample[k].astype(np.float64)
        truth[k] = cast(clean[inner] * scale, out_dtype)
        i = pos.get(k)
        if i is None:
            continue
        img = clean
        if curtain_mask[i]:
            img = img + _curtain_image(stripes, rng_curt)
        dy, dx = shifts_all[k]
        if dy != 0 or dx != 0:
            img = ndimage.shift(img, (dy, dx), order=3, mode="nearest")
        img = img[inner]
        if background:
            img = img + _eval_background(bkg_coeffs, k, nz, ny, nx) / scale
        if gains_kept[i] != 1.0:
            img = img * gains_kept[i]
        if noise:
            sigma = np.sqrt(noise_sigma**2 + shot_noise**2 * np.clip(img, 0.0, None))
            img = img + sigma * rng_noise.standard_normal(img.shape)
        img = img * scale
        if padding:
            _fill_border(img, widths, pad_value * scale)
        stack[i] = cast(img, out_dtype)
    del sample

    z_truth = np.arange(nz, dtype=np.float64) * dz
    pad_out = float(cast(np.array([pad_value * scale]), out_dtype)[0]) if padding else 0.0
    return Synthetic(
        truth=truth,
        z_truth=z_truth,
        stack=stack,
        z=z_truth[kept],
        kept=kept,
        missing=dropped,
        shifts=shifts_all[kept].copy(),
        jump_slice=jump_slice,
        gain=gains_kept,
        curtains=curtain_mask,
        curtain_slices=kept[curtain_mask],
        valid_rows=valid_rows,
        valid_cols=valid_cols,
        valid_area=valid_area,
        pad_widths=widths,
        pad_value=pad_out,
        bkg_coeffs=bkg_coeffs,
        dz=dz,
        dtype=out_dtype,
        data_range=scale,
        seed=seed,
        options=options,
    )


def _draw_missing(rng: np.random.Generator, nz: int,
                  fraction: float) -> tuple[np.ndarray, np.ndarray]:
    n_missing = 0
    if fraction > 0 and nz >= 3:
        n_missing = min(max(1, round(fraction * nz)), nz - 2)
    dropped = np.sort(rng.choice(np.arange(1, nz - 1), size=n_missing, replace=False)) \
        if n_missing else np.empty(0, dtype=np.int64)
    kept = np.setdiff1d(np.arange(nz), dropped).astype(np.int64)
    return kept, dropped.astype(np.int64)


def _draw_drift(rng: np.random.Generator, nz: int, kept: np.ndarray, step: float,
                jump: tuple[float, float]) -> tuple[np.ndarray, int | None]:
    """Random walk of (dy, dx) over the original slices, zero at slice 0, with a jump."""
    steps = rng.normal(0.0, step, size=(nz, 2))
    steps[0] = 0.0
    walk = np.cumsum(steps, axis=0)
    # The jump lands on an acquired slice of the middle third so that it is seen as one
    # large step between two consecutive acquired slices.
    lo, hi = nz // 3, max(nz // 3 + 1, (2 * nz) // 3)
    candidates = kept[(kept >= max(lo, 1)) & (kept < hi)]
    if candidates.size == 0:
        candidates = kept[1:]
    jump_slice = int(rng.choice(candidates)) if candidates.size else None
    if jump_slice is not None:
        walk[jump_slice:] += np.asarray(jump, dtype=np.float64)
    return walk, jump_slice


def _draw_gain(rng: np.random.Generator, n_kept: int, n_jumps: int,
               gain_range: tuple[float, float]) -> np.ndarray:
    """Per-slice gains: 1 except for ``n_jumps`` blocks (never on the first slice)."""
    gains = np.ones(n_kept)
    if n_kept < 2:
        return gains
    max_len = max(1, n_kept // 15)
    lo, hi = gain_range
    for _ in range(n_jumps):
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


_BKG_TERMS = ("1", "x", "y", "y^2", "z", "x*z")


def _draw_background(rng: np.random.Generator, amplitude: float) -> dict[str, float]:
    """Polynomial coefficients (output units) of a zero-mean background, max |B| <= amplitude."""
    signs = rng.choice([-1.0, 1.0], size=5)
    mags = rng.uniform([0.6, 0.2, 0.5, 0.4, 0.2], [1.0, 0.5, 1.0, 0.8, 0.5])
    c_x, c_y, c_y2, c_z, c_xz = signs * mags
    # |x|, |y|, |z|, |x z| <= 1 and |y^2 - 1/3| <= 2/3, so this bounds |B| by amplitude.
    norm = abs(c_x) + abs(c_y) + abs(c_y2) * 2 / 3 + abs(c_z) + abs(c_xz)
    c_x, c_y, c_y2, c_z, c_xz = (c * amplitude / norm for c in (c_x, c_y, c_y2, c_z, c_xz))
    # The constant term centres y^2 so that the background averages to ~0 and adds no
    # overall offset (bkg_removal with preserve_avg then recovers the truth's mean).
    values = (-c_y2 / 3, c_x, c_y, c_y2, c_z, c_xz)
    return {k: float(v) for k, v in zip(_BKG_TERMS, values, strict=True)}


def _eval_background(coeffs: dict[str, float], index: int, nz: int, ny: int,
                     nx: int) -> np.ndarray:
    x = np.linspace(-1.0, 1.0, nx)[None, :]
    # Rows counted from the bottom, as in PyStack3D's coordinates.
    y = np.linspace(1.0, -1.0, ny)[:, None] if ny > 1 else np.zeros((1, 1))
    z = 2.0 * index / (nz - 1) - 1.0 if nz > 1 else 0.0
    return (coeffs["1"] + coeffs["x"] * x + coeffs["y"] * y + coeffs["y^2"] * y**2
            + coeffs["z"] * z + coeffs["x*z"] * x * z) * np.ones((ny, nx))


@dataclass
class _Stripes:
    center: np.ndarray  # column of each stripe
    sigma: np.ndarray  # half-width (Gaussian sigma) in pixels
    amplitude: np.ndarray  # fraction of the range, signed
    length: np.ndarray  # rows covered from the top
    n_rows: int
    n_cols: int


def _draw_curtain_pool(rng: np.random.Generator, n_rows: int, n_cols: int, n: int,
                       amplitude: float) -> _Stripes:
    """Stripe positions shared by all curtain slices, as milling curtains persist in x."""
    thin = rng.random(n) < 0.7
    sigma = np.where(thin, rng.uniform(0.5, 1.2, n), rng.uniform(2.0, 4.0, n))
    amp = amplitude * rng.uniform(0.6, 1.2, n) * rng.choice([-1.0, 1.0], n, p=[0.3, 0.7])
    full = rng.random(n) < 0.6
    length = np.where(full, n_rows, (rng.uniform(0.4, 0.9, n) * n_rows).astype(int))
    center = rng.uniform(0, n_cols - 1, n)
    return _Stripes(center, sigma, amp, length.astype(int), n_rows, n_cols)


def _curtain_image(stripes: _Stripes, rng: np.random.Generator) -> np.ndarray:
    """Additive curtains of one slice: a random subset of the pool, varying intensity."""
    cols = np.arange(stripes.n_cols, dtype=np.float64)
    rows = np.arange(stripes.n_rows, dtype=np.float64)[:, None]
    img = np.zeros((stripes.n_rows, stripes.n_cols))
    active = rng.random(stripes.center.size) < 0.75
    if not active.any():
        active[rng.integers(stripes.center.size)] = True
    for j in np.flatnonzero(active):
        profile = np.exp(-0.5 * ((cols - stripes.center[j]) / stripes.sigma[j]) ** 2)
        profile *= stripes.amplitude[j] * rng.uniform(0.7, 1.3)
        # Curtains start at the milled top edge; partial ones fade out over 10 rows.
        taper = np.clip((stripes.length[j] - rows) / 10.0, 0.0, 1.0)
        img += taper * profile[None, :]
    return img


def _fill_border(img: np.ndarray, widths: tuple[int, int, int, int], value: float) -> None:
    top, bottom, left, right = widths
    ny, nx = img.shape
    img[:top] = value
    img[ny - bottom:] = value
    img[:, :left] = value
    img[:, nx - right:] = value


def _random_pad_widths(rng: np.random.Generator, ny: int,
                       nx: int) -> tuple[int, int, int, int]:
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


# ------------------------------------------------------------------------------ writing


def write_synthetic(
    out_dir: str | Path,
    shape: tuple[int, int, int] = (200, 300, 340),
    seed: int | None = 0,
    *,
    overwrite: bool = False,
    profile: str = DEFAULT_PROFILE,
    **kwargs: Any,
) -> SyntheticFiles:
    """Generate a synthetic stack and write it as a PyStack3D project plus its truth.

    Layout of ``out_dir``:

    * ``slices/slice_{k:04d}_z={z:.4f}um.tif``: the acquired slices, one single-page
      TIFF each, ``k`` being the original index (so dropped slices leave gaps);
    * ``truth.zarr``: Zarr v3 store of an xarray Dataset: ``truth`` (z, y, x) restricted
      to the valid (non-padded) region, with z in micrometres and y, x the pixel indices
      of the full frame; the defect metadata as variables over the acquired slices
      (dim ``slice``: ``kept``, ``z_acquired``, ``shift_y``, ``shift_x``, ``gain``,
      ``curtains``) and as attributes;
    * ``workflow.toml``: a PyStack3D workflow with every correction step.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        Output folder; created if needed, must be empty unless ``overwrite``.
    shape, seed
        See :func:`generate`.
    overwrite : bool
        Allow a non-empty ``out_dir``: the ``slices`` folder, ``truth.zarr`` and
        ``workflow.toml`` there are replaced; other files are left alone.
    profile : str
        Profile of the workflow file (see :func:`workflow_toml`).
    **kwargs
        Passed to :func:`generate` (``dz``, ``dtype``, defect switches and strengths).

    Returns
    -------
    SyntheticFiles
        The written paths and the generated data.

    Raises
    ------
    InputError
        If ``out_dir`` is a file, or is not empty and ``overwrite`` is false, or on a
        bad generation argument.
    """
    import tifffile

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"out_dir must be a folder, got the file {out}")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"out_dir {out} is not empty; pass overwrite=True to write into it")

    syn = generate(shape=shape, seed=seed, **kwargs)

    slices_dir = out / "slices"
    truth_path = out / "truth.zarr"
    workflow_path = out / "workflow.toml"
    for old in (slices_dir, truth_path):
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    slices_dir.mkdir(parents=True)

    paths = []
    for img, name in zip(syn.stack, syn.filenames, strict=True):
        path = slices_dir / name
        tifffile.imwrite(path, img)
        paths.append(path)

    truth_dataset(syn).to_zarr(truth_path, mode="w", zarr_format=3, consolidated=False)
    workflow_path.write_text(workflow_toml(syn, profile=profile), encoding="utf-8")
    return SyntheticFiles(out_dir=out, slices_dir=slices_dir, slice_paths=paths,
                          truth=truth_path, workflow=workflow_path, synthetic=syn)
