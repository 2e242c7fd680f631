"""Schedulers: the threaded or multiprocessing scheduler, or a distributed LocalCluster."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dask
from dask.callbacks import Callback
from tqdm.auto import tqdm

from .errors import ConfigError

__all__ = ["Executor", "executor"]

SCHEDULERS = ("threads", "processes", "local", "synchronous")


@dataclass
class Executor:
    """Runs lists of delayed tasks on the chosen scheduler, with a progress bar.

    Attributes
    ----------
    name
        Scheduler name.
    workers
        Number of workers (threads, processes, or LocalCluster workers).
    client
        The ``distributed.Client`` of a local cluster, else None.
    """

    name: str
    workers: int
    client: Any = None
    progress: bool = True

    def compute(self, tasks: Sequence[Any], label: str = "") -> list[Any]:
        """Compute delayed objects and return their results, in order."""
        if not tasks:
            return []
        if self.client is not None:
            from distributed import as_completed

            futures = self.client.compute(list(tasks))
            with self._bar(len(futures), label) as bar:
                for _ in as_completed(futures):
                    bar.update(1)
            return self.client.gather(futures)
        with self._bar(len(tasks), label) as bar:
            callback = _TaskCounter(bar, {t.key for t in tasks})
            with callback:
                return list(dask.compute(*tasks, scheduler=self.name,
                                         num_workers=self.workers))

    def compute_values(self, objects: Sequence[Any]) -> list[Any]:
        """Compute dask collections (small reductions) and return their values."""
        if self.client is not None:
            return self.client.gather(self.client.compute(list(objects)))
        return list(dask.compute(*objects, scheduler=self.name, num_workers=self.workers))

    def _bar(self, total: int, label: str) -> tqdm:
        return tqdm(total=total, desc=label or "slices", unit="slice", disable=not self.progress,
                    file=sys.stderr, leave=False, dynamic_ncols=True)

    def as_compute(self, label: str) -> Callable[[Sequence[Any]], list[Any]]:
        """``compute`` bound to a label, in the form :meth:`Store.write` expects."""
        return lambda tasks: self.compute(tasks, label)


class _TaskCounter(Callback):
    """Advance a progress bar when one of the watched tasks finishes."""

    def __init__(self, bar: tqdm, keys: set[Any]) -> None:
        super().__init__()
        self._bar, self._keys = bar, keys

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if key in self._keys:
            self._bar.update(1)


@contextlib.contextmanager
def executor(name: str = "threads", workers: int = 1, threads_per_worker: int = 1,
             memory_limit: str = "auto", dashboard_address: str = "127.0.0.1:0",
             progress: bool = True) -> Iterator[Executor]:
    """Start the scheduler a workflow asks for, and stop it afterwards.

    Parameters
    ----------
    name
        ``threads`` (dask's threaded scheduler), ``processes`` (multiprocessing),
        ``local`` (a ``distributed.LocalCluster`` bound to 127.0.0.1) or
        ``synchronous`` (one thread, for debugging).
    workers
        Threads, processes or cluster workers.
    threads_per_worker, memory_limit, dashboard_address
        LocalCluster settings.
    progress
        Show a progress bar per step.
    """
    if name not in SCHEDULERS:
        raise ConfigError(f"scheduler {name!r}: expected one of {list(SCHEDULERS)}")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers = {workers!r}: expected an integer >= 1")
    if name != "local":
        yield Executor(name, workers, progress=progress)
        return
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                           processes=True, memory_limit=memory_limit, host="127.0.0.1",
                           dashboard_address=dashboard_address)
    try:
        with Client(cluster) as client:
            if progress:
                print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
            yield Executor(name, workers, client=client, progress=progress)
    finally:
        cluster.close()
