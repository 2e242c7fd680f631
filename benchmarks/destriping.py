"""Destriping (VSNR and wavelet-Fourier): pystack3d-dask against PyStack3D, quality and speed.

Usage::

    python benchmarks/destriping.py [--shape 200 300 340] [--slices 200] [--size 1024]
                                    [--maxit 20] [--workers 2] [--skip-quality] [--skip-speed]

Quality: the synthetic stack with its curtains and noise only (no drift, background,
gain or missing slices, so that every acquired slice lies on its truth slice), cropped
then destriped by PyStack3D (every slice), by this project on every slice, and by this
project with ``only_striped`` (automatic threshold). Printed per method: MAE, PSNR and
SSIM against the truth on the striped and on the clean slices, the step's time, and how
many slices were treated.

Speed: ``--slices`` slices of ``--size`` squared uint8 (a smooth structure with noise,
curtains on a third of the slices, written one slice at a time), in one run on the same
files: PyStack3D with ``nproc`` = workers, this project on every slice with 1 and with
``workers`` workers, and with ``only_striped``. Printed: the destriping step's wall
time, the ratio to PyStack3D, the 1 -> N speed-up, and seconds per treated slice.
"""

from __future__ import annotations

import argparse
import copy
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

GABOR = [{"name": "Gabor", "noise_level": 20, "sigma": [0.5, 200], "theta": 0}]
WAVELET = {"wavelet": "coif3", "level": 4, "sigma": 4}


def _methods(maxit: int) -> dict[str, dict]:
    return {"vsnr": {"maxit": maxit, "cvg_threshold": 1e-2, "filters": GABOR},
            "wavelet": {"wavelet_decomposition": WAVELET}}


def _scores(out: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from skimage.metrics import structural_similarity

    diff = out.astype(np.float64) - truth.astype(np.float64)
    mse = float(np.mean(diff**2))
    ssim = np.mean([structural_similarity(o, t, data_range=255) for o, t in zip(out, truth)])
    return {"MAE": float(np.abs(diff).mean()), "PSNR": 10 * np.log10(255**2 / mse),
            "SSIM": float(ssim)}


def quality(shape: tuple[int, int, int], maxit: int, workers: int, scratch: Path) -> None:
    """Error against the truth, striped and clean slices apart."""
    import tomllib

    import xarray as xr
    from helpers import run_ours
    from pystack3d_runner import run_pystack3d_subprocess

    import pystack3d_dask as p3d
    from pystack3d_dask.datasets.synthetic import write_synthetic
    from pystack3d_dask.kernels.cropping import area_to_slices

    files = write_synthetic(scratch / "syn", shape=shape, drift=False, background=False,
                            gain=False, missing=False)
    syn = files.synthetic
    base = tomllib.loads(files.workflow.read_text())
    rows_, cols_, _ = area_to_slices(base["cropping"]["area"], syn.stack.shape[1:])
    truth = syn.truth[syn.kept][:, rows_, cols_]
    raw = syn.stack[:, rows_, cols_]
    striped = syn.curtains
    steps = ["cropping", "destriping"]
    rows = [{"method": "-", "run": "input (not destriped)", **_split(raw, truth, striped)}]
    for method, table in _methods(maxit).items():
        params = copy.deepcopy(base)
        params["destriping"] = table
        params["nproc"] = workers
        ref = run_pystack3d_subprocess(files.slices_dir, params, steps, scratch / f"ps3d-{method}",
                                       nproc=workers, plots=False, timeout=3600).raise_on_error()
        theirs = ref["destriping"].stack[:, : truth.shape[1], : truth.shape[2]]
        rows.append({"method": method, "run": "PyStack3D", **_split(theirs, truth, striped),
                     "s": ref["destriping"].wall_s, "treated": len(theirs)})
        for label, extra in [("ours, every slice", {}),
                             ("ours, only_striped", {"only_striped": True})]:
            params["destriping"] = {**table, **extra}
            store = scratch / f"ours-{method}-{len(extra)}.zarr"
            result = run_ours(files.slices_dir, params, steps, store)
            ours = p3d.open_result(store, "destriping").values[0]
            ds = xr.open_zarr(store, group="steps/02_destriping", consolidated=False)
            rows.append({"method": method, "run": label, **_split(ours, truth, striped),
                         "s": result.reports[-1].seconds,
                         "treated": int(ds["treated"].values.sum())})
    print(f"\ndestriping quality on the {'x'.join(map(str, shape))} synthetic stack (curtains and "
          f"noise only): {int(striped.sum())} striped and {int((~striped).sum())} clean slices, "
          f"{workers} workers, VSNR maxit {maxit}")
    cols = ["method", "run", "striped MAE", "striped PSNR", "striped SSIM", "clean MAE",
            "clean PSNR", "clean SSIM", "s", "treated"]
    print(format_table(rows, cols))


def _split(out: np.ndarray, truth: np.ndarray, striped: np.ndarray) -> dict[str, float]:
    row = {}
    for name, mask in [("striped", striped), ("clean", ~striped)]:
        for key, value in _scores(out[mask], truth[mask]).items():
            row[f"{name} {key}"] = value
    return row


def write_slices(folder: Path, nz: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth structure and noise, with vertical curtains on a third of the slices."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random((size, size)), 8)
    field = (field - field.min()) / np.ptp(field)
    profile = np.zeros(size)
    profile[rng.choice(size, size // 40, replace=False)] = rng.uniform(-25, 25, size // 40)
    stripes = np.broadcast_to(ndimage.gaussian_filter1d(profile, 1.0) * 2.5, (size, size))
    striped = rng.random(nz) < 1 / 3
    for k in range(nz):
        img = 60 + 140 * np.roll(field, k, axis=0) + rng.normal(0, 5, (size, size))
        if striped[k]:
            img = img + stripes
        tifffile.imwrite(folder / f"slice_{k:04d}_z={k * 0.01:.4f}um.tif",
                         np.clip(img, 0, 255).astype(np.uint8))
    return striped


def speed(nz: int, size: int, maxit: int, workers: int, scratch: Path) -> None:
    """Wall time of the destriping step, same files, same cores."""
    from pystack3d_runner import run_pystack3d_subprocess

    slices = scratch / "slices"
    striped = write_slices(slices, nz, size)
    wf0 = {"project_dir": str(slices), "process_steps": [],
           "store": {"path": str(scratch / "ingested.zarr")}}
    measure_function("harness:run_workflow", wf0, sys_path=[HERE]).check()  # ingest once
    rows = []
    runs = 0
    for method, table in _methods(maxit).items():
        params = {"destriping": table}
        ref = run_pystack3d_subprocess(slices, params, ["destriping"], scratch / f"ps3d-{method}",
                                       nproc=workers, plots=False, load_stacks=False,
                                       timeout=7200).raise_on_error()
        reference = ref["destriping"].wall_s
        times = {}
        for label, w, extra in [("every slice", 1, {}), ("every slice", workers, {}),
                                ("only_striped", workers, {"only_striped": True})]:
            # a store of its own (a copy of the ingested one), or the step would be reused
            runs += 1
            store = scratch / f"run{runs}.zarr"
            shutil.copytree(wf0["store"]["path"], store)
            wf = copy.deepcopy(wf0)
            wf.update(process_steps=["destriping"], destriping={**table, **extra},
                      scheduler={"name": "threads", "workers": w}, store={"path": str(store)})
            m = measure_function("harness:run_workflow", wf, sys_path=[HERE])
            m.check()
            times[(label, w)] = m.result["destriping"]
            shutil.rmtree(store)
        for (label, w), seconds in times.items():
            treated = int(striped.sum()) if label == "only_striped" else nz
            rows.append({"method": method, "run": f"ours, {label}, {w}w", "s": seconds,
                         "PyStack3D s": reference, "ratio": ratio(seconds, reference),
                         "s / treated slice": seconds / max(treated, 1), "treated": treated})
        rows.append({"method": method, "run": "1->N speed-up (every slice)",
                     "s": ratio(times[("every slice", 1)], times[("every slice", workers)])})
    print(f"\ndestriping speed, {nz} x {size} x {size} uint8 ({int(striped.sum())} striped), "
          f"PyStack3D nproc = {workers}; ratio = ours / PyStack3D; VSNR maxit {maxit}")
    print(format_table(rows, ["method", "run", "s", "PyStack3D s", "ratio", "s / treated slice",
                              "treated"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[200, 300, 340])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--maxit", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-destripe-"))
    try:
        if not args.skip_quality:
            quality(tuple(args.shape), args.maxit, args.workers, scratch / "quality")
        if not args.skip_speed:
            speed(args.slices, args.size, args.maxit, args.workers, scratch / "speed")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
