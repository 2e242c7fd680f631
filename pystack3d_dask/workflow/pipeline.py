"""Workflow -> ingest -> steps in the file's order -> one checkpoint per step.

:func:`run` loads and checks the workflow, locks the store, plans the run
(:func:`~.plan.plan_run`: per group, reuse, resume or compute, and why) and carries the
plan out (:func:`~.execute.execute`). Each checkpoint carries a fingerprint of its
parameters, the upstream fingerprint, the input manifest and the package version. A
complete checkpoint with the same fingerprint is reused; a partial one is resumed; any
other is replaced. A step whose table says
``checkpoint = false`` is not written: its graph is fused into the next step's.
"""

from __future__ import annotations

import errno
import getpass
import html
import platform
import socket
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from .._version import __version__
from ..errors import ConfigError, Pystack3dDaskError, StoreError
from ..io.identity import check_same_input
from ..io.tiff import SliceSource, slice_folders
from ..runtime.cluster import executor
from ..runtime.heap import keep_heap
from ..runtime.log import LOGGER, show_messages
from ..steps import get_step
from ..steps.functions import reduction_params
from ..store.checkpoints import INPUT_GROUP, Store, make_compressors, to_json
from ..store.location import StoreRef
from ..store.lock import StoreLock
from .config import Workflow, load_workflow
from .execute import StepReport, execute
from .plan import input_fingerprint, plan_run, source_of

__all__ = ["RunResult", "StepReport", "open_result", "resolve_group", "run"]


@dataclass
class RunResult:
    """Outcome of :func:`run`."""

    store: Path | StoreRef
    reports: list[StepReport]

    @property
    def final_group(self) -> str:
        """Group of the last step written."""
        return self.reports[-1].group

    def _repr_html_(self) -> str:
        """The summary as a table, for notebooks."""
        rows = []
        for r in self.reports:
            name = r.group + (f" (+{', '.join(r.fused)})" if r.fused else "")
            rows.append(f"<tr><td>{html.escape(name)}</td><td>{r.status}</td>"
                        f"<td>{r.chunks_computed}/{r.chunks_total}</td>"
                        f"<td>{r.seconds:.2f}</td></tr>")
        return (f"<p>store <code>{html.escape(str(self.store))}</code></p><table><thead><tr>"
                "<th>group</th><th>status</th><th>slices computed</th><th>seconds</th>"
                f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")

    def summary(self) -> str:
        """A text table of the run."""
        lines = [f"{'group':<34} {'status':<9} {'computed':>9} {'seconds':>8}"]
        for r in self.reports:
            name = r.group + (f" (+{', '.join(r.fused)})" if r.fused else "")
            lines.append(f"{name:<34} {r.status:<9} {r.chunks_computed:>4}/{r.chunks_total:<4} "
                         f"{r.seconds:>8.2f}")
        return "\n".join(lines)


def _warn_store_among_slices(store: Path, source: SliceSource) -> None:
    """Say so when the store lies in a folder of input slices (PyStack3D's layout keeps
    the workflow file there, so the default store lands there too): allowed, since the
    slices are only read, but the user's data folder then also holds the results."""
    target = store.resolve()
    if source.array is not None:  # the array's own folder, or (file, URL) none to be inside
        folders = [Path(source.location)] if Path(source.location).is_dir() else []
    else:
        folders = slice_folders(source.root.resolve(), source.channels)
    for folder in folders:
        if folder == target or folder in target.parents:
            warnings.warn(f"the store {target} is inside the input folder {folder}: its slices "
                          "are only read, but results and data then share a folder; set "
                          "[store] path (or --store) to keep them apart", UserWarning,
                          stacklevel=3)
            return


PROVENANCE_PACKAGES = ("pystack3d-dask", "dask", "distributed", "zarr", "numcodecs", "numpy",
                       "scipy", "xarray", "tifffile", "pystackreg", "pyvsnr", "PyWavelets")


def package_versions() -> dict[str, str | None]:
    """Installed versions of this package and of those its results depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _provenance(wf: Workflow, source: SliceSource, manifest_id: str) -> dict[str, Any]:
    """What produced a group: the workflow as given and where from, the versions, the
    host and user, the command, and the identity of the input manifest (the manifest
    itself, one entry per file, is stored once, in the ``input`` group)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = None
    return {
        "profile": wf.profile,
        "workflow_source": str(wf.source) if wf.source else None,
        "workflow": to_json(wf.raw),
        "workflow_text": _read_text(wf.source),
        "versions": package_versions(),
        "host": socket.gethostname(),
        "user": user,
        "command": " ".join(sys.argv),
        "input_manifest": {
            "group": INPUT_GROUP,
            "fingerprint": manifest_id,
            "files": len(source.manifest),
            "bytes": int(sum(m["size"] for m in source.manifest)),
        },
    }


def _read_text(path: Path | None) -> str | None:
    try:
        return Path(path).read_text() if path else None
    except (OSError, UnicodeDecodeError):
        return None


def st_location(store: Path | StoreRef) -> Path | StoreRef:
    """A store's location as messages name it."""
    return store if isinstance(store, StoreRef) else Path(store).resolve()


def _os_error(exc: OSError, store: Path | StoreRef) -> StoreError | None:
    """A user's message for a file-system failure while writing the store."""
    if exc.errno == errno.ENOSPC:
        return StoreError(f"no space left on device while writing the store {store}: the "
                          "finished slices are kept and no unfinished step is marked "
                          "complete; free some space (or choose another [store] path) and run "
                          "again to resume")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreError(f"cannot write the store {store} ({exc.strerror}: "
                          f"{exc.filename or store}); choose a writable [store] path")
    if exc.errno == errno.EDQUOT:
        return StoreError(f"disk quota exceeded while writing the store {store}: the "
                          "finished slices are kept; free some space and run again to resume")
    return None


def _check_steps(wf: Workflow) -> None:
    """What the workflow alone can tell, before any slice is read: unknown steps, each
    step's own checks, and steps listed without the earlier steps they read."""
    steps = [get_step(name) for name in wf.process_steps]  # unknown names first
    for i, step in enumerate(steps):
        params = wf.step_params(step.name)
        if step.validate is not None:
            step.validate(**reduction_params(params))
        if any(params.get(k) is not None for k in step.needs_unless):
            continue
        missing = [n for n in step.needs if n not in wf.process_steps[:i]]
        if missing:
            instead = (f" (or give {' or '.join(step.needs_unless)})" if step.needs_unless
                       else "")
            raise ConfigError(f"[{step.name}] {step.name} needs the output of "
                              f"{', '.join(missing)}: list it before {step.name} in "
                              f"process_steps{instead}")


def _refuse_main_reimport() -> None:
    """Stop a run started by a child process of a pool while it re-imports the user's
    script (multiprocessing does that with forkserver and spawn): without this, an
    unguarded ``run(...)`` at the top of a script runs the whole workflow again in
    every child, against the same store."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name.startswith("_fixup_main_from") and "multiprocessing" in code.co_filename:
            raise Pystack3dDaskError(
                "pystack3d_dask.run() was called while a child process re-imported your "
                "script: put the call under `if __name__ == \"__main__\":` (the processes "
                "that run pystackreg, like any multiprocessing pool, import the main script)")
        frame = frame.f_back


def _run_locked(wf: Workflow, st: Store, source: SliceSource, progress: bool,
                client: Any = None) -> list[StepReport]:
    """The run itself, with the store locked: plan it, then carry the plan out on the
    workflow's executor (:func:`~.execute.execute`)."""
    if wf.store["overwrite"]:
        st.clear()
    else:
        check_same_input(st, source)
    input_fp, manifest_id = input_fingerprint(wf, source)
    groups = plan_run(wf, st, source, (input_fp, manifest_id))
    sched = wf.scheduler
    with executor(sched["name"], sched["workers"], sched["threads_per_worker"],
                  sched["memory_limit"], sched["dashboard_address"], progress,
                  address=sched.get("address"), slurm=sched.get("slurm"),
                  kind=sched.get("kind", "slurm"), jobqueue=sched.get("jobqueue"),
                  worker_timeout=sched.get("worker_timeout", 300.0), client=client) as ex:
        provenance = _provenance(wf, source, manifest_id)
        st.update_info(workflow_started=time.time(),
                       workflow_planned=[g.group for g in groups],
                       package_version=__version__,
                       workflow_source=str(wf.source) if wf.source else None,
                       workflow_raw=to_json(wf.raw))
        reports = execute(groups, wf, st, source, ex, provenance, progress)
        st.update_info(workflow=[g.group for g in groups], workflow_finished=time.time())
    return reports


def run(workflow: str | Path | Mapping[str, Any] | Workflow, store: str | Path | None = None,
        scheduler: str | None = None, workers: int | None = None, overwrite: bool | None = None,
        progress: bool = True, address: str | None = None, client: Any = None) -> RunResult:
    """Run a workflow: ingest the input, then every step of ``process_steps`` in order,
    each written as a checkpoint of the store.

    Parameters
    ----------
    workflow
        Path of a workflow file (PyStack3D's TOML format plus this project's tables), its
        content as a dictionary, or a :class:`~pystack3d_dask.workflow.config.Workflow`.
    store
        Zarr store path; overrides ``[store] path`` (default: the workflow file's name
        with ``.zarr``, beside it).
    scheduler, workers, address
        Override ``[scheduler] name``, ``workers`` (``nproc`` by default) and ``address``
        (the dask scheduler of ``name = "address"``).
    overwrite
        Replace a store made from another input.
    progress
        Show progress bars and the run's messages (logger ``pystack3d_dask``).
    client
        A ``distributed.Client`` to run on (a notebook's cluster): its workers compute
        every step, and it is left open. Without one, an active Client is used when the
        workflow and the call name no scheduler, as dask itself does; a run then says
        so.

    Returns
    -------
    RunResult
        Per group: reused, computed or resumed, and how many slices were computed.
    """
    _refuse_main_reimport()
    keep_heap()
    if progress:
        show_messages()
    wf = load_workflow(workflow)
    client = client if client is not None else _active_client(wf, scheduler)
    if store is not None:
        wf.set_store(store)
    if scheduler is not None:
        wf.scheduler["name"] = scheduler
    if workers is not None:
        wf.scheduler["workers"] = workers
    if address is not None:
        wf.scheduler["address"] = address
    if overwrite is not None:
        wf.store["overwrite"] = overwrite
    _check_steps(wf)
    if wf.history:
        warnings.warn(f"history = {wf.history} is PyStack3D's record of finished steps, "
                      "superseded here by the store's checkpoints (a step is reused when its "
                      "checkpoint is complete with the same parameters): history is ignored",
                      UserWarning, stacklevel=2)

    source = source_of(wf)
    store_path = wf.store_path()
    if not isinstance(store_path, StoreRef):
        _warn_store_among_slices(Path(store_path), source)
    try:
        st = Store(store_path, make_compressors(wf.store["compressor"],
                                                wf.store["compression_level"]),
                   shard_slices=wf.store["shard_slices"])
        with StoreLock(st.path).held():
            reports = _run_locked(wf, st, source, progress, client)
    except OSError as exc:
        translated = _os_error(exc, st_location(store_path))
        if translated is None:
            raise
        raise translated from exc
    result = RunResult(st.path, reports)
    if progress:
        LOGGER.info(result.summary())
    return result


def _active_client(wf: Workflow, scheduler: str | None) -> Any:
    """The distributed Client active in this process (a notebook's), when the call and
    the workflow name no scheduler: dask's own rule, an active Client is the default."""
    if scheduler is not None or "name" in (wf.raw.get("scheduler") or {}):
        return None
    if "distributed" not in sys.modules:  # no Client can exist; importing it is slow
        return None
    from distributed import Client

    try:
        client = Client.current()
    except ValueError:
        return None
    LOGGER.info(f"running on the active dask Client ({client.scheduler.address}); pass "
                "scheduler=... to run elsewhere")
    return client


def resolve_group(store: Store, step: str | None = None) -> str:
    """The group of a step name (``cropping``), a group name (``01_cropping``,
    ``steps/01_cropping``) or ``input``; by default the last complete group of the last
    workflow run on the store."""
    if step is None:
        order = store.info.get("workflow") or [INPUT_GROUP, *store.step_groups()]
        for group in reversed(order):
            if store.is_complete(group):
                return group
        raise StoreError(f"{store.path}: no complete step yet")
    if step == INPUT_GROUP:
        return INPUT_GROUP
    candidates = [g for g in store.step_groups()
                  if g in (step, f"steps/{step}") or g.split("_", 1)[-1] == step]
    if not candidates:
        names = [INPUT_GROUP] + [g.split("/", 1)[1] for g in store.step_groups()]
        raise StoreError(f"{store.path}: no step {step!r}; the store has: {', '.join(names)}")
    return candidates[-1]


def open_result(store: str | Path | StoreRef, step: str | None = None) -> xr.DataArray:
    """Open a step's output as a lazy (channel, z, y, x) DataArray.

    Parameters
    ----------
    store
        Path or URL of the Zarr store (a URL's credentials from the environment), or
        ``RunResult.store`` (a URL with its storage options).
    step
        Step name, group name or ``"input"``; by default the last complete step.

    Raises
    ------
    StoreError
        When the store or the step does not exist, or the step is not complete.
    """
    st = Store(store, create=False)
    group = resolve_group(st, step)
    if st.is_removed(group):
        reason = (st.attrs(group) or {}).get("removed_reason", "the retention policy")
        raise StoreError(f"{st.path}: the slices of step {group!r} were removed ({reason}); its "
                         "statistics and small outputs remain. Keep it ([store] keep) and run "
                         "the workflow again to compute them from the nearest kept step")
    if not st.is_complete(group):
        raise StoreError(f"{st.path}: step {group!r} is not complete")
    return st.open_stack(group)
