"""Run the reference package PyStack3D on a folder of slices and read its outputs back.

Used by the comparison tests (``from pystack3d_runner import run_pystack3d``) and by the
benchmarks (:func:`run_pystack3d_subprocess`, which runs PyStack3D in a process of its
own so that its time and memory can be measured alone).

How PyStack3D (2026.2) is driven, and why:

* a fresh project folder is made under ``workdir`` with the slices hard-linked (or
  copied) into it, so the caller's folder is never written to: PyStack3D only reads its
  inputs, but it writes ``params.toml`` and ``process/`` next to them;
* ``params.toml`` is written into that folder and the project is opened with
  ``Stack3d(input_name=folder)``: ``Stack3d("file.toml")`` raises ``NameError`` in
  2026.2, and a folder without a TOML fails on Linux (it copies a default from a path
  built on ``__file__``). With a folder, PyStack3D ignores ``project_dir`` (we drop it);
* the steps run one ``Stack3d.eval([step])`` call each, in the given order, so each gets
  its own wall time. PyStack3D chains them through ``params["history"]``: a step reads the
  output folder of the last step in the history (``registration_calculation`` excepted,
  whose output is transformation matrices only);
* ``Stack3d.eval`` ends each step by calling the module-level function
  ``pystack3d.stack3d.plot`` *before* appending the step to the history. In 2026.2 that
  plot crashes for a 2D ``bkg_removal`` (``plot_stats_xy`` indexes ``skip_factors[2]``)
  after the output TIFFs were written, so the step would not be recorded and the next
  step would silently read the wrong input. For the duration of a run we replace that
  function by a wrapper that calls the original, times it and catches its exception
  (recorded as ``StepResult.plot_error``), or by a no-op with ``plots=False`` (faster,
  and fairer when timing against a package that draws no figures);
* PyStack3D reports progress through a ``multiprocessing.Queue`` that nothing reads when
  ``show_pbar=False``; once its pipe is full the writers block (and so would the
  interpreter's exit), so we pass our own queue and drain it from a thread;
* matplotlib is forced to the non-interactive ``Agg`` backend.

Run as a script, this file is the child of :func:`run_pystack3d_subprocess`:
``python pystack3d_runner.py PROJECT_DIR --steps a b --nproc N --report R.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "HAVE_PYSTACK3D",
    "PYSTACK3D_STEPS",
    "ChannelOutput",
    "PyStack3DResult",
    "StepResult",
    "collect_result",
    "prepare_project",
    "pystack3d_command",
    "pystack3d_version",
    "requires_pystack3d",  # noqa: F822 (made by the module __getattr__)
    "run_pystack3d",
    "run_pystack3d_subprocess",
]

#: True when the reference package can be imported (found without importing it: the
#: import pulls matplotlib and statsmodels and takes seconds).
HAVE_PYSTACK3D: bool = importlib.util.find_spec("pystack3d") is not None

#: Process steps PyStack3D 2026.2 knows, in its order.
PYSTACK3D_STEPS: tuple[str, ...] = (
    "cropping", "bkg_removal", "intensity_rescaling", "intensity_rescaling_area",
    "registration_calculation", "registration_transformation", "destriping",
    "resampling", "cropping_final",
)

# Top-level keys of PyStack3D's TOML that the runner owns (the rest are step tables or
# passed through). project_dir & co are dropped: PyStack3D ignores them when it is
# given a folder, and a stale value there would only mislead a reader.
_DROPPED_KEYS = ("project_dir", "dirname", "input_dirname")
_TOML_NAME = "params.toml"
_REPORT_NAME = "_runner_report.json"
_QUEUE_STOP = "__runner_stop__"


def __getattr__(name: str) -> Any:
    # The skip marker is built on first use so that the subprocess child (this file run
    # as a script) does not import pytest: it would add to the memory being measured.
    if name == "requires_pystack3d":
        import pytest

        return pytest.mark.skipif(not HAVE_PYSTACK3D,
                                  reason="the reference package pystack3d is not installed "
                                         "(pip install pystack3d)")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pystack3d_version() -> str | None:
    """Installed PyStack3D version (from the package metadata), None if absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pystack3d")
    except PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- results


@dataclass
class ChannelOutput:
    """What one step wrote for one channel.

    Attributes
    ----------
    channel : str
        Channel name (``"."`` for a single-channel project).
    directory : pathlib.Path
        The step's output folder (``process/<step>/<channel>``; for
        ``registration_calculation``, ``process/registration_calculation``).
    files : list of str
        Names of the output TIFF slices, sorted (the z order PyStack3D uses).
    stack : numpy.ndarray or None
        The slices stacked ``(z, y, x)``, or None if not loaded (see ``load_stacks``) or
        if the step writes no slices.
    outputs : dict
        Loaded auxiliary outputs keyed by their path relative to ``directory``
        (``"outputs/stats.npy"``, ``"outputs/coefs.npz"``, ``"tmats.npy"``...): ``.npy`` as
        arrays, ``.npz`` as dicts of arrays, ``.txt`` as arrays (or as text when not
        numeric, e.g. cropping's ``log.txt``).
    output_files : list of str
        Every non-TIFF file found below ``directory`` (figures included), relative paths.
    """

    channel: str
    directory: Path
    files: list[str] = field(default_factory=list)
    stack: np.ndarray | None = field(default=None, repr=False)
    outputs: dict[str, Any] = field(default_factory=dict, repr=False)
    output_files: list[str] = field(default_factory=list)

    def read_stack(self) -> np.ndarray:
        """Read the output slices from disk as a ``(z, y, x)`` array (cached in ``stack``).

        Returns
        -------
        numpy.ndarray
            The stacked slices.

        Raises
        ------
        FileNotFoundError
            If the step wrote no TIFF slices for this channel.
        """
        if self.stack is None:
            if not self.files:
                raise FileNotFoundError(f"no .tif slices in {self.directory}")
            import tifffile

            self.stack = np.stack([tifffile.imread(self.directory / f) for f in self.files])
        return self.stack

    def output(self, name: str) -> Any:
        """One loaded output by file name, searched in ``outputs/`` then the step folder.

        Parameters
        ----------
        name : str
            File name such as ``"stats.npy"`` or a relative path.

        Returns
        -------
        Any
            The loaded value.

        Raises
        ------
        KeyError
            If no such output was loaded.
        """
        for key in (name, f"outputs/{name}"):
            if key in self.outputs:
                return self.outputs[key]
        raise KeyError(f"{name!r} not among the outputs of {self.directory}: "
                       f"{sorted(self.outputs)}")


@dataclass
class StepResult:
    """One process step of a run.

    Attributes
    ----------
    name : str
        Step name.
    ran : bool
        False if the step was not reached (an earlier step failed).
    wall_s : float or None
        Wall time of ``Stack3d.eval([step])``, all channels, plotting included.
    plot_s : float or None
        Part of ``wall_s`` spent in PyStack3D's plotting (0 with ``plots=False``).
    error : str or None
        Traceback if the step itself failed (its outputs may be partial).
    plot_error : str or None
        Traceback of an exception raised by PyStack3D's plotting after the step's outputs
        were written (caught: the step counts as done and the chain goes on).
    channels : dict of str to ChannelOutput
        Outputs per channel, in the project's channel order.
    """

    name: str
    ran: bool = False
    wall_s: float | None = None
    plot_s: float | None = None
    error: str | None = None
    plot_error: str | None = None
    channels: dict[str, ChannelOutput] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True if the step ran without error (a plotting error is tolerated)."""
        return self.ran and self.error is None

    @property
    def compute_s(self) -> float | None:
        """``wall_s`` without the plotting time."""
        if self.wall_s is None:
            return None
        return self.wall_s - (self.plot_s or 0.0)

    @property
    def main(self) -> ChannelOutput:
        """Output of the first channel (the only one of a single-channel project)."""
        if not self.channels:
            raise LookupError(f"step {self.name!r} has no collected output")
        return next(iter(self.channels.values()))

    @property
    def stack(self) -> np.ndarray:
        """Output stack of the first channel, read on first access."""
        return self.main.read_stack()

    @property
    def files(self) -> list[str]:
        """Output slice names of the first channel."""
        return self.main.files

    @property
    def outputs(self) -> dict[str, Any]:
        """Loaded auxiliary outputs of the first channel."""
        return self.main.outputs

    @property
    def directory(self) -> Path:
        """Output folder of the first channel."""
        return self.main.directory

    def output(self, name: str) -> Any:
        """One loaded output of the first channel (see :meth:`ChannelOutput.output`)."""
        return self.main.output(name)


@dataclass
class PyStack3DResult:
    """A PyStack3D run: the project folder, per-step outputs and timings.

    Attributes
    ----------
    project_dir : pathlib.Path
        The project folder the run made (inputs, ``params.toml``, ``process/``).
    steps : dict of str to StepResult
        Requested steps, in order.
    params : dict
        Parameters as written to ``params.toml`` (before PyStack3D updated ``history``).
    channels : list of str
        Channels of the project.
    nproc : int
        Number of processes PyStack3D was told to use.
    total_s : float or None
        Wall time of the whole run: import of pystack3d, project opening and all steps;
        for the subprocess variant, the whole child process (interpreter start included).
    import_s : float or None
        Time to import pystack3d (0 in-process when it was already imported).
    returncode : int or None
        Exit status of the child (subprocess variant only).
    stdout, stderr : str
        What PyStack3D printed (subprocess variant; empty in-process).
    measurement : Any
        What the ``launcher`` of :func:`run_pystack3d_subprocess` returned, e.g. a
        ``harness.Measurement`` with the peak memory of the child's process tree.
    """

    project_dir: Path
    steps: dict[str, StepResult]
    params: dict[str, Any] = field(repr=False)
    channels: list[str] = field(default_factory=lambda: ["."])
    nproc: int = 1
    total_s: float | None = None
    import_s: float | None = None
    returncode: int | None = None
    stdout: str = field(default="", repr=False)
    stderr: str = field(default="", repr=False)
    measurement: Any = field(default=None, repr=False)

    def __getitem__(self, step: str) -> StepResult:
        return self.steps[step]

    @property
    def ok(self) -> bool:
        """True when every requested step ran without error (and the child exited 0)."""
        return all(s.ok for s in self.steps.values()) and self.returncode in (None, 0)

    @property
    def errors(self) -> dict[str, str]:
        """Step name to traceback of the failed steps (``"<process>"`` for the child)."""
        out = {name: s.error for name, s in self.steps.items() if s.error}
        if self.returncode not in (None, 0) and not out:
            out["<process>"] = f"exit status {self.returncode}\n{self.stderr[-4000:]}"
        return out

    @property
    def plot_errors(self) -> dict[str, str]:
        """Step name to traceback of the plotting crashes that were caught."""
        return {name: s.plot_error for name, s in self.steps.items() if s.plot_error}

    @property
    def last(self) -> StepResult:
        """The last requested step."""
        return next(reversed(self.steps.values()))

    def raise_on_error(self) -> PyStack3DResult:
        """Raise if a step failed, else return ``self``.

        Returns
        -------
        PyStack3DResult
            ``self``.

        Raises
        ------
        RuntimeError
            With the tracebacks of the failed steps.
        """
        if not self.ok:
            text = "\n".join(f"--- {k}\n{v}" for k, v in self.errors.items())
            raise RuntimeError(f"PyStack3D run in {self.project_dir} failed:\n{text}")
        return self


# --------------------------------------------------------------------------- project


def _plain(value: Any) -> Any:
    """TOML-ready copy of a params value: numpy scalars to Python, None entries dropped.

    None is dropped because TOML has no null and PyStack3D's own writer turns it into
    ``''``, which its steps then compare with numbers; an absent key means "default".
    """
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _toml_text(params: Mapping[str, Any]) -> str:
    """TOML text of ``params``, checked to read back identically."""
    import tomlkit  # installed with pystack3d (it writes its TOML with it)

    text = tomlkit.dumps(params)
    if tomllib.loads(text) != params:
        raise ValueError(f"params do not survive a TOML round trip:\n{text}")
    return text


def _link_or_copy(src: Path, dst: Path, link: bool) -> None:
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another file system, or links not allowed: copy instead
    shutil.copy2(src, dst)


def prepare_project(slices_dir: str | Path, params: Mapping[str, Any], steps: Sequence[str],
                    workdir: str | Path, *, nproc: int = 1,
                    channels: Sequence[str] = (".",), link: bool = True,
                    name: str = "pystack3d_project") -> tuple[Path, dict[str, Any]]:
    """Make a fresh PyStack3D project folder: the input slices and ``params.toml``.

    Parameters
    ----------
    slices_dir : str or pathlib.Path
        Folder of single-page ``.tif`` slices (channel ``"."``), or holding one such
        sub-folder per channel. Only read.
    params : mapping
        PyStack3D parameters: top-level keys (``ind_min``, ``ind_max``...) and one table
        per step; every table is written, and each step in ``steps`` needs one.
        ``project_dir``, ``history``, ``channels``, ``nproc`` and ``process_steps`` are
        set by the runner.
    steps : sequence of str
        Steps to run, in order.
    workdir : str or pathlib.Path
        Folder in which the project folder is made (created if needed).
    nproc : int
        Number of processes, written to the TOML.
    channels : sequence of str
        Channel names; ``"."`` means the slices are directly in ``slices_dir``.
    link : bool
        Hard-link the slices (PyStack3D never writes to its inputs) rather than copy
        them; falls back to a copy where linking fails.
    name : str
        Base name of the project folder; ``_1``, ``_2``... are added if it exists.

    Returns
    -------
    project_dir : pathlib.Path
        The new project folder.
    written : dict
        The parameters written to its ``params.toml``.

    Raises
    ------
    ValueError
        On an unknown step, a step without its table, bad channels or ``nproc``.
    FileNotFoundError
        If a channel folder holds no ``.tif`` slice.
    """
    steps = list(steps)
    channels = [str(c) for c in channels]
    unknown = [s for s in steps if s not in PYSTACK3D_STEPS]
    if unknown:
        raise ValueError(f"unknown PyStack3D steps {unknown}; known: {PYSTACK3D_STEPS}")
    if len(set(steps)) != len(steps):
        raise ValueError(f"a step is repeated in {steps}")
    missing = [s for s in steps if not isinstance(params.get(s), Mapping)]
    if missing:
        raise ValueError(f"params has no table for the steps {missing}")
    if not channels or ("." in channels and len(channels) > 1):
        raise ValueError(f"channels must be ['.'] or a list of folder names, got {channels}")
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a positive int, got {nproc!r}")

    src_root = Path(slices_dir)
    sources = {}
    for channel in channels:
        tifs = sorted((src_root / channel).glob("*.tif"))
        if not tifs:
            raise FileNotFoundError(f"no .tif slices in {src_root / channel}")
        sources[channel] = tifs

    # Absolute: the subprocess variant runs with the project folder as its cwd.
    base = Path(workdir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    project = base / name
    k = 0
    while project.exists():
        k += 1
        project = base / f"{name}_{k}"
    project.mkdir()

    for channel, tifs in sources.items():
        dst = project / channel
        dst.mkdir(parents=True, exist_ok=True)
        for src in tifs:
            _link_or_copy(src, dst / src.name, link)

    written = _plain({k: v for k, v in params.items() if k not in _DROPPED_KEYS})
    written.update({
        "channels": channels,
        "nproc": nproc,
        "process_steps": steps,
        "history": [],  # a fresh project: every step must run, from the inputs
    })
    written.setdefault("ind_min", 0)
    written.setdefault("ind_max", 99999)
    (project / _TOML_NAME).write_text(_toml_text(written), encoding="utf-8")
    return project, written


# --------------------------------------------------------------------------- running


@contextmanager
def _plot_patch(records: dict[str, dict[str, Any]], plots: bool):
    """Replace ``pystack3d.stack3d.plot`` for the duration of a run (see module doc)."""
    import pystack3d.stack3d as s3d

    original = s3d.plot

    def guarded(process_step: str, *args: Any, **kwargs: Any) -> None:
        rec = records.setdefault(process_step, {})
        if not plots:
            rec.setdefault("plot_s", 0.0)
            return
        start = time.perf_counter()
        try:
            original(process_step, *args, **kwargs)
        except Exception:
            # Several channels may each fail: keep every traceback.
            rec["plot_error"] = (rec.get("plot_error") or "") + traceback.format_exc()
            import matplotlib.pyplot as plt

            plt.close("all")  # the crashed plot leaves its figures open
        finally:
            rec["plot_s"] = rec.get("plot_s", 0.0) + time.perf_counter() - start

    s3d.plot = guarded
    try:
        yield
    finally:
        s3d.plot = original


def _drain(queue: Any) -> None:
    # Reads PyStack3D's progress messages so that their pipe never fills up.
    while True:
        try:
            item = queue.get()
        except (EOFError, OSError, ValueError):
            return
        if item == _QUEUE_STOP:
            return


def _eval_steps(project: Path, steps: Sequence[str], nproc: int, plots: bool,
                on_step: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Open the project with PyStack3D and run ``steps`` in order, in this process.

    Returns a JSON-able report: ``import_s``, ``total_s`` and per step ``ran``,
    ``wall_s``, ``plot_s``, ``error``, ``plot_error``. Stops at the first failed step.
    """
    start = time.perf_counter()
    # Agg before pystack3d imports pyplot: no display, and no GUI event loop to block on.
    # (Not through os.environ: in-process, that would leak into the caller's children.)
    import matplotlib

    matplotlib.use("Agg")
    t0 = time.perf_counter()
    import multiprocessing

    from pystack3d import Stack3d

    report: dict[str, Any] = {"import_s": time.perf_counter() - t0, "steps": {}}
    records: dict[str, dict[str, Any]] = {}
    queue = multiprocessing.Queue()
    drainer = threading.Thread(target=_drain, args=(queue,), daemon=True)
    drainer.start()
    try:
        with _plot_patch(records, plots):
            stack = Stack3d(input_name=str(project), queue_incr=queue)
            for step in steps:
                # Saved as running (wall_s None) first: should the process die in the
                # step, the parent can tell which one it was.
                report["steps"][step] = {"ran": True, "wall_s": None}
                if on_step is not None:
                    on_step(report)
                rec = records.setdefault(step, {})
                t0 = time.perf_counter()
                try:
                    stack.eval(process_steps=[step], nproc=nproc, show_pbar=False)
                except Exception:
                    rec["error"] = traceback.format_exc()
                rec["wall_s"] = time.perf_counter() - t0
                report["steps"][step] = {"ran": True, "plot_s": 0.0, "error": None,
                                         "plot_error": None, **rec}
                if on_step is not None:
                    on_step(report)
                if rec.get("error"):
                    break  # later steps would read a missing or partial input
    finally:
        queue.put(_QUEUE_STOP)
        drainer.join(timeout=5)
        # Never wait on the queue's feeder thread: messages left by killed pool workers
        # are of no interest.
        queue.cancel_join_thread()
        queue.close()
    report["total_s"] = time.perf_counter() - start
    return report


def _read_txt(path: Path) -> Any:
    try:
        return np.loadtxt(path)
    except ValueError:
        return path.read_text(encoding="utf-8", errors="replace")


def _load_output(path: Path) -> Any:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    return _read_txt(path)


def _step_dir(project: Path, step: str, channel: str) -> Path:
    # Mirrors Stack3d.process_dirname.
    if step == "registration_calculation":
        return project / "process" / step
    return project / "process" / step / channel


def collect_result(project_dir: str | Path, steps: Sequence[str],
                   channels: Sequence[str] = (".",),
                   report: Mapping[str, Any] | None = None,
                   load_stacks: bool | Iterable[str] = True,
                   params: Mapping[str, Any] | None = None, nproc: int = 1) -> PyStack3DResult:
    """Read what a PyStack3D run left in a project folder.

    Parameters
    ----------
    project_dir : str or pathlib.Path
        The project folder.
    steps : sequence of str
        Steps that were requested, in order.
    channels : sequence of str
        The project's channels.
    report : mapping, optional
        Timings and errors from the run (``_eval_steps``); without it every step whose
        output folder exists counts as run.
    load_stacks : bool or iterable of str
        Read the output slices of every step (True), of none (False: use
        ``ChannelOutput.read_stack`` later) or of the named steps.
    params : mapping, optional
        Parameters written to the TOML; read back from ``params.toml`` if omitted.
    nproc : int
        Number of processes of the run (for the record).

    Returns
    -------
    PyStack3DResult
        Outputs, timings and errors per step.
    """
    project = Path(project_dir)
    if params is None:
        params = tomllib.loads((project / _TOML_NAME).read_text(encoding="utf-8"))
    wanted = set(steps) if load_stacks is True else set(load_stacks or ())
    step_reports = dict((report or {}).get("steps", {}))
    result = PyStack3DResult(project_dir=project, steps={}, params=dict(params),
                             channels=list(channels), nproc=nproc,
                             total_s=(report or {}).get("total_s"),
                             import_s=(report or {}).get("import_s"))
    for step in steps:
        rep = step_reports.get(step)
        res = StepResult(name=step)
        if rep is not None:
            res.ran = bool(rep.get("ran", True))
            res.wall_s, res.plot_s = rep.get("wall_s"), rep.get("plot_s")
            res.error, res.plot_error = rep.get("error"), rep.get("plot_error")
        else:
            res.ran = report is None and (project / "process" / step).is_dir()
        # registration_calculation runs on the first channel only (Stack3d.channels).
        step_channels = list(channels)[:1] if step == "registration_calculation" else channels
        for channel in step_channels:
            folder = _step_dir(project, step, channel)
            out = ChannelOutput(channel=channel, directory=folder)
            if folder.is_dir():
                out.files = sorted(p.name for p in folder.glob("*.tif"))
                # Recursive: bkg_removal writes its background images to outputs/bkgs/.
                others = [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".tif"]
                for path in sorted(others):
                    rel = path.relative_to(folder).as_posix()
                    out.output_files.append(rel)
                    if path.suffix in (".npy", ".npz", ".txt"):
                        out.outputs[rel] = _load_output(path)
                if step in wanted and out.files:
                    out.read_stack()
            res.channels[channel] = out
        result.steps[step] = res
    return result


def run_pystack3d(slices_dir: str | Path, params: Mapping[str, Any], steps: Sequence[str],
                  workdir: str | Path, nproc: int = 1, channels: Sequence[str] = (".",), *,
                  plots: bool = True, link: bool = True,
                  load_stacks: bool | Iterable[str] = True) -> PyStack3DResult:
    """Run PyStack3D steps on a copy of ``slices_dir``, in this process.

    Parameters
    ----------
    slices_dir : str or pathlib.Path
        Input slices (see :func:`prepare_project`); never written to.
    params : mapping
        PyStack3D parameters, one table per step (e.g. a parsed ``workflow.toml``).
    steps : sequence of str
        Steps to run, in order; each reads the previous one's output.
    workdir : str or pathlib.Path
        Where the project folder is made.
    nproc : int
        PyStack3D's number of processes (a ``multiprocessing.Pool`` when > 1, forked
        from this process: prefer :func:`run_pystack3d_subprocess` then).
    channels : sequence of str
        Channel names (``"."``: single channel).
    plots : bool
        Let PyStack3D draw its figures (errors caught and recorded) or skip them.
    link : bool
        Hard-link the input slices instead of copying them.
    load_stacks : bool or iterable of str
        Output stacks to read back (see :func:`collect_result`).

    Returns
    -------
    PyStack3DResult
        Outputs, per-step wall times and errors; a failing step stops the chain and is
        recorded, not raised (use ``result.raise_on_error()``).
    """
    project, written = prepare_project(slices_dir, params, steps, workdir, nproc=nproc,
                                       channels=channels, link=link)
    report = _eval_steps(project, list(steps), nproc, plots)
    return collect_result(project, steps, channels, report=report, load_stacks=load_stacks,
                          params=written, nproc=nproc)


def pystack3d_command(project_dir: str | Path, steps: Sequence[str], nproc: int = 1, *,
                      plots: bool = True, report: str | Path | None = None,
                      python: str | None = None) -> list[str]:
    """Command line that runs PyStack3D on a prepared project in a fresh interpreter.

    Parameters
    ----------
    project_dir : str or pathlib.Path
        Folder made by :func:`prepare_project`.
    steps : sequence of str
        Steps to run, in order.
    nproc : int
        PyStack3D's number of processes.
    plots : bool
        See :func:`run_pystack3d`.
    report : str or pathlib.Path, optional
        JSON file for the timings and errors (default: ``_runner_report.json`` in the
        project folder); rewritten after each step, so it survives a later crash.
    python : str, optional
        Interpreter; defaults to the running one.

    Returns
    -------
    list of str
        The command (run it with ``harness.measure`` to get its peak memory too).
    """
    report = Path(report) if report is not None else Path(project_dir) / _REPORT_NAME
    cmd = [python or sys.executable, str(Path(__file__).resolve()), str(project_dir),
           "--steps", *steps, "--nproc", str(nproc), "--report", str(report)]
    if not plots:
        cmd.append("--no-plots")
    return cmd


def _default_launcher(cmd: list[str], cwd: Path, env: dict[str, str],
                      timeout: float | None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        # subprocess.run has killed the child; report it like a signal death.
        def text(x: str | bytes | None) -> str:
            return x.decode("utf-8", "replace") if isinstance(x, bytes) else (x or "")

        return subprocess.CompletedProcess(cmd, -9, text(exc.stdout),
                                           text(exc.stderr) + f"\ntimed out after {timeout} s")


def run_pystack3d_subprocess(slices_dir: str | Path, params: Mapping[str, Any],
                             steps: Sequence[str], workdir: str | Path, nproc: int = 1,
                             channels: Sequence[str] = (".",), *, plots: bool = True,
                             link: bool = True, load_stacks: bool | Iterable[str] = True,
                             timeout: float | None = None, env: Mapping[str, str] | None = None,
                             launcher: Callable[..., Any] | None = None) -> PyStack3DResult:
    """Run PyStack3D steps on a copy of ``slices_dir`` in a child interpreter.

    Same as :func:`run_pystack3d`, but PyStack3D runs in a fresh Python process: its
    imports, global state (matplotlib, ``multiprocessing`` workers forked from it) and
    memory are its own, a hang can be cut by ``timeout``, and the process can be
    measured as a whole by passing ``launcher=harness.measure``.

    Parameters
    ----------
    slices_dir, params, steps, workdir, nproc, channels, plots, link, load_stacks
        See :func:`run_pystack3d`.
    timeout : float, optional
        Seconds after which the child is killed (default launcher only; pass it to your
        launcher yourself, e.g. ``functools.partial(measure, timeout=...)``).
    env : mapping, optional
        Extra environment variables of the child (e.g. ``OMP_NUM_THREADS``).
    launcher : callable, optional
        ``launcher(cmd, cwd=..., env=...)`` runs the command and returns an object with
        ``returncode``, ``stdout`` and ``stderr`` (such as ``harness.measure``'s
        ``Measurement``); it is kept as ``result.measurement``. Default: ``subprocess.run``.

    Returns
    -------
    PyStack3DResult
        As :func:`run_pystack3d`, plus the child's ``returncode``, output and
        ``total_s`` (the child's whole life, interpreter start included).
    """
    project, written = prepare_project(slices_dir, params, steps, workdir, nproc=nproc,
                                       channels=channels, link=link)
    report_path = project / _REPORT_NAME
    cmd = pystack3d_command(project, steps, nproc, plots=plots, report=report_path)
    full_env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    start = time.perf_counter()
    if launcher is None:
        done = _default_launcher(cmd, project, full_env, timeout)
    else:
        done = launcher(cmd, cwd=project, env=full_env)
    total = time.perf_counter() - start

    report = None
    if report_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
    result = collect_result(project, steps, channels, report=report or {"steps": {}},
                            load_stacks=load_stacks, params=written, nproc=nproc)
    result.total_s = float(getattr(done, "wall_s", total))
    result.returncode = int(done.returncode)
    result.stdout, result.stderr = str(done.stdout or ""), str(done.stderr or "")
    result.measurement = done if launcher is not None else None
    if result.returncode != 0:
        # A child killed mid-step (timeout, out of memory) leaves no error in its report.
        for step in result.steps.values():
            if step.ran and step.wall_s is None and step.error is None:
                step.error = f"child process exited with status {result.returncode}"
    return result


# --------------------------------------------------------------------------- child


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run PyStack3D steps on a prepared project "
                                                 "(child of run_pystack3d_subprocess).")
    parser.add_argument("project_dir", type=Path)
    parser.add_argument("--steps", nargs="+", required=True)
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--no-plots", dest="plots", action="store_false")
    args = parser.parse_args(argv)

    def save(report: Mapping[str, Any]) -> None:
        tmp = args.report.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
        tmp.replace(args.report)  # atomic: the parent never reads half a report

    report = _eval_steps(args.project_dir, args.steps, args.nproc, args.plots, on_step=save)
    save(report)
    return 1 if any(s.get("error") for s in report["steps"].values()) else 0


if __name__ == "__main__":
    sys.exit(_main())
