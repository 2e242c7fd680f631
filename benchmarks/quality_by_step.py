"""Quality of every correction step against the ground truth: PyStack3D, this project with
PyStack3D's parameters, and this project with its recommended profile.

Usage::

    python benchmarks/quality_by_step.py [--shape 60 192 192] [--seeds 0 1 2]
        [--cases default strong_curtains few_weak_curtains] [--workers 2] [--dir TMP]
        [--json OUT]

For each case (a set of defect strengths of :func:`pystack3d_dask.synthetic.generate`)
and seed, the synthetic stack is written with its PyStack3D workflow and corrected by
three tools:

* ``ps3d``: PyStack3D itself (a child process, ``tests/pystack3d_runner.py``);
* ``ours``: this project on the same workflow (``profile`` absent: PyStack3D's values);
* ``rec``: this project with ``profile = "recommended"``, the keys that profile sets
  being removed from the step tables so that its values apply (skipped, and said so,
  while ``pystack3d_dask.profiles`` does not exist).

Every step's output is scored against the truth slice by slice, then averaged over the
slices: MAE, SSIM, PSNR (of the mean squared error; data range: the dtype's) and the
contrast (least-squares slope of the output on the truth; 1 = contrast kept). Before
``registration_transformation`` the truth is moved by the known drift of each slice;
from it on, by the residual misalignment that phase correlation finds between the
slice and the truth (the same estimate for every tool, so intensity steps are judged on
intensity alone). The output itself is never interpolated: that would smooth its noise
and flatter it. Pixels whose truth comes from within a few pixels of the frame's edge
are left out. A step is flagged when it made things worse than its input: ``M`` for an
MAE more than 2 % higher, ``C`` for a contrast moved by more than 2 % away from 1.

The last step's output is scored once more as a volume, with one (dy, dx) translation
for all its slices (the median of the per-slice estimates, or none, whichever gives the
lower MAE), so that an offset of the whole volume is not counted. The oracle floor is
the same seed with only noise, drift and missing slices, corrected by this project's
registration and resampling alone (recommended profile when there is one): what the
truth plus noise looks like after the same resampling and its residual misalignment,
scored on the pixels of ``ours``' final output. Printed last: the final volumes, then
per case and seed ``rec`` minus ``ps3d`` SSIM, ``rec`` / ``ps3d`` MAE and the oracle's
SSIM minus ``rec``'s (and the same for ``ours``).
"""

from __future__ import annotations

import os

# Set before numpy loads OpenBLAS: its threads cost more than they save on the small
# complex matrix products of phase_cross_correlation (10x slower with 2 threads here),
# and both tools already run one worker per core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import copy
import json
import math
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
# This checkout's package, wherever the script is run from: a plain (non-editable)
# install elsewhere would otherwise be scored instead of the code beside the script.
sys.path.insert(0, str(HERE.parent))

from harness import format_table  # noqa: E402

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

#: Defect strengths, as keyword arguments of ``synthetic.generate``.
CASES: dict[str, dict[str, Any]] = {
    "default": {},
    "strong_curtains": {"curtain_fraction": 0.7, "curtain_amplitude": 0.14},
    "few_weak_curtains": {"curtain_fraction": 0.15, "curtain_amplitude": 0.04,
                          "gain_range": (0.75, 1.3), "bkg_amplitude": 0.15},
}

TOOLS: dict[str, str] = {
    "ps3d": "PyStack3D",
    "ours": "ours, PyStack3D's parameters",
    "rec": "ours, recommended profile",
}

#: Steps from which the slices are registered onto the first one (true drift no longer
#: applies: the residual is estimated instead).
REGISTERED_FROM = "registration_transformation"

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
    syn : pystack3d_dask.synthetic.Synthetic
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

    Parameters
    ----------
    score, before : mapping
        Scores of the step's output and of its input.

    Returns
    -------
    str
        The flag.
    """
    flag = ""
    if score["mae"] > (1 + _WORSE) * before["mae"]:
        flag += "M"
    c, c0 = score["contrast"], before["contrast"]
    # A contrast brought back towards 1 (a gain corrected) is no harm, however large.
    if abs(c - c0) > _WORSE * abs(c0) and abs(c - 1) > abs(c0 - 1):
        flag += "C"
    return flag


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


# ------------------------------------------------------------------------------- runs


@dataclass
class Profile:
    """The recommended profile, as ``pystack3d_dask.profiles`` defines it.

    Attributes
    ----------
    values : dict
        Step table (``"*"``: every step) to the keys and values the profile sets.
    excluded_by : dict
        ``(step, key)`` to the keys of a file that keep the profile's value out (the
        file's ``filters`` keep the profile's destriping ``method`` out, for one).
    """

    values: dict[str, dict[str, Any]]
    excluded_by: dict[tuple[str, str], tuple[str, ...]]


def load_profile() -> tuple[Profile | None, str]:
    """The recommended profile, or None while the package has none, and a line saying which."""
    try:
        from pystack3d_dask import profiles
    except ImportError as exc:
        return None, (f"recommended profile: not available ({exc}); running PyStack3D and ours "
                      "with PyStack3D's parameters only")
    rec = getattr(profiles, "PROFILES", {}).get("recommended")
    if not isinstance(rec, Mapping):
        return None, ("recommended profile: pystack3d_dask.profiles.PROFILES has no "
                      "'recommended' entry; running PyStack3D and ours with PyStack3D's "
                      "parameters only")
    # Private, and optional: without it, a file key that rules a profile value out is
    # caught by check_profile instead.
    excluded = dict(getattr(profiles, "_EXCLUDED_BY", {}))
    values = {t: dict(v) for t, v in rec.items()}
    keys = "; ".join(f"[{t}] " + ", ".join(f"{k} = {v!r}" for k, v in kv.items())
                     for t, kv in values.items())
    return Profile(values, excluded), f"recommended profile: {keys}"


def recommended_workflow(wf: Mapping[str, Any], profile: Profile
                         ) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``wf`` with ``profile = "recommended"`` and, from its step tables, the keys the
    profile sets and those that would keep its values out, so that its values apply.

    Parameters
    ----------
    wf : mapping
        The workflow (PyStack3D's parameters).
    profile : Profile
        The recommended profile.

    Returns
    -------
    dict, dict
        A new workflow dictionary, and the keys removed from each table.
    """
    out = copy.deepcopy(dict(wf))
    out["profile"] = "recommended"
    removed: dict[str, list[str]] = {}
    for table, keys in profile.values.items():
        targets = out.get("process_steps", []) if table == "*" else [table]
        for name in targets:
            tab = out.get(name)
            if not isinstance(tab, dict):
                continue
            for key in keys:
                for k in (key, *profile.excluded_by.get((name, key), ())):
                    if k in tab:
                        del tab[k]
                        removed.setdefault(name, []).append(k)
    return out, removed


def check_profile(wf: Mapping[str, Any], profile: Profile) -> list[str]:
    """The profile values that the loaded workflow does not hold (empty: all applied).

    Parameters
    ----------
    wf : mapping
        The workflow of :func:`recommended_workflow`.
    profile : Profile
        The recommended profile.

    Returns
    -------
    list of str
        ``"[step] key: profile value, loaded value"`` for each value that did not apply.
    """
    import pystack3d_dask as p3d

    loaded = p3d.load_workflow(wf)
    off = []
    for table, keys in profile.values.items():
        for name in (loaded.process_steps if table == "*" else [table]):
            if name not in loaded.process_steps:
                continue
            for key, value in keys.items():
                got = loaded.steps.get(name, {}).get(key)
                if _jsonable(got) != _jsonable(value):
                    off.append(f"[{name}] {key}: profile {value!r}, loaded {got!r}")
    return off


def run_ours(wf: Mapping[str, Any], store: Path, steps: Sequence[str]) -> tuple[dict[str, Stack], float]:
    """Run this project in this process and read every step's output back.

    Parameters
    ----------
    wf : mapping
        The workflow.
    store : pathlib.Path
        Zarr store to write.
    steps : sequence of str
        Steps to read back (besides ``"input"``).

    Returns
    -------
    dict, float
        Step name to output, and the wall time of the run in seconds.
    """
    import pystack3d_dask as p3d

    wf = copy.deepcopy(dict(wf))
    wf["store"] = {**wf.get("store", {}), "path": str(store)}
    start = time.perf_counter()
    p3d.run(wf, progress=False)
    wall = time.perf_counter() - start
    return {s: Stack.from_result(store, s) for s in ("input", *steps)}, wall


def label_pystack3d(ref: Any, ours: Mapping[str, Stack], steps: Sequence[str],
                    notes: list[str]) -> dict[str, Stack]:
    """PyStack3D's outputs labelled with the coordinates of ours (PyStack3D's parameters).

    The two have the same geometry (tested parity); a step whose shapes or z disagree,
    is left out and said in ``notes``; a step that wrote no slices is left out.
    """
    out: dict[str, Stack] = {}
    for step in steps:
        res = ref[step]
        if not res.files:
            continue  # registration_calculation: matrices only (a "-" row says so)
        mine = ours.get(step)
        data = res.stack
        if mine is None or data.shape != mine.data.shape:
            notes.append(f"PyStack3D: {step} output {data.shape} differs from ours "
                         f"{None if mine is None else mine.data.shape} (not scored)")
            continue
        zs = np.array([float(n.split("z=")[1].split("um")[0]) for n in res.files])
        if not np.allclose(zs, mine.z, atol=1e-3):
            notes.append(f"PyStack3D: {step} z from file names differ from ours "
                         f"(max {np.max(np.abs(zs - mine.z)):.4g} um); labelled with ours'")
        out[step] = Stack(data, mine.z, mine.y, mine.x)
    return out


def run_oracle(out_dir: Path, shape: tuple[int, int, int], seed: int, case: Mapping[str, Any],
               workers: int, truth: np.ndarray, profile: Profile | None) -> tuple[Stack, float]:
    """The oracle floor's final volume: noise, drift and missing slices only, registered
    and resampled by this project (with the recommended profile when there is one: the
    best registration there is, or the floor would not be one).

    Raises
    ------
    RuntimeError
        If its truth is not ``truth`` (the tools' stack): it would not be their floor.
    """
    from pystack3d_dask.synthetic import write_synthetic

    files = write_synthetic(out_dir / "syn", shape=shape, seed=seed, padding=False,
                            background=False, gain=False, curtains=False, **case)
    if not np.array_equal(files.synthetic.truth, truth):
        raise RuntimeError("the oracle's truth differs from the tools' (generate changed?)")
    params = tomllib.loads(files.workflow.read_text())
    # No padding: no cropping needed; registration_transformation crops what the drift
    # uncovered.
    steps = ["registration_calculation", "registration_transformation", "resampling"]
    wf = {k: v for k, v in params.items() if not isinstance(v, dict) or k in steps}
    wf.update(project_dir=str(files.slices_dir), process_steps=steps,
              scheduler={"name": "threads", "workers": workers})
    if profile is not None:
        wf = recommended_workflow(wf, profile)[0]
    stacks, wall = run_ours(wf, out_dir / "oracle.zarr", steps[-1:])
    return stacks[steps[-1]], wall


# Strengths of the defects the oracle turns off: cases differing only in these share it.
_ORACLE_IGNORES = frozenset({"pad_widths", "pad_value", "bkg_amplitude", "gain_range",
                             "n_gain_jumps", "curtain_fraction", "curtain_amplitude",
                             "n_curtains"})


def oracle_key(seed: int, case: Mapping[str, Any]) -> str:
    """What the oracle's stack depends on: the seed and the strengths it keeps."""
    kept = {k: v for k, v in case.items() if k not in _ORACLE_IGNORES}
    return json.dumps([seed, _jsonable(kept)], sort_keys=True)


def run_case(case_name: str, seed: int, shape: tuple[int, int, int], workers: int,
             scratch: Path, profile: Profile | None,
             oracles: dict[str, tuple[Stack, float]]) -> dict[str, Any]:
    """Generate, correct with every tool and score one case and seed.

    ``oracles`` caches the oracle's final volume (and its wall time) by
    :func:`oracle_key`, filled here.

    Returns
    -------
    dict
        ``steps`` (step to tool to scores), ``final`` (tool to volume scores, oracle
        included), ``flags``, ``notes``, ``wall_s`` and ``steps_order``.
    """
    from pystack3d_runner import run_pystack3d_subprocess

    from pystack3d_dask.steps import available_steps
    from pystack3d_dask.synthetic import write_synthetic

    case = CASES[case_name]
    work = scratch / f"{case_name}-{seed}"
    notes: list[str] = []
    wall: dict[str, float] = {}
    try:
        files = write_synthetic(work / "syn", shape=shape, seed=seed, **case)
        truth = Truth(files.synthetic)
        params = tomllib.loads(files.workflow.read_text())
        have = set(available_steps())
        steps = [s for s in params["process_steps"] if s in have]
        if len(steps) < len(params["process_steps"]):
            notes.append(f"steps not available here, left out of all tools: "
                         f"{[s for s in params['process_steps'] if s not in have]}")
        wf = copy.deepcopy(params)
        wf.update(project_dir=str(files.slices_dir), process_steps=steps,
                  scheduler={"name": "threads", "workers": workers})

        outputs: dict[str, dict[str, Stack]] = {}
        try:
            outputs["ours"], wall["ours"] = run_ours(wf, work / "ours.zarr", steps)
        except Exception as exc:  # the other tools still tell something
            notes.append(f"ours failed: {type(exc).__name__}: {exc}")
        rec_changes = None
        if profile is not None:
            try:
                rec_wf, removed = recommended_workflow(wf, profile)
                rec_changes = ("recommended run: removed from the step tables: " + "; ".join(
                    f"[{t}] {', '.join(k)}" for t, k in removed.items()) if removed else
                    "recommended run: no key removed from the step tables")
                notes.extend(f"recommended profile value not applied: {x}"
                             for x in check_profile(rec_wf, profile))
                outputs["rec"], wall["rec"] = run_ours(rec_wf, work / "rec.zarr", steps)
            except Exception as exc:
                notes.append(f"recommended failed: {type(exc).__name__}: {exc}")
        start = time.perf_counter()
        ref = run_pystack3d_subprocess(files.slices_dir, params, steps, work / "ps3d",
                                       nproc=workers, plots=False, timeout=3600)
        wall["ps3d"] = time.perf_counter() - start
        if not ref.ok:
            notes.append(f"PyStack3D failed: {next(iter(ref.errors.values()))[-300:]}")
        elif "ours" in outputs:
            outputs["ps3d"] = label_pystack3d(ref, outputs["ours"], steps, notes)
            # Same input slices for every tool: PyStack3D's input is ours'.
            outputs["ps3d"]["input"] = outputs["ours"]["input"]
        else:
            notes.append("PyStack3D not scored: its outputs take the coordinates of ours, "
                         "which failed")
        shutil.rmtree(work / "ps3d", ignore_errors=True)  # its TIFFs are in memory now

        start = time.perf_counter()
        tools = [t for t in TOOLS if t in outputs]
        order = ["input", *steps]
        scores: dict[str, dict[str, Any]] = {s: {} for s in order}
        flags: dict[str, dict[str, str]] = {s: {} for s in order}
        residuals: dict[str, np.ndarray] = {}
        input_score = None
        first_registered = (steps.index(REGISTERED_FROM) if REGISTERED_FROM in steps
                            else len(steps))
        for tool in tools:
            before = None
            for step in order:
                stack = outputs[tool].get(step)
                if stack is None:
                    continue
                if step == "input" and input_score is not None:
                    sc = input_score  # same slices for every tool
                else:
                    registered = step != "input" and steps.index(step) >= first_registered
                    shifts = estimate_residuals(stack, truth) if registered else None
                    sc = score_stack(stack, truth, shifts)
                    if registered:
                        residuals[tool] = shifts  # the last step's, for final_scores
                    if step == "input":
                        input_score = sc
                scores[step][tool] = sc
                if before is not None:
                    flags[step][tool] = worse_flag(sc, before)
                before = sc

        final: dict[str, dict[str, Any]] = {}
        last = steps[-1]
        for tool in tools:
            if last in outputs[tool]:
                final[tool] = final_scores(outputs[tool][last], truth, residuals.get(tool))
        wall["scoring"] = time.perf_counter() - start
        try:
            key = oracle_key(seed, case)
            if key not in oracles:
                oracles[key] = run_oracle(work / "oracle", shape, seed, case, workers,
                                           truth.volume, profile)
                wall["oracle"] = oracles[key][1]
            oracle = oracles[key][0]
            if "ours" in outputs:
                # The same pixels as the tools' final output: the oracle's registration
                # keeps more of the unpadded frame, nearer its edges.
                oracle = oracle.restricted(outputs["ours"][last].y, outputs["ours"][last].x)
            final["oracle"] = final_scores(oracle, truth)
        except Exception as exc:
            notes.append(f"oracle failed: {type(exc).__name__}: {exc}")
        return {"case": case_name, "seed": seed, "generate_kwargs": _jsonable(case),
                "steps_order": order, "steps": scores, "flags": flags, "final": final,
                "notes": notes, "wall_s": wall, "rec_changes": rec_changes}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- output


def step_table(run: Mapping[str, Any]) -> str:
    """Text table of one case and seed: a row per step, MAE/SSIM/PSNR/contrast/flag per tool."""
    tools = [t for t in TOOLS if any(t in run["steps"][s] for s in run["steps_order"])]
    columns = ["step"]
    for tool in tools:
        columns += [f"{tool} MAE", f"{tool} SSIM", f"{tool} PSNR", f"{tool} contr", f"{tool} !"]
    rows = []
    for step in run["steps_order"]:
        row: dict[str, Any] = {"step": step}
        for tool in tools:
            sc = run["steps"][step].get(tool)
            if sc is None:
                continue
            row.update({f"{tool} MAE": sc["mae"], f"{tool} SSIM": sc["ssim"],
                        f"{tool} PSNR": sc["psnr"], f"{tool} contr": sc["contrast"],
                        f"{tool} !": run["flags"][step].get(tool, "")})
        rows.append(row)
    title = (f"case {run['case']}, seed {run['seed']}: per-step scores against the truth "
             f"(mean over slices; contr = contrast; ! = worse than the step's input: "
             f"M = MAE +2 %, C = contrast 2 % further from 1; - = no slices written)")
    return format_table(rows, columns, float_format=".4g", title=title)


def summary_tables(runs: Sequence[Mapping[str, Any]]) -> str:
    """The final volume of every tool and the oracle, then the requested comparisons."""
    names = [*TOOLS, "oracle"]
    present = [n for n in names if any(n in r["final"] for r in runs)]
    rows, comp = [], []
    for r in runs:
        row: dict[str, Any] = {"case": r["case"], "seed": r["seed"]}
        for n in present:
            f = r["final"].get(n)
            if f is not None:
                row.update({f"{n} SSIM": f["ssim"], f"{n} MAE": f["mae"], f"{n} PSNR": f["psnr"]})
        rows.append(row)
        comp.append({"case": r["case"], "seed": r["seed"], **comparisons(r["final"])})
    cols = ["case", "seed", *(f"{n} {m}" for m in ("SSIM", "MAE", "PSNR") for n in present)]
    ccols = ["case", "seed", "rec-ps3d SSIM", "rec/ps3d MAE", "oracle-rec SSIM",
             "ours-ps3d SSIM", "oracle-ours SSIM"]
    means: dict[str, Any] = {"case": "mean", "seed": ""}
    for c in ccols[2:]:
        vals = [x[c] for x in comp if isinstance(x.get(c), float)]
        means[c] = float(np.mean(vals)) if vals else None
    comp.append(means)
    return "\n\n".join([
        format_table(rows, cols, float_format=".4g",
                     title="final volume against the truth (one translation for the whole volume)"),
        format_table(comp, ccols, float_format=".4f",
                     title="recommended (rec) against PyStack3D (ps3d) and the oracle floor"),
    ])


def comparisons(final: Mapping[str, Mapping[str, float]]) -> dict[str, float | None]:
    """Differences of final SSIM and ratio of final MAE between the contenders."""

    def get(name: str, metric: str) -> float | None:
        f = final.get(name)
        return None if f is None else float(f[metric])

    def diff(a: str, b: str) -> float | None:
        va, vb = get(a, "ssim"), get(b, "ssim")
        return None if va is None or vb is None else va - vb

    mae_rec, mae_ref = get("rec", "mae"), get("ps3d", "mae")
    return {"rec-ps3d SSIM": diff("rec", "ps3d"),
            "rec/ps3d MAE": None if mae_rec is None or not mae_ref else mae_rec / mae_ref,
            "oracle-rec SSIM": diff("oracle", "rec"),
            "ours-ps3d SSIM": diff("ours", "ps3d"),
            "oracle-ours SSIM": diff("oracle", "ours")}


def _jsonable(value: Any) -> Any:
    """JSON-able copy: arrays as lists, tuples as lists, non-finite floats as None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[60, 192, 192],
                        metavar=("NZ", "NY", "NX"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="folder of the temporary files")
    parser.add_argument("--json", type=Path, default=None, help="write every number there")
    args = parser.parse_args()
    shape = (args.shape[0], args.shape[1], args.shape[2])

    # A terminated run still removes its temporary stores (the finally below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    import pystack3d_dask

    profile, line = load_profile()
    print(f"pystack3d_dask from {Path(pystack3d_dask.__file__).parent}")
    print(line)
    start = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-quality-"))
    runs = []
    oracles: dict[str, tuple[Stack, float]] = {}
    changes = None
    try:
        for case in args.cases:
            for seed in args.seeds:
                run = run_case(case, seed, shape, args.workers, scratch, profile, oracles)
                runs.append(run)
                if run["rec_changes"] not in (None, changes):
                    changes = run["rec_changes"]
                    print(changes)
                print()
                print(step_table(run))
                for note in run["notes"]:
                    print(f"  note: {note}")
                print("  wall: " + ", ".join(f"{k} {v:.1f} s" for k, v in run["wall_s"].items()),
                      flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(summary_tables(runs))
    total = time.perf_counter() - start
    print(f"\n{'x'.join(map(str, shape))} stacks, {len(runs)} runs, {total:.0f} s in all")
    if args.json is not None:
        doc = {"shape": shape, "seeds": args.seeds, "cases": {c: CASES[c] for c in args.cases},
               "workers": args.workers, "profile": line, "tools": TOOLS, "runs": runs,
               "total_s": total}
        args.json.write_text(json.dumps(_jsonable(doc), indent=1), encoding="utf-8")
        print(f"every number written to {args.json}")


if __name__ == "__main__":
    main()
