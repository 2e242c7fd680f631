"""Registration calculation and transformation: pystack3d-dask against PyStack3D.

Usage::

    python benchmarks/registration.py [--slices 400] [--size 1024] [--workers 2]

Writes drifting slices (a sub-pixel random walk plus a jump, uint8, one slice at a time),
then, in one run on the same files and with the same pystackreg settings (TRANSLATION):
PyStack3D with ``nproc`` = workers, and this project with 1 and with ``workers`` workers.
Printed: the wall time of each step, the ratio to PyStack3D, and this project's speed-up
from 1 to ``workers`` workers.
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
sys.path.insert(0, str(HERE.parent / "tests"))

from harness import format_table, measure_function, ratio  # noqa: E402

STEPS = ["registration_calculation", "registration_transformation"]
PARAMS = {"registration_calculation": {"transformation": "TRANSLATION", "nb_blocks": [1, 1]},
          "registration_transformation": {"mode": "edge", "cropping": True}}


def write_slices(folder: Path, nz: int, size: int, seed: int = 0) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    pad = 24
    field = ndimage.gaussian_filter(rng.random((size + 2 * pad, size + 2 * pad)), 6)
    field = (field - field.min()) / np.ptp(field)
    drift = np.cumsum(rng.normal(0, 0.25, (nz, 2)), axis=0)
    drift[nz // 2:] += (4.0, -6.0)
    drift -= drift[0]
    for k in range(nz):
        moved = ndimage.shift(field, drift[k], order=1, mode="nearest")[pad:-pad, pad:-pad]
        img = 60 + 150 * moved + rng.normal(0, 4, moved.shape)
        tifffile.imwrite(folder / f"slice_{k:04d}_z={k * 0.01:.4f}um.tif",
                         np.clip(img, 0, 255).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    from pystack3d_runner import run_pystack3d_subprocess

    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-reg-"))
    try:
        slices = scratch / "slices"
        write_slices(slices, args.slices, args.size)
        ref = run_pystack3d_subprocess(slices, PARAMS, STEPS, scratch / "ps3d",
                                       nproc=args.workers, plots=False, load_stacks=False,
                                       timeout=7200).raise_on_error()
        times = {}
        for workers in sorted({1, args.workers}):
            wf = {"project_dir": str(slices), "process_steps": [],
                  "store": {"path": str(scratch / f"ours{workers}.zarr")},
                  "scheduler": {"name": "threads", "workers": workers}, **PARAMS}
            measure_function("harness:run_workflow", wf, sys_path=[HERE]).check()  # ingest
            wf["process_steps"] = STEPS
            m = measure_function("harness:run_workflow", wf, sys_path=[HERE])
            m.check()
            times[workers] = m.result
        rows = []
        for step in STEPS:
            row = {"step": step, "PyStack3D s": ref[step].wall_s}
            for workers, result in times.items():
                row[f"ours {workers}w s"] = result[step]
            row["ratio"] = ratio(times[args.workers][step], ref[step].wall_s)
            row["1->N speed-up"] = ratio(times[1][step], times[args.workers][step])
            rows.append(row)
        print(f"\nregistration of {args.slices} x {args.size} x {args.size} uint8, PyStack3D "
              f"nproc = {args.workers}; ratio = ours ({args.workers} workers) / PyStack3D")
        cols = ["step", "PyStack3D s", *[f"ours {w}w s" for w in times], "ratio",
                "1->N speed-up"]
        print(format_table(rows, cols))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
