"""Running the tools of ``quality_by_step.py`` on a synthetic stack: PyStack3D, this project
with PyStack3D's parameters and with the recommended profile, and the oracle floor, then
scoring one case and seed (see that script's docstring).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from quality_scoring import Stack, Truth, estimate_residuals, final_scores, score_stack, worse_flag

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


# ------------------------------------------------------------------------------- runs


@dataclass
class Profile:
    """The recommended profile, as ``pystack3d_dask.workflow.profiles`` defines it.

    Attributes
    ----------
    values : dict
        Step table (``"*"``: every step) to the keys and values the profile sets.
    excluded_by : callable
        ``(step, key)`` to the keys of a file that keep the profile's value out (the
        file's ``filters`` keep the profile's destriping ``method`` out, for one):
        :func:`pystack3d_dask.workflow.profiles.conflicting_keys`.
    """

    values: dict[str, dict[str, Any]]
    excluded_by: Callable[[str, str], tuple[str, ...]]


def load_profile() -> tuple[Profile | None, str]:
    """The recommended profile, or None while the package has none, and a line saying which."""
    try:
        from pystack3d_dask.workflow import profiles
    except ImportError as exc:
        return None, (f"recommended profile: not available ({exc}); running PyStack3D and ours "
                      "with PyStack3D's parameters only")
    rec = getattr(profiles, "PROFILES", {}).get("recommended")
    if not isinstance(rec, Mapping):
        return None, ("recommended profile: pystack3d_dask.workflow.profiles.PROFILES has no "
                      "'recommended' entry; running PyStack3D and ours with PyStack3D's "
                      "parameters only")
    excluded = profiles.conflicting_keys
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
                for k in (key, *profile.excluded_by(name, key)):
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
    from pystack3d_dask.datasets.synthetic import write_synthetic

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

    from pystack3d_dask.datasets.synthetic import write_synthetic
    from pystack3d_dask.steps import available_steps

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
