"""A notebook's dask Client: given to run(), or active, it does the work."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers import write_stack

import pystack3d_dask as p3d

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=":0")
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _workflow(tmp_path, **extra) -> dict:
    write_stack(tmp_path / "slices", n=10, shape=(40, 56))
    return {"project_dir": str(tmp_path / "slices"),
            "process_steps": ["cropping", "bkg_removal"],
            "cropping": {"area": [2, 50, 4, 36]},
            "bkg_removal": {"dim": 2, "orders": [1, 1]},
            "store": {"path": str(tmp_path / "out.zarr")}, **extra}


def _worker_tasks(client, action) -> list[str]:
    with distributed.get_task_stream(client) as stream:
        action()
    return [t["key"] if isinstance(t["key"], str) else str(t["key"]) for t in stream.data]


def test_given_client_computes_every_step_and_stays_open(tmp_path, client):
    wf = _workflow(tmp_path)
    tasks = _worker_tasks(client, lambda: p3d.run(wf, client=client, progress=False))
    written = [k for k in tasks if "write_slab" in k]
    assert len(written) >= 3  # the input and both steps' slabs, on the cluster's workers
    assert client.status == "running"
    local = _workflow(tmp_path / "b", scheduler={"name": "threads"})
    p3d.run(local, progress=False)
    np.testing.assert_array_equal(p3d.open_result(tmp_path / "out.zarr").values,
                                  p3d.open_result(tmp_path / "b" / "out.zarr").values)


def test_active_client_is_used_and_said(tmp_path, client, caplog):
    with caplog.at_level(logging.INFO, logger="pystack3d_dask"):
        tasks = _worker_tasks(client, lambda: p3d.run(_workflow(tmp_path), progress=False))
    assert any("write_slab" in k for k in tasks)
    assert "running on the active dask Client" in caplog.text


def test_a_named_scheduler_keeps_the_run_off_the_active_client(tmp_path, client):
    wf = _workflow(tmp_path, scheduler={"name": "threads"})
    assert _worker_tasks(client, lambda: p3d.run(wf, progress=False)) == []
    assert _worker_tasks(client, lambda: p3d.run(_workflow(tmp_path / "b"), progress=False,
                                                 scheduler="synchronous")) == []
