"""Bad inputs, each through the real command line: a clear error and nothing damaged.

One test per case of docs/errors.md. Each case writes real TIFF slices (tifffile) and a
real workflow file in a folder of its own, then runs ``pystack3d-dask run`` as a user
would, and checks that

- the exit status is 2 (the command's status for a user error);
- stderr names the culprit (file, key, value or step) and what was expected;
- stderr holds no traceback (``--debug`` shows one: see the last test);
- the input folder is byte for byte what it was;
- no step of a store is marked complete (nor the input, for an input that cannot be
  read).

A fresh interpreter spends about 1.5 s importing dask, xarray and zarr, so the module
fixture runs each command in a process of its own forked from one that has imported the
package (tests/forked_cli.py; the cases that drop privileges run a fresh interpreter), a
few at a time, then each test checks its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from forked_cli import ForkedCli
from helpers import tree_hashes, write_stack

from pystack3d_dask.store.checkpoints import LAYOUT_VERSION

SHAPE = (32, 40)  # (y, x): the image is 40 x 32 pixels (width x height)
N = 6
CROP = "[cropping]\narea = [2, 38, 2, 30]\n"
BASE = 'project_dir = "slices"\nprocess_steps = ["cropping"]\n'
TIMEOUT = 120
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ROOT_SKIP = "runs as root, for whom permissions do not block reads or writes"
# As root, the permission cases run without the capabilities that bypass file modes.
DROP_OVERRIDE = (["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
                 if IS_ROOT and shutil.which("setpriv") else [])


def name(k: int, z: float | None = None) -> str:
    """PyStack3D's name of slice ``k`` (helpers.write_stack's default)."""
    return f"slice_{k:04d}_z={(k * 0.01 if z is None else z):.4f}um.tif"


@dataclass(frozen=True)
class Case:
    """One bad input: how to make it and what the message must say."""

    id: str
    setup: Callable[[Path], None]
    expect: tuple[str, ...]
    reads_input: bool = False  # an input that cannot be read: its group never completes
    locked: tuple[str, int] | None = None  # (path, mode) set after hashing, undone after
    skip: str = ""  # why this case cannot be made here
    xfail: str = ""  # the fix needed, in a module this change did not touch
    args: tuple[str, ...] = ()  # another command than ``run wf.toml --quiet --no-report``
    kept: str = ""  # a folder of the user's, besides slices/, that must stay as it was


CASES: list[Case] = []


def case(id_: str, *expect: str, reads_input: bool = False,
         locked: tuple[str, int] | None = None, skip: str = "", xfail: str = "",
         args: tuple[str, ...] = (), kept: str = "") -> Callable:
    """Register the decorated setup function as a case."""
    if locked and IS_ROOT and not DROP_OVERRIDE:
        skip = ROOT_SKIP

    def register(setup: Callable[[Path], None]) -> Callable[[Path], None]:
        CASES.append(Case(id_, setup, expect, reads_input, locked, skip, xfail, args,
                          kept))
        return setup

    return register


def stack(folder: Path, sub: str = "slices", **kwargs) -> np.ndarray:
    """Six 32 x 40 slices named by PyStack3D's policy."""
    kwargs = {"n": N, "shape": SHAPE, **kwargs}
    return write_stack(folder / sub, **kwargs)


def workflow(folder: Path, text: str = BASE + CROP) -> None:
    (folder / "wf.toml").write_text(text)


# -- the input folder ------------------------------------------------------------------

@case("missing_input_folder", "input folder not found", "nope", "expected project_dir",
      reads_input=True)
def _(d: Path) -> None:
    stack(d)
    workflow(d, BASE.replace('"slices"', '"nope"') + CROP)


@case("empty_input_folder", "no .tif/.tiff files in", "slices", "expected the slices there",
      reads_input=True)
def _(d: Path) -> None:
    (d / "slices").mkdir()
    (d / "slices" / "notes.txt").write_text("not a slice")
    workflow(d)


@case("unreadable_input_folder", "cannot list the input folder", "slices",
      "Permission denied", "expected a folder this user can read", reads_input=True,
      locked=("slices", 0o000))
def _(d: Path) -> None:
    stack(d)
    workflow(d)


@case("unreadable_slice_file", name(2), "not a readable TIFF file", "Permission denied",
      reads_input=True, locked=(f"slices/{name(2)}", 0o000))
def _(d: Path) -> None:
    stack(d)
    workflow(d)


@case("dangling_link_slice", name(6), "a link to", "which does not exist", "offline share",
      reads_input=True)
def _(d: Path) -> None:
    stack(d)
    (d / "slices" / name(6)).symlink_to(d / "share" / "gone.tif")
    workflow(d)


@case("folder_named_like_slice", name(6), "named like a slice but not a file",
      reads_input=True)
def _(d: Path) -> None:
    stack(d)
    (d / "slices" / name(6)).mkdir()
    workflow(d)


@case("project_dir_missing_from_file", "no .tif/.tiff files in", "'slices'",
      "set project_dir", reads_input=True)
def _(d: Path) -> None:
    stack(d)  # beside the file, in slices/, but the file does not say so
    workflow(d, 'process_steps = ["cropping"]\n' + CROP)


@case("project_dir_is_not_a_tiff", "notes.txt",
      "expected a folder of slices or a multi-page .tif file", reads_input=True)
def _(d: Path) -> None:
    stack(d)
    (d / "notes.txt").write_text("x")
    workflow(d, BASE.replace('"slices"', '"notes.txt"') + CROP)


@case("ind_min_past_last_slice", "ind_min = 10 is past the last slice", "expected ind_min <= 5",
      reads_input=True)
def _(d: Path) -> None:
    stack(d)
    workflow(d, "ind_min = 10\n" + BASE + CROP)


# -- the TIFF files --------------------------------------------------------------------

@case("truncated_tiff", name(2), "cannot read slice data", "truncated or corrupt",
      reads_input=True)
def _(d: Path) -> None:
    stack(d)
    victim = d / "slices" / name(2)
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 2])  # header intact, pixel data cut
    workflow(d)


@case("corrupt_tiff", name(3), "cannot read slice data", "truncated or corrupt",
      reads_input=True)
def _(d: Path) -> None:
    data = stack(d)
    victim = d / "slices" / name(3)
    tifffile.imwrite(victim, data[3], compression="zlib")
    with tifffile.TiffFile(victim) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    raw = bytearray(victim.read_bytes())
    raw[offset:offset + count] = b"\xff" * count  # a valid header over undecodable data
    victim.write_bytes(bytes(raw))
    workflow(d)


@case("not_an_image_named_tif", name(1), "not a readable TIFF file",
      "expected every .tif/.tiff file of the input to be a TIFF image", reads_input=True)
def _(d: Path) -> None:
    stack(d)
    (d / "slices" / name(1)).write_text("these are notes, not an image\n")
    workflow(d)


@case("empty_tif_file", name(4), "not a readable TIFF file", reads_input=True)
def _(d: Path) -> None:
    stack(d)
    (d / "slices" / name(4)).write_bytes(b"")
    workflow(d)


@case("mixed_shapes", name(3), "shape (32, 41) differs from (32, 40)",
      "expected every slice to have the same shape", reads_input=True)
def _(d: Path) -> None:
    stack(d)
    tifffile.imwrite(d / "slices" / name(3), np.zeros((32, 41), np.uint16))
    workflow(d)


@case("mixed_dtypes", name(3), "dtype uint8 differs from uint16",
      "expected every slice to have the same dtype", reads_input=True)
def _(d: Path) -> None:
    stack(d)
    tifffile.imwrite(d / "slices" / name(3), np.zeros(SHAPE, np.uint8))
    workflow(d)


@case("rgb_slices", name(0), "slice of shape (32, 40, 3)", "expected a 2D grey-level image",
      reads_input=True)
def _(d: Path) -> None:
    (d / "slices").mkdir()
    for k in range(N):
        tifffile.imwrite(d / "slices" / name(k), np.zeros((*SHAPE, 3), np.uint8),
                         photometric="rgb")
    workflow(d)


@case("unsupported_dtype", name(0), "dtype float64 is not supported",
      "expected uint8, uint16 or float32", reads_input=True)
def _(d: Path) -> None:
    stack(d, dtype="float64")
    workflow(d)


@case("nan_in_float32_slice", name(4), "2 NaN and 0 infinite",
      "expected finite values in float slices", reads_input=True)
def _(d: Path) -> None:
    data = stack(d, dtype="float32")
    data[4, 3, 5] = data[4, 7, 1] = np.nan
    tifffile.imwrite(d / "slices" / name(4), data[4])
    workflow(d)


@case("inf_in_float32_slice", name(1), "0 NaN and 2 infinite",
      "expected finite values in float slices", reads_input=True)
def _(d: Path) -> None:
    data = stack(d, dtype="float32")
    data[1, 0, 0], data[1, 31, 39] = np.inf, -np.inf
    tifffile.imwrite(d / "slices" / name(1), data[1])
    workflow(d)


# -- channels and z positions ----------------------------------------------------------

CHANNELS = 'channels = ["SE", "InLens"]\n'


@case("missing_channel_folder", "channel folder not found", "InLens",
      "per name in channels", reads_input=True)
def _(d: Path) -> None:
    stack(d, "slices/SE")
    workflow(d, CHANNELS + BASE + CROP)


@case("channels_with_different_counts", "different numbers of slices", "'SE': 6",
      "'InLens': 5", "expected the same number in every channel folder", reads_input=True)
def _(d: Path) -> None:
    stack(d, "slices/SE")
    stack(d, "slices/InLens", n=5)
    workflow(d, CHANNELS + BASE + CROP)


@case("channels_with_different_z", "InLens", name(1, 0.02),
      "differs from z = 0.01 um", "expected every channel to have the same z positions",
      reads_input=True)
def _(d: Path) -> None:
    stack(d, "slices/SE")
    stack(d, "slices/InLens", dz=0.02)
    workflow(d, CHANNELS + BASE + CROP)


@case("duplicate_z_positions", name(6, 0.02), name(2), "same z = 0.02 um",
      "expected one z position per slice", reads_input=True)
def _(d: Path) -> None:
    data = stack(d)
    tifffile.imwrite(d / "slices" / name(6, 0.02), data[2])
    workflow(d)


@case("non_numeric_z_in_name", "slice_0006_z=abcum.tif", "{z_coord} = 'abc'",
      "is not a number", reads_input=True)
def _(d: Path) -> None:
    data = stack(d)
    tifffile.imwrite(d / "slices" / "slice_0006_z=abcum.tif", data[2])
    workflow(d)


@case("name_off_policy", "extra.tif", "does not follow the policy", "while other slices do",
      reads_input=True)
def _(d: Path) -> None:
    data = stack(d)
    tifffile.imwrite(d / "slices" / "extra.tif", data[0])
    workflow(d)


# -- the workflow file -----------------------------------------------------------------

@case("workflow_file_missing", "workflow file not found", "wf.toml",
      "expected the path of a .toml workflow file")
def _(d: Path) -> None:
    stack(d)


@case("toml_syntax_error", "wf.toml", "not valid TOML", "line 2", "column")
def _(d: Path) -> None:
    stack(d)
    workflow(d, 'project_dir = "slices"\nprocess_steps = ["cropping",,]\n' + CROP)


@case("workflow_not_text", "wf.toml", "not a text file")
def _(d: Path) -> None:
    stack(d)
    (d / "wf.toml").write_bytes(b"project_dir = \"\xff\xfe\"\n")


@case("unknown_key", "unknown key 'aera'", "in [cropping]", "did you mean 'area'")
def _(d: Path) -> None:
    stack(d)
    workflow(d, BASE + "[cropping]\naera = [2, 38, 2, 30]\n")


@case("unknown_table", "unknown table [croping]", "did you mean 'cropping'")
def _(d: Path) -> None:
    stack(d)
    workflow(d, BASE + CROP.replace("[cropping]", "[croping]"))


@case("wrong_type", "nproc = '2' is invalid", "expected an integer >= 1")
def _(d: Path) -> None:
    stack(d)
    workflow(d, 'nproc = "2"\n' + BASE + CROP)


@case("out_of_range_value", "[store] compression_level = 30 is invalid",
      "expected an integer >= 0 and <= 22")
def _(d: Path) -> None:
    stack(d)
    workflow(d, BASE + CROP + "[store]\ncompression_level = 30\n")


@case("value_not_among_choices", "[bkg_removal] weight_func = 'huber'", "one of",
      "did you mean 'HuberT'")
def _(d: Path) -> None:
    stack(d)
    workflow(d, BASE + CROP + '[bkg_removal]\norders = [1, 1]\nweight_func = "huber"\n')


@case("unknown_step", "unknown step 'croping' in process_steps", "did you mean 'cropping'",
      "valid steps: cropping")
def _(d: Path) -> None:
    stack(d)
    workflow(d, BASE.replace('["cropping"]', '["croping"]') + CROP)


@case("step_listed_twice", "step 'cropping' is listed twice", "each step may run once")
def _(d: Path) -> None:
    stack(d)
    workflow(d, BASE.replace('["cropping"]', '["cropping", "cropping"]') + CROP)


@case("area_outside_image", "area [50, 90, 0, 10]", "outside the image of 40 x 32",
      "expected xmin < width", "[cropping]")
def _(d: Path) -> None:
    stack(d)
    workflow(d, BASE + "[cropping]\narea = [50, 90, 0, 10]\n")


@case("empty_area", "[cropping] area = [10, 10, 0, 5] is invalid", "xmin < xmax")
def _(d: Path) -> None:
    stack(d)
    workflow(d, BASE + "[cropping]\narea = [10, 10, 0, 5]\n")


@case("threshold_min_above_max", "[bkg_removal] threshold_min = 5", "threshold_max = 1",
      "expected threshold_min <= threshold_max")
def _(d: Path) -> None:
    stack(d)
    workflow(d, 'project_dir = "slices"\nprocess_steps = ["bkg_removal"]\n[bkg_removal]\n'
                "orders = [1, 1]\nthreshold_min = 5\nthreshold_max = 1\n")


@case("factors_range_reversed", "[intensity_rescaling_area] factors_range = [1.2, 0.8]",
      "reversed", "expected [min, max] with min <= max")
def _(d: Path) -> None:
    stack(d)
    workflow(d, 'project_dir = "slices"\nprocess_steps = ["intensity_rescaling_area"]\n'
                "[intensity_rescaling_area]\nfactors_range = [1.2, 0.8]\n")


@case("dz_not_positive", "[resampling] dz = 0 is invalid", "expected a number > 0")
def _(d: Path) -> None:
    stack(d)
    workflow(d, 'project_dir = "slices"\nprocess_steps = ["resampling"]\n'
                "[resampling]\ndz = 0\n")


@case("ind_min_above_ind_max", "ind_min = 4 is larger than ind_max = 2",
      "expected ind_min <= ind_max")
def _(d: Path) -> None:
    stack(d)
    workflow(d, "ind_min = 4\nind_max = 2\n" + BASE + CROP)


@case("policy_with_unknown_field", "[input] policy = 'slice_{index}.tif' is invalid",
      "{z_coord}", "unknown field(s): {index}")
def _(d: Path) -> None:
    stack(d)
    workflow(d, BASE + CROP + '[input]\npolicy = "slice_{index}.tif"\n')


# -- registration ----------------------------------------------------------------------

@case("blank_slice_in_registration", "[registration_calculation]", "cannot be registered",
      "slices 1 -> 2): a blank slice", "on_outlier")
def _(d: Path) -> None:
    data = stack(d)
    tifffile.imwrite(d / "slices" / name(2), np.zeros_like(data[2]))
    workflow(d, BASE.replace('["cropping"]', '["registration_calculation"]'))


@case("transformation_without_calculation", "[registration_transformation]",
      "needs the output of registration_calculation", "list it before",
      "pre_calculated_tmats", reads_input=True)
def _(d: Path) -> None:
    stack(d)
    workflow(d, BASE.replace('["cropping"]', '["cropping", "registration_transformation"]')
             + CROP)


# -- the store -------------------------------------------------------------------------

def _store(d: Path, path: str) -> None:
    workflow(d, BASE + CROP + f'[store]\npath = "{path}"\n')


@case("store_path_is_a_file", "out.zarr is a file", "expected a folder")
def _(d: Path) -> None:
    stack(d)
    (d / "out.zarr").write_text("x")
    _store(d, "out.zarr")


@case("store_path_is_a_foreign_folder", "busy is a non-empty folder that is not a Zarr store",
      "choose another path")
def _(d: Path) -> None:
    stack(d)
    (d / "busy").mkdir()
    (d / "busy" / "notes.txt").write_text("x")
    _store(d, "busy")


@case("store_in_read_only_folder", "cannot create the store", "out.zarr", "Permission denied",
      "choose another [store] path", locked=("ro", 0o555))
def _(d: Path) -> None:
    stack(d)
    (d / "ro").mkdir()
    _store(d, "ro/out.zarr")


UNWRITABLE = Path("/proc/pystack3d-dask-errors-test/out.zarr")  # even for root


@case("store_where_nobody_can_write", "cannot create the store", str(UNWRITABLE),
      "choose another [store] path", skip="" if Path("/proc").is_dir() else "no /proc here")
def _(d: Path) -> None:
    stack(d)
    _store(d, str(UNWRITABLE))


@case("store_of_another_input", "holds another input", "other", "not ", "--overwrite")
def _(d: Path) -> None:
    import pystack3d_dask as p3d

    stack(d)
    stack(d, "other", seed=5)
    p3d.run({"project_dir": str(d / "other"), "process_steps": [],
             "store": {"path": str(d / "wf.zarr")}}, progress=False)
    workflow(d)  # default store: wf.zarr, made from other/


@case("input_edited_in_place", f"different version of {name(2)}", "same size",
      "differ from those ingested", "--overwrite")
def _(d: Path) -> None:
    import pystack3d_dask as p3d

    # 360 x 400 uint16: the edit is beyond the first and last 64 KiB of the file
    stack(d, shape=(360, 400))
    p3d.run({"project_dir": str(d / "slices"), "process_steps": [],
             "store": {"path": str(d / "wf.zarr")}}, progress=False)
    workflow(d)
    path = d / "slices" / name(2)
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 16] = b"\x07" * 16
    path.write_bytes(bytes(data))


@case("store_of_newer_layout", f"layout version {LAYOUT_VERSION + 1}",
      f"newer than this package's ({LAYOUT_VERSION})", "upgrade pystack3d-dask")
def _(d: Path) -> None:
    from pystack3d_dask.store.checkpoints import Store

    stack(d)
    Store(d / "wf.zarr")
    meta = d / "wf.zarr" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["pystack3d_dask"]["layout_version"] = LAYOUT_VERSION + 1
    meta.write_text(json.dumps(doc))
    workflow(d)


@case("store_not_made_by_pystack3d_dask", "wf.zarr is a Zarr store not made by pystack3d-dask",
      "refusing to write into it")
def _(d: Path) -> None:
    stack(d)
    zarr.open_group(str(d / "wf.zarr"), mode="w", zarr_format=3).attrs["owner"] = "someone"
    workflow(d)


# -- export and clean -------------------------------------------------------------------

def _made(d: Path) -> None:
    """The stack corrected once (cropping) into wf.zarr."""
    import pystack3d_dask as p3d

    stack(d)
    workflow(d)
    p3d.run(d / "wf.toml", progress=False)


@case("export_into_input_folder", "export target", "input folder", "choose another folder",
      args=("export", "wf.zarr", "slices", "--overwrite"))
def _(d: Path) -> None:
    _made(d)


@case("export_over_user_files", "mine holds files that no export of pystack3d-dask wrote",
      "notes.txt", "even with --overwrite", args=("export", "wf.zarr", "mine", "--overwrite"),
      kept="mine")
def _(d: Path) -> None:
    _made(d)
    (d / "mine").mkdir()
    (d / "mine" / "notes.txt").write_text("mine")


@case("ome_export_over_other_folder", "other.zarr exists and is not an OME-Zarr exported by "
      "pystack3d-dask", "choose a new path",
      args=("export", "wf.zarr", "other.zarr", "--format", "ome-zarr", "--overwrite"),
      kept="other.zarr")
def _(d: Path) -> None:
    _made(d)
    zarr.open_group(str(d / "other.zarr"), mode="w", zarr_format=3).attrs["mine"] = 1


@case("clean_read_only_store", "wf.zarr", "Permission denied", locked=("wf.zarr", 0o555),
      args=("clean", "wf.zarr"))
def _(d: Path) -> None:
    _made(d)


# -- running them ----------------------------------------------------------------------

def cli(folder: Path, *before: str, prefix: tuple[str, ...] = (),
        args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``pystack3d-dask [before] run wf.toml --quiet --no-report`` in ``folder`` (or
    ``pystack3d-dask [before] args``)."""
    command = args or ("run", str(folder / "wf.toml"), "--quiet", "--no-report")
    return subprocess.run([*prefix, sys.executable, "-m", "pystack3d_dask.cli", *before,
                           *command], cwd=folder, capture_output=True, text=True,
                          timeout=TIMEOUT)


@dataclass
class Outcome:
    folder: Path
    before: dict[str, str]
    result: subprocess.CompletedProcess


def _selected(request: pytest.FixtureRequest) -> list[Case]:
    ids = {item.callspec.params["case"].id for item in request.session.items
           if item.module is request.module and hasattr(item, "callspec")
           and "case" in item.callspec.params}
    return [c for c in CASES if c.id in ids and not c.skip]


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Set up every selected case (here, one at a time), then run their commands a few
    at a time."""
    prepared = {}
    for c in _selected(request):
        folder = tmp_path_factory.mktemp("case")  # neutral name: no word of a message
        c.setup(folder)
        prepared[c.id] = (c, folder, _hashes(folder, c))
        if c.locked:
            (folder / c.locked[0]).chmod(c.locked[1])

    servers: dict[int, ForkedCli] = {}

    def one(item: tuple[Case, Path, dict[str, object]]) -> Outcome:
        c, folder, before = item
        if not c.locked and hasattr(os, "fork"):  # from this thread's server (forked_cli.py)
            if threading.get_ident() not in servers:
                servers[threading.get_ident()] = ForkedCli()
            server = servers[threading.get_ident()]
            command = c.args or ("run", str(folder / "wf.toml"), "--quiet", "--no-report")
            return Outcome(folder, before, server.run(list(command), folder))
        try:  # a fresh interpreter (without the capabilities that bypass file modes)
            return Outcome(folder, before,
                           cli(folder, prefix=tuple(DROP_OVERRIDE) if c.locked else (),
                               args=c.args))
        finally:
            if c.locked:
                (folder / c.locked[0]).chmod(0o755)

    workers = min(4, os.cpu_count() or 1)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(zip(prepared, pool.map(one, prepared.values())))
    finally:
        for server in servers.values():
            server.close()


def _hashes(folder: Path, c: Case) -> dict[str, object]:
    """What must not change: the input folder, the case's ``kept`` folder, and which
    groups are complete."""
    out: dict[str, object] = {"complete": complete_groups(folder)}
    for sub in ("slices", c.kept):
        if sub and (folder / sub).is_dir():
            out[sub] = tree_hashes(folder / sub)
    return out


def complete_groups(folder: Path) -> list[tuple[str, ...]]:
    """Every Zarr group below ``folder`` whose attributes say ``complete: true``."""
    out = []
    for meta in folder.rglob("zarr.json"):
        doc = json.loads(meta.read_text())
        if doc.get("node_type") == "group" and doc.get("attributes", {}).get("complete") is True:
            out.append(meta.parent.relative_to(folder).parts)
    return out


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail
                 else []) for c in CASES])
def test_bad_input_gives_clear_error(case: Case, outcomes: dict[str, Outcome]) -> None:
    if case.skip:
        pytest.skip(case.skip)
    out = outcomes[case.id]
    res = out.result
    context = f"exit {res.returncode}\nstderr:\n{res.stderr}"
    assert res.returncode == 2, context
    assert "Traceback" not in res.stderr, context
    assert "error: " in res.stderr, context
    assert "encountered in" not in res.stderr, context  # no numpy warning beside it
    for piece in case.expect:
        assert piece in res.stderr, f"{piece!r} missing; {context}"
    after = _hashes(out.folder, case)
    for sub in ("slices", case.kept):
        if sub:
            assert after.get(sub, {}) == out.before.get(sub, {}), f"{sub}/ changed"
    # nothing marked complete by the failed command (a case may start from a run)
    done = [g for g in after["complete"] if g not in out.before["complete"]]
    assert not [g for g in done if "steps" in g], done
    if case.reads_input:
        assert not [g for g in done if g[-1] == "input"], done


def test_cases_are_many_and_distinct() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 45 and len(set(ids)) == len(ids)


def test_every_case_has_its_line_in_docs_errors() -> None:
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, flags=re.M))
    assert documented == {c.id for c in CASES}


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    data = stack(tmp_path, dtype="float32")
    data[2, 0, 0] = np.nan
    tifffile.imwrite(tmp_path / "slices" / name(2), data[2])
    workflow(tmp_path)
    res = cli(tmp_path, "--debug")
    assert res.returncode == 2, res.stderr
    assert "Traceback" in res.stderr and "InputError" in res.stderr
    assert f"error: {tmp_path / 'slices' / name(2)}" in res.stderr


def test_unwritable_location_is_unwritable() -> None:
    """The store case above relies on /proc refusing new folders, even to root."""
    if not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    with pytest.raises(OSError):
        UNWRITABLE.parent.mkdir()
    assert not UNWRITABLE.parent.exists()
