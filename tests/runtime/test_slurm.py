"""The same workflow on SLURM (dask-jobqueue), against the one-node Slurm that
.ci/slurm-up.sh starts; and the scheduler errors that need no Slurm."""

from __future__ import annotations

import copy
import shutil
import subprocess
import threading
import time
import tomllib

import numpy as np
import pytest
from helpers import write_stack

import pystack3d_dask as p3d
from pystack3d_dask.datasets.synthetic import write_synthetic
from pystack3d_dask.errors import ConfigError, NotAvailableError


def _slurm_ready() -> str | None:
    if shutil.which("sbatch") is None:
        return "no sbatch on the PATH (.ci/slurm-up.sh starts a one-node Slurm)"
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        return "dask-jobqueue is not installed (pip install '.[hpc]')"
    done = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    if done.returncode != 0 or "idle" not in done.stdout + "mix":
        return f"no idle Slurm node: {done.stderr.strip() or done.stdout.strip()}"
    return None


_NO_SLURM = _slurm_ready()
needs_slurm = pytest.mark.skipif(_NO_SLURM is not None, reason=str(_NO_SLURM))
SLURM = {"queue": "debug", "cores": 1, "memory": "2GB", "jobs": 2, "interface": "lo"}


def _synthetic(tmp_path, shape=(24, 90, 100), maxit=30) -> dict:
    """The synthetic workflow, and its threaded run in ``threads.zarr`` (the reference)."""
    files = write_synthetic(tmp_path / "syn", shape=shape)
    wf = tomllib.loads(files.workflow.read_text())
    wf["project_dir"] = str(files.slices_dir)
    wf["destriping"]["maxit"] = maxit
    reference = copy.deepcopy(wf)
    reference["store"] = {"path": str(tmp_path / "threads.zarr")}
    p3d.run(reference, progress=False)
    return wf


def _slurm_workflow(wf: dict, tmp_path, store: str, jobs: int = 2) -> dict:
    out = copy.deepcopy(wf)
    out["store"] = {"path": str(tmp_path / store)}
    out["scheduler"] = {"name": "slurm", "worker_timeout": 120,
                        "slurm": {**SLURM, "jobs": jobs, "log_directory": str(tmp_path / "logs")}}
    return out


@pytest.mark.slurm
@needs_slurm
def test_synthetic_workflow_on_slurm_equals_threads(tmp_path):
    wf = _synthetic(tmp_path, shape=(20, 90, 100), maxit=5)
    on_slurm = _slurm_workflow(wf, tmp_path, "slurm.zarr")
    before = set(_jobs())
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.setdefault(
        "result", p3d.run(on_slurm, progress=False)))
    runner.start()
    seen: set[str] = set()
    while runner.is_alive():
        seen |= set(_jobs()) - before
        time.sleep(0.2)
    runner.join()
    assert "result" in outcome
    assert seen, "no SLURM job was seen while the workflow ran"
    for group in ["input", "cropping", "bkg_removal", "registration_transformation",
                  "destriping", "resampling", "cropping_final"]:
        np.testing.assert_array_equal(p3d.open_result(tmp_path / "slurm.zarr", group).values,
                                      p3d.open_result(tmp_path / "threads.zarr", group).values)


def _jobs() -> list[str]:
    done = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
    return done.stdout.split()


@pytest.mark.slurm
@needs_slurm
def test_impossible_resources_fail_fast_with_slurms_words(tmp_path):
    write_stack(tmp_path / "slices", n=3, shape=(32, 32), dtype="uint8")
    wf = {"project_dir": str(tmp_path / "slices"), "process_steps": [],
          "store": {"path": str(tmp_path / "s.zarr")},
          "scheduler": {"name": "slurm", "worker_timeout": 60,
                        "slurm": {**SLURM, "memory": "100000GB"}}}
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="SLURM refuses the workers' job: .*not available"):
        p3d.run(wf, progress=False)
    assert time.perf_counter() - start < 30


def test_slurm_without_sbatch_is_a_clear_error(tmp_path, monkeypatch):
    write_stack(tmp_path / "slices", n=3, shape=(32, 32), dtype="uint8")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    wf = {"project_dir": str(tmp_path / "slices"), "process_steps": [],
          "store": {"path": str(tmp_path / "s.zarr")}, "scheduler": {"name": "slurm"}}
    with pytest.raises(NotAvailableError, match="sbatch is not on the PATH"):
        p3d.run(wf, progress=False)


def test_unreachable_address_is_a_clear_error(tmp_path):
    write_stack(tmp_path / "slices", n=3, shape=(32, 32), dtype="uint8")
    wf = {"project_dir": str(tmp_path / "slices"), "process_steps": [],
          "store": {"path": str(tmp_path / "s.zarr")},
          "scheduler": {"name": "address", "address": "tcp://127.0.0.1:9",
                        "worker_timeout": 2}}
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="no dask scheduler reached"):
        p3d.run(wf, progress=False)
    assert time.perf_counter() - start < 20
    wf["scheduler"] = {"name": "address"}
    with pytest.raises(ConfigError, match='needs address = "tcp://host:port"'):
        p3d.run(wf, progress=False)


def test_address_runs_on_a_running_scheduler(tmp_path):
    from distributed import LocalCluster

    data = write_stack(tmp_path / "slices", n=4, shape=(32, 40), dtype="uint8")
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        wf = {"project_dir": str(tmp_path / "slices"), "process_steps": ["cropping"],
              "cropping": {"area": [0, 20, 0, 16]},
              "store": {"path": str(tmp_path / "s.zarr")},
              "scheduler": {"name": "address", "address": cluster.scheduler_address}}
        p3d.run(wf, progress=False)
        # the same from the command line
        from pystack3d_dask.cli import main

        toml = tmp_path / "wf.toml"
        toml.write_text(f'project_dir = "{tmp_path / "slices"}"\nprocess_steps = ["cropping"]\n'
                        '[cropping]\narea = [0, 20, 0, 16]\n')
        assert main(["run", str(toml), "--scheduler", "address", "--address",
                     cluster.scheduler_address, "--no-report", "--quiet"]) == 0
    np.testing.assert_array_equal(p3d.open_result(tmp_path / "s.zarr").values[0],
                                  data[:, 16:, :20])
    np.testing.assert_array_equal(p3d.open_result(tmp_path / "wf.zarr").values[0],
                                  data[:, 16:, :20])


@pytest.mark.slurm
@pytest.mark.slow
@needs_slurm
def test_a_cancelled_job_does_not_change_the_result(tmp_path):
    wf = _synthetic(tmp_path)
    on_slurm = _slurm_workflow(wf, tmp_path, "slurm.zarr")
    before = set(_jobs())
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = p3d.run(on_slurm, progress=False)
        except Exception as exc:  # the cluster could not recover: resumed below
            outcome["error"] = exc

    runner = threading.Thread(target=target)
    runner.start()
    cancelled = None
    while runner.is_alive() and cancelled is None:
        steps = tmp_path / "slurm.zarr" / "steps"
        jobs = sorted(set(_jobs()) - before)
        if steps.is_dir() and any(p.name.endswith("_destriping") for p in steps.iterdir()) \
                and jobs:
            cancelled = jobs[0]
            subprocess.run(["scancel", cancelled], check=True)
        time.sleep(0.1)
    runner.join()
    assert cancelled is not None, "the run ended before a job could be cancelled"
    print("cancelled job", cancelled, "outcome:", sorted(outcome))
    if "error" in outcome:  # a second run resumes from the checkpoints
        p3d.run(on_slurm, progress=False)
    for group in ["destriping", "resampling", "cropping_final"]:
        np.testing.assert_array_equal(p3d.open_result(tmp_path / "slurm.zarr", group).values,
                                      p3d.open_result(tmp_path / "threads.zarr", group).values)


@pytest.mark.slurm
@pytest.mark.slow
@needs_slurm
def test_resume_in_a_new_allocation(tmp_path):
    wf = _synthetic(tmp_path)
    first = _slurm_workflow(wf, tmp_path, "slurm.zarr", jobs=1)
    first["process_steps"] = wf["process_steps"][:2]  # stopped after two steps
    p3d.run(first, progress=False)
    second = _slurm_workflow(wf, tmp_path, "slurm.zarr", jobs=1)  # a new SLURMCluster
    result = p3d.run(second, progress=False)
    status = {r.name: r.status for r in result.reports}
    assert status["cropping"] == "reused" and status["bkg_removal"] == "reused"
    assert status["destriping"] == "computed"
    np.testing.assert_array_equal(p3d.open_result(tmp_path / "slurm.zarr").values,
                                  p3d.open_result(tmp_path / "threads.zarr").values)
