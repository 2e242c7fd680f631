"""How the C heap (glibc's malloc) treats the slice-sized buffers of the steps.

By default glibc gives every buffer above 128 KiB its own memory map, or returns the
top of the heap to the system as soon as a few MiB are free; either way the next slice's
buffers are fresh pages, and the page faults that fill them cost as much as the
arithmetic. :func:`keep_heap` keeps buffers of up to 32 MiB in the heap and freed memory
in the process during a step, and :func:`release_heap` returns it to the system between
steps, so memory still peaks at what one step holds at once.

Threads add a second source of fresh pages: glibc gives each thread its own arena, made
of maps of at most 64 MiB, and deletes a whole map as soon as it is free, whatever the
trim threshold. A VSNR slice holds more than 64 MiB at once, so worker threads would
fault its pages in again for every slice; with one arena the heap grows as one piece
and is kept. Worker threads allocate little beyond slice-sized buffers (Python's small
objects have their own allocator), so sharing the arena's lock costs nothing
measurable. The measurements are in docs/design.md ("The C heap") and
docs/performance.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

__all__ = ["keep_heap", "release_heap"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 * 1024**2  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 512 * 1024**2
_kept = False


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (musl, ...)
        return None


def keep_heap() -> bool:
    """Keep slice-sized buffers in the heap for this process (once; glibc only): large
    thresholds for memory maps and trimming, and one arena for the threads that start
    after the call (those that already hold one keep it).

    Set ``PYSTACK3D_DASK_MALLOC=system`` to leave glibc's defaults alone. Returns whether
    the settings are in force.
    """
    global _kept
    if _kept:
        return True
    if os.environ.get("PYSTACK3D_DASK_MALLOC", "").lower() == "system":
        return False
    libc = _libc()
    if libc is None:
        return False
    _kept = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                 and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
                 and libc.mallopt(_M_ARENA_MAX, 1))
    return _kept


def release_heap() -> None:
    """Return the heap's free memory to the system (between steps)."""
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(OSError, AttributeError):
            libc.malloc_trim(0)
