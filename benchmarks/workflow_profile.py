"""Where the time of the whole workflow goes, and how it scales: per-step profile against
the I/O floor, fusion, schedulers, workers, and memory against stack depth.

Usage::

    python benchmarks/workflow_profile.py [--shape 200 300 340] [--workers 2]
        [--sections profile fusion schedulers scaling depth]
        [--depths 200 400 800] [--depth-size 1024] [--repeat 3] [--dir TMP]

Each run is a fresh process (``harness.measure_function``), so its peak memory is that of
its own process tree. Sections:

``profile``
    The synthetic workflow (every step checkpointed), one step at a time on the threaded
    scheduler. For each step: its wall time; the thread-seconds of its tasks by kind,
    from dask's task callbacks (``read``: reading checkpoint or input chunks; ``write``:
    encoding and writing the output chunks with their per-slice statistics; ``compute``:
    everything else); and the **floor**, measured in the same process right after the
    step: a plain Zarr read of the step's input plus a write of a volume of the output's
    size (same codec, one slice per chunk, one task per slice, same threads).
``fusion``
    The same workflow with every checkpoint, then with ``checkpoint = false`` on
    ``cropping`` (fused into ``bkg_removal``) and on ``resampling`` (fused into
    ``cropping_final``): wall time and bytes written to the store.
``schedulers``
    The whole workflow on ``threads``, ``processes`` and a ``local`` distributed
    cluster, same workers.
``scaling``
    The whole workflow with 1 and with 2 workers (threads), ``--repeat`` times each,
    alternated (a slow spell of the host then weighs on both): every pair of runs, then
    the medians, whole and per step.
``depth``
    The whole workflow on synthetic stacks of ``--depths`` slices of ``--depth-size``
    squared: peak memory of the process tree.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import format_bytes, format_table, measure_function, ratio  # noqa: E402

SECTIONS = ("profile", "fusion", "schedulers", "scaling", "depth")


# -- run in the measured child processes -------------------------------------------------

def _category(name: str) -> str:
    if name.startswith(("read-", "getitem-read", "open_dataset", "original-")):
        return "read"
    if name.startswith(("write_slab", "_write_slab", "write_chunk", "write_shard", "_write")):
        return "write"
    return "compute"


def _floor(store: str, source: str, out_shape: list[int], workers: int) -> float:
    """Seconds to read the ``source`` group's stack and write a volume of ``out_shape``
    (its first slices, cut to size) to a scratch Zarr array with the same codec."""
    import dask
    import zarr

    src = zarr.open_array(store, path=f"{source}/stack", mode="r")
    nc, nz, ny, nx = (min(a, b) for a, b in zip(out_shape, src.shape))
    scratch = tempfile.mkdtemp(prefix="floor-", dir=str(Path(store).parent))
    try:
        dst = zarr.create_array(scratch, shape=(nc, nz, ny, nx), chunks=(1, 1, ny, nx),
                                dtype=src.dtype, compressors=src.compressors)

        def copy_slice(c: int, z: int) -> None:
            dst[c, z] = src[c, z, :ny, :nx]

        tasks = [dask.delayed(copy_slice)(c, z) for c in range(nc) for z in range(nz)]
        start = time.perf_counter()
        dask.compute(tasks, scheduler="threads", num_workers=workers)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_profiled(workflow: dict[str, Any], workers: int) -> dict[str, Any]:
    """Ingest, then the steps one by one; per step: wall, task seconds by kind, floor."""
    import collections

    import zarr
    from dask.callbacks import Callback
    from dask.utils import key_split

    import pystack3d_dask

    class Tasks(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.started: dict[Any, float] = {}
            self.seconds: dict[str, float] = collections.defaultdict(float)

        def _pretask(self, key, dsk, state) -> None:
            self.started[key] = time.perf_counter()

        def _posttask(self, key, result, dsk, state, worker_id) -> None:
            elapsed = time.perf_counter() - self.started.pop(key, time.perf_counter())
            self.seconds[_category(key_split(key))] += elapsed

    steps = list(workflow["process_steps"])
    store = workflow["store"]["path"]
    rows = []
    for i in range(len(steps) + 1):
        wf = copy.deepcopy(workflow)
        wf["process_steps"] = steps[:i]
        with Tasks() as tasks:
            result = pystack3d_dask.run(wf, progress=False)
        report = result.reports[-1]
        row = {"step": report.name, "wall": report.seconds, **tasks.seconds}
        if i > 0:
            source = result.reports[-2].group
            out = zarr.open_array(store, path=f"{report.group}/stack", mode="r")
            row["floor"] = _floor(store, source, list(out.shape), workers)
            row["slices"] = int(out.shape[0] * out.shape[1])
        rows.append(row)
    return {"rows": rows}


def run_fusion(workflow: dict[str, Any]) -> dict[str, Any]:
    """The workflow, then the bytes of the store's step groups."""
    import pystack3d_dask

    result = pystack3d_dask.run(workflow, progress=False)
    steps_dir = Path(workflow["store"]["path"]) / "steps"
    written = sum(f.stat().st_size for f in steps_dir.rglob("*") if f.is_file())
    return {"seconds": {r.name: r.seconds for r in result.reports},
            "groups": [r.group for r in result.reports if r.status == "computed"],
            "bytes": written}


# -- the parent ----------------------------------------------------------------------------

def _workflow(files: Any, store: Path, scheduler: str, workers: int) -> dict[str, Any]:
    wf = tomllib.loads(files.workflow.read_text())
    wf.update({"project_dir": str(files.slices_dir), "store": {"path": str(store)},
               "scheduler": {"name": scheduler, "workers": workers}})
    return wf


def _whole(wf: dict[str, Any]) -> tuple[float, int, dict[str, float]]:
    m = measure_function("harness:run_workflow", wf, sys_path=[HERE])
    m.check()
    return sum(m.result.values()), m.peak_rss_bytes, m.result


def _relative_to_least(rows: list[dict[str, Any]], key: str, column: str) -> None:
    """Add ``column``: each row's ``key`` over the least of them."""
    least = min(r[key] for r in rows)
    for r in rows:
        r[column] = ratio(r[key], least)


def section_profile(files: Any, scratch: Path, workers: int) -> None:
    wf = _workflow(files, scratch / "profile.zarr", "threads", workers)
    m = measure_function("workflow_profile:run_profiled", wf, workers, sys_path=[HERE])
    m.check()
    rows = []
    for r in m.result["rows"]:
        floor = r.get("floor")
        rows.append({"step": r["step"], "wall s": r["wall"], "read s": r.get("read", 0.0),
                     "compute s": r.get("compute", 0.0), "write s": r.get("write", 0.0),
                     "floor s": floor, "wall / floor": ratio(r["wall"], floor) if floor
                     else None})
    print("\nper step (task seconds are summed over the worker threads; floor: plain "
          "Zarr read of the input + write of the output's volume, same codec and threads)")
    print(format_table(rows, ["step", "wall s", "read s", "compute s", "write s", "floor s",
                              "wall / floor"]))


def section_fusion(files: Any, scratch: Path, workers: int) -> None:
    rows = []
    for label, fused in (("every step checkpointed", []),
                         ("cropping and resampling fused", ["cropping", "resampling"])):
        wf = _workflow(files, scratch / f"fusion-{len(fused)}.zarr", "threads", workers)
        for step in fused:
            wf[step]["checkpoint"] = False
        m = measure_function("workflow_profile:run_fusion", wf, sys_path=[HERE])
        m.check()
        seconds = m.result["seconds"]
        rows.append({"run": label, "groups written": len(m.result["groups"]) - 1,
                     "steps s": sum(v for k, v in seconds.items() if k != "input"),
                     "bytes written": format_bytes(m.result["bytes"]),
                     "peak memory": format_bytes(m.peak_rss_bytes)})
    print("\nfusion (checkpoint = false: the step runs inside the next one's pass)")
    print(format_table(rows, ["run", "groups written", "steps s", "bytes written",
                              "peak memory"]))


def section_schedulers(files: Any, scratch: Path, workers: int) -> None:
    rows = []
    for name in ("threads", "processes", "local"):
        total, peak, _ = _whole(_workflow(files, scratch / f"sched-{name}.zarr", name,
                                          workers))
        rows.append({"scheduler": name, "workers": workers, "total s": total,
                     "peak memory": format_bytes(peak)})
    _relative_to_least(rows, "total s", "/ fastest")
    print("\nschedulers, whole workflow")
    print(format_table(rows, ["scheduler", "workers", "total s", "/ fastest",
                              "peak memory"]))


def section_scaling(files: Any, scratch: Path, repeat: int) -> None:
    runs, rounds = [], []
    for r in range(repeat):  # 1, 2, 1, 2, ...: a slow spell of the host hits both
        for n in (1, 2):
            wf = _workflow(files, scratch / f"scale-{n}-{r}.zarr", "threads", n)
            total, peak, seconds = _whole(wf)
            shutil.rmtree(scratch / f"scale-{n}-{r}.zarr", ignore_errors=True)
            runs.append({"workers": n, "total s": total, "peak": peak, "seconds": seconds})
        rounds.append({"run": r + 1, "1 worker s": runs[-2]["total s"],
                       "2 workers s": runs[-1]["total s"],
                       "speed-up": ratio(runs[-2]["total s"], runs[-1]["total s"])})
    print(f"\nscaling, whole workflow (threads), {repeat} run(s) of each, alternated")
    print(format_table(rounds, ["run", "1 worker s", "2 workers s", "speed-up"]))

    def median_of(n: int, step: str | None = None) -> float:
        values = [r["seconds"][step] if step else r["total s"] for r in runs
                  if r["workers"] == n]
        return float(statistics.median(values))

    summary = [{"workers": n, "median total s": median_of(n),
                "peak memory": format_bytes(max(r["peak"] for r in runs
                                                if r["workers"] == n))} for n in (1, 2)]
    summary[1]["speed-up"] = ratio(summary[0]["median total s"], summary[1]["median total s"])
    print(format_table(summary, ["workers", "median total s", "speed-up", "peak memory"]))
    steps = [{"step": s, "1 worker s": median_of(1, s), "2 workers s": median_of(2, s),
              "speed-up": ratio(median_of(1, s), median_of(2, s))}
             for s in runs[0]["seconds"]]
    print("per step, medians")
    print(format_table(steps, ["step", "1 worker s", "2 workers s", "speed-up"]))


def section_depth(depths: list[int], size: int, scratch: Path, workers: int) -> None:
    from pystack3d_dask.datasets.synthetic import write_synthetic

    rows = []
    for nz in depths:
        files = write_synthetic(scratch / f"depth-{nz}", shape=(nz, size, size))
        total, peak, _ = _whole(_workflow(files, scratch / f"depth-{nz}.zarr", "threads",
                                          workers))
        rows.append({"slices": nz, "size": f"{size} x {size}", "total s": total,
                     "peak": peak, "peak memory": format_bytes(peak)})
        shutil.rmtree(scratch / f"depth-{nz}", ignore_errors=True)
        shutil.rmtree(scratch / f"depth-{nz}.zarr", ignore_errors=True)
    _relative_to_least(rows, "peak", "/ smallest peak")
    print("\npeak memory against depth, whole workflow")
    print(format_table(rows, ["slices", "size", "total s", "peak memory",
                              "/ smallest peak"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[200, 300, 340])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS,
                        default=["profile", "fusion", "schedulers", "scaling"])
    parser.add_argument("--depths", type=int, nargs="+", default=[200, 400, 800])
    parser.add_argument("--depth-size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3,
                        help="scaling: runs of each worker count, alternated (default 3)")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    from pystack3d_dask.datasets.synthetic import write_synthetic

    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-profile-"))
    try:
        shape = "x".join(map(str, args.shape))
        print(f"synthetic stack {shape}, {args.workers} workers")
        files = None
        if set(args.sections) - {"depth"}:
            files = write_synthetic(scratch / "syn", shape=tuple(args.shape))
        if "profile" in args.sections:
            section_profile(files, scratch, args.workers)
        if "fusion" in args.sections:
            section_fusion(files, scratch, args.workers)
        if "schedulers" in args.sections:
            section_schedulers(files, scratch, args.workers)
        if "scaling" in args.sections:
            section_scaling(files, scratch, args.repeat)
        if "depth" in args.sections:
            section_depth(args.depths, args.depth_size, scratch, args.workers)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
