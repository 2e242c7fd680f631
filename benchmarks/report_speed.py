"""What the report costs a user: first drawing, an unchanged re-run, one changed step.

Usage::

    python benchmarks/report_speed.py [--dir TMP] [--reuse FOLDER]

Makes the demo's store (``pystack3d-dask demo`` without its report; ``--reuse`` a folder
where that was done before), then, each in a fresh process:

* **plain read of what the report draws**: every group's statistics, kept rows and
  columns, step arrays and the two slices drawn, read with zarr (the floor);
* **report**: every figure and the HTML page into an empty folder, the quality scores
  given as the demo gives them; printed with and without the interpreter's start and
  imports (which a ``run`` has paid already);
* **report again**: nothing changed;
* **run, unchanged**: ``pystack3d-dask run`` of the demo's workflow on its store, the
  report included (the default), then with ``--no-report``;
* **run, last step changed**: the final cropping's area changed; the groups redrawn are
  counted from the figures' file times.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import format_table, measure, measure_function, ratio  # noqa: E402

CLI = [sys.executable, "-m", "pystack3d_dask.cli"]


def plain_read(store: str) -> dict[str, float]:
    """Read what the report draws, with zarr alone; hand back the seconds it took."""
    start = time.perf_counter()
    import zarr

    root = zarr.open_group(store, mode="r")
    groups = dict(root.attrs).get("pystack3d_dask", {}).get("workflow") or []
    nbytes = 0
    for group in groups:
        node = root[group]
        for name, arr in node.arrays():
            if name == "stack":
                nz = arr.shape[1]
                parts = [arr[0, nz // 2], arr[0, nz - 1]]
            else:
                parts = [arr[...]]
            nbytes += sum(p.nbytes for p in parts)
    return {"seconds": time.perf_counter() - start, "bytes": nbytes}


def report(store: str, out: str, scores: str) -> dict[str, float]:
    """Figures and page as ``demo`` writes them; hand back the seconds it took."""
    start = time.perf_counter()
    from pystack3d_dask.report.figures import write_report
    from pystack3d_dask.report.html import write_html_report

    imported = time.perf_counter()
    files = write_report(store, out, truth=False)  # scores given, as the demo does
    write_html_report(store, Path(out) / "report.html", figures_dir=out,
                      scores=json.loads(Path(scores).read_text()))
    end = time.perf_counter()
    return {"seconds": end - imported, "imports": imported - start, "files": len(files)}


def _report_seconds(stderr: str) -> float | None:
    found = re.search(r"^report: .*\(([\d.]+) s\)", stderr, re.M)
    return float(found.group(1)) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--reuse", type=Path, default=None,
                        help="a folder where this benchmark made the demo's store before")
    args = parser.parse_args()
    scratch = args.reuse or Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-report-"))
    try:
        store, scores = scratch / "demo.zarr", scratch / "scores.json"
        if not scores.exists():
            from pystack3d_dask.datasets.demo import demo

            _, found = demo(scratch, progress=False, report=False)
            scores.write_text(json.dumps(found))
        workflow = scratch / "data" / "workflow.toml"
        out = scratch / "report"
        shutil.rmtree(out, ignore_errors=True)
        # the store as the demo's workflow leaves it (a reused folder may hold the change)
        measure([*CLI, "run", str(workflow), "--store", str(store), "--no-report",
                 "--quiet"]).check()
        rows = []
        floor = measure_function("report_speed:plain_read", str(store), sys_path=[HERE]).check()
        rows.append(("plain read of what it draws", floor, floor.result["seconds"]))
        first = measure_function("report_speed:report", str(store), str(out), str(scores),
                                 sys_path=[HERE]).check()
        rows.append(("report: figures + HTML", first, first.result["seconds"]))
        again = measure_function("report_speed:report", str(store), str(out), str(scores),
                                 sys_path=[HERE]).check()
        rows.append(("report again, unchanged", again, again.result["seconds"]))
        run = [*CLI, "run", str(workflow), "--store", str(store), "--report-dir", str(out),
               "--quiet"]
        rerun = measure(run).check()
        rows.append(("run, unchanged (report on)", rerun, _report_seconds(rerun.stderr)))
        bare = measure([*run, "--no-report"]).check()
        rows.append(("run, unchanged, --no-report", bare, None))
        changed = scratch / "data" / "changed.toml"
        text = workflow.read_text()
        area = re.search(r"\[cropping_final\]\narea = \[(\d+), (\d+), (\d+), (\d+)\]", text)
        new_area = [int(v) + (2 if i % 2 == 0 else -2) for i, v in enumerate(area.groups())]
        changed.write_text(text.replace(area.group(0),
                                        f"[cropping_final]\narea = {new_area}"))
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
        step = measure([*CLI, "run", str(changed), "--store", str(store), "--report-dir",
                        str(out), "--quiet"]).check()
        redrawn = sorted({p.parent.name for p in out.rglob("*.png")
                          if before.get(p) != p.stat().st_mtime_ns})
        rows.append((f"run, last step changed (redrawn: {', '.join(redrawn)})", step,
                     _report_seconds(step.stderr)))
        table = [{"task": name, "wall s (process)": m.wall_s, "report s (in process)": inner,
                  "wall / read": ratio(m.wall_s, floor.wall_s)} for name, m, inner in rows]
        print(f"\nthe demo's store ({store}), {first.result['files']} figures")
        print(format_table(table, ["task", "wall s (process)", "report s (in process)",
                                   "wall / read"]))
        print(f"report imports (in its process): {first.result['imports']:.2f} s")
    finally:
        if args.reuse is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
