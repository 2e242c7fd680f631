"""A process pool for kernels that hold Python's GIL (pystackreg, pyvsnr's array code):
on the threaded scheduler, threads would otherwise run them one at a time."""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from ..errors import Pystack3dDaskError

__all__ = ["drop_pool", "gil_free_pool", "release_pool", "run_gil_free"]

T = TypeVar("T")

_POOL: ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def gil_free_pool() -> ProcessPoolExecutor | None:
    """The shared forkserver pool, or None where the caller should run in place: on the
    main thread (no scheduler threads to unblock), and in any child process (a worker of
    the multiprocessing or distributed scheduler is already a process of its own)."""
    global _POOL
    if multiprocessing.parent_process() is not None:
        return None
    if threading.current_thread() is threading.main_thread():
        return None
    with _POOL_LOCK:
        if _POOL is None:
            # forkserver, not fork: the scheduler's threads may hold locks when we fork
            context = multiprocessing.get_context("forkserver")
            _POOL = ProcessPoolExecutor(max_workers=os.cpu_count() or 1, mp_context=context,
                                        initializer=_start_worker, initargs=(os.getpid(),))
            atexit.register(_POOL.shutdown, cancel_futures=True)
        return _POOL


def _start_worker(pid: int) -> None:
    """Pool initializer: the heap settings of the run (pystackreg converts each slice to
    float64 buffers of 8 MiB at 1024 x 1024), and the watch on the parent."""
    from .heap import keep_heap

    keep_heap()
    _watch_parent(pid)


def _watch_parent(pid: int, period_s: float = 1.0) -> None:
    """Part of the pool initializer: exit when the process that made the pool is gone.

    A run killed with SIGKILL cannot shut its pool down, and the pool's processes (children
    of the forkserver, not of the run) would wait for work forever, holding memory.
    """
    def watch() -> None:
        while True:
            time.sleep(period_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # the pid was reused by another user's process
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def drop_pool(pool: ProcessPoolExecutor) -> None:
    """Forget a broken pool, so that the next call starts a new one."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is pool:
            _POOL = None
    pool.shutdown(wait=False, cancel_futures=True)


def release_pool() -> None:
    """Shut the pool down, if there is one (between steps: its idle processes hold
    memory that the next steps can use; the next call that needs it starts a new one)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def run_gil_free(func: Callable[..., T], *args: Any, what: str = "the kernel") -> T:
    """``func(*args)`` in the pool when called from a scheduler thread, else in place."""
    pool = gil_free_pool()
    if pool is None:
        return func(*args)
    try:
        return pool.submit(func, *args).result()
    except BrokenProcessPool as exc:
        drop_pool(pool)
        raise Pystack3dDaskError(
            f"a process of the pool that runs {what} stopped abruptly (killed, out of "
            "memory, or it failed to import the main script). From a Python script, call "
            "pystack3d_dask under `if __name__ == \"__main__\":`") from exc
