"""Checkpoints, reuse, recompute of changed steps, fusion, resume after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import tree_hashes, write_stack

import pystack3d_dask as p3d
import pystack3d_dask.io.tiff as tiff_mod
import pystack3d_dask.store.write as write_mod
from pystack3d_dask.errors import ConfigError, StoreError
from pystack3d_dask.store import Store


def _workflow(tmp_path: Path, **tables) -> dict:
    wf = {
        "project_dir": str(tmp_path / "slices"),
        "channels": ["."],
        "nproc": 2,
        "process_steps": ["cropping", "cropping_final"],
        "cropping": {"area": [4, 60, 6, 44]},
        "cropping_final": {"area": [2, 50, 0, 30]},
        "store": {"path": str(tmp_path / "out.zarr")},
    }
    for name, table in tables.items():
        wf[name] = table
    return wf


@pytest.fixture
def counters(monkeypatch):
    """Count the TIFF slices read and the chunks written, per group."""
    counts = {"reads": 0, "writes": {}}
    read, write = tiff_mod.read_slice, write_mod._write_slab

    def counting_read(*args, **kwargs):
        counts["reads"] += 1
        return read(*args, **kwargs)

    def counting_write(block, extra_blocks, extra_specs, store, group, c, z0, n, todo, *args):
        if todo:  # a task that writes slices (the others read the statistics back)
            counts["writes"][group] = counts["writes"].get(group, 0) + len(todo)
        return write(block, extra_blocks, extra_specs, store, group, c, z0, n, todo, *args)

    monkeypatch.setattr(tiff_mod, "read_slice", counting_read)
    monkeypatch.setattr(write_mod, "_write_slab", counting_write)
    return counts


def test_checkpoints_hold_stack_stats_params_fingerprint(tmp_path, stack_dir):
    _, data = stack_dir
    result = p3d.run(_workflow(tmp_path), progress=False)
    assert [r.group for r in result.reports] == ["input", "steps/01_cropping",
                                                 "steps/02_cropping_final"]
    ds = p3d.load_workflow  # noqa: F841 - API presence
    st = Store(tmp_path / "out.zarr", create=False)
    crop = st.open_dataset("steps/01_cropping")
    # area [4, 60, 6, 44] on 48 rows: rows 48-44=4 .. 48-6=42, columns 4 .. 60
    expected = data[:, 4:42, 4:60]
    np.testing.assert_array_equal(crop["stack"].values[0], expected)
    assert crop["stack"].encoding["chunks"] == (1, 1, 38, 56)
    np.testing.assert_allclose(crop["min"].values[0], expected.min(axis=(1, 2)))
    np.testing.assert_allclose(crop["max"].values[0], expected.max(axis=(1, 2)))
    np.testing.assert_allclose(crop["mean"].values[0], expected.mean(axis=(1, 2)))
    assert crop.attrs["params"] == {"area": [4, 60, 6, 44], "rounding": False}
    assert crop.attrs["complete"] is True and len(crop.attrs["fingerprint"]) == 64
    assert crop["y"].values[0] == 4 and crop["x"].values[0] == 4
    final = p3d.open_result(tmp_path / "out.zarr")
    np.testing.assert_array_equal(final.values[0], expected[:, 8:38, 2:50])
    np.testing.assert_allclose(final["z"].values, np.arange(12) * 0.01)
    assert zarr.open_group(str(tmp_path / "out.zarr")).attrs["pystack3d_dask"]["layout_version"] == 1


def test_rerun_unchanged_computes_nothing(tmp_path, stack_dir, counters):
    wf = _workflow(tmp_path)
    p3d.run(wf, progress=False)
    assert counters["reads"] == 12
    assert counters["writes"] == {"input": 12, "steps/01_cropping": 12,
                                  "steps/02_cropping_final": 12}
    counters["reads"], counters["writes"] = 0, {}
    result = p3d.run(wf, progress=False)
    assert counters == {"reads": 0, "writes": {}}
    assert [r.status for r in result.reports] == ["reused"] * 3


def test_changed_step_recomputes_it_and_later_only(tmp_path, stack_dir, counters):
    p3d.run(_workflow(tmp_path), progress=False)
    counters["reads"], counters["writes"] = 0, {}
    wf = _workflow(tmp_path, cropping={"area": [0, 60, 6, 44]})
    result = p3d.run(wf, progress=False)
    assert counters["reads"] == 0
    assert counters["writes"] == {"steps/01_cropping": 12, "steps/02_cropping_final": 12}
    assert [r.status for r in result.reports] == ["reused", "computed", "computed"]
    counters["writes"] = {}
    wf = _workflow(tmp_path, cropping={"area": [0, 60, 6, 44]}, cropping_final={"area": [0, 9, 0, 9]})
    p3d.run(wf, progress=False)
    assert counters["writes"] == {"steps/02_cropping_final": 12}
    assert p3d.open_result(tmp_path / "out.zarr").shape == (1, 12, 9, 9)


def test_checkpoint_false_is_fused_into_next_step(tmp_path, stack_dir, counters):
    _, data = stack_dir
    wf = _workflow(tmp_path, cropping={"area": [4, 60, 6, 44], "checkpoint": False})
    result = p3d.run(wf, progress=False)
    assert [r.group for r in result.reports] == ["input", "steps/02_cropping_final"]
    assert result.reports[-1].fused == ["cropping"]
    assert not (tmp_path / "out.zarr" / "steps" / "01_cropping").exists()
    assert counters["writes"] == {"input": 12, "steps/02_cropping_final": 12}
    np.testing.assert_array_equal(p3d.open_result(tmp_path / "out.zarr").values[0],
                                  data[:, 4:42, 4:60][:, 8:38, 2:50])
    # the fused step's parameters still take part in the fingerprint
    counters["writes"] = {}
    wf["cropping"]["area"] = [5, 60, 6, 44]
    p3d.run(wf, progress=False)
    assert counters["writes"] == {"steps/02_cropping_final": 12}


def test_local_cluster_and_processes_give_same_bytes(tmp_path, stack_dir):
    steps = ["cropping", "bkg_removal", "intensity_rescaling", "cropping_final"]
    tables = {"bkg_removal": {"orders": [1, 1, 1], "skip_factors": [4, 4, 2],
                              "weight_func": "HuberT"},
              "intensity_rescaling": {"nbins": 64, "filter_size": 3}}
    wf = _workflow(tmp_path, **tables)
    wf["process_steps"] = steps
    ref = p3d.run(wf, progress=False)
    expected = p3d.open_result(ref.store).values
    for name in ("processes", "local"):
        wf = _workflow(tmp_path, **tables)
        wf["process_steps"] = steps
        wf["store"] = {"path": str(tmp_path / f"{name}.zarr")}
        wf["scheduler"] = {"name": name, "workers": 2}
        res = p3d.run(wf, progress=False)
        np.testing.assert_array_equal(p3d.open_result(res.store).values, expected)


def test_bad_late_step_refused_before_any_work(tmp_path, stack_dir):
    wf = _workflow(tmp_path)
    wf["process_steps"] = ["cropping", "destriping"]  # destriping without filters
    with pytest.raises(ConfigError, match=r"\[destriping\] needs filters"):
        p3d.run(wf, progress=False)
    assert not (tmp_path / "out.zarr").exists()


def test_area_outside_image_and_clipped_area(tmp_path, stack_dir):
    wf = _workflow(tmp_path, cropping={"area": [70, 90, 0, 10]})
    with pytest.raises(p3d.ConfigError, match=r"outside the image of 64 x 48"):
        p3d.run(wf, progress=False)
    wf = _workflow(tmp_path, cropping={"area": [0, 99999, 0, 99999]})
    with pytest.warns(UserWarning, match="exceeds the image width 64"):
        p3d.run(wf, progress=False)
    assert p3d.open_result(tmp_path / "out.zarr", "cropping").shape == (1, 12, 48, 64)


def test_store_of_another_input_refused_unless_overwrite(tmp_path, stack_dir):
    p3d.run(_workflow(tmp_path), progress=False)
    before = tree_hashes(tmp_path / "out.zarr")
    other = tmp_path / "other"
    write_stack(other, n=12, seed=5)
    wf = _workflow(tmp_path)
    wf["project_dir"] = str(other)
    with pytest.raises(StoreError, match="holds another input"):
        p3d.run(wf, progress=False)
    assert tree_hashes(tmp_path / "out.zarr") == before  # nothing overwritten
    # same folder, but a file's content changed
    write_stack(tmp_path / "slices", n=1, seed=9)
    with pytest.raises(StoreError, match=r"different version of slice_0000_z=0.0000um.tif"):
        p3d.run(_workflow(tmp_path), progress=False)
    assert tree_hashes(tmp_path / "out.zarr") == before
    wf["store"]["overwrite"] = True
    res = p3d.run(wf, progress=False)
    assert res.reports[0].status == "computed"


def test_store_path_that_is_a_file_or_foreign_folder(tmp_path, stack_dir):
    (tmp_path / "file.zarr").write_text("x")
    wf = _workflow(tmp_path)
    wf["store"] = {"path": str(tmp_path / "file.zarr")}
    with pytest.raises(StoreError, match="is a file"):
        p3d.run(wf, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    wf["store"] = {"path": str(tmp_path / "busy")}
    with pytest.raises(StoreError, match="non-empty folder that is not a Zarr store"):
        p3d.run(wf, progress=False)


def test_input_files_never_modified(tmp_path, stack_dir):
    folder, _ = stack_dir
    before = tree_hashes(folder)
    p3d.run(_workflow(tmp_path), progress=False)
    p3d.run(_workflow(tmp_path, cropping={"area": [1, 9, 1, 9]}), progress=False)
    assert tree_hashes(folder) == before


def test_failed_step_never_marked_complete(tmp_path, stack_dir):
    folder, _ = stack_dir
    victim = folder / "slice_0007_z=0.0700um.tif"
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(p3d.InputError, match="slice_0007"):
        p3d.run(_workflow(tmp_path), progress=False)
    st = Store(tmp_path / "out.zarr", create=False)
    assert not st.is_complete("input")
    with pytest.raises(StoreError, match="no complete step"):
        p3d.open_result(tmp_path / "out.zarr")


def _chunk_files(group_dir: Path) -> int:
    folder = group_dir / "stack"
    return sum(1 for p in folder.rglob("*") if p.is_file() and p.name != "zarr.json"
               and not p.name.endswith(".partial")) if folder.exists() else 0


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing_written_chunks(tmp_path, counters):
    n = 40
    stack = write_stack(tmp_path / "slices", n=n, shape=(512, 512), seed=3)
    toml = tmp_path / "wf.toml"
    toml.write_text('project_dir = "slices"\nnproc = 1\nprocess_steps = ["cropping"]\n'
                    '[cropping]\narea = [0, 500, 0, 500]\n[store]\npath = "out.zarr"\n'
                    'compressor = "zstd"\ncompression_level = 19\n')
    group_dir = tmp_path / "out.zarr" / "steps" / "01_cropping"
    present = 0
    for _attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-m", "pystack3d_dask.cli", "run", str(toml),
                                 "--quiet", "--workers", "1"], cwd=tmp_path)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            present = _chunk_files(group_dir)
            if present >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
        proc.wait()
        present = _chunk_files(group_dir)
        if 0 < present < n:
            break
    assert 0 < present < n, "could not kill the run in the middle of the step"
    st = Store(tmp_path / "out.zarr", create=False)
    assert st.is_complete("input") and not st.is_complete("steps/01_cropping")

    stray = group_dir / "stack" / "c.0.0.0.0.0123abcd.partial"
    stray.write_bytes(b"cut")  # what a writer killed mid-rename leaves behind

    counters["reads"], counters["writes"] = 0, {}
    result = p3d.run(toml, progress=False)
    assert not stray.exists()
    report = result.reports[-1]
    assert report.status == "resumed"
    assert report.chunks_computed == n - present
    assert counters["writes"] == {"steps/01_cropping": n - present}
    assert counters["reads"] == 0  # the input checkpoint was complete

    # the whole crop (origin bottom-left: rows 12 to 512), slices written before the
    # kill and after it alike
    np.testing.assert_array_equal(p3d.open_result(result.store).values,
                                  stack[None, :, 12:, :500])


def test_blosc_store_goes_through_zarr_and_gives_same_values(tmp_path, stack_dir):
    ref = p3d.run(_workflow(tmp_path), progress=False)
    wf = _workflow(tmp_path)
    wf["store"] = {"path": str(tmp_path / "blosc.zarr"), "compressor": "blosc-lz4"}
    res = p3d.run(wf, progress=False)
    arr = zarr.open_array(str(res.store), path="steps/02_cropping_final/stack")
    assert type(arr.compressors[0]).__name__ == "BloscCodec"
    np.testing.assert_array_equal(p3d.open_result(res.store).values,
                                  p3d.open_result(ref.store).values)


def test_threads_get_tasks_in_batches_bounded_by_bytes():
    import dask

    from pystack3d_dask.runtime.cluster import BATCH_BYTES, MAX_BATCH, Executor

    ex = Executor("threads", 2)
    assert "chunksize" not in ex._local_options()  # slice size unknown: one task at a time
    ex.task_bytes = 600 * 640
    assert ex._local_options()["chunksize"] == MAX_BATCH
    ex.task_bytes = 1024 * 1024 * 4
    assert ex._local_options()["chunksize"] == BATCH_BYTES // ex.task_bytes == 1
    ex.task_bytes = 1024 * 1024
    assert ex._local_options()["chunksize"] == 4
    assert "chunksize" not in Executor("processes", 2, task_bytes=1024)._local_options()
    # the batches give the same results, in order
    tasks = [dask.delayed(pow)(k, 2) for k in range(50)]
    ex.task_bytes = 100
    assert ex.compute(tasks) == [k * k for k in range(50)]


def test_local_runs_do_not_import_distributed():
    """Within a local executor, a stray compute (an xarray ``.values`` of a lazy array)
    uses the run's scheduler: left to find one, dask imports distributed (0.4 s) to look
    for a client."""
    code = (
        "import sys, dask.array as da, xarray as xr\n"
        "from pystack3d_dask.runtime.cluster import executor\n"
        "with executor('threads', 2, progress=False):\n"
        "    assert float(xr.DataArray(da.ones(4, chunks=2)).sum().values) == 4.0\n"
        "print('distributed' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def _edit_middle(path: Path, value: int) -> None:
    """Overwrite bytes in the middle of a file in place: same size, same first and last
    64 KiB, a new modification time."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 16] = bytes([value]) * 16
    path.write_bytes(bytes(data))


def test_input_edited_in_place_is_caught_and_a_touch_is_not(tmp_path):
    # 360 x 400 uint16 slices: 288 KB files, whose middle the ends' hash does not cover
    write_stack(tmp_path / "slices", n=4, shape=(360, 400))
    wf = _workflow(tmp_path)
    p3d.run(wf, progress=False)
    target = tmp_path / "slices" / "slice_0002_z=0.0200um.tif"
    # touched only (new time, same bytes): the checkpoints are reused
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    res = p3d.run(wf, progress=False)
    assert [r.status for r in res.reports] == ["reused"] * 3
    # edited in the middle: refused, naming the file, before anything is reused
    before = tree_hashes(tmp_path / "out.zarr")
    _edit_middle(target, 7)
    with pytest.raises(StoreError, match=r"different version of slice_0002_z=0.0200um.tif: "
                       r"modified .*, same size, but its pixels \(slice z = 0.02 um\) differ"):
        p3d.run(wf, progress=False)
    assert tree_hashes(tmp_path / "out.zarr") == before
    wf["store"]["overwrite"] = True
    assert p3d.run(wf, progress=False).reports[0].status == "computed"
    # with the ingested slices gone ([store] keep), a moved time cannot be checked: refused
    wf["store"].update(overwrite=False, keep="last")
    p3d.run(wf, progress=False)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    with pytest.raises(StoreError, match=r"slice_0002_z=0.0200um.tif was modified .* no longer "
                       r"holds the ingested slices"):
        p3d.run(wf, progress=False)


def test_store_inside_the_slice_folder_is_allowed_with_a_warning(tmp_path):
    # PyStack3D's layout: the workflow file beside the slices, so the default store too
    folder = tmp_path / "slices"
    write_stack(folder, n=4, shape=(24, 28))
    before = tree_hashes(folder)
    (folder / "params.toml").write_text('project_dir = "."\nprocess_steps = ["cropping"]\n'
                                        "[cropping]\narea = [2, 20, 2, 18]\n")
    with pytest.warns(UserWarning, match=r"inside the input folder .*slices.*\[store\] path"):
        result = p3d.run(folder / "params.toml", progress=False)
    assert result.store == (folder / "params.zarr").resolve()
    assert p3d.open_result(result.store).shape == (1, 4, 16, 18)
    after = tree_hashes(folder)
    assert {k: v for k, v in after.items() if k in before} == before  # slices only read
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a store elsewhere: no warning
        p3d.run(folder / "params.toml", store=tmp_path / "apart.zarr", progress=False)
