"""``pystack3d-dask report``: every step's figures, written as PNG files from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import StoreError
from .io.store import Store

__all__ = ["default_report_dir", "report_groups", "write_report"]


def default_report_dir(store: str | Path) -> Path:
    """``<store>-report`` beside the store (``out.zarr`` -> ``out-report``)."""
    path = Path(store).resolve()
    return path.with_name(f"{path.stem}-report")


def report_groups(st: Store) -> list[str]:
    """The complete groups of the store's last workflow, in order (``input`` first)."""
    order = list(st.info.get("workflow") or ["input", *st.step_groups()])
    groups = [g for g in order if st.is_complete(g)]
    if not groups:
        raise StoreError(f"{st.path}: no complete step to report")
    return groups


def _save(fig: Any, path: Path, dpi: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def write_report(store: str | Path, out: str | Path | None = None, *, sections: bool = True,
                 cube: bool = True, dpi: int = 110) -> list[Path]:
    """Write the figures of every complete group of the store's last workflow.

    For each group ``NN_step`` (and ``input``), in ``OUT/NN_step/``: ``statistics.png``
    (per-slice min, max, mean of input and output), the step's own views (see
    :mod:`pystack3d_dask.plots`), ``sections.png`` (x-y, x-z and y-z cut planes through
    the middle, input above output) and ``cube.png`` (the volume's three visible faces).
    Everything comes from the checkpoints: no step is recomputed.

    Returns
    -------
    list of Path
        The files written, in order.
    """
    from .plots import beam_current_figure, step_figures
    from .sections import cut_planes, draw_cube, draw_sections

    st = Store(store, create=False)
    groups = report_groups(st)
    out_dir = Path(out) if out is not None else default_report_dir(st.path)
    written: list[Path] = []
    previous = None
    previous_cuts = None  # the input of a step is the output of the one before: cut once
    for group in groups:
        ds = st.open_dataset(group)
        name = group.split("/", 1)[-1]
        step = ds.attrs.get("step", name)
        folder = out_dir / name
        if group == "input":
            written.append(_save(_input_statistics(ds), folder / "statistics.png", dpi))
            if "beam_current" in ds.coords:
                written.append(_save(beam_current_figure(ds), folder / "beam_current.png", dpi))
        else:
            for label, fig in step_figures(step, ds, previous):
                written.append(_save(fig, folder / f"{label}.png", dpi))
        if sections:
            after = cut_planes(ds["stack"])
            written.append(_save(draw_sections(previous_cuts, after, f"{name}: cut planes"),
                                 folder / "sections.png", dpi))
            previous_cuts = after
        if cube:
            written.append(_save(draw_cube(ds["stack"], title=f"{name}: faces of the volume"),
                                 folder / "cube.png", dpi))
        previous = ds
    return written


def _input_statistics(ds: Any) -> Any:
    from .plots import statistics_figure

    return statistics_figure(ds, None, "input: per-slice statistics")
