"""Schedulers: the threaded or multiprocessing scheduler, a distributed LocalCluster, a
running dask scheduler (``address``), a given Client, or batch jobs through dask-jobqueue
(``slurm``, ``jobqueue``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
from dask.callbacks import Callback
from tqdm.std import tqdm

from ..errors import ConfigError
from .jupyter import kernel_shell
from .log import LOGGER

__all__ = ["Executor", "executor"]

SCHEDULERS = ("threads", "processes", "local", "synchronous", "address", "slurm", "jobqueue")

#: Bytes of slices a thread of the threaded scheduler is handed at once (see
#: ``Executor._local_options``), and the most tasks in one hand-over.
BATCH_BYTES = 4 << 20
MAX_BATCH = 8


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
    task_bytes
        Bytes of the slices one task of the step being processed handles (a slab of a
        few), when known: the threaded scheduler then hands its threads several tasks
        at a time (see :meth:`_local_options`).
    """

    name: str
    workers: int
    client: Any = None
    progress: bool = True
    task_bytes: int | None = None

    def compute(self, tasks: Sequence[Any], label: str = "",
                weights: Sequence[int] | None = None) -> list[Any]:
        """Compute delayed objects and return their results, in order; ``weights``:
        the slices of each task, which the progress bar counts (default: 1 each)."""
        if not tasks:
            return []
        weights = list(weights) if weights is not None else [1] * len(tasks)
        if self.client is not None:
            from distributed import as_completed

            futures = self.client.compute(list(tasks))
            size = {f.key: w for f, w in zip(futures, weights)}
            with self._bar(sum(weights), label) as bar:
                for done in as_completed(futures):
                    bar.update(size.get(done.key, 1))
            return self.client.gather(futures)
        with self._bar(sum(weights), label) as bar:
            callback = _TaskCounter(bar, {t.key: w for t, w in zip(tasks, weights)})
            with callback:
                return list(dask.compute(*tasks, **self._local_options()))

    def compute_values(self, objects: Sequence[Any]) -> list[Any]:
        """Compute dask collections (small reductions) and return their values."""
        if self.client is not None:
            return self.client.gather(self.client.compute(list(objects)))
        return list(dask.compute(*objects, **self._local_options()))

    def _local_options(self) -> dict[str, Any]:
        # Each task handed to a thread costs the scheduler's thread and the worker's a
        # few hand-overs, as long as the work of a small slice; handed in batches, the
        # threads run through several. A batch holds its tasks' outputs until it ends,
        # so its size is bounded by bytes: a few tasks of up to BATCH_BYTES in all, one
        # task at a time for large slabs.
        options: dict[str, Any] = {"scheduler": self._local_get(), "num_workers": self.workers}
        if self.name == "threads" and self.task_bytes:
            options["chunksize"] = int(np.clip(BATCH_BYTES // self.task_bytes, 1, MAX_BATCH))
        return options

    def _local_get(self) -> Callable[..., Any]:
        # The scheduler's function rather than its name: given a name, dask imports
        # distributed, which is slow to import, to look for a client that cannot be there.
        if self.name == "threads":
            from dask.threaded import get
        elif self.name == "processes":
            from dask.multiprocessing import get
        else:
            from dask.local import get_sync as get
        return get

    def _bar(self, total: int, label: str) -> tqdm:
        return _bar_class()(total=total, desc=label or "slices", unit="slice",
                            disable=not self.progress, file=sys.stderr, leave=False,
                            dynamic_ncols=True)

    def as_compute(self, label: str) -> Callable[..., list[Any]]:
        """``compute`` bound to a label, in the form :meth:`Store.write` expects
        (``compute(tasks, weights=None)``)."""
        return lambda tasks, weights=None: self.compute(tasks, label, weights)


def _bar_class() -> type[tqdm]:
    """The notebook's widget bar in a Jupyter kernel that has ipywidgets; the text bar
    everywhere else, a kernel without ipywidgets included (``tqdm.auto`` would warn
    there that IProgress is missing, then draw nothing better)."""
    if kernel_shell() is not None:
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm as notebook_bar
        except ImportError:
            return tqdm
        return notebook_bar
    return tqdm


class _TaskCounter(Callback):
    """Advance a progress bar by its weight when one of the watched tasks finishes."""

    def __init__(self, bar: tqdm, keys: dict[Any, int]) -> None:
        super().__init__()
        self._bar, self._keys = bar, keys

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        weight = self._keys.get(key)
        if weight:
            self._bar.update(weight)


@contextlib.contextmanager
def executor(name: str = "threads", workers: int = 1, threads_per_worker: int = 1,
             memory_limit: str = "auto", dashboard_address: str = "127.0.0.1:0",
             progress: bool = True, address: str | None = None,
             slurm: dict[str, Any] | None = None, worker_timeout: float = 300.0,
             client: Any = None, kind: str = "slurm",
             jobqueue: dict[str, Any] | None = None) -> Iterator[Executor]:
    """Start the scheduler a workflow asks for, and stop it afterwards.

    Parameters
    ----------
    name
        ``threads`` (dask's threaded scheduler), ``processes`` (multiprocessing),
        ``local`` (a ``distributed.LocalCluster`` bound to 127.0.0.1), ``synchronous``
        (one thread, for debugging), ``address`` (a running dask scheduler) or ``slurm``
        (a ``dask_jobqueue.SLURMCluster``: one worker per job).
    workers
        Threads, processes or cluster workers (for ``slurm``: the jobs, unless
        ``slurm["jobs"]`` or adaptive limits say otherwise).
    threads_per_worker, memory_limit, dashboard_address
        LocalCluster settings.
    progress
        Show a progress bar per step.
    address
        The scheduler to connect to (``name = "address"``).
    slurm
        SLURMCluster keywords and job counts (``[scheduler.slurm]``, see
        :mod:`~pystack3d_dask.runtime.jobqueue`), for ``name = "slurm"``.
    kind, jobqueue
        The batch system and its cluster's keywords, for ``name = "jobqueue"``.
    worker_timeout
        Seconds to wait for the first worker of a cluster before giving up.
    client
        A ``distributed.Client`` to compute on instead of all of the above (the
        caller's: it is left open).
    """
    if client is not None:
        _say_dashboard(client, progress)
        workers = len(client.scheduler_info().get("workers", {})) or workers
        yield Executor("client", workers, client=client, progress=progress)
        return
    _check_scheduler(name, workers)
    if name in ("threads", "processes", "synchronous"):
        with _local_executor(name, workers, progress) as ex:
            yield ex
        return
    if name == "address":
        with _address_executor(address, workers, worker_timeout, progress) as ex:
            yield ex
        return
    cluster, kind = _start_cluster(name, workers, threads_per_worker, memory_limit,
                                   dashboard_address, slurm, kind, jobqueue)
    with _cluster_executor(name, cluster, kind, workers, worker_timeout, progress) as ex:
        yield ex


def _check_scheduler(name: str, workers: Any) -> None:
    """Refuse an unknown scheduler name or a number of workers that is not an int >= 1."""
    if name not in SCHEDULERS:
        raise ConfigError(f"scheduler {name!r}: expected one of {list(SCHEDULERS)}")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers = {workers!r}: expected an integer >= 1")


@contextlib.contextmanager
def _local_executor(name: str, workers: int, progress: bool) -> Iterator[Executor]:
    """The threaded, multiprocessing or synchronous scheduler, also set as dask's default
    scheduler while the executor is in use."""
    ex = Executor(name, workers, progress=progress)
    # computes made outside the executor (an xarray ``.values`` of a lazy variable)
    # get the same scheduler; left to find one, dask imports distributed (time and
    # memory) to look for a client that cannot be there
    with dask.config.set(scheduler=ex._local_get()):
        yield ex


@contextlib.contextmanager
def _address_executor(address: str | None, workers: int, worker_timeout: float,
                      progress: bool) -> Iterator[Executor]:
    """A client of the running dask scheduler at ``address``, closed afterwards.

    Raises
    ------
    ConfigError
        When no address is given or no scheduler answers there.
    """
    from distributed import Client

    if not address:
        raise ConfigError('[scheduler] name = "address" needs address = "tcp://host:port"')
    try:
        client = Client(address, timeout=f"{worker_timeout}s")
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"[scheduler] address = {address!r}: no dask scheduler reached "
                          f"({exc})") from exc
    with client:
        _say_dashboard(client, progress)
        yield Executor("address", workers, client=client, progress=progress)


def _start_cluster(name: str, workers: int, threads_per_worker: int, memory_limit: str,
                   dashboard_address: str, slurm: dict[str, Any] | None, kind: str,
                   jobqueue: dict[str, Any] | None) -> tuple[Any, str]:
    """A ``distributed.LocalCluster`` (``name = "local"``) or a dask-jobqueue cluster
    (``slurm``, ``jobqueue``), and the batch system's name for the messages.

    Parameters
    ----------
    name
        ``local``, ``slurm`` or ``jobqueue``.
    workers, threads_per_worker, memory_limit, dashboard_address, slurm, kind, jobqueue
        As :func:`executor` takes them.

    Returns
    -------
    tuple
        The cluster (to close afterwards) and the batch system (``slurm`` for
        ``name = "slurm"``, else ``kind``).
    """
    if name == "local":
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                               processes=True, memory_limit=memory_limit, host="127.0.0.1",
                               dashboard_address=dashboard_address)
        return cluster, kind
    from .jobqueue import make_cluster

    if name == "slurm":
        kind, jobqueue, table = "slurm", slurm, "scheduler.slurm"
    else:
        table = "scheduler.jobqueue"
    return make_cluster(kind, dict(jobqueue or {}), workers, dashboard_address, table), kind


@contextlib.contextmanager
def _cluster_executor(name: str, cluster: Any, kind: str, workers: int,
                      worker_timeout: float, progress: bool) -> Iterator[Executor]:
    """A client of a cluster this package started: the heap settings on its workers,
    the first batch job's worker waited for; the cluster is closed afterwards, whatever
    happens."""
    from distributed import Client

    try:
        with Client(cluster) as client:
            _say_dashboard(client, progress)
            _keep_heap_on_workers(client)
            if name in ("slurm", "jobqueue"):
                _wait_for_workers(client, cluster, worker_timeout, kind)
            yield Executor(name, workers, client=client, progress=progress)
    finally:
        cluster.close()


def _keep_heap_on_workers(client: Any) -> None:
    """The heap settings of :func:`~.heap.keep_heap` on every worker of a cluster this
    package started, those that join later included (a worker plugin). distributed's
    nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which makes every
    slice-sized buffer fresh pages."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class KeepHeap(WorkerPlugin):
        name = "pystack3d-dask-keep-heap"

        def setup(self, worker: Any) -> None:
            from pystack3d_dask.runtime.heap import keep_heap

            keep_heap()

    register = getattr(client, "register_plugin", None) or client.register_worker_plugin
    register(KeepHeap())


def _say_dashboard(client: Any, progress: bool) -> None:
    if progress:
        LOGGER.info(f"dask dashboard: {client.dashboard_link}")


def _wait_for_workers(client: Any, cluster: Any, timeout: float, kind: str = "slurm") -> None:
    """Wait for one worker; a job SLURM refuses (impossible resources) or leaves pending
    must end in an error that says why, not in a run that waits forever."""
    import logging

    class _Errors(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.ERROR)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    errors = _Errors()
    loggers = [logging.getLogger(n) for n in ("distributed.deploy.spec", "dask_jobqueue",
                                              "distributed.deploy.adaptive")]
    for log in loggers:
        log.addHandler(errors)
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, OSError) as exc:
        detail = "; ".join(m.strip()[-600:] for m in errors.messages[-3:])
        raise ConfigError(
            f"[scheduler] {kind}: no worker joined within worker_timeout = {timeout:g} s"
            + (f". {kind.upper()} said: {detail}" if detail else ". Check the jobs (squeue, "
               "qstat, bjobs) and their output in log_directory")
            + f"\njob script:\n{cluster.job_script()}"
        ) from exc
    finally:
        for log in loggers:
            log.removeHandler(errors)
