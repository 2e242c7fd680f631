"""The workflow's own tables (store, scheduler, input) beside the steps' tables.

The parameter types and the validation live in :mod:`pystack3d_dask.params`, shared with
the steps, which own their tables.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from ..params import (
    PYSTACK3D_STEPS,
    Param,
    boolean,
    integer,
    invalid,
    number,
    policy,
    string,
    string_list,
    validate_table,
)
from ..runtime.jobqueue import JOBQUEUE_KINDS

__all__ = ["OWN_TABLES", "keep_policy"]


def keep_policy(table: str, key: str, value: Any) -> str | list[str]:
    """``"all"``, ``"last"`` or a list of step names (``"input"`` allowed)."""
    names = ["input", *PYSTACK3D_STEPS]
    if value in ("all", "last"):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        unknown = [v for v in value if v not in names]
        if not unknown:
            return list(value)
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise invalid(table, key, value, f'step names among {names}; {unknown[0]!r} is not one{hint}')
    raise invalid(table, key, value, '"all" (every checkpoint), "last" (only the last step\'s) or '
                  'a list of step names, such as ["registration_transformation"]')


def _jobqueue(table: str, key: str, value: Any) -> dict:
    """The cluster's keywords: those documented here are checked, the others kept for the
    cluster class to check (:mod:`~pystack3d_dask.runtime.jobqueue`); unset ones are left out,
    so that the site's dask config gives them."""
    if not isinstance(value, dict):
        raise invalid(table, key, value, 'a table such as { queue = "debug", cores = 1, '
                      'memory = "4GB", walltime = "01:00:00", jobs = 2 }')
    known = {k: v for k, v in value.items() if k in _JOBQUEUE}
    out = {k: v for k, v in validate_table(f"{table}.{key}", known, _JOBQUEUE).items()
           if v is not None}
    out.update({k: v for k, v in value.items() if k not in _JOBQUEUE})
    return out


def storage_options(table: str, key: str, value: Any) -> dict:
    """fsspec storage options: a table of JSON values (strings, numbers, booleans,
    nested tables), passed as they are to the file system of a URL."""
    if not isinstance(value, dict):
        raise invalid(table, key, value, 'a table such as { endpoint_url = '
                      '"http://127.0.0.1:9000", anon = false }')
    try:
        json.dumps(value)
    except TypeError:
        raise invalid(table, key, value, "a table of strings, numbers, booleans and "
                      "tables") from None
    return dict(value)


def _dims(table: str, key: str, value: Any) -> str | list[str]:
    """Axis letters (``"zcyx"``) or a list of axis names; the letters and their number
    are checked against the array when it is opened, in an error that names it
    (:func:`~pystack3d_dask.io.array_meta.axes_from_dims`)."""
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    if isinstance(value, str) and value:
        return value
    raise invalid(table, key, value, 'axis letters among t, c, z, y, x, each once, such as "zyx", '
                  '"czyx" or "zcyx", or a list of axis names')


#: The documented keys of [scheduler.slurm] / [scheduler.jobqueue]; any other keyword of
#: the dask-jobqueue cluster class is accepted too. None: not passed (the site's config).
_JOBQUEUE = {
    "queue": Param(string(), None, "partition or queue (sbatch -p, qsub -q)"),
    "account": Param(string(), None, "account to charge (sbatch -A)"),
    "cores": Param(integer(1), None, "cores per job"),
    "processes": Param(integer(1), None, "dask workers per job"),
    "memory": Param(string(), None, "memory per job, such as '16GB'"),
    "walltime": Param(string(), None, "time limit per job"),
    "jobs": Param(integer(0), None, "jobs to start (default: --workers, or nproc); ignored "
                  "when adaptive"),
    "minimum_jobs": Param(integer(0), None, "adaptive: fewest jobs"),
    "maximum_jobs": Param(integer(1), None, "adaptive: most jobs (default: --workers); "
                          "setting this or minimum_jobs turns adaptive on"),
    "job_extra_directives": Param(string_list, None, "extra #SBATCH (#PBS, ...) lines, e.g. "
                                  "['--qos=low']"),
    "job_script_prologue": Param(string_list, None, "shell lines run before the worker, "
                                 "e.g. ['module load python']"),
    "worker_lifetime": Param(string(), None, "workers leave after this (e.g. '55m'), before the "
                             "walltime kills them, and are replaced"),
    "lifetime_stagger": Param(string(), None, "random spread of worker_lifetime (default 4m)"),
    "local_directory": Param(string(), None, "workers' scratch folder on the node"),
    "log_directory": Param(string(), None, "folder of the jobs' output files"),
    "interface": Param(string(), None, "network interface of the workers (e.g. 'ib0')"),
}

#: This project's own tables, beside PyStack3D's.
OWN_TABLES: dict[str, dict[str, Param]] = {
    "store": {
        "path": Param(string(), None, "Zarr store: a folder, or a URL such as s3://bucket/run.zarr "
                      "(default: <workflow name>.zarr beside the file)"),
        "storage_options": Param(storage_options, None, "fsspec options of a store on object "
                                 "storage (endpoint_url, key, secret, anon, ...); without them, "
                                 "credentials come from the environment or a profile"),
        "overwrite": Param(boolean, False, "replace a store made from another input"),
        "compressor": Param(string(("zstd", "blosc-zstd", "blosc-lz4", "none")), "zstd",
                            "chunk compression"),
        "compression_level": Param(integer(0, 22), 3, "compression level"),
        "shard_slices": Param(integer(1), 1, "slices per Zarr v3 shard (1: one file per slice); "
                              "fewer files on parallel file systems"),
        "keep": Param(keep_policy, "all", 'checkpoints kept: "all", "last" or a list of steps; the '
                      "others lose their slices once the next step is complete"),
    },
    "scheduler": {
        "name": Param(string(("threads", "processes", "local", "synchronous", "address",
                              "slurm", "jobqueue")), "threads",
                      "dask scheduler: threads, processes, a distributed local cluster, a "
                      "running scheduler (address), SLURM jobs (slurm), or the jobs of "
                      "another batch system (jobqueue, with kind)"),
        "kind": Param(string(JOBQUEUE_KINDS), "slurm",
                      'batch system of name = "jobqueue": slurm, pbs, lsf or sge'),
        "address": Param(string(), None, "address of a running dask scheduler (name = "
                         '"address"), such as "tcp://10.0.0.5:8786"'),
        "slurm": Param(_jobqueue, None, "SLURMCluster keywords (name = \"slurm\"); "
                       "unset ones come from the site's dask config"),
        "jobqueue": Param(_jobqueue, None, "the cluster's keywords (name = \"jobqueue\"); "
                          "unset ones come from the site's dask config"),
        "worker_timeout": Param(number(0.0, strict_min=True), 300.0,
                                "seconds to wait for the first worker of a cluster"),
        "workers": Param(integer(1), None, "workers (default: nproc)"),
        "threads_per_worker": Param(integer(1), 1, "threads per worker of a local cluster"),
        "memory_limit": Param(string(), "auto", "memory per worker of a local cluster"),
        "dashboard_address": Param(string(), "127.0.0.1:0", "dashboard of a local cluster"),
    },
    "input": {
        "path": Param(string(), None, "the input, winning over project_dir: a TIFF folder or "
                      "file, a Zarr array or OME-Zarr image (folder or URL), an N5 dataset, "
                      "file.h5:/dataset or an MRC file (default: project_dir)"),
        "policy": Param(policy, None, "file-name pattern (default: [resampling] policy)"),
        "z_spacing": Param(number(0.0, strict_min=True), 1.0,
                           "slice spacing (um) when names carry no z; for an array input, "
                           "set here it wins over the metadata's"),
        "pixel_size": Param(number(0.0, strict_min=True), None,
                            "pixel size (um) for y/x; for an array input, set here it wins "
                            "over the metadata's"),
        "level": Param(integer(0), 0, "level of an OME-Zarr image (0: full resolution)"),
        "dims": Param(_dims, None, 'which dimension of an array input is which, such as "zyx", '
                      '"czyx", "zcyx" (default: the OME axes, else zyx for 3-D, czyx for 4-D)'),
        "storage_options": Param(storage_options, None, "fsspec options of a Zarr URL, such as "
                                 '{ endpoint_url = "http://localhost:9000", anon = true }'),
    },
}
