"""Report and OME-NGFF export against a plain read of the same store.

Usage::

    python benchmarks/report_export.py [--slices 400] [--size 1024] [--dir TMP]

Writes ``--slices`` uint8 slices of ``--size`` squared, ingests them and crops them (two
groups), then, each in a fresh process: a plain read of the cropped group (every slice
decompressed once, its mean taken), ``pystack3d-dask report`` (PNG figures of both
groups, cut planes and 3D views, and the HTML page), and ``export --format ome-zarr``.
Printed: wall time (interpreter start included), peak memory of the process tree, and
both as ratios to the plain read; and the report's time as a share of the workflow's.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import format_bytes, format_table, measure, measure_function, ratio  # noqa: E402


def write_slices(folder: Path, nz: int, size: int, seed: int = 0) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random((size, size)), 6)
    field = (field - field.min()) / np.ptp(field)
    for k in range(nz):
        img = 60 + 150 * np.roll(field, k, axis=1) + rng.normal(0, 4, (size, size))
        tifffile.imwrite(folder / f"slice_{k:04d}_z={k * 0.01:.4f}um.tif",
                         np.clip(img, 0, 255).astype(np.uint8))


def plain_read(store: str) -> float:
    """Read every slice of the last group once (2 threads), as the baseline."""
    import dask

    import pystack3d_dask as p3d

    stack = p3d.open_result(store)
    with dask.config.set(scheduler="threads", num_workers=2):
        return float(stack.data.mean().compute())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-report-"))
    try:
        write_slices(scratch / "slices", args.slices, args.size)
        store = scratch / "s.zarr"
        margin = args.size // 16
        wf = {"project_dir": str(scratch / "slices"), "process_steps": ["cropping"],
              "cropping": {"area": [margin, args.size - margin, margin, args.size - margin]},
              "store": {"path": str(store)}}
        workflow = measure_function("harness:run_workflow", wf, sys_path=[HERE]).check()
        cli = [sys.executable, "-m", "pystack3d_dask.cli"]
        runs = {
            "plain read": measure_function("report_export:plain_read", str(store),
                                           sys_path=[HERE]),
            "report (PNG + HTML)": measure([*cli, "report", str(store), str(scratch / "rep")]),
            "export ome-zarr": measure([*cli, "export", str(store), str(scratch / "o.ome.zarr"),
                                        "--format", "ome-zarr"]),
        }
        base = runs["plain read"].check()
        rows = []
        for name, m in runs.items():
            m.check()
            rows.append({"task": name, "wall s": m.wall_s, "peak memory": format_bytes(
                m.peak_rss_bytes), "time / read": ratio(m.wall_s, base.wall_s),
                "memory / read": ratio(m.peak_rss_bytes, base.peak_rss_bytes)})
        size = args.size - 2 * margin
        print(f"\nreport and OME-Zarr export of {args.slices} slices of {size} x {size} uint8 "
              "(cropped from the ingested group), each in a fresh process")
        print(format_table(rows, ["task", "wall s", "peak memory", "time / read",
                                  "memory / read"]))
        report_s = runs["report (PNG + HTML)"].wall_s
        print(f"workflow (ingest + cropping, --no-report): {workflow.wall_s:.1f} s; the report "
              f"is {100 * report_s / workflow.wall_s:.1f} % of it")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
