"""3D background removal and intensity rescaling: pystack3d-dask against PyStack3D.

Usage::

    python benchmarks/bkg_intensity.py [--sizes 350x600x640 700x600x640] [--workers 2]
                                       [--skip-quality] [--dir TMP]

For each size, in one run and on the same TIFF slices (uint8, written one slice at a
time), PyStack3D (pip ``pystack3d``, ``nproc`` = workers) and this project (``workers``)
each run ``bkg_removal`` (3D, orders [1, 2, 1] with cross terms, HuberT, preserve_avg)
and ``intensity_rescaling`` (256 bins, mean histogram) from the raw slices, each in a
process of its own. Printed: the step's wall time, the peak memory (summed RSS of the
whole process tree, sampled), and the ratios. This project's input is ingested into
its store beforehand, in a separate process (PyStack3D reads the TIFF files directly).

Then, on the synthetic stack with ground truth (default size), both run cropping ->
bkg_removal -> intensity_rescaling and the error against the truth is printed before and
after each step.
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

from harness import format_bytes, format_table, measure, measure_function, ratio  # noqa: E402

BKG = {"dim": 3, "orders": [1, 2, 1], "cross_terms": True, "skip_factors": [10, 10, 10],
       "threshold_min": 2, "weight_func": "HuberT", "preserve_avg": True}
RESCALING = {"nbins": 256, "filter_size": -1}


def write_slices(folder: Path, nz: int, ny: int, nx: int, seed: int = 0) -> None:
    """FIB-SEM-like uint8 slices with a 3D background and gain jumps, one at a time."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    big = ndimage.gaussian_filter(rng.random((ny, nx)), 20)
    small = ndimage.gaussian_filter(rng.random((ny, nx)), 3)
    structure = 0.7 * (big - big.mean()) / big.std() + 0.3 * (small - small.mean()) / small.std()
    yy, xx = np.mgrid[0:ny, 0:nx]
    for k in range(nz):
        z = k / max(nz - 1, 1)
        drift = np.roll(structure, k // 7, axis=1)  # slow change along z
        bkg = 25 * xx / nx - 15 * (yy / ny) ** 2 + 20 * z
        gain = 1.15 if k % 50 == 25 else 1.0
        img = (110 + 30 * drift + bkg) * gain + rng.normal(0, 6, (ny, nx))
        tifffile.imwrite(folder / f"slice_{k:04d}_z={k * 0.01:.4f}um.tif",
                         np.clip(img, 0, 255).astype(np.uint8))



def _pystack3d(slices: Path, params: dict, step: str, work: Path, workers: int) -> tuple:
    from pystack3d_runner import run_pystack3d_subprocess

    res = run_pystack3d_subprocess(slices, params, [step], work, nproc=workers, plots=False,
                                   launcher=measure, load_stacks=False, timeout=3600)
    res.raise_on_error()
    return res[step].wall_s, res.measurement.peak_rss_bytes


def _ours(slices: Path, params: dict, step: str, store: Path, workers: int) -> tuple:
    wf = copy.deepcopy(params)
    wf.update({"project_dir": str(slices), "process_steps": [],
               "store": {"path": str(store)},
               "scheduler": {"name": "threads", "workers": workers}})
    measure_function("harness:run_workflow", wf, sys_path=[HERE]).check()  # ingest only
    wf["process_steps"] = [step]
    m = measure_function("harness:run_workflow", wf, sys_path=[HERE])
    m.check()
    return m.result[step], m.peak_rss_bytes


def idle_memory() -> tuple[int, int]:
    """Peak RSS of an interpreter that only imports each package (PyStack3D, ours)."""
    from harness import measure_python

    ref = measure_python("import pystack3d.stack3d, pystack3d.bkg_removal, "
                         "pystack3d.intensity_rescaling")
    # what a run of one step imports (distributed is not: tests/store/test_store_metadata.py)
    own = measure_python("import pystack3d_dask, pystack3d_dask.steps, pystack3d_dask.workflow.pipeline, "
                         "dask.array, dask.threaded, xarray, zarr")
    return ref.check().peak_rss_bytes, own.check().peak_rss_bytes


def speed_and_memory(sizes: list[tuple[int, int, int]], workers: int, scratch: Path) -> None:
    params = {"bkg_removal": BKG, "intensity_rescaling": RESCALING}
    idle_ref, idle_own = idle_memory()
    rows = []
    for nz, ny, nx in sizes:
        slices = scratch / f"in-{nz}" / "slices"
        write_slices(slices, nz, ny, nx)
        for step in ("bkg_removal", "intensity_rescaling"):
            t_ref, m_ref = _pystack3d(slices, params, step, scratch / f"ps3d-{nz}-{step}", workers)
            t_own, m_own = _ours(slices, params, step, scratch / f"ours-{nz}-{step}.zarr", workers)
            rows.append({"stack": f"{nz}x{ny}x{nx}", "step": step,
                         "PyStack3D s": t_ref, "ours s": t_own,
                         "time ratio": ratio(t_own, t_ref),
                         "PyStack3D peak": format_bytes(m_ref), "ours peak": format_bytes(m_own),
                         "memory ratio": ratio(m_own, m_ref),
                         "work ratio": ratio(m_own - idle_own, m_ref - idle_ref), "_m": m_own})
        shutil.rmtree(slices.parent)
    print(f"\nbkg_removal (3D) and intensity_rescaling, {workers} workers each "
          "(ratio = ours / PyStack3D)")
    cols = ["stack", "step", "PyStack3D s", "ours s", "time ratio", "PyStack3D peak",
            "ours peak", "memory ratio", "work ratio"]
    print(format_table(rows, cols))
    print(f"idle interpreter with the package imported: PyStack3D {format_bytes(idle_ref)}, "
          f"ours {format_bytes(idle_own)}; work ratio = (peak - idle) ours / PyStack3D")
    if len(sizes) == 2:
        for step in ("bkg_removal", "intensity_rescaling"):
            small, large = (r["_m"] for r in rows if r["step"] == step)
            print(f"{step}: peak memory at {sizes[1][0]} slices / at {sizes[0][0]} slices = "
                  f"{large / small:.2f}")


def quality_table(workers: int, scratch: Path) -> None:
    import tomllib

    import xarray as xr
    from pystack3d_runner import run_pystack3d_subprocess

    import pystack3d_dask as p3d
    from pystack3d_dask.datasets.quality import quality, quality_table
    from pystack3d_dask.datasets.synthetic import load_truth, write_synthetic

    files = write_synthetic(scratch / "syn")
    params = tomllib.loads(files.workflow.read_text())
    steps = ["cropping", "bkg_removal", "intensity_rescaling"]
    ref = run_pystack3d_subprocess(files.slices_dir, params, steps, scratch / "ps3d-q",
                                   nproc=workers, plots=False, timeout=3600).raise_on_error()
    wf = copy.deepcopy(params)
    wf.update({"project_dir": str(files.slices_dir), "process_steps": steps,
               "store": {"path": str(scratch / "q.zarr")}})
    result = p3d.run(wf, progress=False)
    truth = load_truth(files.truth)
    rows = {"input": quality(p3d.open_result(result.store, "input"), truth)}
    for step in steps:
        own = p3d.open_result(result.store, step)
        rows[f"{step} (ours)"] = quality(own, truth)
        theirs = xr.DataArray(ref[step].stack[None], dims=own.dims, coords=own.coords)
        rows[f"{step} (PyStack3D)"] = quality(theirs, truth)
    print("\nerror against the ground truth, synthetic default stack, after each step")
    print(quality_table(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["350x600x640", "700x600x640"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-bkg-"))
    try:
        if not args.skip_quality:
            quality_table(args.workers, scratch)
        speed_and_memory(sizes, args.workers, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
