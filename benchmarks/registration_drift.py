"""Residual misalignment after registration, against the synthetic stack's true drift.

Usage::

    python benchmarks/registration_drift.py [--shape 200 300 340] [--workers 2] [--sigma 1 2]

The synthetic stack records the shift (dy, dx) applied to every acquired slice. After
``registration_calculation``, the cumulative translation of slice k should equal its
shift relative to the first slice. Printed for PyStack3D and this project, same stack,
same workflow: the residual RMS (pixels) over the slices, its maximum, and the wall time
of the calculation; then this project with its ``gaussian_sigma`` option; and last the
floor of any pairwise chain on this stack: the defect-free truth registered pair by pair
(its true drift is zero, so whatever it finds is 3D structure read as motion).
"""

from __future__ import annotations

import argparse
import copy
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


def _truth_floor(files, params: dict, workers: int) -> np.ndarray:
    """Matrices found by registering the defect-free truth pair by pair, with the
    workflow's cropping and area: the residual these give is the error of the pairwise
    chain itself (3D structure seen as motion), which no choice of reference slice pair
    removes."""
    from concurrent.futures import ProcessPoolExecutor

    from pystack3d_dask.kernels.cropping import area_to_slices
    from pystack3d_dask.kernels.registration import pair_matrices

    syn = files.synthetic
    truth = syn.truth[syn.kept]
    for area in (params["cropping"]["area"], params["registration_calculation"]["area"]):
        rows, cols, _ = area_to_slices(area, truth.shape[1:])
        truth = truth[:, rows, cols]
    truth = truth.astype(np.float64)
    with ProcessPoolExecutor(workers) as pool:
        pairs = list(pool.map(pair_matrices, truth[:-1], truth[1:], chunksize=8))
    return np.concatenate([np.identity(3)[None, None], np.asarray(pairs)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[200, 300, 340])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sigma", type=float, nargs="*", default=[1.0],
                        help="gaussian_sigma values of this project's option to measure too")
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
        runs = [
            ("PyStack3D", ref["registration_calculation"].output("tmats.npy"),
             ref["registration_calculation"].wall_s, shifts),
            ("pystack3d-dask", ours, result.reports[-1].seconds, shifts),
        ]
        for sigma in args.sigma:
            option = copy.deepcopy(params)
            option["registration_calculation"]["gaussian_sigma"] = sigma
            res = run_ours(files.slices_dir, option, steps, scratch / f"ours-{sigma}.zarr")
            tm = xr.open_zarr(res.store, group="steps/02_registration_calculation",
                              consolidated=False)["tmats"].values
            runs.append((f"pystack3d-dask gaussian_sigma={sigma:g}", tm, res.reports[-1].seconds,
                         shifts))
        runs.append(("floor: the truth itself, pair by pair", _truth_floor(files, params, args.workers),
                     float("nan"), np.zeros_like(shifts)))
        rows = []
        pystack3d_rms = None
        for name, tmats, seconds, truth_shifts in runs:
            rms, worst = residual(tmats, truth_shifts)
            pystack3d_rms = rms if pystack3d_rms is None else pystack3d_rms
            rows.append({"tool": name, "residual RMS px": rms, "max px": worst,
                         "RMS / PyStack3D": rms / pystack3d_rms, "calculation s": seconds})
        print(f"\nregistration (TRANSLATION) of the {'x'.join(map(str, args.shape))} synthetic "
              f"stack against its true drift, {len(shifts)} slices, {args.workers} workers")
        print(format_table(rows, ["tool", "residual RMS px", "max px", "RMS / PyStack3D",
                                  "calculation s"]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
