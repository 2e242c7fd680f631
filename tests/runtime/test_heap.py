"""The heap settings that keep slice-sized buffers from costing fresh pages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")

# 50 slices' worth of 4 MiB buffers, made and dropped as a per-slice task does; prints
# the minor page faults they cost
SCRIPT = """
import resource, sys
import numpy as np
from pystack3d_dask.runtime.heap import keep_heap
kept = keep_heap() if sys.argv[1] == "keep" else False
img = np.ones((1024, 1024), np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    out = img * 0.5
    out += img * 0.25
    del out
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


# two threads each hold a 1 MiB buffer while glibc describes its heaps: one <heap> per
# arena in use
ARENAS = """
import ctypes, sys, threading
import numpy as np
from pystack3d_dask.runtime.heap import keep_heap
kept = keep_heap() if sys.argv[1] == "keep" else False
both_hold = threading.Barrier(3)
described = threading.Barrier(3)
def work():
    held = np.ones((512, 512), np.float32)
    both_hold.wait()
    described.wait()
threads = [threading.Thread(target=work) for _ in range(2)]
for t in threads:
    t.start()
both_hold.wait()
libc = ctypes.CDLL("libc.so.6")
libc.fdopen.restype = ctypes.c_void_p
out = ctypes.c_void_p(libc.fdopen(1, b"w"))
sys.stdout.flush()
libc.malloc_info(0, out)
libc.fflush(out)
described.wait()
for t in threads:
    t.join()
"""


def _arenas(mode: str, **env: str) -> int:
    done = subprocess.run([sys.executable, "-c", ARENAS, mode], capture_output=True,
                          text=True, env={**os.environ, **env}, check=True)
    return done.stdout.count("<heap nr=")


def _faults(mode: str, **env: str) -> tuple[bool, int]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                          env={**os.environ, **env}, check=True)
    kept, faults = done.stdout.split()
    return kept == "True", int(faults)


@glibc
def test_keep_heap_reuses_slice_buffers_instead_of_fresh_pages():
    kept, with_keep = _faults("keep")
    assert kept
    default_kept, default = _faults("default")
    assert not default_kept
    # default: a fresh map of 4 MiB (~1000 faults) an iteration, ~50 000 in all;
    # kept: the first two buffers' pages, then none
    assert default > 20_000
    assert with_keep < default / 10


@glibc
def test_keep_heap_can_be_turned_off():
    kept, faults = _faults("keep", PYSTACK3D_DASK_MALLOC="system")
    assert not kept
    assert faults > 20_000


@glibc
def test_keep_heap_gives_threads_one_arena():
    """Per-thread arenas delete their maps as soon as they are free, which made two VSNR
    threads cost twenty times the page faults of one."""
    assert _arenas("default") == 3  # the main arena and one per thread
    assert _arenas("keep") == 1
    assert _arenas("keep", PYSTACK3D_DASK_MALLOC="system") == 3


def test_release_heap_and_keep_heap_are_safe_to_call_again():
    from pystack3d_dask.runtime.heap import keep_heap, release_heap

    first = keep_heap()
    assert keep_heap() == first
    release_heap()


@glibc
def test_local_cluster_workers_keep_the_heap_too():
    """distributed's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536; the cluster
    this package starts gets the heap settings through a worker plugin."""
    from pystack3d_dask.runtime.cluster import executor

    def state() -> tuple[bool, str | None]:
        from pystack3d_dask.runtime import heap

        return heap._kept, os.environ.get("MALLOC_TRIM_THRESHOLD_")

    with executor("local", workers=1, progress=False) as ex:
        (kept, trim), = ex.client.run(state).values()
    assert kept
    assert trim == "65536"  # the nanny's setting, overridden at run time by mallopt
