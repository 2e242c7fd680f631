"""A step with its store on S3-compatible object storage, against the same step on a local
folder and against a plain zarr copy of the same array within the same bucket (the floor).

Usage::

    python benchmarks/s3_store.py [--shape 64x1024x1024] [--repeat 3] [--workers N]
                                  [--endpoint http://127.0.0.1:9000] [--dir TMP]

Without ``--endpoint`` (or ``P3D_S3_ENDPOINT``), moto's server mode is started on this
machine, in a process of its own, and spoken to over HTTP as any S3 endpoint would be.
A uint8 stack is written as a Zarr input; the workflow (cropping 8 pixels off each side,
on the threaded scheduler, ``--workers`` threads) runs once to ingest, then the step is timed
(the store's copy of it deleted before each repeat): on a local folder and on the
bucket, in turn with the floor. The floor reads the bucket's ingested stack and writes
it to a new array of the bucket, same chunks (one slice), same codec (zstd), with dask on the same threads:
everything a step must do on object storage, without the step. Printed: the best of the
repeats, MB/s, and the ratios; the target is the S3 step within 1.5x of the floor.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import format_table  # noqa: E402

KEYS = {"key": "bench", "secret": "bench-secret"}


def start_server() -> tuple[str, subprocess.Popen]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(endpoint, timeout=2).close()
            return endpoint, proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"moto's server did not start at {endpoint}")


def workflow(input_path: str, store: str, shape: tuple[int, int], options: dict | None,
             workers: int) -> dict:
    ny, nx = shape
    wf = {"process_steps": ["cropping"], "cropping": {"area": [8, nx - 8, 8, ny - 8]},
          "input": {"path": input_path, "z_spacing": 0.01},
          "store": {"path": store},
          "scheduler": {"name": "threads", "workers": workers}}
    if options:
        wf["store"]["storage_options"] = options
    return wf


def step_runner(wf: dict):
    """Run the workflow once (ingest and the step), and return ``again()``: the wall
    time of the step's group computed anew (the store's copy of it deleted first)."""
    import pystack3d_dask as p3d
    from pystack3d_dask.store.checkpoints import Store

    first = p3d.run(wf, progress=False)
    group = first.reports[-1].group

    def again() -> float:
        Store(first.store, create=False).delete_group(group)
        start = time.perf_counter()
        result = p3d.run(wf, progress=False)
        assert result.reports[-1].status == "computed"
        return time.perf_counter() - start

    return again


def floor_runner(url: str, options: dict, workers: int):
    """``again()``: the wall time of a plain zarr copy of the bucket's ingested stack to
    a new array of the bucket."""
    import dask
    import dask.array as da
    import zarr

    src = zarr.open_array(url, path="input/stack", mode="r", storage_options=options)
    count = iter(range(1_000_000))

    def again() -> float:
        dst = zarr.create_array(url, name=f"floor-{next(count)}", shape=src.shape,
                                chunks=src.chunks, dtype=src.dtype,
                                compressors=zarr.codecs.ZstdCodec(level=3),
                                storage_options=options, overwrite=True)
        start = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=workers):
            da.from_zarr(src).rechunk((1, 8, *src.shape[2:])).to_zarr(dst)
        return time.perf_counter() - start

    return again


def best_interleaved(runners: list, repeat: int) -> list[float]:
    """The best of ``repeat`` timings of each runner, taken in turn (the S3 server's
    state and the machine's load then weigh on each alike)."""
    best = [float("inf")] * len(runners)
    for _ in range(repeat):
        for i, again in enumerate(runners):
            best[i] = min(best[i], again())
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="64x1024x1024")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--endpoint", default=os.environ.get("P3D_S3_ENDPOINT"))
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    nz, ny, nx = (int(v) for v in args.shape.split("x"))
    server = None
    if args.endpoint is None:
        args.endpoint, server = start_server()
    options = {"endpoint_url": args.endpoint, **KEYS}
    import s3fs
    import zarr

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    try:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            rng = np.random.default_rng(0)
            data = rng.integers(0, 255, (nz, ny, nx), dtype=np.uint8)
            source = Path(tmp) / "input.zarr"
            arr = zarr.create_array(str(source), shape=data.shape, chunks=(1, ny, nx),
                                    dtype=np.uint8)
            arr[...] = data
            megabytes = data.nbytes / 1e6
            local = step_runner(workflow(str(source), str(Path(tmp) / "run.zarr"), (ny, nx),
                                         None, args.workers))
            url = f"s3://{bucket}/run.zarr"
            on_s3 = step_runner(workflow(str(source), url, (ny, nx), options, args.workers))
            local, on_s3, floor = best_interleaved(
                [local, on_s3, floor_runner(url, options, args.workers)], args.repeat)
    finally:
        fs.rm(bucket, recursive=True)
        if server is not None:
            server.terminate()
    rows = [(name, f"{t:.2f}", f"{megabytes / t:.0f}", f"{t / floor:.2f}x")
            for name, t in (("step, store on a local folder", local),
                            ("step, store on S3", on_s3),
                            ("floor: zarr copy within the bucket", floor))]
    print(f"cropping on {nz} x {ny} x {nx} uint8 ({megabytes:.0f} MB), {args.workers} "
          f"threads, S3 server {args.endpoint}{' (moto, started here)' if server else ''}; "
          f"best of {args.repeat}")
    print(format_table(rows, ["what", "seconds", "MB/s", "vs floor"]))
    verdict = "met" if on_s3 <= 1.5 * floor else "NOT met"
    print(f"S3 step / floor = {on_s3 / floor:.2f} (target <= 1.5: {verdict})")


if __name__ == "__main__":
    main()
