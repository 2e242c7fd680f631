"""Carry out a run's plan: ingest, then each group's step (with the steps fused into it),
written as a checkpoint; the slices of a group not kept go once the next is complete.

:func:`~.plan.plan_run` decided what to do with each group; this module does it and
says, per group, what was done.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import xarray as xr

from .._version import __version__
from ..errors import ConfigError, Pystack3dDaskError, StoreError
from ..io.array_links import array_attrs, linkable_chunks
from ..io.array_readers import close_readers
from ..io.tiff import SliceSource, lazy_stack
from ..runtime.cluster import Executor
from ..runtime.faults import fault_point
from ..runtime.heap import release_heap
from ..runtime.log import LOGGER
from ..runtime.pool import release_pool
from ..steps import StepOutput, get_step
from ..steps.functions import build, reduction_params
from ..store.checkpoints import INPUT_GROUP, Store, WriteReport, to_json
from ..store.chunks import slab_size, slice_bytes
from .clean import is_kept
from .config import Workflow
from .plan import GroupPlan, pixel_size_of

__all__ = ["StepReport", "execute"]


@dataclass
class StepReport:
    """What one group of the run did: ``reused``, ``computed`` or ``resumed``."""

    name: str
    group: str
    status: str
    chunks_total: int
    chunks_computed: int
    seconds: float
    fused: list[str] = field(default_factory=list)


def execute(groups: list[GroupPlan], wf: Workflow, st: Store, source: SliceSource,
            ex: Executor, provenance: dict[str, Any], progress: bool = True
            ) -> list[StepReport]:
    """Carry out a plan on a locked store, on the executor ``ex``.

    Parameters
    ----------
    groups
        The plan (:func:`~.plan.plan_run`): the input first, then each checkpointed
        step's group, with what to do with it.
    wf, st, source
        The workflow, its store and its input slices.
    ex
        Where the tasks run.
    provenance
        Stored with every group written.
    progress
        Log the slices removed by ``[store] keep``.

    Returns
    -------
    list of StepReport
        One per group, in the plan's order.
    """
    run = _Execution(wf, st, ex, provenance, groups, progress)
    reports = [run.ingest(source, groups[0])]
    fault_point("between-steps", INPUT_GROUP)
    previous = INPUT_GROUP
    for group in groups[1:]:
        reports.append(run.step(group, previous))
        run.retire(previous)
        previous = group.group
        fault_point("between-steps", group.group)
    return reports


class _Execution:
    """The state a run carries from group to group: the groups opened, the outputs of
    the steps before, the group whose slices the next step reads."""

    def __init__(self, wf: Workflow, st: Store, ex: Executor, provenance: dict[str, Any],
                 groups: list[GroupPlan], progress: bool) -> None:
        self.wf, self.st, self.ex, self.provenance = wf, st, ex, provenance
        self.progress = progress
        self.names = {g.group: g.step for g in groups}
        self.last = groups[-1].group
        # groups are opened when a step to compute reads them: an unchanged run opens none
        self.opened = _OpenedGroups(st)
        self.outputs = _Outputs(self.opened)

    def ingest(self, source: SliceSource, plan: GroupPlan) -> StepReport:
        """Write the input group, or say why not; then close the input's arrays."""
        try:
            return self._ingest(source, plan)
        finally:
            close_readers()

    def _ingest(self, source: SliceSource, plan: GroupPlan) -> StepReport:
        if not plan.writes:
            n_slices = len(source.pages) * len(source.channels)
            status = "reused" if self.st.is_complete(INPUT_GROUP) else "removed"
            return StepReport(INPUT_GROUP, INPUT_GROUP, status, n_slices, 0, 0.0)
        stack = lazy_stack(source, pixel_size_of(self.wf, source))
        self.ex.task_bytes = _task_bytes(stack)
        described = {"root": source.location, "channels": source.channels,
                     "z_from_names": source.z_from_names, "policy": self.wf.policy}
        if source.array is not None:
            described.update(array_attrs(source))
        attrs = {
            "step": INPUT_GROUP,
            "source": described,
            "manifest": source.manifest,
            "manifest_fingerprint": self.provenance["input_manifest"]["fingerprint"],
            "dtype": str(source.dtype),
            "package_version": __version__,
            "provenance": self.provenance,
        }
        # an array input already stored as the store would store it is linked, not copied
        # (files on one file system: never into a store on object storage)
        link = None if source.array is None or self.st.remote else linkable_chunks(
            source, self.st.path, self.st.compressors, self.st.shard_slices)
        rep = self.st.write(INPUT_GROUP, stack, plan.fingerprint, attrs,
                            compute=self.ex.as_compute("ingest"), link_from=link)
        return _report(INPUT_GROUP, rep)

    def step(self, plan: GroupPlan, stack_group: str) -> StepReport:
        """Write one step's group (its fused steps computed within it) from the slices
        of ``stack_group``, or say why not; then run the step's checks."""
        name, group, fused = plan.step, plan.group, list(plan.fused)
        st = self.st
        if plan.writes:
            rep = self._write(plan, stack_group)
            report = _report(name, rep, fused)
            check = get_step(name).check
            for note in (check(self.opened.dataset(group)) if check else []):
                warnings.warn(f"{name}: {note}", UserWarning, stacklevel=2)
        else:
            status = "reused" if st.is_complete(group) else "removed"
            report = StepReport(name, group, status, st.slice_count(group), 0, 0.0, fused)
        self.outputs.name(name, group)
        return report

    def _write(self, plan: GroupPlan, stack_group: str) -> WriteReport:
        name, group = plan.step, plan.group
        stack = self.opened.stack(stack_group)
        if stack is None:  # the plan makes the groups before it available
            raise StoreError(f"{group}: its input has no slices in {self.st.path}")
        start = time.perf_counter()
        pending = [(n, self.wf.step_params(n)) for n in plan.fused]
        for fused_name, fused_params in pending:
            with _naming(fused_name):
                fused_out = _build(fused_name, stack, fused_params, self.ex, self.outputs)
            self.outputs[fused_name] = xr.Dataset(fused_out.extras)
            stack = fused_out.stack
        params = self.wf.step_params(name)
        label = name if not plan.fused else f"{name} (with {', '.join(plan.fused)})"
        with _naming(label):
            out = _build(name, stack, params, self.ex, self.outputs, self.st, group,
                         plan.fingerprint)
        attrs = {"step": name, "index": plan.index, "params": to_json(params),
                 "fused": list(plan.fused),
                 "fused_params": {n: to_json(p) for n, p in pending},
                 "package_version": __version__, "provenance": self.provenance}
        # a step that leaves the slices as they are links its input's files
        link = stack_group if get_step(name).passthrough and not pending else None
        with _naming(label):
            rep = self.st.write(group, out, plan.fingerprint, attrs,
                                compute=self.ex.as_compute(name), link_from=link,
                                started=start)
        _release_memory()
        return rep

    def retire(self, previous: str) -> None:
        """The group before a complete one: its slices go unless ``[store] keep`` keeps
        them."""
        keep = self.wf.store["keep"]
        if is_kept(keep, self.names[previous], previous == self.last):
            return
        if self.st.is_complete(previous):
            freed = self.st.remove_slices(previous, f"[store] keep = {keep!r}")
            if self.progress:
                LOGGER.info(f"{previous}: slices removed ({freed / 2**20:.1f} MiB), "
                            f"keep = {keep!r}")


def _task_bytes(stack: xr.DataArray) -> int:
    """Bytes of the slab of slices one task of a stack handles (the executor's batches
    are sized by it)."""
    one = slice_bytes(stack.shape, stack.dtype)
    return one * slab_size(one)


def _report(name: str, rep: WriteReport, fused: list[str] | None = None) -> StepReport:
    return StepReport(name, rep.group, rep.status, rep.chunks_total, rep.chunks_computed,
                      rep.seconds, fused or [])


def _build(name: str, stack: xr.DataArray, params: dict[str, Any], ex: Executor,
           outputs: dict[str, xr.Dataset], store: Store | None = None,
           group: str | None = None, fp: str | None = None) -> StepOutput:
    """A step's lazy output, its prepared values computed first (or reloaded from a
    partial checkpoint of the same fingerprint, when resuming). ``outputs`` holds the
    outputs of the steps before it, for the steps that need them."""
    step = get_step(name)
    ex.task_bytes = _task_bytes(stack)
    try:
        loaded = None
        if (step.prepare is not None and store is not None
                and (store.attrs(group) or {}).get("fingerprint") == fp):
            loaded = store.load_extras(group, step.prepared_names(**reduction_params(params)))
        upstream = {n: outputs[n] for n in step.needs if n in outputs}
        out = build(step, stack, params, ex.compute_values, upstream, loaded)
        if step.prepare is not None and loaded is None:
            # what the reduction held (a fit sample, its residuals and weights) goes
            # back to the system before the slices are written: kept in the main
            # thread's heap, the writer threads' own heaps would add to it
            release_heap()
    except ConfigError as exc:
        if str(exc).startswith("["):
            raise
        # a kernel's message names the value; the user also needs the table it came from
        raise ConfigError(f"[{name}] {exc}") from exc
    return out


class _OpenedGroups:
    """Each group's Dataset and stack, opened once, on first use."""

    def __init__(self, st: Store) -> None:
        self.st = st
        self.datasets: dict[str, xr.Dataset] = {}

    def dataset(self, group: str) -> xr.Dataset:
        if group not in self.datasets:
            self.datasets[group] = self.st.open_dataset(group)
        return self.datasets[group]

    def stack(self, group: str) -> xr.DataArray | None:
        """The group's stack, or None when its slices were removed."""
        if not self.st.is_complete(group):
            return None
        return self.st.open_stack(group, self.dataset(group))


class _Outputs(dict):
    """The outputs of the steps before, for the steps that need them (``step.needs``):
    a checkpointed step's group is opened when one asks for it."""

    def __init__(self, opened: _OpenedGroups) -> None:
        super().__init__()
        self.opened = opened
        self.groups: dict[str, str] = {}

    def name(self, step: str, group: str) -> None:
        self.groups[step] = group
        self.pop(step, None)

    def __contains__(self, step: object) -> bool:
        return super().__contains__(step) or step in self.groups

    def __getitem__(self, step: str) -> xr.Dataset:
        if not super().__contains__(step):
            self[step] = self.opened.dataset(self.groups[step])
        return super().__getitem__(step)


@contextlib.contextmanager
def _naming(step: str) -> Iterator[None]:
    """Mark an unexpected error with the step it came from, for the command's one-line
    message (errors of this package name their step themselves)."""
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, Pystack3dDaskError) and not hasattr(exc, "pystack3d_step"):
            with contextlib.suppress(AttributeError):  # a few built-ins take no attributes
                exc.pystack3d_step = step
        raise


def _release_memory() -> None:
    """After a step: the process pool goes (its idle processes hold memory through the
    steps after registration), and the heap that the step's slices freed goes back to
    the system (kept during the step by :func:`~pystack3d_dask.runtime.heap.keep_heap`)."""
    release_pool()
    release_heap()
