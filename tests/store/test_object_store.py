"""A store on S3-compatible object storage, against a real S3 server (moto's server mode,
over HTTP; see conftest.py): the same bytes as a local store, every command, a killed run
resumed against the bucket, one run at a time, and the errors of a wrong endpoint,
missing credentials or a missing bucket."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from helpers import finish, write_stack

import pystack3d_dask as p3d
from pystack3d_dask.datasets.synthetic import write_synthetic
from pystack3d_dask.errors import StoreError
from pystack3d_dask.runtime.faults import ENV as FAULT_ENV
from pystack3d_dask.store.checkpoints import Store
from pystack3d_dask.store.location import StoreRef, store_ref, zarr_store
from pystack3d_dask.store.lock import LOCK_NAME, StoreLock, read_lock

pytest.importorskip("s3fs")

CLI = [sys.executable, "-m", "pystack3d_dask.cli"]
SHAPE = (10, 56, 64)
#: The synthetic workflow's first steps: what the slower tests run (each group on the
#: bucket costs its metadata's round trips to the server).
FIRST = ("cropping", "bkg_removal", "intensity_rescaling")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, Path]:
    """A synthetic project with every step, and its store from a local run."""
    base = tmp_path_factory.mktemp("s3project")
    files = write_synthetic(base / "syn", shape=SHAPE)
    local = base / "local.zarr"
    p3d.run(files.workflow, store=local, progress=False)
    return files.workflow, local


def _workflow_on(workflow: Path, url: str, options: dict) -> dict:
    import tomllib

    wf = tomllib.loads(workflow.read_text())
    wf["project_dir"] = str(workflow.parent / "slices")
    wf["store"] = {"path": url, "storage_options": options}
    return wf


def _groups(root: zarr.Group) -> dict[str, zarr.Group]:
    out = {"input": root["input"]} if "input" in root else {}
    if "steps" in root:
        out.update({f"steps/{name}": group for name, group in root["steps"].groups()})
    return out


def assert_same_store(store: StoreRef | str, reference: Path, groups: int = 9) -> int:
    """Every array of the store's ``groups`` groups (the first of the reference's, a
    workflow's first steps) holds the reference's values, bit for bit; returns how many
    arrays were compared."""
    ref = _groups(zarr.open_group(str(reference), mode="r"))
    got = _groups(zarr.open_group(zarr_store(store), mode="r"))
    assert sorted(got) == sorted(ref)[:groups]
    compared = 0
    for name, group in ((n, ref[n]) for n in got):
        assert dict(got[name].attrs)["complete"] is True, name
        for key in sorted(group.array_keys()):
            a, b = group[key][...], got[name][key][...]
            assert a.dtype == b.dtype and a.shape == b.shape, f"{name}/{key}"
            assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), f"{name}/{key} differs"
            compared += 1
    return compared


@pytest.mark.slow
def test_workflow_on_s3_gives_the_local_bytes_and_every_command_works(
        project, bucket, s3_options, s3, tmp_path):
    workflow, local = project
    url = f"s3://{bucket}/runs/run.zarr"
    result = p3d.run(_workflow_on(workflow, url, s3_options), progress=False)
    assert isinstance(result.store, StoreRef) and result.store.url == url
    assert [r.status for r in result.reports] == ["computed"] * 9
    assert assert_same_store(result.store, local) > 9 * 5
    fs = s3
    assert not fs.exists(f"{bucket}/runs/run.zarr/{LOCK_NAME}")  # released
    assert not list(Path.cwd().glob("s3:*"))  # nothing went to a local folder named like it

    again = p3d.run(_workflow_on(workflow, url, s3_options), progress=False)
    assert [r.status for r in again.reports] == ["reused"] * 9

    from pystack3d_dask.workflow.clean import clean
    from pystack3d_dask.workflow.status import store_status

    rows = {r["group"]: r for r in store_status(result.store)}
    assert all(r["complete"] for r in rows.values()) and len(rows) == 9
    local_rows = {r["group"]: r for r in store_status(local)}
    assert [r["shape"] for r in rows.values()] == [r["shape"] for r in local_rows.values()]
    # the command line: the URL as the store argument, the server and keys from the
    # environment
    env = {**os.environ, "AWS_ENDPOINT_URL": s3_options["endpoint_url"],
           "AWS_ACCESS_KEY_ID": s3_options["key"], "AWS_SECRET_ACCESS_KEY": s3_options["secret"]}
    shown = subprocess.run([*CLI, "status", url], env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("complete") == 9 and "steps/08_cropping_final" in shown.stdout
    final = p3d.open_result(result.store).values
    np.testing.assert_array_equal(final, p3d.open_result(local).values)

    # export to local TIFF slices, from the bucket
    from pystack3d_dask.io.export import export_tiff

    written = export_tiff(p3d.open_result(result.store), tmp_path / "tiffs")
    assert len(written) == final.shape[1]
    np.testing.assert_array_equal(tifffile.imread(written[3]), final[0, 3])

    # retention: the slices of every step but the last removed from the bucket
    before = fs.du(f"{bucket}/runs/run.zarr", total=True)
    report = clean(result.store, "last")
    after = fs.du(f"{bucket}/runs/run.zarr", total=True)
    assert report.bytes_freed > 0 and after < before - report.bytes_freed * 0.9
    assert not fs.exists(f"{bucket}/runs/run.zarr/steps/01_cropping/stack/c.0.0.0.0")
    st = Store(result.store, create=False)
    assert st.is_removed("steps/01_cropping") and st.is_complete(st.step_groups()[-1])
    np.testing.assert_array_equal(p3d.open_result(result.store).values, final)


def _cli(workflow: Path, env: dict | None = None) -> subprocess.Popen:
    err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by finish)
    proc = subprocess.Popen([*CLI, "run", str(workflow), "--quiet", "--no-report"],
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=err, text=True)
    proc.err_file = err
    return proc


def _toml(value) -> str:
    return json.dumps(value)  # TOML accepts JSON's strings, numbers and booleans


@pytest.mark.slow
def test_killed_runs_resume_against_the_bucket_to_identical_bytes(project, bucket, s3_options,
                                                                     tmp_path):
    workflow, local = project
    text = workflow.read_text().replace('project_dir = "slices"',
                                        f'project_dir = {_toml(str(workflow.parent / "slices"))}')
    options = ", ".join(f"{k} = {_toml(v)}" for k, v in s3_options.items())
    url = f"s3://{bucket}/killed.zarr"
    text = re.sub(r"process_steps = \[[^]]*\]", f"process_steps = {_toml(list(FIRST))}", text)
    wf_file = tmp_path / "workflow.toml"
    wf_file.write_text(f'{text}\n[store]\npath = "{url}"\nstorage_options = {{ {options} }}\n')
    kills = 0
    # at the moments a random kill rarely hits, then at random moments
    for fault in ("chunks-written:input", "mark-complete:steps/02_*"):
        code, err = finish(_cli(wf_file, {FAULT_ENV: fault}))
        assert code == -signal.SIGKILL, f"fault point {fault} not reached: {err}"
        kills += 1
    rng = random.Random(3)
    for _ in range(2):
        proc = _cli(wf_file)
        try:
            proc.wait(timeout=rng.uniform(1.0, 3.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        finish(proc)
    code, err = finish(_cli(wf_file))
    assert code == 0, err
    assert kills >= 3
    ref = store_ref(url, s3_options)
    assert assert_same_store(ref, local, len(FIRST) + 1) > 4 * 5

    # the report of the resumed store: figures drawn from the bucket, written to a local
    # folder (here, not in the every-command test: each group drawn costs a second or two)
    from pystack3d_dask.report.figures import write_report

    figures = write_report(ref, tmp_path / "report", sections=False, cube=False, truth=False)
    assert {f.parent.name for f in figures} == {"input", "01_cropping", "02_bkg_removal",
                                                "03_intensity_rescaling"}
    assert all(f.is_file() and f.stat().st_size > 1000 for f in figures)


def test_one_run_at_a_time_on_a_bucket_and_a_dead_runs_lock_taken_over(bucket, s3_options, s3):
    ref = store_ref(f"s3://{bucket}/locked.zarr", s3_options)
    Store(ref)
    first = StoreLock(ref, heartbeat_s=0.2)
    first.acquire()
    try:
        held = read_lock(ref)
        assert held["token"] == first.token and held["pid"] == os.getpid()
        time.sleep(1.5)  # heartbeats rewrite the object: its age stays small
        assert read_lock(ref)["age_s"] < 60
        with pytest.raises(StoreError, match=f"s3://{bucket}/locked.zarr is in use by "
                                             f"another run: process {os.getpid()}"):
            StoreLock(ref).acquire()
    finally:
        first.release()
    assert read_lock(ref) is None

    # a lock left by a process that is gone (this host) is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    s3.pipe_file(f"{bucket}/locked.zarr/{LOCK_NAME}", json.dumps(
        {"pid": int(dead.stdout), "host": socket.gethostname(), "started": time.time(),
         "token": "dead", "command": "pystack3d-dask run"}).encode())
    lock = StoreLock(ref)
    with lock.held():
        assert read_lock(ref)["token"] == lock.token
    assert read_lock(ref) is None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("case", ["unreachable", "no credentials", "no bucket"])
def test_bad_object_store_named_and_nothing_written(case, bucket, s3_options, s3, tmp_path,
                                                    monkeypatch):
    write_stack(tmp_path / "slices", n=3, shape=(16, 20), dtype="uint8")
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    options, url = dict(s3_options), f"s3://{bucket}/bad.zarr"
    if case == "unreachable":
        options["endpoint_url"] = f"http://127.0.0.1:{_closed_port()}"
        options["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 2}
        expected = r"cannot reach the object store at http://127\.0\.0\.1:\d+"
    elif case == "no credentials":
        del options["key"], options["secret"]
        expected = "no credentials found for the object store"
    else:
        url = f"s3://{bucket}-absent/bad.zarr"
        expected = f"the bucket '{bucket}-absent' does not exist"
    with pytest.raises(StoreError, match=expected) as info:
        p3d.run({"project_dir": str(tmp_path / "slices"), "process_steps": ["cropping"],
                 "cropping": {"area": [0, 10, 0, 10]},
                 "store": {"path": url, "storage_options": options}}, progress=False)
    assert url in str(info.value)
    assert s3.ls(bucket) == [] and not s3.exists(f"{bucket}-absent")


@pytest.mark.slow
def test_local_cluster_sharing_no_folder_reads_and_writes_the_bucket(project, bucket, s3_options,
                                                                      s3, tmp_path, monkeypatch):
    """Input and store both in the bucket; the workers, processes of their own with their
    own scratch folders, read and write only through S3: the same bytes as the same array
    read from and written to local folders by threads."""
    from distributed import Client, LocalCluster, get_task_stream

    workflow, local = project
    slices = zarr.open_group(str(local), path="input", mode="r")["stack"][0]  # (z, y, x)
    local_input = tmp_path / "input.zarr"
    for target, options in ((str(local_input), None), (f"s3://{bucket}/input.zarr", s3_options)):
        arr = zarr.create_array(target, shape=slices.shape, chunks=(1, *slices.shape[1:]),
                                dtype=slices.dtype, storage_options=options)
        arr[...] = slices
    import tomllib

    steps = tomllib.loads(workflow.read_text())
    steps.pop("project_dir", None)
    steps["process_steps"] = list(FIRST)

    def workflow_of(input_path, store, options):
        wf = dict(steps)
        wf["input"] = {"path": input_path, "z_spacing": 0.01, "pixel_size": 0.005,
                       **({"storage_options": options} if options else {})}
        wf["store"] = {"path": store, **({"storage_options": options} if options else {})}
        return wf

    on_disk = p3d.run(workflow_of(str(local_input), str(tmp_path / "reference.zarr"), None),
                      scheduler="threads", progress=False)
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    monkeypatch.chdir(client_dir)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      local_directory=str(tmp_path / "workers"), dashboard_address=None) as cluster, \
            Client(cluster) as client, get_task_stream(client) as stream:
        result = p3d.run(workflow_of(f"s3://{bucket}/input.zarr", f"s3://{bucket}/run.zarr",
                                     s3_options), client=client, progress=False)
        workers = set(client.scheduler_info()["workers"])
    assert [r.status for r in result.reports] == ["computed"] * len(on_disk.reports)
    ran_on = {task["worker"] for task in stream.data}
    assert ran_on and ran_on <= workers and len(stream.data) > 9 * 2
    assert list(client_dir.iterdir()) == []  # the client wrote nothing to its folder
    assert s3.exists(f"{bucket}/run.zarr/steps") and not (client_dir / "run.zarr").exists()
    assert assert_same_store(result.store, tmp_path / "reference.zarr", len(FIRST) + 1) > 4 * 5
