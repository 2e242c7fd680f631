"""The synthetic workflow on SLURM workers against a LocalCluster of the same size.

Usage (with a Slurm reachable, e.g. after ``bash .ci/slurm-up.sh`` and sourcing its env)::

    python benchmarks/slurm.py [--shape 200 300 340] [--queue debug]

In one run, on the same synthetic stack: the whole workflow (PyStack3D's synthetic
workflow) with a LocalCluster of 1 and 2 single-threaded workers, then with 1 and 2
single-core SLURM jobs (one dask worker each). Printed: wall time of the run, the time
until the first worker joined (the job start overhead; for the LocalCluster, process
start), and the ratio of SLURM to local.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import format_table, ratio  # noqa: E402


def first_worker_seconds(kind: str, queue: str) -> float:
    """Seconds from asking for one worker to its joining the scheduler."""
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    if kind == "local":
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                               dashboard_address=None)
    else:
        from dask_jobqueue import SLURMCluster

        cluster = SLURMCluster(cores=1, processes=1, memory="2GB", queue=queue,
                               interface="lo", python=sys.executable)
        cluster.scale(jobs=1)
    with Client(cluster) as client:
        client.wait_for_workers(1, timeout=300)
        seconds = time.perf_counter() - start
    cluster.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[200, 300, 340])
    parser.add_argument("--queue", default="debug")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    import pystack3d_dask as p3d
    from pystack3d_dask.datasets.synthetic import write_synthetic

    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-slurm-"))
    try:
        files = write_synthetic(scratch / "syn", shape=tuple(args.shape))
        base = tomllib.loads(files.workflow.read_text())
        base["project_dir"] = str(files.slices_dir)
        rows = []
        walls = {}
        for kind in ("local", "slurm"):
            start_s = first_worker_seconds(kind, args.queue)
            for workers in (1, 2):
                wf = copy.deepcopy(base)
                wf["store"] = {"path": str(scratch / f"{kind}{workers}.zarr")}
                if kind == "local":
                    wf["scheduler"] = {"name": "local", "workers": workers,
                                       "threads_per_worker": 1, "dashboard_address": ":0"}
                else:
                    wf["scheduler"] = {"name": "slurm", "worker_timeout": 300,
                                       "slurm": {"queue": args.queue, "cores": 1,
                                                 "memory": "2GB", "jobs": workers,
                                                 "interface": "lo",
                                                 # job logs with the rest, not in the
                                                 # current folder
                                                 "log_directory": str(scratch / "logs")}}
                t0 = time.perf_counter()
                p3d.run(wf, progress=False)
                walls[(kind, workers)] = time.perf_counter() - t0
                rows.append({"cluster": kind, "workers": workers,
                             "run s": walls[(kind, workers)],
                             "first worker s": start_s,
                             "/ local": ratio(walls[(kind, workers)], walls[("local", workers)])})
        print(f"\nthe synthetic workflow ({'x'.join(map(str, args.shape))}, every step) on a "
              "LocalCluster and on SLURM jobs, single-threaded workers")
        print(format_table(rows, ["cluster", "workers", "run s", "first worker s", "/ local"]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
