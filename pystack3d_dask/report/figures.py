"""``pystack3d-dask report``: every step's figures, written as PNG files from the store.

The report is incremental: ``report.json`` in its folder records, for each group, the
key its figures were drawn from (the group's fingerprint and completion time, its
input's, the drawing options); a report redraws only the groups whose key changed, on
worker processes, and an unchanged store costs a read of the group attributes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..store.checkpoints import Store
from ..store.location import StoreRef, is_url, store_ref
from ..store.metadata import fingerprint

__all__ = ["REPORT_VERSION", "SCORE_NAMES", "ReportCache", "default_report_dir", "figures_key",
           "group_keys", "kept_scores", "report_groups", "score_key", "truth_identity",
           "write_report"]

#: Changes whenever what a report draws changes: figures of older versions are redrawn.
REPORT_VERSION = 2
MANIFEST = "report.json"


def default_report_dir(store: str | Path | StoreRef) -> Path:
    """``<store>-report`` beside the store (``out.zarr`` -> ``out-report``); for a store
    on object storage, in the current folder (a report is local files to open)."""
    if isinstance(store, StoreRef) or is_url(store):
        return Path.cwd() / f"{Path(store_ref(store).name).stem}-report"
    path = Path(store).resolve()
    return path.with_name(f"{path.stem}-report")


def report_groups(st: Store) -> list[str]:
    """The complete groups of the store's last workflow, in order (``input`` first)."""
    order = list(st.info.get("workflow") or ["input", *st.step_groups()])
    groups = [g for g in order if st.is_complete(g)]
    if not groups:
        raise StoreError(f"{st.path}: no complete step to report")
    return groups


#: The scores a report keeps of :func:`pystack3d_dask.datasets.quality.quality`.
SCORE_NAMES = ("psnr", "ssim", "mae", "bias")


def group_keys(st: Store, groups: list[str]) -> dict[str, str]:
    """``{group: key}``: what a group's part of the report depends on (the group's and its
    input's fingerprint and completion time, :data:`REPORT_VERSION`)."""
    keys, previous = {}, None
    for group in groups:
        attrs = st.attrs(group) or {}
        mine = [group, attrs.get("fingerprint"), attrs.get("finished")]
        keys[group] = fingerprint({"group": mine, "input": previous, "version": REPORT_VERSION})
        previous = mine
    return keys


def figures_key(key: str, **options: Any) -> str:
    """The key of a group's figures: its :func:`group_keys` key and the drawing options."""
    return fingerprint({"group": key, "options": options})


def score_key(key: str, truth: str | Path) -> str:
    """The key of a group's scores: its :func:`group_keys` key and the truth's identity."""
    return f"{key}:{truth_identity(truth)}"


def kept_scores(found: dict[str, Any]) -> dict[str, float]:
    """The scores of :data:`SCORE_NAMES` in ``found``, as floats (JSON)."""
    return {k: float(found[k]) for k in SCORE_NAMES}


@dataclass
class ReportCache:
    """``report.json`` of a report folder: per group name its key, files and HTML
    fragment; the page's key; quality scores by key."""

    folder: Path
    data: dict[str, Any]

    @classmethod
    def load(cls, folder: str | Path) -> ReportCache:
        folder = Path(folder)
        try:
            data = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict) or data.get("version") != REPORT_VERSION:
            data = {}
        data.setdefault("version", REPORT_VERSION)
        for part in ("groups", "quality"):
            data.setdefault(part, {})
        return cls(folder, data)

    def entry(self, name: str, key: str) -> dict[str, Any] | None:
        """The group's record when it was drawn with ``key`` and its files are all there."""
        entry = self.data["groups"].get(name)
        if not entry or entry.get("key") != key:
            return None
        if not all((self.folder / f).is_file() for f in entry.get("files", [])):
            return None
        return entry

    def save(self) -> None:
        """Write the manifest whole (a temporary file renamed over the old one)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{MANIFEST}.{os.getpid()}"
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.folder / MANIFEST)


def truth_identity(path: str | Path) -> str:
    """A truth store's path and the time of its metadata: scores are kept while both
    stay."""
    meta = Path(path) / "zarr.json"
    return f"{Path(path).resolve()}@{meta.stat().st_mtime_ns if meta.exists() else ''}"


def _save(image: Any, path: Path, dpi: int) -> Path:
    """A Pillow image or a matplotlib figure as PNG (fast zlib level: the figures are
    flat colour and lines, a higher level saves little and costs several times more)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(image, "savefig"):
        image.savefig(path, dpi=dpi, pil_kwargs={"compress_level": 1})
    else:
        image.save(path, format="png", compress_level=1)
    return path


def draw_group(store: str, group: str, previous: str | None, out_dir: str, sections: bool,
               cube: bool, dpi: int, truth: str | None = None
               ) -> tuple[list[str], dict[str, str], dict[str, float] | None]:
    """Draw one group's figures into ``out_dir/<name>/`` and its HTML fragment, and score
    it against ``truth`` (a ``truth.zarr``) when given.

    Returns the files written (relative to ``out_dir``), the fragment
    (:func:`pystack3d_dask.report.html.group_fragment`) and the scores
    (:func:`pystack3d_dask.datasets.quality.quality`) or None.
    """
    import matplotlib

    from .html import group_fragment
    from .plots import beam_current_figure, statistics_figure, step_figures
    from .sections import draw_cube, draw_sections, group_views

    st = Store(store, create=False)
    ds = st.open_dataset(group, chunks=None)
    before = st.open_dataset(previous, chunks=None) if previous is not None else None
    name = group.split("/", 1)[-1]
    folder = Path(out_dir) / name
    if folder.exists():
        shutil.rmtree(folder)
    figures: list[tuple[str, Any]] = []
    # titles at a fixed height: placing them above the tick labels measures every label
    with matplotlib.rc_context({"axes.titley": 1.0, "axes.titlepad": 5.0}):
        if group == "input":
            figures.append(("statistics", statistics_figure(ds, None,
                                                            "input: per-slice statistics")))
            if "beam_current" in ds.coords:
                figures.append(("beam_current", beam_current_figure(ds)))
        else:
            figures.extend(step_figures(ds.attrs.get("step", name), ds, before))
    if sections or cube:
        cuts, faces = group_views(st, group, ds)
        if sections:
            input_cuts = group_views(st, previous, before)[0] if before is not None else None
            figures.append(("sections", draw_sections(input_cuts, cuts, f"{name}: cut planes")))
        if cube:
            figures.append(("cube", draw_cube(faces=faces, title=f"{name}: faces of the volume")))
    files = [str(_save(image, folder / f"{label}.png", dpi).relative_to(out_dir))
             for label, image in figures]
    scores = None
    if truth is not None:
        from ..datasets.quality import quality
        from ..datasets.synthetic import load_truth
        from ..workflow.pipeline import open_result

        scores = kept_scores(quality(open_result(store, name), load_truth(truth)))
    return files, group_fragment(ds, before, name), scores


def _child_init() -> None:
    """A drawing process reads with the synchronous scheduler: the parent's threads and
    clients are not there after a fork."""
    import dask

    dask.config.set(scheduler="synchronous")


def _fork_pool(workers: int, scoring: bool = False) -> Any | None:
    """Processes forked from this one, or None where forking is not safe or possible
    (outside Linux) or not worth it. The drawing libraries are imported first, once,
    so that the processes start with them."""
    if workers < 2 or not sys.platform.startswith("linux"):
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import bokeh.embed
    import bokeh.plotting  # noqa: F401
    import matplotlib.backends.backend_agg
    import matplotlib.figure  # noqa: F401
    import PIL.Image  # noqa: F401

    from . import html, plots, raster, sections  # noqa: F401
    if scoring:
        import skimage.metrics  # noqa: F401

        from ..datasets import quality, synthetic  # noqa: F401

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_child_init)


def _run_jobs(jobs: list[tuple], workers: int) -> list[Any]:
    # a store on object storage is read through an event loop that a forked child may
    # find locked by a parent's thread (seen with fsspec 2024.12): drawn here instead
    remote = any(isinstance(job[0], StoreRef) for job in jobs)
    pool = None if remote else _fork_pool(min(workers, len(jobs)),
                                          scoring=any(job[-1] for job in jobs))
    if pool is None:
        return [draw_group(*job) for job in jobs]
    with warnings.catch_warnings():
        # the parent's threads (the scheduler's, zarr's) wait idle here; the children
        # only read files and draw
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        with pool:
            return list(pool.map(draw_group, *zip(*jobs)))


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def write_report(store: str | Path, out: str | Path | None = None, *, sections: bool = True,
                 cube: bool = True, dpi: int = 100, workers: int | None = None,
                 truth: str | Path | bool | None = True) -> list[Path]:
    """Write the figures of every complete group of the store's last workflow.

    For each group ``NN_step`` (and ``input``), in ``OUT/NN_step/``: ``statistics.png``
    (per-slice min, max, mean of input and output), the step's own views (see
    :mod:`pystack3d_dask.report.plots`), ``sections.png`` (x-y, x-z and y-z cut planes through
    the middle, input above output) and ``cube.png`` (the volume's three visible faces).
    Everything comes from the checkpoints: no step is recomputed, and of each stack only
    what is drawn is read (see :mod:`pystack3d_dask.report.sections`).

    Only the groups whose checkpoint (or input) changed since the last report in ``out``
    are drawn again, ``workers`` of them at a time (default: one per CPU). With a
    ``truth`` (True: the ``truth.zarr`` that ``pystack3d-dask synth`` wrote beside the
    input slices, if any), each group drawn is also scored against it, for the HTML
    page (:func:`pystack3d_dask.report.html.write_html_report`).

    Returns
    -------
    list of Path
        Every group's files, in order.
    """
    st = Store(store, create=False)
    groups = report_groups(st)
    out_dir = Path(out) if out is not None else default_report_dir(st.path)
    cache = ReportCache.load(out_dir)
    content = group_keys(st, groups)  # what the HTML fragment and the scores depend on
    keys = {g: figures_key(k, sections=sections, cube=cube, dpi=dpi) for g, k in content.items()}
    if truth is True:
        from .html import find_truth

        truth = find_truth(st)
    jobs, previous = [], None
    for group in groups:
        name = group.split("/", 1)[-1]
        scored = bool(truth) and (cache.data["quality"].get(name) or {}).get("key") == \
            score_key(content[group], truth)
        if cache.entry(name, keys[group]) is None or (truth and not scored):
            jobs.append((st.target, group, previous, str(out_dir), sections, cube, dpi,
                         str(truth) if truth and not scored else None))
        previous = group
    if jobs:
        drawn = _run_jobs(jobs, workers or default_workers())
        for job, (files, fragment, scores) in zip(jobs, drawn):
            name = job[1].split("/", 1)[-1]
            cache.data["groups"][name] = {"key": keys[job[1]], "files": files,
                                          "fragment": fragment,
                                          "fragment_key": content[job[1]]}
            if scores is not None:
                cache.data["quality"][name] = {"key": score_key(content[job[1]], truth),
                                               "scores": scores}
        names = {g.split("/", 1)[-1] for g in groups}
        for stale in set(cache.data["groups"]) - names:
            del cache.data["groups"][stale]
        cache.save()
    return [out_dir / f for g in groups for f in cache.data["groups"][g.split("/", 1)[-1]]["files"]]
