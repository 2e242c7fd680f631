"""Measurement helpers shared by the benchmark scripts.

Each contender (PyStack3D, pystack3d-dask, a plain baseline) is run in a process of its
own so that its imports, caches and worker processes are measured alone:

* :func:`measure` runs a command, samples the summed RSS of its whole process tree
  (the process plus every descendant: ``multiprocessing`` pools, Dask workers...) and
  reports the wall time and the peak;
* :func:`measure_python` and :func:`measure_function` do the same for a Python snippet
  or a ``module:function`` in a fresh interpreter, the child being able to hand a JSON
  result back (inner timings, checksums);
* :func:`format_table`, :func:`ratio` and :func:`format_bytes` print the comparison.

Usage from a benchmark script::

    sys.path.insert(0, str(Path(__file__).parent))
    from harness import format_table, measure_python, ratio
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "RESULT_ENV",
    "Measurement",
    "format_bytes",
    "format_table",
    "measure",
    "measure_function",
    "measure_python",
    "ratio",
    "settle",
    "write_result",
]

#: Environment variable naming the file where a measured child may write a JSON result.
RESULT_ENV = "HARNESS_RESULT_PATH"


@dataclass
class Measurement:
    """What :func:`measure` observed of one command.

    Attributes
    ----------
    wall_s : float
        Wall time from the start of the process to its end, in seconds (interpreter
        start-up and imports included).
    peak_rss_bytes : int
        Best lower bound of the peak resident memory of the process tree: the larger of
        ``sampled_peak_bytes`` and ``max_process_hwm_bytes`` (the tree holds at least the
        peak of any one of its processes).
    returncode : int
        Exit status (negative: killed by that signal; on timeout the tree is killed).
    stdout, stderr : str
        Captured output, decoded as UTF-8 (undecodable bytes replaced).
    sampled_peak_bytes : int
        Largest sum, over one sample, of the RSS of the process and all its descendants.
        Shared pages (copy-on-write after ``fork``, shared memory) are counted once per
        process, so this over-states trees of forked workers; ``metric="pss"`` avoids it.
    max_process_hwm_bytes : int
        Largest kernel high-water mark (``VmHWM``, Linux; 0 elsewhere) of a single process
        of the tree, as last read while it was alive. Exact for that process (a short
        spike between two samples is not missed), but processes are not added together.
        (``ru_maxrss`` from ``wait4`` is not used: Linux carries the *parent's* peak into
        it across ``exec``, so a big measuring process would inflate every child.)
    sum_process_hwm_bytes : int
        Sum of the high-water marks of every process seen: an upper bound of the tree's
        peak (the processes may have peaked at different times).
    max_processes : int
        Most processes seen alive at once in the tree.
    n_samples : int
        Number of samples taken.
    timed_out : bool
        True if the command ran past ``timeout`` and was killed.
    result : Any
        JSON value the child wrote to the file named by :data:`RESULT_ENV`, or None.
    cmd : list of str
        The command that was run.
    """

    wall_s: float
    peak_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str
    sampled_peak_bytes: int = 0
    max_process_hwm_bytes: int = 0
    sum_process_hwm_bytes: int = 0
    max_processes: int = 0
    n_samples: int = 0
    timed_out: bool = False
    result: Any = None
    cmd: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0 within its time limit."""
        return self.returncode == 0 and not self.timed_out

    @property
    def peak_rss_mib(self) -> float:
        """``peak_rss_bytes`` in MiB."""
        return self.peak_rss_bytes / 2**20

    def check(self) -> Measurement:
        """Raise if the command failed, else return ``self`` (for chaining).

        Returns
        -------
        Measurement
            ``self``.

        Raises
        ------
        RuntimeError
            If the command timed out or exited with a non-zero status; the message ends
            with the tail of its standard error.
        """
        if not self.ok:
            why = "timed out" if self.timed_out else f"exited with status {self.returncode}"
            raise RuntimeError(f"{' '.join(self.cmd)[:200]} {why}:\n{self.stderr[-4000:]}")
        return self


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    """The process and its descendants (those that vanish meanwhile are skipped)."""
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _memory(proc: psutil.Process, metric: str) -> int:
    """RSS or PSS of one process, 0 if it is gone or not readable (zombie, exiting)."""
    try:
        if metric == "pss":
            return int(proc.memory_full_info().pss)
        return int(proc.memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0


def _kill_tree(proc: psutil.Process) -> None:
    """Kill a process we started and its descendants, children first."""
    for p in reversed(_tree(proc)):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def _hwm(proc: psutil.Process) -> int:
    """Kernel high-water mark of a process's RSS (``VmHWM``), 0 if unavailable.

    It belongs to the address space, which ``exec`` replaces: unlike ``ru_maxrss`` it
    does not include the peak of the parent the process was forked from.
    """
    try:
        with open(f"/proc/{proc.pid}/status", "rb") as fid:
            for line in fid:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    return 0


def measure(cmd: Sequence[str], cwd: str | Path | None = None,
            env: Mapping[str, str] | None = None, poll: float = 0.05, *,
            timeout: float | None = None, metric: str = "rss",
            inherit_env: bool = True) -> Measurement:
    """Run a command and measure its wall time and the peak memory of its process tree.

    Parameters
    ----------
    cmd : sequence of str
        The command (no shell).
    cwd : str or pathlib.Path, optional
        Working directory of the command.
    env : mapping, optional
        Environment variables; added to the current environment unless
        ``inherit_env`` is false.
    poll : float
        Seconds between two memory samples.
    timeout : float, optional
        Kill the process tree after this many seconds.
    metric : {"rss", "pss"}
        Per-process memory summed over the tree. ``"pss"`` (Linux) shares each shared
        page between the processes mapping it, so forked workers are not counted several
        times; it is slower to read (``/proc/PID/smaps``), hence not the default.
    inherit_env : bool
        Start from ``os.environ`` (True) or from ``env`` alone (False).

    Returns
    -------
    Measurement
        Wall time, peak memory, exit status and captured output.

    Raises
    ------
    ValueError
        On a bad ``metric`` or a non-positive ``poll``.
    """
    if metric not in ("rss", "pss"):
        raise ValueError(f"metric must be 'rss' or 'pss', got {metric!r}")
    if not poll > 0:
        raise ValueError(f"poll must be > 0, got {poll!r}")
    cmd = [str(c) for c in cmd]
    full_env = {**os.environ} if inherit_env else {}
    full_env.update(env or {})

    with tempfile.TemporaryDirectory(prefix="harness_") as tmp:
        tmp_dir = Path(tmp)
        # A fresh result file per run, unless the caller named one: an inherited value
        # (measure called from a measured process) would point at the parent's file.
        result_path = Path((env or {}).get(RESULT_ENV, tmp_dir / "result.json"))
        full_env[RESULT_ENV] = str(result_path)
        # Output goes to files, not pipes: a chatty child can then never block on a full
        # pipe while we are busy sampling.
        with open(tmp_dir / "stdout", "wb") as out, open(tmp_dir / "stderr", "wb") as err:
            start = time.perf_counter()
            popen = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=out, stderr=err)
            proc = psutil.Process(popen.pid)
            sampled = n_samples = max_procs = 0
            hwm: dict[tuple[int, float], int] = {}  # (pid, start time): pid reuse-proof
            timed_out = False
            while True:
                tree = _tree(proc)
                total = 0
                for p in tree:
                    total += _memory(p, metric)
                    try:
                        key = (p.pid, p.create_time())
                    except psutil.Error:
                        continue
                    hwm[key] = max(hwm.get(key, 0), _hwm(p))
                sampled = max(sampled, total)
                max_procs = max(max_procs, len(tree))
                n_samples += 1
                if popen.poll() is not None:
                    break
                if timeout is not None and time.perf_counter() - start > timeout:
                    timed_out = True
                    _kill_tree(proc)
                    popen.wait()
                    break
                time.sleep(poll)
            wall = time.perf_counter() - start
        stdout = (tmp_dir / "stdout").read_bytes().decode("utf-8", "replace")
        stderr = (tmp_dir / "stderr").read_bytes().decode("utf-8", "replace")
        result = None
        if result_path.is_file() and result_path.stat().st_size:
            try:
                result = json.loads(result_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                result = None

    max_hwm = max(hwm.values(), default=0)
    return Measurement(wall_s=wall, peak_rss_bytes=max(sampled, max_hwm),
                       returncode=int(popen.returncode), stdout=stdout, stderr=stderr,
                       sampled_peak_bytes=sampled, max_process_hwm_bytes=max_hwm,
                       sum_process_hwm_bytes=sum(hwm.values()),
                       max_processes=max_procs, n_samples=n_samples, timed_out=timed_out,
                       result=result, cmd=cmd)


def measure_python(code: str, *, args: Sequence[str] = (), python: str | None = None,
                   sys_path: Iterable[str | Path] = (), cwd: str | Path | None = None,
                   env: Mapping[str, str] | None = None, poll: float = 0.05,
                   timeout: float | None = None, metric: str = "rss") -> Measurement:
    """Run a Python snippet in a fresh interpreter and measure it like :func:`measure`.

    The snippet can hand a result back with :func:`write_result` (import this module
    after putting its folder on ``sys_path``) or by writing JSON to the file named by
    the environment variable :data:`RESULT_ENV`.

    Parameters
    ----------
    code : str
        Python source run as ``python -c code``.
    args : sequence of str
        Extra command-line arguments (``sys.argv[1:]`` in the snippet).
    python : str, optional
        Interpreter; defaults to the running one.
    sys_path : iterable of path-like
        Folders put in front of the child's ``sys.path`` (through ``PYTHONPATH``).
    cwd, env, poll, timeout, metric
        See :func:`measure`.

    Returns
    -------
    Measurement
        As :func:`measure`; ``result`` holds what the snippet reported.
    """
    full_env = dict(env or {})
    extra = [str(Path(p).resolve()) for p in sys_path]
    if extra:
        old = full_env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        full_env["PYTHONPATH"] = os.pathsep.join([*extra, *([old] if old else [])])
    cmd = [python or sys.executable, "-c", code, *map(str, args)]
    return measure(cmd, cwd=cwd, env=full_env, poll=poll, timeout=timeout, metric=metric)


# The child side of measure_function: import the target, call it with the JSON arguments
# and report its (JSON-able) return value, so inner timings survive the process boundary.
_CALL_TEMPLATE = """\
import importlib, json, os, sys
spec, payload = sys.argv[1], json.loads(sys.argv[2])
module_name, _, attr = spec.partition(":")
func = importlib.import_module(module_name)
for part in attr.split("."):
    func = getattr(func, part)
value = func(*payload["args"], **payload["kwargs"])
with open(os.environ[{env!r}], "w", encoding="utf-8") as fid:
    json.dump(value, fid, default=repr)
"""


def measure_function(spec: str, *args: Any, sys_path: Iterable[str | Path] = (),
                     cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
                     poll: float = 0.05, timeout: float | None = None, metric: str = "rss",
                     **kwargs: Any) -> Measurement:
    """Call ``module:function`` in a fresh interpreter and measure the process tree.

    Parameters
    ----------
    spec : str
        ``"package.module:function"`` (attribute paths such as ``module:Class.method``
        are followed).
    *args, **kwargs
        JSON-serialisable arguments of the call (paths: pass ``str(path)``).
    sys_path, cwd, env, poll, timeout, metric
        See :func:`measure_python`.

    Returns
    -------
    Measurement
        ``result`` is the function's return value as JSON (non-JSON values as repr).

    Raises
    ------
    ValueError
        If ``spec`` is not ``module:function``.
    """
    module_name, sep, attr = spec.partition(":")
    if not (sep and module_name and attr):
        raise ValueError(f"spec must be 'module:function', got {spec!r}")
    payload = json.dumps({"args": list(args), "kwargs": kwargs})
    return measure_python(_CALL_TEMPLATE.format(env=RESULT_ENV), args=[spec, payload],
                          sys_path=sys_path, cwd=cwd, env=env, poll=poll, timeout=timeout,
                          metric=metric)


def write_result(value: Any) -> None:
    """From inside a measured child, hand a JSON-able value back to :func:`measure`.

    Parameters
    ----------
    value : Any
        JSON-serialisable value (others are written as their repr).

    Raises
    ------
    RuntimeError
        If the process was not started by :func:`measure`.
    """
    path = os.environ.get(RESULT_ENV)
    if not path:
        raise RuntimeError(f"{RESULT_ENV} is not set: not running under harness.measure")
    with open(path, "w", encoding="utf-8") as fid:
        json.dump(value, fid, default=repr)


def settle(timeout: float = 60.0) -> float:
    """Write the page cache's dirty pages to disk before a measured run; returns the
    seconds it took.

    What one run wrote (PyStack3D writes every step's slices as TIFF files: 250 MB at
    the default size) is otherwise flushed by the kernel 30 s later, during the next
    run, which then shares the disk and the CPU with that flush: the second tool of a
    comparison paid for the first one's files. ``os.sync`` waits for the flush.
    """
    start = time.perf_counter()
    done = threading.Event()

    def flush() -> None:
        os.sync()
        done.set()

    threading.Thread(target=flush, daemon=True).start()
    done.wait(timeout)  # a stuck network file system must not hang the benchmark
    return time.perf_counter() - start


def ratio(a: float | None, b: float | None) -> float:
    """``a / b``, tolerant of missing values.

    Parameters
    ----------
    a, b : float or None
        Numerator and denominator (e.g. the reference's time and ours: a speed-up).

    Returns
    -------
    float
        ``a / b``; ``nan`` if either is None or nan, or both are 0; ``inf`` if only
        ``b`` is 0.
    """
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return math.nan
    if b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)
    return a / b


def format_bytes(n: float | None) -> str:
    """Human-readable binary size, e.g. ``"1.5 GiB"`` (``"-"`` for None)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _cell(value: Any, float_format: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else format(value, float_format)
    return str(value)


def format_table(rows: Iterable[Mapping[str, Any] | Sequence[Any]], columns: Sequence[str],
                 *, float_format: str = ".3g", title: str | None = None) -> str:
    """Aligned plain-text table.

    Parameters
    ----------
    rows : iterable of mapping or sequence
        One row each: a mapping read by column name (missing keys print ``-``), or a
        sequence in column order.
    columns : sequence of str
        Column headers (and keys of mapping rows).
    float_format : str
        Format spec of float cells (ints and strings are printed as they are).
    title : str, optional
        Line printed above the table.

    Returns
    -------
    str
        The table: header, dashed rule, rows; numbers right-aligned, text left-aligned.
    """
    cells: list[list[str]] = []
    numeric = [True] * len(columns)
    for row in rows:
        values = ([row.get(c) for c in columns] if isinstance(row, Mapping)
                  else list(row) + [None] * (len(columns) - len(row)))
        for j, v in enumerate(values[:len(columns)]):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                numeric[j] = False
        cells.append([_cell(v, float_format) for v in values[:len(columns)]])
    widths = [max([len(str(c)), *(len(r[j]) for r in cells)]) for j, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [title] if title else []
    out += [line([str(c) for c in columns]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def run_workflow(workflow: dict[str, Any]) -> dict[str, float]:
    """Run a pystack3d-dask workflow in this process and return the seconds of each group
    (for :func:`measure_function`: ``measure_function("harness:run_workflow", wf)``)."""
    import pystack3d_dask

    result = pystack3d_dask.run(workflow, progress=False)
    return {r.name: r.seconds for r in result.reports}
