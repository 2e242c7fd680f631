"""Destriping on the GPU (CuPy) against the CPU, same files, same machine.

Usage::

    python benchmarks/destriping_gpu.py [--slices 100] [--size 1024] [--maxit 20]
                                        [--workers N] [--batch-size B]

Needs CuPy and a CUDA GPU (``pip install 'pystack3d-dask[gpu]'``); without them it says
so and exits with status 2. The slices are those of ``benchmarks/destriping.py`` (a
smooth structure with noise, curtains on a third of them), ingested once. The
destriping step (VSNR, every slice) then runs from a copy of that store with
``device = "cpu"`` (this package's own VSNR on ``--workers`` threads) and with
``device = "gpu"`` (pyvsnr's CuPy path, ``--batch-size`` slices per task, automatic by
default), each in its own process. Printed: the step's wall time, seconds per slice,
the peak memory of the process, the CPU / GPU ratio, and how far the two outputs agree
(fraction of pixels within 1 grey level, largest difference).
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from destriping import GABOR, write_slices  # noqa: E402
from harness import format_bytes, format_table, measure_function, ratio  # noqa: E402


def _gpu() -> str | None:
    """Name of the first CUDA device, or None when CuPy or a GPU is missing."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--maxit", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="threads of the CPU run (default: every core)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="slices per GPU task (default: what fits in GPU memory)")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    name = _gpu()
    if name is None:
        print("destriping_gpu: needs CuPy and a CUDA GPU; none found", file=sys.stderr)
        sys.exit(2)

    import pystack3d_dask as p3d

    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-destripe-gpu-"))
    try:
        slices = scratch / "slices"
        striped = write_slices(slices, args.slices, args.size)
        wf0 = {"project_dir": str(slices), "process_steps": [],
               "store": {"path": str(scratch / "ingested.zarr")}}
        measure_function("harness:run_workflow", wf0, sys_path=[HERE]).check()
        table = {"maxit": args.maxit, "cvg_threshold": 1e-2, "filters": GABOR}
        rows, outputs = [], {}
        for device, extra in [("cpu", {}),
                              ("gpu", {"batch_size": args.batch_size} if args.batch_size else {})]:
            store = scratch / f"{device}.zarr"
            shutil.copytree(wf0["store"]["path"], store)
            wf = copy.deepcopy(wf0)
            wf.update(process_steps=["destriping"],
                      destriping={**table, "device": device, **extra},
                      scheduler={"name": "threads", "workers": args.workers},
                      store={"path": str(store)})
            m = measure_function("harness:run_workflow", wf, sys_path=[HERE])
            m.check()
            seconds = m.result["destriping"]
            outputs[device] = p3d.open_result(store).values
            rows.append({"device": device, "destriping s": seconds,
                         "s / slice": seconds / args.slices,
                         "peak memory": format_bytes(m.peak_rss_bytes)})
        cpu_s, gpu_s = rows[0]["destriping s"], rows[1]["destriping s"]
        rows.append({"device": "GPU / CPU", "destriping s": ratio(gpu_s, cpu_s)})
        diff = np.abs(outputs["cpu"].astype(np.int32) - outputs["gpu"].astype(np.int32))
        print(f"\ndestriping (VSNR, maxit {args.maxit}) of {args.slices} x {args.size} x "
              f"{args.size} uint8 ({int(striped.sum())} striped): {name} against "
              f"{args.workers} CPU threads")
        print(format_table(rows, ["device", "destriping s", "s / slice", "peak memory"]))
        print(f"agreement: {100 * float((diff <= 1).mean()):.3f} % of pixels within 1 grey "
              f"level, largest difference {int(diff.max())}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
