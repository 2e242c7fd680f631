"""Bytes on disk per step: each codec of the store against PyStack3D's TIFF folders.

Usage::

    python benchmarks/disk_footprint.py [--sizes 200x300x340:uint8 400x1024x1024:uint16]
                                        [--workers 2] [--skip-pystack3d] [--dir TMP]

For each stack (the synthetic generator, every defect on, in the dtype given), in one
run:

1. this project runs the synthetic workflow once, every checkpoint kept, without
   compression (for 1024 x 1024 slices without ``destriping``, whose VSNR would take
   most of the hour; said in the output);
2. every checkpoint's slices are then written again with each codec through the store's
   own write path (timed: write throughput), and read back (timed: read throughput),
   throughput counted in uncompressed bytes;
3. PyStack3D (pip ``pystack3d``) runs the same steps on the same slices, and the bytes of
   each of its ``process/<step>`` folders are counted.

Printed: bytes per step and in total for every codec and for PyStack3D, throughputs,
and the store's total with ``[store] keep = "last"`` against the input TIFF files.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from harness import format_bytes, format_table  # noqa: E402

CODECS = [("none", 0), ("zstd", 1), ("zstd", 3), ("blosc-zstd", 3),
          ("blosc-lz4", 5)]


def folder_bytes(folder: Path) -> int:
    """Bytes of every file below a folder (a file hard-linked twice counted once)."""
    sizes = {}
    for path in folder.rglob("*"):
        if path.is_file():
            stat = path.stat()
            sizes[stat.st_ino] = stat.st_size
    return sum(sizes.values())


def rewrite(raw_store: Path, groups: list[str], out: Path, codec: tuple[str, int],
            workers: int) -> list[dict]:
    """Each group's slices written again with one codec, as the pipeline writes them
    (a step that leaves the slices unchanged hard-links its input's files), then read
    back; ``bytes``: what each group adds to the disk (files not already counted)."""
    import dask

    from pystack3d_dask.steps import get_step
    from pystack3d_dask.store.checkpoints import Store, make_compressors

    src = Store(raw_store, create=False)
    dst = Store(out, make_compressors(*codec))
    rows = []
    seen: set[int] = set()
    for i, group in enumerate(groups):
        stack = src.open_stack(group)
        raw = stack.size * stack.dtype.itemsize
        step = (src.attrs(group) or {}).get("step", group)
        link = groups[i - 1] if i and step != "input" and get_step(step).passthrough else None
        start = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=workers):
            dst.write(group, stack, "bench", link_from=link)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=workers):
            dst.open_stack(group).data.map_blocks(lambda b: np.zeros((1,) * b.ndim),
                                                  chunks=(1, 1, 1, 1)).sum().compute()
        read_s = time.perf_counter() - start
        added = 0
        for path in (out / group / "stack").rglob("*"):
            if path.is_file():
                stat = path.stat()
                if stat.st_ino not in seen:
                    seen.add(stat.st_ino)
                    added += stat.st_size
        rows.append({"group": group, "bytes": added, "raw": raw, "linked": link is not None,
                     "write MB/s": raw / write_s / 1e6, "read MB/s": raw / read_s / 1e6})
    return rows


def measure_stack(shape: tuple[int, int, int], dtype: str, workers: int, scratch: Path,
                  with_pystack3d: bool) -> None:
    from pystack3d_runner import run_pystack3d_subprocess

    import pystack3d_dask as p3d
    from pystack3d_dask.datasets.synthetic import write_synthetic

    label = f"{'x'.join(map(str, shape))} {dtype}"
    files = write_synthetic(scratch / "syn", shape=shape, dtype=dtype)
    params = tomllib.loads(files.workflow.read_text())
    steps = list(params["process_steps"])
    if shape[1] * shape[2] > 600_000 and "destriping" in steps:
        steps.remove("destriping")
        print(f"{label}: without destriping (VSNR on every slice of this size takes most of "
              "an hour on 2 cores)")
    input_bytes = folder_bytes(files.slices_dir)

    wf = copy.deepcopy(params)
    wf.update({"project_dir": str(files.slices_dir), "process_steps": steps,
               "store": {"path": str(scratch / "raw.zarr"), "compressor": "none"},
               "scheduler": {"name": "threads", "workers": workers}})
    start = time.perf_counter()
    result = p3d.run(wf, progress=False)
    print(f"{label}: workflow run in {time.perf_counter() - start:.1f} s")
    groups = [r.group for r in result.reports]

    per_codec = {}
    for codec in CODECS:
        name = f"{codec[0]}-{codec[1]}" if codec[0] != "none" else "none"
        out = scratch / f"{name}.zarr"
        per_codec[name] = rewrite(result.store, groups, out, codec, workers)
        shutil.rmtree(out)

    reference = {}
    if with_pystack3d:
        ref_params = copy.deepcopy(params)
        ref = run_pystack3d_subprocess(files.slices_dir, ref_params, steps, scratch / "ps3d",
                                       nproc=workers, plots=False, load_stacks=False,
                                       timeout=7200)
        ref.raise_on_error()
        process = scratch / "ps3d" / "pystack3d_project" / "process"
        reference = {step: folder_bytes(process / step) for step in steps}

    rows = []
    for i, group in enumerate(groups):
        step = group.split("_", 1)[-1] if group != "input" else "input"
        row = {"group": group,
               "PyStack3D": format_bytes(reference.get(step, input_bytes if group == "input"
                                                      else None))}
        for name, values in per_codec.items():
            row[name] = format_bytes(values[i]["bytes"])
        rows.append(row)
    totals = {"group": "total (every checkpoint)",
              "PyStack3D": format_bytes(input_bytes + sum(reference.values())
                                        if reference else None)}
    for name, values in per_codec.items():
        totals[name] = format_bytes(sum(v["bytes"] for v in values))
    rows.append(totals)
    columns = ["group", "PyStack3D", *per_codec]
    print(f"\n{label}: bytes on disk per step (PyStack3D: its input TIFF files, then each "
          "process/<step> folder; here what each checkpoint adds: registration_calculation "
          "hard-links its input's files)")
    print(format_table(rows, columns))

    speed = []
    for name, values in per_codec.items():
        written = [v for v in values if not v["linked"]]
        raw = sum(v["raw"] for v in written)
        stored = sum(v["bytes"] for v in written)
        speed.append({"codec": name, "ratio raw/stored": raw / stored,
                      "write MB/s": np.median([v["write MB/s"] for v in written]),
                      "read MB/s": np.median([v["read MB/s"] for v in values])})
    print(f"\n{label}: codecs (median over the groups, MB/s of uncompressed slices, "
          f"{workers} threads)")
    print(format_table(speed, ["codec", "ratio raw/stored", "write MB/s", "read MB/s"]))

    default = per_codec["zstd-3"]
    last = default[-1]["bytes"]
    print(f"\n{label}: input TIFF files {format_bytes(input_bytes)}; with keep = \"last\" "
          f"(zstd-3) the store holds {format_bytes(last)} of slices = "
          f"{last / input_bytes:.2f} x the input; every checkpoint kept (zstd-3): "
          f"{sum(v['bytes'] for v in default) / input_bytes:.2f} x the input"
          + (f"; PyStack3D, input + every step: "
             f"{(input_bytes + sum(reference.values())) / input_bytes:.2f} x" if reference
             else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["200x300x340:uint8",
                                                       "400x1024x1024:uint16"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-pystack3d", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    for spec in args.sizes:
        dims, _, dtype = spec.partition(":")
        shape = tuple(int(v) for v in dims.split("x"))
        scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-disk-"))
        try:
            measure_stack(shape, dtype or "uint8", args.workers, scratch,
                          not args.skip_pystack3d)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
