"""Retention: ``[store] keep`` and ``pystack3d-dask clean`` remove the slices of
checkpoints not kept, record it, and never break resume: a run that needs removed
slices computes them again from the nearest kept group, to the same bytes."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

import pystack3d_dask as p3d
from pystack3d_dask.datasets.synthetic import write_synthetic
from pystack3d_dask.errors import ConfigError, StoreError
from pystack3d_dask.runtime.faults import ENV as FAULT_ENV
from pystack3d_dask.store.checkpoints import Store
from pystack3d_dask.store.lock import StoreLock
from pystack3d_dask.workflow.clean import clean

CLI = [sys.executable, "-m", "pystack3d_dask.cli"]
STEPS = ["cropping", "bkg_removal", "intensity_rescaling", "registration_calculation",
         "registration_transformation", "destriping", "resampling", "cropping_final"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("keep")
    files = write_synthetic(base / "syn", shape=(36, 80, 96))
    params = tomllib.loads(files.workflow.read_text())
    params["project_dir"] = str(files.slices_dir)
    params["destriping"]["maxit"] = 20
    return params


def _run(params: dict, store: Path, keep=None, **changes) -> p3d.RunResult:
    wf = copy.deepcopy(params)
    wf["store"] = {"path": str(store), **({"keep": keep} if keep is not None else {})}
    for table, values in changes.items():
        wf[table].update(values)
    return p3d.run(wf, progress=False)


def _stack_dirs(store: Path) -> dict[str, bool]:
    st = Store(store, create=False)
    return {g: (store / g / "stack").is_dir() for g in ["input", *st.step_groups()]}


def test_keep_last_removes_the_others_and_gives_the_same_result(tmp_path, project):
    full = _run(project, tmp_path / "all.zarr")
    last = _run(project, tmp_path / "last.zarr", keep="last")
    dirs = _stack_dirs(last.store)
    assert dirs.pop("steps/08_cropping_final") is True
    assert not any(dirs.values()), dirs  # the input too: the TIFF files are its source
    np.testing.assert_array_equal(p3d.open_result(last.store).values,
                                  p3d.open_result(full.store).values)
    # what was removed is recorded, and shown; the small outputs stay
    st = Store(last.store, create=False)
    attrs = st.attrs("steps/02_bkg_removal")
    assert attrs["removed"] and attrs["removed_bytes"] > 0 and not attrs["complete"]
    assert "keep = 'last'" in attrs["removed_reason"]
    ds = st.open_dataset("steps/04_registration_calculation")
    np.testing.assert_array_equal(
        ds["tmats"].values,
        st.__class__(full.store, create=False).open_dataset(
            "steps/04_registration_calculation")["tmats"].values)
    res = subprocess.run([*CLI, "status", str(last.store)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0
    assert res.stdout.count("removed") >= 8 and "MiB freed" in res.stdout
    with pytest.raises(StoreError, match="were removed"):
        p3d.open_result(last.store, "bkg_removal")
    # disk: the kept store is far smaller
    assert Store(last.store, create=False).group_bytes("") < \
        0.4 * Store(full.store, create=False).group_bytes("")

    # an unchanged re-run computes nothing
    again = _run(project, tmp_path / "last.zarr", keep="last")
    assert all(r.chunks_computed == 0 for r in again.reports)
    assert {r.status for r in again.reports[:-1]} == {"removed"}


def test_changed_step_after_removed_input_recomputes_from_nearest_kept(tmp_path, project):
    store = tmp_path / "some.zarr"
    _run(project, store, keep=["bkg_removal"])
    dirs = _stack_dirs(store)
    assert [g for g, present in dirs.items() if present] == ["steps/02_bkg_removal",
                                                           "steps/08_cropping_final"]
    changed = {"destriping": {"maxit": 10}}
    result = _run(project, store, keep=["bkg_removal"], **changed)
    status = {r.group: (r.status, r.chunks_computed) for r in result.reports}
    # before the kept bkg_removal: nothing computed; after it, recomputed up to the end
    assert status["input"][1] == 0 and status["steps/01_cropping"][1] == 0
    assert status["steps/02_bkg_removal"] == ("reused", 0)
    for group in ("steps/03_intensity_rescaling", "steps/05_registration_transformation",
                  "steps/06_destriping", "steps/08_cropping_final"):
        assert status[group][1] > 0, (group, status[group])
    reference = _run(project, tmp_path / "ref.zarr", **changed)
    np.testing.assert_array_equal(p3d.open_result(result.store).values,
                                  p3d.open_result(reference.store).values)


def test_clean_command_frees_bytes_refuses_while_running_and_resume_still_works(tmp_path,
                                                                               project):
    result = _run(project, tmp_path / "c.zarr")
    store = result.store
    st = Store(store, create=False)
    before = st.group_bytes("")
    # refused while a run holds the store
    lock = StoreLock(store)
    lock.acquire()
    try:
        with pytest.raises(StoreError, match="in use by another run"):
            clean(store, ["registration_transformation"])
    finally:
        lock.release()
    res = subprocess.run([*CLI, "clean", str(store), "--keep", "registration_transformation"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "freed" in res.stdout and "steps/02_bkg_removal" in res.stdout
    freed_mib = float(res.stdout.strip().splitlines()[-1].split()[1])
    after = st.group_bytes("")
    assert abs((before - after) / 2**20 - freed_mib) < 0.2 and freed_mib > 0
    present = [g for g, p in _stack_dirs(store).items() if p]
    assert present == ["steps/05_registration_transformation", "steps/08_cropping_final"]
    status = json.loads(subprocess.run([*CLI, "status", str(store), "--json"],
                                       capture_output=True, text=True, timeout=120).stdout)
    assert sum(r["removed"] for r in status) == 7  # input and 6 of the 8 steps

    # a changed resampling recomputes from the kept registration_transformation only
    changed = _run(project, store, resampling={"dz": 0.02})
    computed = [r.group for r in changed.reports if r.chunks_computed]
    assert computed == ["steps/06_destriping", "steps/07_resampling", "steps/08_cropping_final"]
    reference = _run(project, tmp_path / "ref2.zarr", resampling={"dz": 0.02})
    np.testing.assert_array_equal(p3d.open_result(changed.store).values,
                                  p3d.open_result(reference.store).values)


def test_bad_keep_values(tmp_path, project):
    with pytest.raises(ConfigError, match="did you mean 'cropping'"):
        _run(project, tmp_path / "x.zarr", keep=["croping"])
    with pytest.raises(ConfigError, match='"all"'):
        _run(project, tmp_path / "x.zarr", keep="some")
    res = subprocess.run([*CLI, "clean", str(tmp_path / "nothing.zarr")], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "no store" in res.stderr


def test_sharded_store_reads_back_every_slice(tmp_path, project):
    """Shards of 8 slices (the last one short), written one task per shard on two
    threads: every slice read back equals the unsharded store's, with fewer files."""
    plain = _run(project, tmp_path / "plain.zarr")
    wf = copy.deepcopy(project)
    wf["store"] = {"path": str(tmp_path / "sharded.zarr"), "shard_slices": 8}
    wf["scheduler"] = {"name": "threads", "workers": 2}
    sharded = p3d.run(wf, progress=False)
    import zarr

    for report in plain.reports:
        a = zarr.open_array(str(plain.store), path=f"{report.group}/stack", mode="r")
        b = zarr.open_array(str(sharded.store), path=f"{report.group}/stack", mode="r")
        assert b.shards == (1, min(8, a.shape[1]), *a.shape[2:]) and a.shards is None
        for z in range(a.shape[1]):  # slice by slice, as a reader would
            np.testing.assert_array_equal(b[0, z], a[0, z], err_msg=f"{report.group} z={z}")
        files_a = sum(1 for p in (plain.store / report.group / "stack").rglob("*") if p.is_file())
        files_b = sum(1 for p in (sharded.store / report.group / "stack").rglob("*")
                      if p.is_file())
        assert files_b <= files_a // 4 + 2
    # a killed run resumes shard by shard: remove one shard file, the run rewrites it only
    shard = Store(sharded.store, create=False)._chunk_file("steps/01_cropping", 0, 8)
    assert shard.is_file()
    shard.unlink()
    Store(sharded.store, create=False).update_attrs("steps/01_cropping", complete=False)
    again = p3d.run(wf, progress=False)
    status = {r.group: r.chunks_computed for r in again.reports}
    assert status["steps/01_cropping"] == 8 and status["input"] == 0
    np.testing.assert_array_equal(p3d.open_result(again.store).values,
                                  p3d.open_result(plain.store).values)


def test_unchanged_slices_are_hard_linked_not_copied(tmp_path, project):
    """registration_calculation leaves the slices as they are: its checkpoint links the
    files of the step before it, and survives that step's slices being removed."""
    result = _run(project, tmp_path / "links.zarr")
    store = result.store
    calc = store / "steps/04_registration_calculation/stack"
    before = store / "steps/03_intensity_rescaling/stack"
    files = sorted(p for p in calc.rglob("*") if p.is_file() and p.name != "zarr.json")
    assert len(files) == p3d.open_result(store, "input").sizes["z"]
    for path in files:
        twin = before / path.relative_to(calc)
        assert path.stat().st_ino == twin.stat().st_ino and path.stat().st_nlink == 2
    st = Store(store, create=False)
    assert st.group_bytes("steps/04_registration_calculation", "stack", only_here=True) < 4096
    np.testing.assert_array_equal(p3d.open_result(store, "registration_calculation").values,
                                  p3d.open_result(store, "intensity_rescaling").values)
    report = clean(store, ["registration_calculation"])
    assert "steps/03_intensity_rescaling" in report.removed
    assert report.removed["steps/03_intensity_rescaling"] < 4096  # its slices live on, linked
    stack = p3d.open_result(store, "registration_calculation").values
    assert stack.any()
    assert all(path.stat().st_nlink == 1 for path in files)


def test_clean_on_a_store_a_run_left_partial_keeps_what_the_resume_reads(tmp_path, capsys):
    # a run killed while its third step is written: clean --keep last must keep the
    # second step's slices (the third's input) and the partial one's chunks, so that
    # the resume computes the third step alone
    from pystack3d_dask.cli import main

    files = write_synthetic(tmp_path / "syn", shape=(16, 64, 72))
    steps = '["cropping", "bkg_removal", "intensity_rescaling"]'
    text = "\n".join(f"process_steps = {steps}" if line.startswith("process_steps") else line
                     for line in files.workflow.read_text().splitlines())
    workflow = files.workflow.with_name("three.toml")
    workflow.write_text(text + "\n")
    store = tmp_path / "cut.zarr"
    cut = subprocess.run([*CLI, "run", str(workflow), "--store", str(store), "--quiet",
                          "--no-report"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, FAULT_ENV: "chunks-written:steps/03_*"})
    assert cut.returncode == -signal.SIGKILL, cut.stderr
    st = Store(store, create=False)
    assert st.is_complete("steps/02_bkg_removal")
    assert not st.is_complete("steps/03_intensity_rescaling")
    # status calls the cut run's steps its own, and says how to go on (the command's
    # code in this process: an interpreter per call would double the test's time)
    assert main(["status", str(store)]) == 0
    out = capsys.readouterr().out
    assert "not part of the last workflow" not in out and "*" not in out.split("partial:")[0]
    assert "partial: the last run stopped" in out and "to resume" in out
    assert main(["status", str(store), "--json"]) == 0
    assert all(r["in_last_workflow"] for r in json.loads(capsys.readouterr().out))

    assert main(["clean", str(store)]) == 0
    out = capsys.readouterr().out
    dirs = _stack_dirs(store)
    assert dirs == {"input": False, "steps/01_cropping": False, "steps/02_bkg_removal": True,
                    "steps/03_intensity_rescaling": True}
    assert "steps/02_bkg_removal" in out and "kept" in out

    resumed = p3d.run(workflow, store=store, progress=False)
    assert not [r.group for r in resumed.reports[:3] if r.chunks_computed]
    assert Store(store, create=False).is_complete("steps/03_intensity_rescaling")
    assert not _stack_dirs(store)["steps/01_cropping"]  # the kept input read, not recomputed
    reference = p3d.run(workflow, store=tmp_path / "ref.zarr", progress=False)
    np.testing.assert_array_equal(p3d.open_result(store).values,
                                  p3d.open_result(reference.store).values)
