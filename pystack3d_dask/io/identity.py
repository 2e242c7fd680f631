"""Is the input the one a store was made from?

The manifest of an ingest records, for every input file, its size, its modification
time and a hash of its first and last 64 KiB. A file whose size or ends differ has
changed. A file whose size and ends match but whose modification time moved may have
been edited in the middle (same size, same header): its pixels are then compared with
the slices ingested from it, so that an edit is caught and a file only touched (copied
with a new time, opened and saved unchanged) is not. No hash of the whole input is
computed at ingest: the check costs nothing while the times are unchanged.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import StoreError
from ..store.checkpoints import INPUT_GROUP, Store
from .array_readers import close_readers
from .tiff import SliceSource

__all__ = ["check_same_input"]

_FIX = "use another store or ask to overwrite it (--overwrite, or [store] overwrite = true)"


def check_same_input(store: Store, source: SliceSource) -> None:
    """Refuse a store made from another input folder or from files changed since.

    Files whose modification time alone moved are compared slice by slice with what
    the store ingested from them; when they are unchanged, the store's manifest takes
    their new times, so that the next run does not compare them again.

    Raises
    ------
    StoreError
        Naming the store and the changed file, and what changed.
    """
    attrs = store.attrs(INPUT_GROUP)
    if not attrs or "source" not in attrs:
        return
    old = attrs["source"]
    if old.get("root") != source.location:
        raise StoreError(f"the store {store.path} holds another input ({old.get('root')}), not "
                         f"{source.location}; {_FIX}")
    before = {m["path"]: m for m in attrs.get("manifest", [])}
    touched = []
    for entry in source.manifest:
        seen = before.get(entry["path"])
        if seen is None:
            continue
        if (seen["size"], seen["sha256_ends"]) != (entry["size"], entry["sha256_ends"]):
            raise StoreError(f"the store {store.path} was made from a different version of "
                             f"{entry['path']} (size or content changed); {_FIX}")
        if seen.get("mtime_ns") != entry["mtime_ns"]:
            touched.append(entry)
    if not touched:
        return
    _compare_pixels(store, source, touched)
    times = {e["path"]: e["mtime_ns"] for e in touched}
    manifest = [{**m, "mtime_ns": times.get(m["path"], m.get("mtime_ns"))}
                for m in attrs.get("manifest", [])]
    store.update_attrs(INPUT_GROUP, manifest=manifest)


@contextlib.contextmanager
def _closing() -> Iterator[None]:
    """Close the array inputs opened to compare their slices, whatever the outcome."""
    try:
        yield
    finally:
        close_readers()


def _named(source: SliceSource, entry: dict[str, Any]) -> str:
    """A manifest entry's file, as the user knows it."""
    return str(source.root / entry["path"]) if source.array is None else (
        f"{entry['path']} of {source.location}")


def _modified(entry: dict[str, Any]) -> str:
    return datetime.datetime.fromtimestamp(entry["mtime_ns"] / 1e9).isoformat(
        sep=" ", timespec="seconds")


def _compare_pixels(store: Store, source: SliceSource, touched: list[dict[str, Any]]) -> None:
    """Raise unless every slice ingested from the ``touched`` files still reads the same.

    The slices are read and compared on a few threads (file reads and decompression
    release the GIL), and the first differing file in z order is named.
    """
    by_file = {e["path"]: e for e in touched}
    # an array input's metadata documents are hashed whole: only its data file (HDF5,
    # MRC) has slices to compare
    read_from = source.slices_from(set(by_file))
    if not read_from:
        return
    if store.is_removed(INPUT_GROUP):
        entry = by_file[read_from[0][2]]
        raise StoreError(f"{_named(source, entry)} was modified ({_modified(entry)}) "
                         f"after the store {store.path} ingested it, and the store no longer "
                         f"holds the ingested slices to compare with ([store] keep); {_FIX}")
    missing = set(store.missing_chunks(INPUT_GROUP, (len(source.channels), len(source.z),
                                                     *source.shape)))
    jobs = [(c, k, file) for c, k, file in read_from if (c, k) not in missing]

    def same(job: tuple[int, int, str]) -> bool:
        c, k, _ = job
        return bool(np.array_equal(source.read(c, k), store.read_slice(INPUT_GROUP, c, k)))

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool, _closing():
        for (_, k, file), ok in zip(jobs, pool.map(same, jobs)):
            if not ok:
                pool.shutdown(wait=False, cancel_futures=True)
                entry = by_file[file]
                raise StoreError(f"the store {store.path} was made from a different version "
                                 f"of {entry['path']}: modified {_modified(entry)}, same size, "
                                 f"but its pixels (slice z = {float(source.z[k]):g} um) differ "
                                 f"from those ingested; {_FIX}")
