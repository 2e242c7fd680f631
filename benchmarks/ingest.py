"""Ingest throughput: pystack3d-dask against a plain tifffile read + zarr write.

Usage::

    python benchmarks/ingest.py [--slices 200] [--size 1024] [--workers 2] [--dir TMP]
    python benchmarks/ingest.py --pages 200 2000 [--size 256]

Writes a stack of uint16 TIFF slices (random structure, compressible like a micrograph),
then, in the same run and on the same files:

* baseline: a loop reading each slice with tifffile and writing it into a zarr v3 array
  (chunks of one slice, same codec);
* pystack3d-dask: ``discover`` (header checks and input manifest) + the checkpointed
  write of the ``input`` group, one task per slice on the threaded scheduler.

Prints a table of MB/s (uncompressed bytes of the stack / wall time) and the ratio.

With ``--pages N1 N2 ...``: the same stack written instead as one multi-page TIFF file of
each length (pages written one by one, so that no reader can take them for one
contiguous block), ingested by pystack3d-dask; prints MB/s per length. Ingest linear in
the pages gives the same MB/s at every length.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import zarr
from scipy import ndimage

from pystack3d_dask.io.tiff import discover, lazy_stack
from pystack3d_dask.runtime.cluster import executor
from pystack3d_dask.store.checkpoints import Store, make_compressors


def make_slices(folder: Path, n: int, size: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = ndimage.gaussian_filter(rng.random((size, size)), 8)
    base = (base - base.min()) / np.ptp(base)
    for k in range(n):
        img = base * 40000 + rng.normal(0, 800, (size, size)) + 5000
        tifffile.imwrite(folder / f"slice_{k:04d}_z={k * 0.01:.4f}um.tif",
                         np.clip(img, 0, 65535).astype(np.uint16))


def baseline(folder: Path, out: Path, compressors: list) -> float:
    start = time.perf_counter()
    files = sorted(folder.glob("*.tif"))
    first = tifffile.imread(files[0])
    arr = zarr.create_array(str(out), shape=(len(files), *first.shape), dtype=first.dtype,
                            chunks=(1, *first.shape), compressors=compressors)
    for k, path in enumerate(files):
        arr[k] = tifffile.imread(path)
    return time.perf_counter() - start


def ours(folder: Path, out: Path, compressors: list, workers: int) -> float:
    start = time.perf_counter()
    source = discover(folder)
    store = Store(out, compressors)
    with executor("threads", workers, progress=False) as ex:
        store.write("input", lazy_stack(source), "bench", {}, compute=ex.as_compute("ingest"))
    return time.perf_counter() - start


def make_multipage(path: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    base = ndimage.gaussian_filter(rng.random((size, size)), 8)
    base = (base - base.min()) / np.ptp(base)
    with tifffile.TiffWriter(path) as writer:
        for _ in range(n):
            img = base * 40000 + rng.normal(0, 800, (size, size)) + 5000
            writer.write(np.clip(img, 0, 65535).astype(np.uint16), metadata=None)


def multipage_scaling(scratch: Path, counts: list[int], size: int, workers: int) -> None:
    compressors = make_compressors("zstd", 3)
    print(f"\ningest of one multi-page TIFF of {size} x {size} uint16 pages, "
          f"{workers} workers, zstd")
    print(f"{'pages':>6} {'MB':>6} {'seconds':>8} {'MB/s':>7}")
    for n in counts:
        path = scratch / f"pages-{n}.tif"
        make_multipage(path, n, size)
        seconds = ours(path, scratch / f"pages-{n}.zarr", compressors, workers)
        megabytes = n * size * size * 2 / 1e6
        print(f"{n:>6} {megabytes:>6.0f} {seconds:>8.2f} {megabytes / seconds:>7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument("--pages", type=int, nargs="+", default=None,
                        help="multi-page TIFF lengths to compare instead (e.g. 200 2000)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-ingest-"))
    try:
        if args.pages:
            multipage_scaling(scratch, args.pages, args.size, args.workers)
            return
        folder = scratch / "slices"
        make_slices(folder, args.slices, args.size)
        megabytes = args.slices * args.size * args.size * 2 / 1e6
        rows = []
        for codec in ("zstd", "none"):
            compressors = make_compressors(codec, 3)
            t_base = baseline(folder, scratch / f"base-{codec}.zarr", compressors)
            t_ours = ours(folder, scratch / f"ours-{codec}.zarr", compressors, args.workers)
            rows.append((codec, megabytes / t_base, megabytes / t_ours, t_base / t_ours))
        print(f"\ningest of {args.slices} x {args.size} x {args.size} uint16 "
              f"({megabytes:.0f} MB), {args.workers} workers")
        print(f"{'codec':<6} {'tifffile+zarr MB/s':>19} {'pystack3d-dask MB/s':>20} {'ratio':>6}")
        for codec, base, own, ratio in rows:
            print(f"{codec:<6} {base:>19.0f} {own:>20.0f} {ratio:>6.2f}")
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
