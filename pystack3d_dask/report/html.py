"""One self-contained HTML page per run: the workflow, and per step its parameters, time,
statistics (interactive bokeh profiles), figures (PNG, embedded) and, for a synthetic
stack, the error against its ground truth."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..store.checkpoints import Store
from ..workflow.profiles import DEFAULT_PROFILE

__all__ = ["find_truth", "group_fragment", "write_html_report"]


def find_truth(store: Store) -> Path | None:
    """The ``truth.zarr`` written by ``pystack3d-dask synth`` beside the input slices of
    the store, when there is one."""
    source = (store.attrs("input") or {}).get("source") or {}
    root = source.get("root")
    if not root:
        return None
    candidate = Path(root).parent / "truth.zarr"
    return candidate if candidate.is_dir() else None


def _profiles(ds: Any, previous: Any | None, title: str) -> Any:
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    fig = figure(title=title, width=900, height=260, x_axis_label="z (um)",
                 y_axis_label="grey level", tools="pan,wheel_zoom,box_zoom,reset,save")
    colours = {"min": "#1f77b4", "mean": "#2ca02c", "max": "#d62728"}
    for name, colour in colours.items():
        if previous is not None and name in previous:
            fig.line(np.asarray(previous["z"].values), np.asarray(previous[name].values[0]),
                     color=colour, line_dash="dashed", alpha=0.6, legend_label=f"input {name}")
        fig.line(np.asarray(ds["z"].values), np.asarray(ds[name].values[0]), color=colour,
                 legend_label=f"output {name}")
    fig.add_tools(HoverTool(tooltips=[("z", "@x{0.000}"), ("value", "@y{0.0}")]))
    fig.legend.click_policy = "hide"
    fig.legend.label_text_font_size = "8pt"
    return fig


def _png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"'
            f' style="max-width:100%"><figcaption>{html.escape(path.stem)}</figcaption></figure>')


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _quality_rows(store: Store, groups: list[str], truth_path: Path,
                  scores: dict[str, dict] | None, cache: Any | None,
                  keys: dict[str, str], score: bool = True) -> str:
    """The table of every group's quality against the truth: from ``scores``, else from
    the report's cache when the group and the truth are those it was scored with, else
    computed (and cached) when ``score``, else left out with a word."""
    from ..datasets.quality import quality
    from ..datasets.synthetic import load_truth
    from ..workflow.pipeline import open_result
    from .figures import kept_scores, score_key

    scores = dict(scores or {})
    stored = cache.data["quality"] if cache is not None else {}
    truth = None
    head = "<tr><th>group</th><th>PSNR (dB)</th><th>SSIM</th><th>MAE</th><th>bias</th></tr>"
    rows = []
    for group in groups:
        name = group.split("/", 1)[-1]
        key = score_key(keys[group], truth_path)
        if name not in scores and (stored.get(name) or {}).get("key") == key:
            scores[name] = stored[name]["scores"]
        if name not in scores and not score:
            rows.append(f"<tr><td>{html.escape(name)}</td><td colspan=4>not scored in the "
                        "report of a run; <code>pystack3d-dask report</code> scores it</td>"
                        "</tr>")
            continue
        if name not in scores:
            truth = load_truth(truth_path) if truth is None else truth
            scores[name] = quality(open_result(store.path, name), truth)
        q = kept_scores(scores[name])
        stored[name] = {"key": key, "scores": q}
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{q['psnr']:.2f}</td>"
                    f"<td>{q['ssim']:.4f}</td><td>{q['mae']:.3f}</td><td>{q['bias']:+.3f}</td></tr>")
    return (f"<h2>Quality against the ground truth</h2><p>{html.escape(str(truth_path))}</p>"
            f'<table class="grid">{head}{"".join(rows)}</table>')


def group_fragment(ds: Any, previous: Any | None, name: str) -> dict[str, str]:
    """A group's part of the page: its table (step, shape, time, parameters, statistics)
    and its interactive profile (bokeh ``script`` and ``div``)."""
    from bokeh.embed import components

    attrs = ds.attrs
    stats = {n: np.asarray(ds[n].values) for n in ("min", "max", "mean")}
    info = [("step", html.escape(str(attrs.get("step", name)))),
            ("shape (c, z, y, x)", " x ".join(str(n) for n in ds["stack"].shape)),
            ("dtype", str(ds["stack"].dtype)),
            ("time", f"{attrs.get('seconds', 0) or 0:.2f} s"),
            ("slices computed", str(attrs.get("chunks_computed", "")))]
    if attrs.get("params") is not None:
        info.append(("parameters", "<pre>" + html.escape(json.dumps(attrs["params"], indent=1))
                     + "</pre>"))
    if attrs.get("fused"):
        info.append(("fused into it", html.escape(", ".join(attrs["fused"]))))
    info.append(("statistics over the stack", f"min {float(stats['min'].min()):.4g}, max "
                 f"{float(stats['max'].max()):.4g}, mean {float(stats['mean'].mean()):.4g}"))
    script, div = components(_profiles(ds, previous, f"{name}: per-slice min, mean, max"))
    return {"table": _table(info), "script": script, "div": div}


def write_html_report(store: str | Path, out: str | Path, figures_dir: str | Path | None = None,
                      truth: str | Path | None = None,
                      scores: dict[str, dict] | None = None, score: bool = True) -> Path:
    """Write ``out`` (one HTML file, with bokeh's JavaScript and the figures inside).

    Parameters
    ----------
    store
        The run's Zarr store.
    out
        The HTML file to write.
    figures_dir
        Where :func:`pystack3d_dask.report.figures.write_report` put the PNG files (embedded per
        step when present). Its ``report.json`` also keeps each group's part of the page
        and the quality scores: only what changed is made again, and an unchanged page
        is not written again.
    truth
        Ground truth (``truth.zarr``) to score every step against; by default the one that
        ``pystack3d-dask synth`` wrote beside the input slices, if any.
    scores
        Quality already computed against that truth (:func:`pystack3d_dask.datasets.quality.quality`
        per group name, as ``demo`` has it), so that it is not computed again.
    score
        Score the groups that have no scores yet (in ``scores`` or the report's cache);
        if false, the table says which are not scored.
    """
    from ..store.metadata import fingerprint
    from .figures import ReportCache, group_keys, report_groups

    st = Store(store, create=False)
    groups = report_groups(st)
    names = {g: g.split("/", 1)[-1] for g in groups}
    truth_path = Path(truth) if truth is not None else find_truth(st)
    figures_dir = Path(figures_dir) if figures_dir is not None else None
    cache = ReportCache.load(figures_dir) if figures_dir is not None else None
    keys = group_keys(st, groups)
    out = Path(out)
    quality_html = (_quality_rows(st, groups, truth_path, scores, cache, keys, score)
                    if truth_path is not None else "")
    records = {g: (cache.data["groups"].get(names[g]) or {}) if cache else {} for g in groups}
    page_key = fingerprint({"groups": keys, "figures": [records[g].get("key") for g in groups],
                       "quality": quality_html, "out": str(out.resolve())})
    if cache is not None and cache.data.get("page") == page_key and out.is_file():
        return out

    parts, datasets = [], {}
    for i, group in enumerate(groups):
        fragment = records[group].get("fragment")
        if fragment is None or records[group].get("fragment_key") != keys[group]:
            for g in groups[max(0, i - 1): i + 1]:
                datasets.setdefault(g, st.open_dataset(g))
            previous = datasets[groups[i - 1]] if i else None
            fragment = group_fragment(datasets[group], previous, names[group])
            if records[group]:
                records[group].update(fragment=fragment, fragment_key=keys[group])
        pngs = [figures_dir / f for f in records[group].get("files", [])] if figures_dir else []
        parts.append((names[group], fragment, "".join(_png(p) for p in pngs if p.is_file())))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_page(st, groups, quality_html, parts), encoding="utf-8")
    if cache is not None:
        cache.data["page"] = page_key
        cache.save()
    return out


def _page(st: Store, groups: list[str], quality_html: str,
          parts: list[tuple[str, dict[str, str], str]]) -> str:
    from bokeh.resources import INLINE

    workflow = st.info.get("workflow_raw") or {}
    made_by = ((st.attrs(groups[-1]) or {}).get("provenance") or {}) if groups else {}
    source = ((st.attrs("input") or {}).get("source") or {}).get("root", "")
    body = [f"<h1>pystack3d-dask report: {html.escape(st.path.name)}</h1>",
            _table([("store", html.escape(str(st.path))),
                    ("input", html.escape(str(source))),
                    ("steps", html.escape(", ".join(g.split("/", 1)[-1] for g in groups))),
                    ("profile", html.escape(str(made_by.get("profile", DEFAULT_PROFILE)))),
                    ("package", html.escape(str(st.info.get("package_version", ""))))]),
            "<h2>Workflow</h2><pre>" + html.escape("\n".join(
                f"{key} = {json.dumps(value, default=str)}" for key, value in workflow.items()))
            + "</pre>", quality_html]
    scripts = []
    for name, fragment, images in parts:
        scripts.append(fragment["script"])
        body.append(f'<section id="step-{html.escape(name)}" class="step"><h2>'
                    f"{html.escape(name)}</h2>{fragment['table']}{fragment['div']}{images}"
                    "</section>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pystack3d-dask report: {html.escape(st.path.name)}</title>
{INLINE.render()}
<style>
body {{ font-family: sans-serif; margin: 1.5em; max-width: 1200px; }}
table.kv th {{ text-align: left; padding-right: 1em; vertical-align: top; }}
table.grid {{ border-collapse: collapse; }}
table.grid td, table.grid th {{ border: 1px solid #ccc; padding: 2px 8px; }}
section.step {{ border-top: 2px solid #888; margin-top: 2em; }}
figure {{ display: inline-block; margin: 0.5em; }} pre {{ font-size: 80%; }}
</style>
{''.join(scripts)}
</head><body>
{''.join(body)}
</body></html>
"""
