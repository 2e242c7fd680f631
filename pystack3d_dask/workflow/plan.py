"""What a run will do, decided before it does anything: per group, reuse, resume or
compute, and why.

:func:`plan` reads the workflow, the input's file list and headers, and the store's
attributes; it writes nothing and computes nothing. ``pystack3d-dask run --dry-run``
prints it, and :func:`pystack3d_dask.run` carries it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..io.arrays import array_kind, discover_array
from ..io.tiff import SliceSource, discover
from ..store.checkpoints import INPUT_GROUP, LAYOUT_VERSION, Store, existing_store
from ..store.metadata import fingerprint
from .config import Workflow, load_workflow

__all__ = ["GroupPlan", "fingerprint", "format_plan", "plan"]

#: What a run does with a group.
ACTIONS = ("reuse", "resume", "compute", "keep removed")


@dataclass(frozen=True)
class GroupPlan:
    """One group of a run: its name, step, fingerprint, what the run does with it
    (one of :data:`ACTIONS`) and why; ``fused``: the steps computed within it;
    ``index``: the step's place in ``process_steps`` (from 1; 0 for the input)."""

    group: str
    step: str
    fingerprint: str
    action: str
    why: str
    fused: tuple[str, ...] = ()
    index: int = 0

    @property
    def writes(self) -> bool:
        """Whether the run writes this group (computes or resumes it)."""
        return self.action in ("compute", "resume")


def source_of(wf: Workflow) -> SliceSource:
    """The workflow's input slices (file list and headers checked; for an array input,
    its metadata)."""
    location = wf.input_location
    if array_kind(location) is None:
        path = Path(location) if wf.input["path"] else wf.project_dir
        return discover(path, wf.channels, wf.ind_min, wf.ind_max, wf.policy,
                        wf.input["z_spacing"])
    table = wf.input
    return discover_array(
        location, table["level"], table["dims"], table["storage_options"], wf.ind_min,
        wf.ind_max, table["z_spacing"] if wf.input_set("z_spacing") else None,
        table["pixel_size"] if wf.input_set("pixel_size") else None, table["z_spacing"])


def pixel_size_of(wf: Workflow, source: SliceSource) -> float | None:
    """The pixel size (um) of the stack's y and x: ``[input] pixel_size``, or for an array
    input the one found at discovery (the user's, else its metadata's)."""
    return wf.input["pixel_size"] if source.array is None else source.pixel_size


def input_fingerprint(wf: Workflow, source: SliceSource) -> tuple[str, str]:
    """Fingerprints of the ingested input and of its manifest."""
    manifest_id = fingerprint({"manifest": source.manifest_identity()})
    payload = {
        "step": INPUT_GROUP, "root": source.location, "channels": source.channels,
        "manifest": manifest_id, "pages": source.pages, "z": source.z.tolist(),
        "pixel_size": pixel_size_of(wf, source), "version": __version__,
        "layout": LAYOUT_VERSION,
    }
    if source.array is not None:  # a TIFF input's fingerprint stays what it was
        payload["array"] = source.array.identity()
    return fingerprint(payload), manifest_id


def _chain(wf: Workflow, input_fp: str, manifest_id: str
           ) -> list[tuple[str, str, str, tuple[str, ...], int]]:
    """``(group, step, fingerprint, fused steps, index)`` of every group the workflow
    writes, the input first: a step without a checkpoint is computed within the next
    group."""
    chain = [(INPUT_GROUP, INPUT_GROUP, input_fp, (), 0)]
    upstream, pending = input_fp, []
    names = wf.process_steps
    for index, name in enumerate(names, start=1):
        upstream = fingerprint({"step": name, "params": wf.step_params(name),
                                "upstream": upstream, "input": manifest_id,
                                "version": __version__})
        if not wf.steps[name]["checkpoint"] and index != len(names):
            pending.append(name)
            continue
        chain.append((f"steps/{index:02d}_{name}", name, upstream, tuple(pending), index))
        pending = []
    return chain


def _decide(st: Store | None, chain: list[tuple[str, str, str, tuple[str, ...], int]],
            overwrite: bool) -> list[GroupPlan]:
    """Each group's action, from the last to the first: a group whose slices were
    removed is written again only when a later group to write reads them."""
    out: list[GroupPlan] = []
    later_writes = False
    for group, step, fp, fused, index in reversed(chain):
        attrs = (st.attrs(group) or {}) if st is not None and not overwrite else {}
        if st is None:
            action, why = "compute", "no store yet"
        elif overwrite:
            action, why = "compute", "overwrite = true: the store is cleared first"
        elif not attrs:
            action, why = "compute", "no checkpoint yet"
        elif attrs.get("fingerprint") != fp:
            action, why = "compute", ("another checkpoint is there (other parameters, "
                                      "input or version): it is replaced")
        elif attrs.get("complete"):
            action, why = "reuse", "complete, same fingerprint"
        elif attrs.get("removed"):
            action, why = (("compute", "its slices were removed and the next group to "
                            "write reads them") if later_writes else
                           ("keep removed", "complete once, slices removed ([store] keep); "
                            "no group to write reads them"))
        else:
            action, why = "resume", "an interrupted write of the same fingerprint"
        plan_ = GroupPlan(group, step, fp, action, why, fused, index)
        later_writes = plan_.writes
        out.append(plan_)
    return out[::-1]


def plan_run(wf: Workflow, st: Store | None, source: SliceSource,
             input_ids: tuple[str, str] | None = None) -> list[GroupPlan]:
    """:func:`plan` with the workflow loaded, the store opened (None: not there yet)
    and the input discovered; ``input_ids``: its :func:`input_fingerprint`, when the
    caller has it already."""
    input_fp, manifest_id = input_ids or input_fingerprint(wf, source)
    return _decide(st, _chain(wf, input_fp, manifest_id), bool(wf.store["overwrite"]))


def plan(workflow: str | Path | Mapping[str, Any] | Workflow,
         store: str | Path | None = None) -> list[GroupPlan]:
    """What :func:`pystack3d_dask.run` would do with each group, and why; nothing is
    written.

    Parameters
    ----------
    workflow
        As for :func:`pystack3d_dask.run`.
    store
        Overrides ``[store] path``.

    Returns
    -------
    list of GroupPlan
        The input first, then each checkpointed step's group.
    """
    wf = load_workflow(workflow)
    if store is not None:
        wf.set_store(store)
    st = existing_store(wf.store_path())
    return plan_run(wf, st, source_of(wf))


def format_plan(groups: list[GroupPlan]) -> str:
    """A text table of a plan."""
    width = max(len(g.group) + (len(", ".join(g.fused)) + 4 if g.fused else 0) for g in groups)
    lines = [f"{'group':<{width}}  {'action':<12}  why"]
    for g in groups:
        name = g.group + (f" (+{', '.join(g.fused)})" if g.fused else "")
        lines.append(f"{name:<{width}}  {g.action:<12}  {g.why}")
    return "\n".join(lines)
