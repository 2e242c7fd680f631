"""Residual misalignment after registration, against the synthetic stack's true drift.

Usage::

    python benchmarks/registration_drift.py [--shape 200 300 340] [--workers 2]

The synthetic stack records the shift (dy, dx) applied to every acquired slice. After
``registration_calculation``, the cumulative translation of slice k should equal its
shift relative to the first slice. Printed for PyStack3D and this project, same stack,
same workflow: the residual RMS (pixels) over the slices, its maximum, and the wall time
of the calculation.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from harness import format_table  # noqa: E402

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def residual(tmats: np.ndarray, shifts: np.ndarray) -> tuple[float, float]:
    """RMS and maximum (pixels) of cumulative translation - true relative shift."""
    from pystack3d_dask.kernels.registration import cumulative

    cum = cumulative(np.asarray(tmats, dtype=np.float64).reshape(len(tmats), -1, 3, 3))[:, 0]
    found = np.stack([cum[:, 1, 2], cum[:, 0, 2]], axis=1)  # (dy, dx)
    error = found - (shifts - shifts[0])
    norms = np.hypot(error[:, 0], error[:, 1])
    return float(np.sqrt(np.mean(norms**2))), float(norms.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[200, 300, 340])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import xarray as xr
    from helpers import run_ours
    from pystack3d_runner import run_pystack3d_subprocess

    from pystack3d_dask.synthetic import write_synthetic

    scratch = Path(tempfile.mkdtemp(prefix="p3d-drift-"))
    try:
        files = write_synthetic(scratch / "syn", shape=tuple(args.shape))
        shifts = np.asarray(files.synthetic.shifts, dtype=np.float64)
        params = tomllib.loads(files.workflow.read_text())
        params["nproc"] = args.workers
        steps = ["cropping", "registration_calculation"]
        ref = run_pystack3d_subprocess(files.slices_dir, params, steps, scratch / "ps3d",
                                       nproc=args.workers, plots=False,
                                       timeout=3600).raise_on_error()
        result = run_ours(files.slices_dir, params, steps, scratch / "ours.zarr")
        ours = xr.open_zarr(result.store, group="steps/02_registration_calculation",
                            consolidated=False)["tmats"].values
        rows = []
        for name, tmats, seconds in [
            ("PyStack3D", ref["registration_calculation"].output("tmats.npy"),
             ref["registration_calculation"].wall_s),
            ("pystack3d-dask", ours, result.reports[-1].seconds),
        ]:
            rms, worst = residual(tmats, shifts)
            rows.append({"tool": name, "residual RMS px": rms, "max px": worst,
                         "calculation s": seconds})
        print(f"\nregistration (TRANSLATION) of the {'x'.join(map(str, args.shape))} synthetic "
              f"stack against its true drift, {len(shifts)} slices, {args.workers} workers")
        print(format_table(rows, ["tool", "residual RMS px", "max px", "calculation s"]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
