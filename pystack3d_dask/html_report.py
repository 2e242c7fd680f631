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

from .io.store import Store
from .profiles import DEFAULT_PROFILE

__all__ = ["find_truth", "write_html_report"]


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
                  scores: dict[str, dict] | None = None) -> str:
    from .pipeline import open_result
    from .quality import quality
    from .synthetic import load_truth

    scores = dict(scores or {})
    truth = None
    head = "<tr><th>group</th><th>PSNR (dB)</th><th>SSIM</th><th>MAE</th><th>bias</th></tr>"
    rows = []
    for group in groups:
        name = group.split("/", 1)[-1]
        if name not in scores:
            truth = load_truth(truth_path) if truth is None else truth
            scores[name] = quality(open_result(store.path, name), truth)
        q = scores[name]
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{q['psnr']:.2f}</td>"
                    f"<td>{q['ssim']:.4f}</td><td>{q['mae']:.3f}</td><td>{q['bias']:+.3f}</td></tr>")
    return (f"<h2>Quality against the ground truth</h2><p>{html.escape(str(truth_path))}</p>"
            f'<table class="grid">{head}{"".join(rows)}</table>')


def write_html_report(store: str | Path, out: str | Path, figures_dir: str | Path | None = None,
                      truth: str | Path | None = None,
                      scores: dict[str, dict] | None = None) -> Path:
    """Write ``out`` (one HTML file, with bokeh's JavaScript and the figures inside).

    Parameters
    ----------
    store
        The run's Zarr store.
    out
        The HTML file to write.
    figures_dir
        Where :func:`pystack3d_dask.report.write_report` put the PNG files (embedded per
        step when present).
    truth
        Ground truth (``truth.zarr``) to score every step against; by default the one that
        ``pystack3d-dask synth`` wrote beside the input slices, if any.
    scores
        Quality already computed against that truth (:func:`pystack3d_dask.quality.quality`
        per group name, as ``demo`` has it), so that it is not computed again.
    """
    from bokeh.embed import components
    from bokeh.resources import INLINE

    from .report import report_groups

    st = Store(store, create=False)
    groups = report_groups(st)
    truth_path = Path(truth) if truth is not None else find_truth(st)
    figures_dir = Path(figures_dir) if figures_dir is not None else None

    plots = {}
    sections = []
    previous = None
    for group in groups:
        ds = st.open_dataset(group)
        name = group.split("/", 1)[-1]
        attrs = ds.attrs
        plots[name] = _profiles(ds, previous, f"{name}: per-slice min, mean, max")
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
        stats = (f"min {float(ds['min'].min()):.4g}, max {float(ds['max'].max()):.4g}, "
                 f"mean {float(ds['mean'].mean()):.4g}")
        info.append(("statistics over the stack", stats))
        pngs = sorted((figures_dir / name).glob("*.png")) if figures_dir else []
        sections.append((name, _table(info), "".join(_png(p) for p in pngs)))
        previous = ds

    script, divs = components(plots)
    quality_html = (_quality_rows(st, groups, truth_path, scores) if truth_path is not None
                    else "")
    workflow = st.info.get("workflow_raw") or {}
    made_by = ((st.attrs(groups[-1]) or {}).get("provenance") or {}) if groups else {}
    body = [f"<h1>pystack3d-dask report: {html.escape(st.path.name)}</h1>",
            _table([("store", html.escape(str(st.path))),
                    ("input", html.escape(str(((st.attrs('input') or {}).get('source') or {})
                                              .get("root", "")))),
                    ("steps", html.escape(", ".join(g.split("/", 1)[-1] for g in groups))),
                    ("profile", html.escape(str(made_by.get("profile", DEFAULT_PROFILE)))),
                    ("package", html.escape(str(st.info.get("package_version", ""))))]),
            "<h2>Workflow</h2><pre>" + html.escape("\n".join(
                f"{key} = {json.dumps(value, default=str)}" for key, value in workflow.items()))
            + "</pre>", quality_html]
    for name, table, images in sections:
        body.append(f'<section id="step-{html.escape(name)}" class="step"><h2>'
                    f"{html.escape(name)}</h2>{table}{divs[name]}{images}</section>")
    page = f"""<!DOCTYPE html>
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
{script}
</head><body>
{''.join(body)}
</body></html>
"""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
