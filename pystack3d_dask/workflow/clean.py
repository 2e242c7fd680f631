"""``pystack3d-dask clean``: the retention policy applied after the fact."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StoreError
from ..store.checkpoints import Store
from ..store.lock import StoreLock
from .schema import keep_policy

__all__ = ["CleanReport", "clean", "is_kept"]


@dataclass
class CleanReport:
    """What :func:`clean` removed."""

    store: Path
    removed: dict[str, int] = field(default_factory=dict)  # group -> bytes freed
    kept: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        """Total bytes freed."""
        return sum(self.removed.values())

    def summary(self) -> str:
        """One line per group, then the total."""
        lines = [f"{g:<36} removed {b / 2**20:10.1f} MiB" for g, b in self.removed.items()]
        lines += [f"{g:<36} kept" for g in self.kept]
        lines.append(f"freed {self.bytes_freed / 2**20:.1f} MiB in {self.store}")
        return "\n".join(lines)


def _step_name(group: str) -> str:
    return group if group == "input" else group.split("/", 1)[-1].split("_", 1)[-1]


def is_kept(keep: str | list[str], step: str, last: bool) -> bool:
    """Whether a retention policy (``[store] keep``, ``clean --keep``) keeps the slices of
    a step's checkpoint; the last one is always kept."""
    return last or keep == "all" or (isinstance(keep, list) and step in keep)


def clean(store: str | Path, keep: str | list[str] = "last") -> CleanReport:
    """Remove the slices of the complete checkpoints not kept, as ``[store] keep`` would.

    Parameters
    ----------
    store
        The Zarr store.
    keep
        ``"last"`` (only the last group of the store's last workflow), ``"all"``
        (nothing removed), or step names (``"input"`` allowed); the last complete
        group is always kept, and so is, for a step that a run left partial, the
        complete group its resume reads. Statistics, small outputs and parameters of
        every group stay, and a later run computes removed slices again when it needs
        them.

    Raises
    ------
    StoreError
        When a run holds the store, or the store does not exist.
    ConfigError
        On an unknown step name.
    """
    keep = keep_policy("", "--keep", keep)
    st = Store(store, create=False)
    report = CleanReport(st.path)
    with StoreLock(st.path).held():  # refused while a run holds the store
        present = [g for g in ("input", *st.step_groups()) if st.has_group(g)]
        order = st.info.get("workflow") or present
        if not order:
            raise StoreError(f"{st.path}: nothing to clean")
        needed = _needed_to_resume(st, present)
        complete = [g for g in order if st.is_complete(g)]
        if complete:
            # the result: the last complete group (the last of a run cut short is the
            # input of the step it was computing)
            needed.add(complete[-1])
        for group in order:
            kept = group in needed or is_kept(keep, _step_name(group), False)
            if kept or not st.is_complete(group):
                # partial groups are resume state: never touched
                if st.is_complete(group):
                    report.kept.append(group)
                continue
            report.removed[group] = st.remove_slices(group, f"pystack3d-dask clean --keep {keep}")
    return report


def _needed_to_resume(st: Store, groups: list[str]) -> set[str]:
    """For each group that a run left partial, the complete group with slices just
    before it: the input that its resume reads."""
    needed: set[str] = set()
    last_with_slices = None
    for group in groups:
        if st.is_complete(group):
            last_with_slices = group
        elif not st.is_removed(group) and last_with_slices is not None:
            needed.add(last_with_slices)
    return needed
