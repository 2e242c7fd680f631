"""What a store holds: each group, complete or not, with its fingerprint, time and shape."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from ..store.checkpoints import Store
from .profiles import DEFAULT_PROFILE

__all__ = ["format_status", "store_status"]


def store_status(store: str | Path) -> list[dict[str, Any]]:
    """One dictionary per group of the store, in workflow order.

    Keys: ``group``, ``step``, ``complete``, ``fingerprint``, ``seconds``,
    ``started`` and ``finished`` (ISO times or None), ``shape``, ``dtype``, ``fused``,
    ``in_last_workflow``, ``layout_version`` (of the store), ``profile`` (of the workflow
    that made the group: ``pystack3d`` or ``recommended``), ``params`` (the resolved
    parameters), ``provenance`` (the workflow as given, package versions, host, user,
    command, identity of the input manifest) and, for ``input``, ``manifest`` (path,
    size, modification time and hash of the first and last 64 KiB of every file).
    """
    st = Store(store, create=False)
    info = st.info
    last, layout = _last_workflow(info), info.get("layout_version")
    rows = []
    for group in ["input", *st.step_groups()]:
        attrs = st.attrs(group)
        if attrs is None:
            continue
        shape, dtype = None, None
        try:
            arr = st.open_dataset(group)["stack"]
            shape, dtype = list(arr.shape), str(arr.dtype)
        except Exception:  # a group cut before its template was written
            pass
        finished, started = attrs.get("finished"), attrs.get("started")
        row = {
            "group": group,
            "step": attrs.get("step", group),
            "complete": bool(attrs.get("complete")),
            "removed": bool(attrs.get("removed")),
            "removed_bytes": attrs.get("removed_bytes"),
            "removed_reason": attrs.get("removed_reason"),
            "fingerprint": attrs.get("fingerprint"),
            "seconds": attrs.get("seconds"),
            "started": _iso(started),
            "finished": _iso(finished),
            "shape": shape,
            "dtype": dtype,
            "fused": attrs.get("fused", []),
            "in_last_workflow": group in last,
            "layout_version": layout,
            "profile": (attrs.get("provenance") or {}).get("profile", DEFAULT_PROFILE),
            "params": attrs.get("params"),
            "provenance": attrs.get("provenance"),
        }
        if group == "input":
            row["manifest"] = attrs.get("manifest")
        rows.append(row)
    return rows


def _last_workflow(info: dict[str, Any]) -> list[str]:
    """The groups of the last run: those it finished, or, for a run cut short (started
    after the last finish), those it planned."""
    started, finished = info.get("workflow_started"), info.get("workflow_finished")
    if started is not None and (finished is None or finished < started):
        return list(info.get("workflow_planned") or info.get("workflow") or [])
    return list(info.get("workflow") or [])


def _iso(epoch: float | None) -> str | None:
    return datetime.datetime.fromtimestamp(epoch).isoformat(timespec="seconds") if epoch else None


def format_status(rows: list[dict[str, Any]]) -> str:
    """A text table of :func:`store_status`."""
    head = f"{'group':<30} {'state':<10} {'fingerprint':<14} {'seconds':>8}  shape"
    lines = [head]
    for r in rows:
        state = "complete" if r["complete"] else ("removed" if r["removed"] else "partial")
        if not r["in_last_workflow"] and r["group"] != "input":
            state += "*"
        fp = (r["fingerprint"] or "-")[:12]
        secs = f"{r['seconds']:.2f}" if r["seconds"] is not None else "-"
        shape = "x".join(str(s) for s in r["shape"]) if r["shape"] else "-"
        lines.append(f"{r['group']:<30} {state:<10} {fp:<14} {secs:>8}  {shape} {r['dtype'] or ''}")
    if any(not r["in_last_workflow"] and r["group"] != "input" for r in rows):
        lines.append("* not part of the last workflow run on this store")
    if any(r["in_last_workflow"] and not r["complete"] and not r["removed"] for r in rows):
        lines.append("partial: the last run stopped before this step was finished; run the "
                     "same workflow again to resume (its finished slices are kept)")
    removed = [r for r in rows if r["removed"]]
    if removed:
        freed = sum(r["removed_bytes"] or 0 for r in removed) / 2**20
        lines.append(f"removed: slices deleted by the retention policy ({freed:.1f} MiB freed; "
                     "statistics and parameters kept); a run that needs them computes them "
                     "again")
    profiles = sorted({r["profile"] for r in rows if r["group"] != "input"})
    if profiles:
        lines.append(f"profile: {', '.join(profiles)}")
    return "\n".join(lines)
