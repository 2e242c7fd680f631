"""dask-jobqueue as sites configure it: only the keys a workflow sets are passed, the
site's dask config gives the rest; every batch system's job script; bad keys and kinds."""

from __future__ import annotations

import subprocess

import dask.config
import pytest
from helpers import write_stack

import pystack3d_dask as p3d
from pystack3d_dask.errors import ConfigError

jobqueue = pytest.importorskip("dask_jobqueue")
from pystack3d_dask.runtime.jobqueue import build_cluster, make_cluster  # noqa: E402

#: What a site's jobqueue.yaml would hold (the key of the account or project differs).
SITE = {"cores": 2, "memory": "3GB", "walltime": "02:00:00",
        "job-script-prologue": ["module load python/3.11"]}
ACCOUNT = {"slurm": "account", "pbs": "account", "lsf": "project", "sge": "project"}
#: The directives each batch system writes for the site's account and the walltime.
DIRECTIVES = {"slurm": ("#SBATCH -A proj42", "#SBATCH -t 00:10:00"),
              "pbs": ("#PBS -A proj42", "#PBS -l walltime=00:10:00"),
              "lsf": ('#BSUB -P "proj42"', "#BSUB -W 00:10"),
              "sge": ("#$ -P proj42", "#$ -l h_rt=00:10:00")}


@pytest.mark.parametrize("kind", sorted(DIRECTIVES))
def test_site_config_fills_what_the_workflow_leaves_out(kind):
    site = {**SITE, ACCOUNT[kind]: "proj42"}
    with dask.config.set({f"jobqueue.{kind}.{k}": v for k, v in site.items()}):
        cluster = build_cluster(kind, {"walltime": "00:10:00", "queue": None},
                                "127.0.0.1:0", "scheduler.jobqueue")
        try:
            script = cluster.job_script()
        finally:
            cluster.close()
    account, walltime = DIRECTIVES[kind]
    assert account in script  # the site's
    assert walltime in script and "02:00" not in script  # the workflow's, over the site's
    assert "module load python/3.11" in script
    assert "--nworkers 2" in script  # from the site's 2 cores


def test_any_cluster_keyword_passes_through_and_lifetime_is_added():
    opts = {"cores": 1, "memory": "1GB", "job_extra_directives": ["--qos=low"],
            "job_script_prologue": ["source /opt/site/env.sh"], "job_name": "p3d",
            "worker_lifetime": "55m"}
    cluster = build_cluster("slurm", opts, "127.0.0.1:0", "scheduler.slurm")
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for text in ("#SBATCH --qos=low", "source /opt/site/env.sh", "#SBATCH -J p3d",
                 "--lifetime 55m", "--lifetime-stagger 4m", "--lifetime-restart"):
        assert text in script, text


def test_missing_cores_is_an_error_that_says_where_to_set_it():
    with dask.config.set({"jobqueue.pbs.cores": None, "jobqueue.pbs.memory": None}), \
            pytest.raises(ConfigError, match=r"\[scheduler.jobqueue\] .*cores.*site's dask config"):
        build_cluster("pbs", {}, "127.0.0.1:0", "scheduler.jobqueue")


def _workflow(tmp_path, scheduler: dict) -> dict:
    write_stack(tmp_path / "slices", n=3, shape=(32, 32), dtype="uint8")
    return {"project_dir": str(tmp_path / "slices"), "process_steps": [],
            "store": {"path": str(tmp_path / "s.zarr")}, "scheduler": scheduler}


def test_bad_kind_and_unknown_keyword_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"\[scheduler\] kind = 'pbss' is invalid.*'pbs'"):
        p3d.run(_workflow(tmp_path, {"name": "jobqueue", "kind": "pbss"}), progress=False)
    with pytest.raises(ConfigError, match=r"unknown key 'acount' in \[scheduler.slurm\] "
                                          r"\(did you mean 'account'\?\)"):
        p3d.run(_workflow(tmp_path / "b", {"name": "slurm", "slurm": {"acount": "x"}}),
                progress=False)
    with pytest.raises(ConfigError, match=r"\[scheduler.jobqueue\] cores = 0 is invalid"):
        p3d.run(_workflow(tmp_path / "c", {"name": "jobqueue", "kind": "lsf",
                                           "jobqueue": {"cores": 0}}), progress=False)
    assert not (tmp_path / "s.zarr" / "input").exists()  # refused before any work


def _slurm_up() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slurm
@pytest.mark.skipif(not _slurm_up(), reason="no Slurm answering sinfo (.ci/slurm-up.sh)")
def test_workers_means_jobs_unless_the_table_says_otherwise():
    site = {"jobqueue.slurm.cores": 1, "jobqueue.slurm.memory": "1GB",
            "jobqueue.slurm.interface": "lo"}
    with dask.config.set(site):
        for opts, expected in (({}, 3), ({"jobs": 1}, 1)):
            cluster = make_cluster("slurm", opts, 3, "127.0.0.1:0", "scheduler.slurm")
            try:
                assert len(cluster.worker_spec) == expected
            finally:
                cluster.close()
