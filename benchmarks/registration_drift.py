"""Residual misalignment after registration, against the synthetic stack's true drift.

Usage::

    python benchmarks/registration_drift.py [--shape 200 300 340] [--seeds 0 1 2]
        [--workers 2] [--sigma 1] [--bandpass 1.5 3]

The synthetic stack records the shift (dy, dx) applied to every acquired slice. After
``registration_calculation``, the cumulative translation of slice k should equal its
shift relative to the first slice. Printed per seed (one synthetic stack each), for
PyStack3D and this project, same stack, same workflow: the residual RMS (pixels) over
the slices, its maximum, the ratio to PyStack3D's, and the wall time of the
calculation; then this project with its ``gaussian_sigma`` and ``bandpass`` options;
then the floor of plain pairwise registration on that stack: the defect-free truth
registered pair by pair (its true drift is zero, so whatever it finds is 3D structure
read as motion), with and without the band-pass. Last, over all seeds, the RMS of each
run's residuals and its ratio to PyStack3D's.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from harness import format_table  # noqa: E402


def residual(tmats: np.ndarray, shifts: np.ndarray) -> tuple[float, float]:
    """RMS and maximum (pixels) of cumulative translation - true relative shift."""
    from pystack3d_dask.kernels.registration import cumulative

    cum = cumulative(np.asarray(tmats, dtype=np.float64).reshape(len(tmats), -1, 3, 3))[:, 0]
    found = np.stack([cum[:, 1, 2], cum[:, 0, 2]], axis=1)  # (dy, dx)
    error = found - (shifts - shifts[0])
    norms = np.hypot(error[:, 0], error[:, 1])
    return float(np.sqrt(np.mean(norms**2))), float(norms.max())


def _truth_pair(ref: np.ndarray, img: np.ndarray, rows: slice, cols: slice,
                bandpass: tuple[float, float] | None) -> np.ndarray:
    from pystack3d_dask.steps.registration import _pair

    return _pair(ref[None, None], img[None, None], rows, cols, None, "TRANSLATION", (1, 1),
                 bandpass=bandpass)


def _truth_floor(files, params: dict, workers: int,
                 bandpass: tuple[float, float] | None = None) -> np.ndarray:
    """Matrices found by registering the defect-free truth pair by pair (through the
    step's own pair function), with the workflow's cropping and area: the residual these
    give is the error of the pairwise chain itself (3D structure seen as motion)."""
    from concurrent.futures import ProcessPoolExecutor

    from pystack3d_dask.kernels.cropping import area_to_slices

    syn = files.synthetic
    truth = syn.truth[syn.kept]
    rows, cols, _ = area_to_slices(params["cropping"]["area"], truth.shape[1:])
    truth = truth[:, rows, cols]
    rows, cols, _ = area_to_slices(params["registration_calculation"]["area"], truth.shape[1:])
    n = len(truth) - 1
    with ProcessPoolExecutor(workers) as pool:
        pairs = list(pool.map(_truth_pair, truth[:-1], truth[1:], [rows] * n, [cols] * n,
                              [bandpass] * n, chunksize=8))
    return np.concatenate([np.identity(3)[None, None], np.asarray(pairs)])


def _one_seed(seed: int, args: argparse.Namespace, scratch: Path) -> list[tuple]:
    """(name, residual RMS, max, calculation seconds) of every run on one stack."""
    import xarray as xr
    from helpers import run_ours
    from pystack3d_runner import run_pystack3d_subprocess

    from pystack3d_dask.datasets.synthetic import write_synthetic

    files = write_synthetic(scratch / f"syn{seed}", shape=tuple(args.shape), seed=seed)
    shifts = np.asarray(files.synthetic.shifts, dtype=np.float64)
    params = tomllib.loads(files.workflow.read_text())
    params["nproc"] = args.workers
    steps = ["cropping", "registration_calculation"]
    ref = run_pystack3d_subprocess(files.slices_dir, params, steps, scratch / f"ps3d{seed}",
                                   nproc=args.workers, plots=False,
                                   timeout=3600).raise_on_error()
    runs = [("PyStack3D", ref["registration_calculation"].output("tmats.npy"),
             ref["registration_calculation"].wall_s, shifts)]
    options = [("pystack3d-dask", {})]
    options += [(f"pystack3d-dask gaussian_sigma={s:g}", {"gaussian_sigma": s})
                for s in args.sigma]
    band = None
    if args.bandpass:
        band = (float(args.bandpass[0]), float(args.bandpass[1]))
        options.append((f"pystack3d-dask bandpass=[{band[0]:g}, {band[1]:g}]",
                        {"bandpass": list(band)}))
    for i, (name, extra) in enumerate(options):
        option = copy.deepcopy(params)
        option["registration_calculation"].update(extra)
        res = run_ours(files.slices_dir, option, steps, scratch / f"ours{seed}-{i}.zarr")
        tm = xr.open_zarr(res.store, group="steps/02_registration_calculation",
                          consolidated=False)["tmats"].values
        runs.append((name, tm, res.reports[-1].seconds, shifts))
    zero = np.zeros_like(shifts)
    runs.append(("floor: the truth itself, pair by pair",
                  _truth_floor(files, params, args.workers), float("nan"), zero))
    if band is not None:
        runs.append((f"floor: the truth, bandpass=[{band[0]:g}, {band[1]:g}]",
                     _truth_floor(files, params, args.workers, band), float("nan"), zero))
    out = []
    for name, tmats, seconds, truth_shifts in runs:
        rms, worst = residual(tmats, truth_shifts)
        out.append((name, rms, worst, seconds))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[200, 300, 340])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="synthetic stacks to measure (seed 0 is the default stack)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sigma", type=float, nargs="*", default=[1.0],
                        help="gaussian_sigma values of this project's option to measure too")
    parser.add_argument("--bandpass", type=float, nargs="*", default=[1.5, 3.0],
                        help="[low, high] of the bandpass option (nothing: not measured)")
    args = parser.parse_args()
    if args.bandpass and len(args.bandpass) != 2:
        parser.error("--bandpass takes two sigmas, low and high")

    scratch = Path(tempfile.mkdtemp(prefix="p3d-drift-"))
    try:
        pooled: dict[str, list[float]] = {}
        for seed in args.seeds:
            results = _one_seed(seed, args, scratch)
            reference = results[0][1]
            rows = []
            for name, rms, worst, seconds in results:
                pooled.setdefault(name, []).append(rms)
                rows.append({"tool": name, "residual RMS px": rms, "max px": worst,
                             "RMS / PyStack3D": rms / reference, "calculation s": seconds})
            print(f"\nregistration (TRANSLATION) of the {'x'.join(map(str, args.shape))} "
                  f"synthetic stack, seed {seed}, against its true drift, "
                  f"{args.workers} workers")
            print(format_table(rows, ["tool", "residual RMS px", "max px", "RMS / PyStack3D",
                                      "calculation s"]))
        if len(args.seeds) > 1:
            reference = float(np.sqrt(np.mean(np.square(pooled["PyStack3D"]))))
            rows = []
            for name, values in pooled.items():
                rms = float(np.sqrt(np.mean(np.square(values))))
                rows.append({"tool": name, "residual RMS px": rms,
                             "RMS / PyStack3D": rms / reference,
                             "per seed / PyStack3D": ", ".join(
                                 f"{v / p:.2f}" for v, p in zip(values, pooled["PyStack3D"]))})
            print(f"\nover seeds {args.seeds}: RMS of the residuals")
            print(format_table(rows, ["tool", "residual RMS px", "RMS / PyStack3D",
                                      "per seed / PyStack3D"]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
