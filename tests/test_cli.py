"""The pystack3d-dask command, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile
from helpers import tree_hashes

import pystack3d_dask as p3d
from pystack3d_dask.io.export import export_tiff, slice_name
from pystack3d_dask.io.tiff import discover


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pystack3d_dask.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def _toml(tmp_path: Path, steps: str = '"cropping"', extra: str = "") -> Path:
    path = tmp_path / "wf.toml"
    path.write_text(f'project_dir = "slices"\nnproc = 2\nprocess_steps = [{steps}]\n'
                    f'[cropping]\narea = [4, 60, 6, 44]\n{extra}')
    return path


def test_run_status_export_roundtrip(tmp_path, stack_dir):
    folder, data = stack_dir
    before = tree_hashes(folder)
    res = cli("run", str(_toml(tmp_path)), "--workers", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "steps/01_cropping" in res.stderr and "computed" in res.stderr
    store = tmp_path / "wf.zarr"  # default: the workflow's name with .zarr
    # a run writes every step's figures beside the store, unless told not to
    assert (tmp_path / "wf-report" / "01_cropping" / "sections.png").is_file()
    assert "report:" in res.stderr

    res = cli("status", str(store), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[1].startswith("input") and "complete" in lines[1] and "1x12x48x64" in lines[1]
    assert lines[2].startswith("steps/01_cropping") and "1x12x38x56 uint16" in lines[2]
    rows = json.loads(cli("status", str(store), "--json", cwd=tmp_path).stdout)
    assert [r["complete"] for r in rows] == [True, True]
    assert rows[1]["fingerprint"] == p3d.open_result(store).attrs["fingerprint"]

    res = cli("export", str(store), str(tmp_path / "exported"), "--format", "tiff", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    files = sorted((tmp_path / "exported").glob("*.tif"))
    assert [f.name for f in files[:2]] == ["slice_0000_z=0.0000um.tif", "slice_0001_z=0.0100um.tif"]
    np.testing.assert_array_equal(tifffile.imread(files[5]), data[5, 4:42, 4:60])
    res = cli("export", str(store), str(tmp_path / "exp_in"), "--step", "input", cwd=tmp_path)
    np.testing.assert_array_equal(tifffile.imread(sorted((tmp_path / "exp_in").glob("*.tif"))[3]),
                                  data[3])
    assert tree_hashes(folder) == before

    # exported slices read back as an input: same z positions
    src = discover(tmp_path / "exported")
    np.testing.assert_allclose(src.z, np.arange(12) * 0.01)
    assert src.shape == (38, 56)


def test_rerun_reports_reuse(tmp_path, stack_dir):
    toml = _toml(tmp_path)
    assert cli("run", str(toml), cwd=tmp_path).returncode == 0
    res = cli("run", str(toml), "--scheduler", "processes", "--no-report",
              "--report-dir", str(tmp_path / "not-written"), cwd=tmp_path)
    assert not (tmp_path / "not-written").exists()
    assert res.returncode == 0, res.stderr
    assert "steps/01_cropping" in res.stderr and "reused" in res.stderr


def test_errors_are_one_line_without_traceback(tmp_path, stack_dir):
    res = cli("run", str(_toml(tmp_path, '"cropping", "cropping"')), cwd=tmp_path)
    assert res.returncode == 2
    assert "listed twice" in res.stderr and "Traceback" not in res.stderr
    res = cli("run", str(_toml(tmp_path, '"destriping"')), cwd=tmp_path)
    assert res.returncode == 2 and "[destriping] needs filters" in res.stderr
    res = cli("run", str(_toml(tmp_path, extra="[cropping_final]\naera = 1\n")), cwd=tmp_path)
    assert res.returncode == 2 and "did you mean 'area'" in res.stderr
    res = cli("status", str(tmp_path / "nothing.zarr"), cwd=tmp_path)
    assert res.returncode == 2 and "no store" in res.stderr
    res = cli("--debug", "run", str(_toml(tmp_path, '"destriping"')), cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_export_step_names(tmp_path, stack_dir):
    toml = _toml(tmp_path, '"cropping", "cropping_final"', "[cropping_final]\narea = [0, 10, 0, 8]\n")
    assert cli("run", str(toml), cwd=tmp_path).returncode == 0
    store = tmp_path / "wf.zarr"
    assert p3d.open_result(store).shape == (1, 12, 8, 10)
    assert p3d.open_result(store, "01_cropping").shape == (1, 12, 38, 56)
    assert p3d.open_result(store, "steps/02_cropping_final").shape == (1, 12, 8, 10)
    res = cli("export", str(store), str(tmp_path / "e"), "--step", "bkg_removal", cwd=tmp_path)
    assert res.returncode == 2 and "no step 'bkg_removal'" in res.stderr


def test_export_never_loses_a_file(tmp_path, stack_dir, capsys):
    from pystack3d_dask.cli import main

    def export(*args: str) -> tuple[int, str]:
        # in this process (an interpreter start per refusal would cost more than the
        # test): the command's own code path, its exit status and stderr
        rc = main(["export", str(store), *args])
        return rc, capsys.readouterr().err

    folder, _ = stack_dir
    toml = _toml(tmp_path, '"cropping", "cropping_final"', "[cropping_final]\narea = [0, 10, 0, 8]\n")
    assert cli("run", str(toml), "--no-report", cwd=tmp_path).returncode == 0
    store = tmp_path / "wf.zarr"
    before = tree_hashes(folder)
    # the store's own input folder: refused even with --overwrite, the slices untouched
    res = cli("export", str(store), str(folder), "--overwrite", cwd=tmp_path)
    assert res.returncode == 2 and "input folder" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert tree_hashes(folder) == before
    # a folder with a file of the user's: refused, even with --overwrite
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    rc, err = export(str(mine), "--overwrite")
    assert rc == 2 and "notes.txt" in err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    # inside the store: refused
    rc, err = export(str(store / "out"))
    assert rc == 2 and "inside the store" in err
    assert not (store / "out").exists()

    # a previous, longer export: refused without --overwrite, replaced whole with it
    out = tmp_path / "out"
    stack = p3d.open_result(store)
    export_tiff(stack, out)  # 12 slices
    rc, err = export(str(out))
    assert rc == 2 and "--overwrite" in err
    export_tiff(stack.isel(z=slice(0, 5)), out, overwrite=True)
    names = sorted(p.name for p in out.glob("*.tif"))
    assert names == [slice_name(k, 0.01 * k) for k in range(5)]  # no stale slice left
    assert len(discover(out).z) == 5

    # OME-Zarr: only a previous export of this package is replaced
    (tmp_path / "other.zarr").mkdir()
    (tmp_path / "other.zarr" / "data.bin").write_bytes(b"1")
    rc, err = export(str(tmp_path / "other.zarr"), "--format", "ome-zarr", "--overwrite")
    assert rc == 2 and "not an OME-Zarr exported by" in err
    assert (tmp_path / "other.zarr" / "data.bin").read_bytes() == b"1"
    ome = tmp_path / "img.ome.zarr"
    for args in ((), ("--overwrite",)):
        assert export(str(ome), "--format", "ome-zarr", *args)[0] == 0
    rc, err = export(str(ome), "--format", "ome-zarr")
    assert rc == 2 and "--overwrite" in err


def test_one_slice_stack_goes_through_every_step(tmp_path):
    from pystack3d_dask.datasets.synthetic import write_synthetic

    files = write_synthetic(tmp_path / "syn", shape=(12, 48, 48))
    for path in sorted(files.slices_dir.glob("*.tif"))[1:]:
        path.unlink()
    res = cli("run", str(files.workflow), "--quiet", "--no-report", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "warning" not in res.stderr
    store = files.workflow.with_suffix(".zarr")
    first = p3d.open_result(store, "input")
    out = p3d.open_result(store)
    assert out.shape[:2] == (1, 1)
    # resampling of one slice gives that slice at its own z
    assert float(p3d.open_result(store, "resampling")["z"][0]) == float(first["z"][0])


def test_unexpected_error_is_one_line_naming_the_step():
    from pystack3d_dask.cli import unexpected_message

    exc = ValueError("min() arg is an empty sequence")
    exc.pystack3d_step = "resampling"
    line = unexpected_message(exc, "run")
    assert line.startswith("run in step resampling failed: ValueError: min() arg")
    assert "--debug" in line
    missing = FileNotFoundError(2, "No such file or directory", "/data/x.tif")
    assert "(/data/x.tif)" not in unexpected_message(missing, "export")  # already in str()
    assert "/data/x.tif" in unexpected_message(missing, "export")


def test_synth_then_demo_scores_against_truth(tmp_path):
    res = cli("synth", str(tmp_path / "syn"), "--shape", "16", "64", "72", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "syn" / "workflow.toml").exists()
    assert len(list((tmp_path / "syn" / "slices").glob("slice_*_z=*um.tif"))) >= 12
    res = cli("synth", str(tmp_path / "syn"), cwd=tmp_path)
    assert res.returncode == 2 and "error:" in res.stderr  # refuses a non-empty folder

    res = cli("demo", str(tmp_path / "demo"), "--shape", "16", "64", "72", "--quiet",
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    table = [line.split() for line in res.stdout.splitlines()
             if line.startswith("input") or line[:3].rstrip("_").isdigit()]
    assert table[0][0] == "input" and table[1][0] == "01_cropping"
    assert table[-1][0].endswith("_cropping_final")
    assert any(row[0].endswith("_destriping") for row in table)  # every step runs now
    assert (tmp_path / "demo" / "demo-report" / "input" / "statistics.png").is_file()
    psnr = [float(row[1]) for row in table]
    assert all(5 < v < 60 for v in psnr)
    store = tmp_path / "demo" / "demo.zarr"
    assert p3d.open_result(store).sizes["y"] < p3d.open_result(store, "input").sizes["y"]
