"""Graph size and scheduler time per task at 1,000 and 10,000 slices.

Usage::

    python benchmarks/graph_scaling.py [--slices 1000 10000] [--workers 2]

Tiny slices (16 x 16 uint8), so that the time is the scheduling and bookkeeping, not the
pixels: ingest, then ``cropping`` and ``intensity_rescaling_area`` (a per-slice step and
a cross-slice one) on a distributed LocalCluster and on the threaded scheduler. Printed
per run: slices, tasks in the step's graph (built, not computed), wall time of the step,
and milliseconds per slice. These give the overhead term of the model in docs/hpc.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import format_table  # noqa: E402

STEPS = {"cropping": {"area": [2, 14, 2, 14]},
         "intensity_rescaling_area": {"area": [0, 12, 0, 12]}}


def graph_tasks(store: Path, step: str, params: dict) -> int:
    """Tasks of a step's lazy output graph (one per slice and stage), not computed."""
    import pystack3d_dask as p3d
    from pystack3d_dask.steps import get_step

    stack = p3d.open_result(store, "input")
    out = get_step(step)(stack, **params)
    return len(out.data.__dask_graph__())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    import pystack3d_dask as p3d

    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-scaling-"))
    rows = []
    try:
        rng = np.random.default_rng(0)
        for n in args.slices:
            folder = scratch / f"s{n}"
            folder.mkdir()
            for k in range(n):
                tifffile.imwrite(folder / f"slice_{k:05d}_z={k * 0.01:.4f}um.tif",
                                 rng.integers(20, 230, (16, 16), dtype=np.uint8))
            store = scratch / f"s{n}.zarr"
            t0 = time.perf_counter()
            p3d.run({"project_dir": str(folder), "process_steps": [],
                     "store": {"path": str(store)}}, progress=False)
            ingest = time.perf_counter() - t0
            rows.append({"slices": n, "run": "ingest (threads)", "tasks": "-", "s": ingest,
                         "ms / slice": 1000 * ingest / n})
            for step, params in STEPS.items():
                tasks = graph_tasks(store, step, params)
                for scheduler in ("threads", "local"):
                    wf = {"project_dir": str(folder), "process_steps": [step], step: params,
                          "store": {"path": str(scratch / f"{n}-{step}-{scheduler}.zarr")},
                          "scheduler": {"name": scheduler, "workers": args.workers,
                                        "dashboard_address": ":0"}}
                    shutil.copytree(store, wf["store"]["path"])
                    result = p3d.run(wf, progress=False)
                    seconds = result.reports[-1].seconds
                    rows.append({"slices": n, "run": f"{step} ({scheduler})", "tasks": tasks,
                                 "s": seconds, "ms / slice": 1000 * seconds / n})
        print(f"\ngraph size and time per slice, 16 x 16 slices, {args.workers} workers")
        print(format_table(rows, ["slices", "run", "tasks", "s", "ms / slice"]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
