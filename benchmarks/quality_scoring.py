"""Scoring of the outputs of ``quality_by_step.py`` against the ground truth: the stacks
and the truth, per-slice scores, the "worse than its input" flag and the final volume's
scores (see that script's docstring for what is measured and how).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Truth pixels closer than this to the frame's edge are left out once shifted: the
# cubic spline's prefilter there depends on the boundary mode (0.268**5 < 0.2 %).
_EDGE = 5
# Thresholds of the "worse than its input" flag.
_WORSE = 0.02
_METRICS = ("mae", "ssim", "psnr", "contrast")


# ------------------------------------------------------------------------------ data


@dataclass
class Stack:
    """One output stack, labelled with the coordinates of the original frame.

    Attributes
    ----------
    data : numpy.ndarray
        Slices ``(z, y, x)``.
    z : numpy.ndarray
        z of each slice, in micrometres.
    y, x : numpy.ndarray
        Row and column indices of the original frame (contiguous integers).
    """

    data: np.ndarray = field(repr=False)
    z: np.ndarray
    y: np.ndarray
    x: np.ndarray

    @classmethod
    def from_result(cls, store: Path, step: str) -> Stack:
        """Read one step of this project's store (first channel).

        Parameters
        ----------
        store : pathlib.Path
            The Zarr store.
        step : str
            Step name or ``"input"``.

        Returns
        -------
        Stack
            The slices, read into memory, with their coordinates.
        """
        import pystack3d_dask as p3d

        arr = p3d.open_result(store, step).isel(channel=0).transpose("z", "y", "x")
        return cls(np.asarray(arr.values), *(np.asarray(arr[d].values) for d in "zyx"))

    def restricted(self, y: np.ndarray, x: np.ndarray) -> Stack:
        """The part of the stack on the rows ``y`` and columns ``x`` it shares with them.

        Parameters
        ----------
        y, x : numpy.ndarray
            Frame rows and columns to keep (others are dropped).

        Returns
        -------
        Stack
            The restricted stack (may be empty along y or x).
        """
        iy = np.flatnonzero(np.isin(self.y, y))
        ix = np.flatnonzero(np.isin(self.x, x))
        return Stack(self.data[:, iy][:, :, ix], self.z, self.y[iy], self.x[ix])


class Truth:
    """The ground truth of one synthetic stack, with the known drift of each slice.

    Parameters
    ----------
    syn : pystack3d_dask.datasets.synthetic.Synthetic
        The generated data (its full-frame truth is used, padding region included).
    """

    def __init__(self, syn: Any) -> None:
        self.volume = syn.truth
        self.dz = float(syn.dz)
        self.data_range = float(syn.data_range)
        self.drift = {int(k): (float(d[0]), float(d[1])) for k, d in zip(syn.kept, syn.shifts)}
        # The drift-moved truth is the same for every tool and every step before the
        # registration: computed once per slice.
        self._drifted: dict[int, np.ndarray] = {}

    @property
    def frame(self) -> tuple[int, int]:
        """``(ny, nx)`` of the frame."""
        return int(self.volume.shape[1]), int(self.volume.shape[2])

    def index(self, z: float) -> int | None:
        """Truth slice at ``z`` (micrometres), None if ``z`` is off the truth's grid."""
        k = round(float(z) / self.dz)
        # z read back from file names carries 4 decimals.
        if 0 <= k < self.volume.shape[0] and abs(k * self.dz - float(z)) <= 0.01 * self.dz:
            return k
        return None

    def plain(self, k: int) -> np.ndarray:
        """Truth slice ``k`` as float64."""
        return self.volume[k].astype(np.float64)

    def shifted(self, k: int, shift: tuple[float, float], *, cache: bool = False) -> np.ndarray:
        """Truth slice ``k`` moved by ``shift`` (cubic spline), as float64.

        Parameters
        ----------
        k : int
            Truth slice.
        shift : tuple of 2 float
            ``(dy, dx)``: the result shows the truth moved by +dy rows and +dx columns,
            as the synthetic acquisition does.
        cache : bool
            Keep the result for the next call with the same ``k`` (the known drift).

        Returns
        -------
        numpy.ndarray
            The moved slice, on the full frame.
        """
        from scipy import ndimage

        if cache and k in self._drifted:
            return self._drifted[k].astype(np.float64)
        img = self.plain(k)
        if shift[0] or shift[1]:
            img = ndimage.shift(img, shift, order=3, mode="nearest")
        if cache:
            self._drifted[k] = img.astype(np.float32)
        return img


# --------------------------------------------------------------------------- scoring


def _window(coords: np.ndarray, shift: float, size: int) -> tuple[int, int] | None:
    """First and last frame index of ``coords`` whose truth, moved by ``shift``, comes from
    at least ``_EDGE`` pixels inside the frame (the output at r shows the truth at r - shift)."""
    lo = max(int(coords[0]), math.ceil(shift + _EDGE))
    hi = min(int(coords[-1]), math.floor(size - 1 - _EDGE + shift))
    return (lo, hi) if hi - lo >= 6 else None  # SSIM needs 7x7 pixels


def _check_coords(stack: Stack) -> None:
    for name in ("y", "x"):
        c = getattr(stack, name)
        if c.size == 0 or not np.all(np.diff(c) == 1) or not np.all(c == np.round(c)):
            raise ValueError(f"{name} coordinates must be contiguous pixel indices, got "
                             f"{c[:5]}... ({c.size})")


def estimate_residuals(stack: Stack, truth: Truth) -> np.ndarray:
    """Per-slice misalignment ``(dy, dx)`` of ``stack`` against the truth at its z.

    Parameters
    ----------
    stack : Stack
        Registered slices.
    truth : Truth
        The ground truth.

    Returns
    -------
    numpy.ndarray
        ``(n, 2)``: slice i shows the truth moved by ``result[i]`` (phase correlation,
        0.1 px resolution); NaN for a slice off the truth's z grid.
    """
    from skimage.registration import phase_cross_correlation

    _check_coords(stack)
    rows = slice(int(stack.y[0]), int(stack.y[-1]) + 1)
    cols = slice(int(stack.x[0]), int(stack.x[-1]) + 1)
    out = np.full((stack.z.size, 2), np.nan)
    for i, z in enumerate(stack.z):
        k = truth.index(z)
        if k is None:
            continue
        ref = truth.volume[k, rows, cols].astype(np.float64)
        found, _, _ = phase_cross_correlation(ref, stack.data[i].astype(np.float64),
                                              upsample_factor=10)
        # found registers the output onto the truth: the output is the truth moved by -found.
        out[i] = -np.asarray(found, dtype=np.float64)
    return out


def score_stack(stack: Stack, truth: Truth, shifts: np.ndarray | None, *,
                ssim: bool = True) -> dict[str, Any]:
    """Score a stack against the truth, slice by slice.

    Parameters
    ----------
    stack : Stack
        The output.
    truth : Truth
        The ground truth.
    shifts : numpy.ndarray or None
        ``(n, 2)`` shift of the truth for each slice, or None for the known drift of
        each acquired slice (outputs before the registration).
    ssim : bool
        Compute the SSIM (the costliest score; not needed to compare candidate shifts).

    Returns
    -------
    dict
        Means over the scored slices (``mae``, ``ssim``, ``contrast``, ``bias`` = output
        minus truth; ``psnr`` of the mean squared error),
        ``n_slices`` scored, ``n_skipped`` and the per-slice values (``per_slice``).
    """
    from skimage.metrics import structural_similarity

    _check_coords(stack)
    ny, nx = truth.frame
    rng = truth.data_range
    per: dict[str, list[float]] = {m: [] for m in (*_METRICS, "bias", "mse", "z", "dy", "dx")}
    skipped = 0
    for i, z in enumerate(stack.z):
        k = truth.index(z)
        if k is None or (shifts is None and k not in truth.drift) \
                or (shifts is not None and not np.all(np.isfinite(shifts[i]))):
            skipped += 1
            continue
        d = truth.drift[k] if shifts is None else (float(shifts[i, 0]), float(shifts[i, 1]))
        wy, wx = _window(stack.y, d[0], ny), _window(stack.x, d[1], nx)
        if wy is None or wx is None:
            skipped += 1
            continue
        ref = truth.shifted(k, d, cache=shifts is None)[wy[0]:wy[1] + 1, wx[0]:wx[1] + 1]
        img = stack.data[i, wy[0] - int(stack.y[0]):wy[1] - int(stack.y[0]) + 1,
                         wx[0] - int(stack.x[0]):wx[1] - int(stack.x[0]) + 1].astype(np.float64)
        diff = img - ref
        mse = float(np.mean(diff * diff))
        centred = ref - ref.mean()
        var = float(np.sum(centred * centred))
        per["mae"].append(float(np.mean(np.abs(diff))))
        per["mse"].append(mse)
        per["bias"].append(float(np.mean(diff)))
        per["psnr"].append(10.0 * math.log10(rng * rng / mse) if mse > 0 else math.inf)
        per["contrast"].append(float(np.sum(centred * (img - img.mean())) / var) if var > 0
                               else math.nan)
        per["ssim"].append(float(structural_similarity(ref, img, data_range=rng)) if ssim
                           else math.nan)
        per["z"].append(float(z))
        per["dy"].append(d[0])
        per["dx"].append(d[1])
    out: dict[str, Any] = {m: float(np.mean(per[m])) if per[m] else math.nan
                           for m in (*_METRICS, "bias")}
    # PSNR of the mean squared error over the slices, not the mean of the slices' PSNR: one
    # slice identical to its truth (the registration's reference, noise-free) would make
    # that mean infinite.
    mse = float(np.mean(per["mse"])) if per["mse"] else math.nan
    out["psnr"] = 10.0 * math.log10(rng * rng / mse) if mse > 0 else \
        (math.inf if mse == 0 else math.nan)
    out.update(n_slices=len(per["z"]), n_skipped=skipped, per_slice=per)
    return out


def worse_flag(score: Mapping[str, float], before: Mapping[str, float]) -> str:
    """``M`` if the MAE rose by more than 2 %, ``C`` if the contrast moved by more than
    2 % and away from 1, both, or ``""``.

    Both are means over the slices the two have in common (same z): a slice that a
    step adds (resampling fills a missing one by interpolation) has no input to be
    worse than, and is not counted; over all slices where none are in common.

    Parameters
    ----------
    score, before : mapping
        Scores of the step's output and of its input (:func:`score_stack`'s, with their
        ``per_slice`` values).

    Returns
    -------
    str
        The flag.
    """
    score, before = _on_common_slices(score, before)
    flag = ""
    if score["mae"] > (1 + _WORSE) * before["mae"]:
        flag += "M"
    c, c0 = score["contrast"], before["contrast"]
    # A contrast brought back towards 1 (a gain corrected) is no harm, however large.
    if abs(c - c0) > _WORSE * abs(c0) and abs(c - 1) > abs(c0 - 1):
        flag += "C"
    return flag


def _on_common_slices(score: Mapping[str, Any], before: Mapping[str, Any]
                      ) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """MAE and contrast of both, averaged over the slices (by z) that both scored."""
    per, per0 = score.get("per_slice"), before.get("per_slice")
    if not per or not per0:
        return score, before
    z, z0 = np.round(per["z"], 4), np.round(per0["z"], 4)
    common = np.intersect1d(z, z0)
    if not common.size:
        return score, before
    out = []
    for values, zs in ((per, z), (per0, z0)):
        take = np.isin(zs, common)
        out.append({m: float(np.mean(np.asarray(values[m])[take])) for m in ("mae", "contrast")})
    return out[0], out[1]


def final_scores(stack: Stack, truth: Truth, residuals: np.ndarray | None = None) -> dict[str, Any]:
    """Score a final volume with one translation for all its slices.

    Parameters
    ----------
    stack : Stack
        The last step's output (registered).
    truth : Truth
        The ground truth.
    residuals : numpy.ndarray, optional
        Per-slice misalignments already estimated (:func:`estimate_residuals`).

    Returns
    -------
    dict
        :func:`score_stack`'s result without the per-slice values, plus ``shift`` (the
        translation used) and ``candidates`` (MAE of each candidate translation).
    """
    if residuals is None:
        residuals = estimate_residuals(stack, truth)
    finite = residuals[np.all(np.isfinite(residuals), axis=1)]
    candidates = {"none": np.zeros(2)}
    if finite.size:
        candidates["median"] = np.median(finite, axis=0)
    # The median is robust to a few badly estimated slices, but rounds to 0.1 px and may
    # carry a bias: keep it only if it lowers the MAE.
    maes = {name: score_stack(stack, truth, np.tile(v, (stack.z.size, 1)), ssim=False)["mae"]
            for name, v in candidates.items()}
    best = min(maes, key=lambda n: maes[n] if math.isfinite(maes[n]) else math.inf)
    shift = candidates[best]
    out = score_stack(stack, truth, np.tile(shift, (stack.z.size, 1)))
    out.pop("per_slice")
    out.update(shift=[float(v) for v in shift], shift_from=best, candidates=maes)
    return out
