"""The whole workflow, side by side: pystack3d-dask against PyStack3D on the same stack.

Usage::

    python benchmarks/compare_pystack3d.py [--shape 200 300 340] [--workers 2] [--dir TMP]

Generates the synthetic stack (every defect, ground truth kept), then runs PyStack3D
(pip ``pystack3d``, ``nproc`` = workers) and this project (``workers`` threads,
checkpoint after every step) with the same PyStack3D workflow file, each in a process of
its own, and prints per step and in total: wall time and ratio, the peak memory of each
whole process tree, and the quality of both final outputs against the truth.

This project runs as users run it: ``pystack3d-dask run workflow.toml`` with its report
(figures and HTML page; PyStack3D draws nothing here), whose share is printed.

Steps: the synthetic workflow's, minus those this version does not have yet (said in
the output). This project's time includes ingesting the TIFF slices into its store.
"""

from __future__ import annotations

import argparse
import functools
import re
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from harness import (  # noqa: E402
    format_bytes,
    format_table,
    measure,
    ratio,
    settle,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[200, 300, 340])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scheduler", default="threads",
                        choices=["threads", "processes", "local"])
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    import xarray as xr
    from pystack3d_runner import run_pystack3d_subprocess

    import pystack3d_dask as p3d
    from pystack3d_dask.datasets.quality import quality, quality_table
    from pystack3d_dask.datasets.synthetic import load_truth, write_synthetic
    from pystack3d_dask.steps import available_steps

    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-compare-"))
    try:
        files = write_synthetic(scratch / "syn", shape=tuple(args.shape))
        params = tomllib.loads(files.workflow.read_text())
        have = set(available_steps())
        steps = [s for s in params["process_steps"] if s in have]
        left = [s for s in params["process_steps"] if s not in have]

        settle()
        # PSS: a page shared by forked processes (pools, the report's) counts once
        launcher = functools.partial(measure, metric="pss")
        ref = run_pystack3d_subprocess(files.slices_dir, params, steps, scratch / "ps3d",
                                       nproc=args.workers, plots=False, launcher=launcher,
                                       timeout=7200).raise_on_error()
        if left:
            raise SystemExit(f"steps {left} are not available: the workflow file cannot "
                             "be run as it is")
        settle()
        mine = launcher([sys.executable, "-m", "pystack3d_dask.cli", "run",
                         str(files.workflow), "--store", str(scratch / "ours.zarr"),
                         "--scheduler", args.scheduler, "--workers", str(args.workers),
                         "--quiet"]).check()
        seconds = _group_seconds(scratch / "ours.zarr")
        report_s = _report_seconds(mine.stderr)

        rows = [{"step": "ingest (TIFF -> Zarr)", "PyStack3D s": None,
                 "ours s": seconds["input"], "ratio": None}]
        total_ref = 0.0
        for step in steps:
            t_ref = ref[step].wall_s
            total_ref += t_ref
            rows.append({"step": step, "PyStack3D s": t_ref, "ours s": seconds[step],
                         "ratio": ratio(seconds[step], t_ref)})
        total_own = sum(seconds.values())
        rows.append({"step": "total of the steps", "PyStack3D s": total_ref,
                     "ours s": total_own, "ratio": ratio(total_own, total_ref)})
        rows.append({"step": "report (figures + HTML)", "PyStack3D s": None, "ours s": report_s,
                     "ratio": None})
        rows.append({"step": "whole command (process wall)",
                     "PyStack3D s": ref.measurement.wall_s, "ours s": mine.wall_s,
                     "ratio": ratio(mine.wall_s, ref.measurement.wall_s)})
        print(f"\n{'x'.join(map(str, args.shape))} synthetic stack, {args.workers} workers "
              f"(ours: {args.scheduler}); "
              f"steps not available here (left out of both): {left or 'none'}")
        print(format_table(rows, ["step", "PyStack3D s", "ours s", "ratio"]))
        print(f"report: {report_s:.2f} s, {100 * report_s / mine.wall_s:.1f} % of the command")
        print(f"peak memory (PSS) of the process tree: PyStack3D "
              f"{format_bytes(ref.measurement.peak_rss_bytes)}, ours "
              f"{format_bytes(mine.peak_rss_bytes)} (ratio "
              f"{ratio(mine.peak_rss_bytes, ref.measurement.peak_rss_bytes):.2f}); wall of the "
              f"whole processes: PyStack3D {ref.measurement.wall_s:.1f} s, ours "
              f"{mine.wall_s:.1f} s")

        truth = load_truth(files.truth)
        final = p3d.open_result(scratch / "ours.zarr")
        theirs = ref[steps[-1]].stack
        # PyStack3D's last output has its own z (from its file names) and crop: label it
        # like ours when the shapes agree, else compare it on its own grid
        if theirs.shape == final.shape[1:]:
            theirs = xr.DataArray(theirs[None], dims=final.dims, coords=final.coords)
        else:
            print(f"(PyStack3D's final shape {theirs.shape} differs from ours "
                  f"{final.shape[1:]}: scored on its own grid from its file names)")
            zs = [float(n.split("z=")[1][:-6]) for n in ref[steps[-1]].files]
            theirs = xr.DataArray(theirs[None], dims=final.dims,
                                  coords={"channel": final["channel"].values, "z": zs,
                                          "y": final["y"].values[:theirs.shape[1]],
                                          "x": final["x"].values[:theirs.shape[2]]})
        print("\nfinal output against the ground truth")
        print(quality_table({
            "input": quality(p3d.open_result(scratch / "ours.zarr", "input"), truth),
            "PyStack3D": quality(theirs, truth),
            "pystack3d-dask": quality(final, truth),
        }))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _group_seconds(store: Path) -> dict[str, float]:
    """Seconds of each group of the store's last workflow, by step name (``input``)."""
    from pystack3d_dask.store.checkpoints import Store

    st = Store(store, create=False)
    out = {}
    for group in st.info["workflow"]:
        attrs = st.attrs(group) or {}
        out[attrs.get("step", group)] = float(attrs.get("seconds") or 0.0)
    return out


def _report_seconds(stderr: str) -> float:
    found = re.search(r"^report: .*\(([\d.]+) s\)", stderr, re.M)
    if not found:
        raise RuntimeError(f"no report line in the command's output:\n{stderr[-2000:]}")
    return float(found.group(1))


if __name__ == "__main__":
    main()
