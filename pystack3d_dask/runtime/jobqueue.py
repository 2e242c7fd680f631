"""Batch-system clusters through dask-jobqueue, configured the way the site configures it.

The workflow's ``[scheduler.slurm]`` (or ``[scheduler.jobqueue]``) table holds only what
the user wants to set: each of its keys is a keyword of the dask-jobqueue cluster class
(``queue``, ``account``, ``cores``, ``memory``, ``walltime``, ``job_script_prologue``,
``job_extra_directives``, ``interface``, ...), passed as given; everything else comes from
the site's dask configuration (``~/.config/dask/jobqueue.yaml``, ``DASK_JOBQUEUE__...``),
as for any dask-jobqueue user. A few keys are this package's own: how many jobs
(``jobs``, or ``minimum_jobs``/``maximum_jobs`` for an adaptive cluster) and when the
workers leave before their walltime (``worker_lifetime``, ``lifetime_stagger``).
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NotAvailableError, suggest

#: Batch systems that dask-jobqueue drives ([scheduler] kind).
JOBQUEUE_KINDS = ("slurm", "pbs", "lsf", "sge")

__all__ = ["KINDS", "OWN_KEYS", "build_cluster", "check_table", "cluster_keywords",
           "make_cluster"]

#: Batch systems and their dask-jobqueue cluster classes.
KINDS = {kind: f"{kind.upper()}Cluster" for kind in JOBQUEUE_KINDS}
#: The submission command each batch system needs on the PATH.
_SUBMIT = {"slurm": "sbatch", "pbs": "qsub", "lsf": "bsub", "sge": "qsub"}
#: Keys of the table that are this package's, not the cluster class's.
OWN_KEYS = ("jobs", "minimum_jobs", "maximum_jobs", "worker_lifetime", "lifetime_stagger")
#: Keywords the cluster classes take that the package sets itself.
_RESERVED = {"self", "scheduler", "name", "config_name", "base_class_kwargs", "n_workers",
             "job_cls", "loop", "asynchronous", "job_kwargs", "scheduler_cls", "worker",
             "workers"}


def _cluster_class(kind: str) -> type:
    if kind not in KINDS:
        raise ConfigError(f"[scheduler] kind = {kind!r} is invalid: expected one of "
                          f"{list(KINDS)}{suggest(kind, list(KINDS))}")
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise NotAvailableError(f"a {kind.upper()} cluster needs dask-jobqueue: pip install "
                                "'pystack3d-dask[hpc]'") from exc
    return getattr(dask_jobqueue, KINDS[kind])


def cluster_keywords(kind: str) -> set[str]:
    """Every keyword the dask-jobqueue cluster of ``kind`` takes (its job class's, the
    base job's and the cluster's), less those the package sets itself."""
    cls = _cluster_class(kind)
    names: set[str] = set()
    for klass in (*cls.job_cls.__mro__, *cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {p.name for p in inspect.signature(init).parameters.values()
                      if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return names - _RESERVED


def _check_keys(kind: str, opts: dict[str, Any], table: str) -> None:
    valid = cluster_keywords(kind) | set(OWN_KEYS)
    for key in opts:
        if key not in valid:
            raise ConfigError(f"unknown key {key!r} in [{table}]{suggest(key, sorted(valid))}: "
                              f"expected a keyword of dask_jobqueue.{KINDS[kind]} or one of "
                              f"{', '.join(OWN_KEYS)}")


def check_table(kind: str, opts: dict[str, Any], table: str) -> None:
    """Refuse a key that is neither a keyword of the cluster class of ``kind`` nor one of
    this package's (naming the nearest valid one); without dask-jobqueue installed, the
    check waits for the cluster's start, which then says to install it."""
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        return
    _check_keys(kind, opts, table)


def build_cluster(kind: str, opts: dict[str, Any], dashboard_address: str, table: str) -> Any:
    """The cluster of ``kind`` with the keywords the user set (``opts``, from the
    workflow's table ``table``; None values are left out), the site's dask config giving
    the others; no job is started yet."""
    opts = {k: v for k, v in opts.items() if v is not None}
    _check_keys(kind, opts, table)
    return _construct(kind, opts, dashboard_address, table)


def make_cluster(kind: str, opts: dict[str, Any], workers: int, dashboard_address: str,
                 table: str) -> Any:
    """:func:`build_cluster`, then its jobs: ``jobs`` (default: ``workers``, the
    command's ``--workers``), or adaptively between ``minimum_jobs`` and
    ``maximum_jobs`` (default: ``workers``) when either is set."""
    opts = {k: v for k, v in opts.items() if v is not None}
    _check_keys(kind, opts, table)
    if shutil.which(_SUBMIT[kind]) is None:
        raise NotAvailableError(f"[scheduler] {kind}: {_SUBMIT[kind]} is not on the PATH; run "
                                "on a login node of the batch system, or choose another "
                                "scheduler")
    cluster = _construct(kind, opts, dashboard_address, table)
    if kind == "slurm":
        _test_submission(cluster)
    if "minimum_jobs" in opts or "maximum_jobs" in opts:
        cluster.adapt(minimum_jobs=opts.get("minimum_jobs", 0),
                      maximum_jobs=opts.get("maximum_jobs", workers))
    else:
        cluster.scale(jobs=opts.get("jobs", workers))
    return cluster


def _construct(kind: str, opts: dict[str, Any], dashboard_address: str, table: str) -> Any:
    """The cluster object from checked keys (none None)."""
    import dask.config

    kwargs = {k: v for k, v in opts.items() if k not in OWN_KEYS}
    if opts.get("worker_lifetime"):
        # leave before the walltime kills the job; the cluster starts a replacement
        configured = dask.config.get(f"jobqueue.{kind}.worker-extra-args", None) or []
        kwargs["worker_extra_args"] = [
            *kwargs.get("worker_extra_args", configured), "--lifetime", opts["worker_lifetime"],
            "--lifetime-stagger", opts.get("lifetime_stagger") or "4m", "--lifetime-restart"]
    kwargs.setdefault("scheduler_options", {"dashboard_address": dashboard_address})
    if dask.config.get(f"jobqueue.{kind}.interface", "missing") == "missing":
        # dask-jobqueue 0.9's own defaults for SGE lack this key, which its cluster reads
        # unconditionally (KeyError); None is what the other systems default to
        dask.config.update_defaults({"jobqueue": {kind: {"interface": None}}})
    try:
        return _cluster_class(kind)(**kwargs)
    except ValueError as exc:  # dask-jobqueue's "You must specify how much cores ..."
        said = str(exc).splitlines()[0].rstrip(" :,")
        raise ConfigError(f"[{table}] dask-jobqueue: {said}: set cores and memory (such as "
                          f'cores = 8, memory = "24GB") in [{table}] or in the site\'s dask '
                          f"config (jobqueue.{kind} in ~/.config/dask/jobqueue.yaml)") from exc


def _test_submission(cluster: Any) -> None:
    """``sbatch --test-only`` of the workers' job script: resources SLURM cannot give
    (more memory than a node has, an unknown partition) fail here, with SLURM's words,
    instead of leaving the run waiting for workers that never come."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as fid:
        fid.write(cluster.job_script())
    try:
        done = subprocess.run(["sbatch", "--test-only", fid.name], capture_output=True,
                              text=True, timeout=60)
    finally:
        Path(fid.name).unlink()
    if done.returncode != 0:
        cluster.close()
        said = (done.stderr or done.stdout).strip()
        raise ConfigError(f"[scheduler] slurm: SLURM refuses the workers' job: {said}\n"
                          f"job script:\n{cluster.job_script()}")
