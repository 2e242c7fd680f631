"""What checking the input's identity costs, against the ingest it protects.

Usage::

    python benchmarks/input_identity.py [--slices 2000] [--size 2048] [--workers 2] [--dir TMP]

Writes a stack of uint16 TIFF slices, then, on the same files and with every file's pages
dropped from the OS cache before each measurement (``posix_fadvise``, no root needed):

* ``fingerprints``: the size, time and hash of the first and last 64 KiB of every file,
  which is all the identity check adds to an ingest (``discover`` computes it);
* ``ingest``: ``discover`` + the checkpointed write of the ``input`` group (zstd), the
  reference for the 5 % target;
* ``re-run check``: ``discover`` + ``check_same_input`` on the unchanged folder, which is
  what every later run pays;
* ``touched check``: the same after every file's modification time moved (a copied
  folder): the pixels are compared with the stored slices once, then the manifest takes
  the new times, and the next check (``after touch``) is back to fingerprints only;
* ``edit caught``: one slice edited in the middle with its size kept, which the check must
  refuse.

Prints each time and its share of the ingest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from pystack3d_dask.errors import StoreError
from pystack3d_dask.io.identity import check_same_input
from pystack3d_dask.io.tiff import discover, file_fingerprint, lazy_stack
from pystack3d_dask.runtime.cluster import executor
from pystack3d_dask.store.checkpoints import Store, make_compressors


def make_slices(folder: Path, n: int, size: int) -> list[Path]:
    """Slices that differ from each other (a few noise fields, shifted per slice)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    fields = [rng.normal(20000, 3000, (size, size)).clip(0, 65535).astype(np.uint16)
              for _ in range(4)]
    paths = []
    for k in range(n):
        path = folder / f"slice_{k:04d}_z={k * 0.01:.4f}um.tif"
        tifffile.imwrite(path, np.roll(fields[k % 4], k, axis=1))
        paths.append(path)
    return paths


def evict(root: Path) -> None:
    """Drop the pages of every file under ``root`` from the OS cache (written first)."""
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def timed(scratch: Path, action) -> tuple[float, object]:
    evict(scratch)
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def ingest(folder: Path, store: Store, workers: int) -> None:
    source = discover(folder)
    with executor("threads", workers, progress=False) as ex:
        store.write("input", lazy_stack(source), "bench",
                    {"source": {"root": str(source.root.resolve())},
                     "manifest": source.manifest}, compute=ex.as_compute("ingest"))


def edit_middle(path: Path) -> None:
    """Change a few pixels in the middle of the slice, keeping its size and both ends."""
    img = tifffile.imread(path)
    img[img.shape[0] // 2, :8] ^= 1
    tifffile.imwrite(path, img)


def check(folder: Path, store: Store) -> str:
    try:
        check_same_input(store, discover(folder))
    except StoreError as err:
        return f"refused: {str(err)[:70]}..."
    return "accepted"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=2000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: tmp)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-identity-"))
    try:
        folder = scratch / "slices"
        paths = make_slices(folder, args.slices, args.size)
        store = Store(scratch / "store.zarr", make_compressors("zstd", 3))
        rows = []
        t_fp, _ = timed(scratch, lambda: [file_fingerprint(p) for p in paths])
        t_ingest, _ = timed(scratch, lambda: ingest(folder, store, args.workers))
        rows += [("fingerprints", t_fp, ""), ("ingest", t_ingest, "")]
        t, verdict = timed(scratch, lambda: check(folder, store))
        rows.append(("re-run check", t, verdict))
        now = time.time()
        for path in paths:
            os.utime(path, (now, now))
        t, verdict = timed(scratch, lambda: check(folder, store))
        rows.append(("touched check", t, verdict))
        t, verdict = timed(scratch, lambda: check(folder, store))
        rows.append(("after touch", t, verdict))
        edit_middle(paths[len(paths) // 2])
        t, verdict = timed(scratch, lambda: check(folder, store))
        rows.append(("edit caught", t, verdict))
        gb = args.slices * args.size ** 2 * 2 / 1e9
        print(f"\ninput identity on {args.slices} x {args.size} x {args.size} uint16 "
              f"({gb:.1f} GB), {args.workers} workers, OS cache dropped before each line")
        print(f"{'':<14} {'s':>8} {'of ingest':>10}  verdict")
        for name, seconds, verdict in rows:
            print(f"{name:<14} {seconds:>8.2f} {100 * seconds / t_ingest:>9.1f}%  {verdict}")
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
