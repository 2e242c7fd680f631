"""Randomised bad input: mutated slice folders and workflow files through the command.

Each case starts from a small valid project (slices named by PyStack3D's policy and a
workflow of the per-slice and cross-slice steps) and applies a few random mutations:
file names (no z, duplicate or decreasing z, upper-case extensions, stray files,
folders and broken links named like slices), dtypes and shapes of single slices, z
values, and TOML values (wrong types, out-of-range numbers, unknown keys, missing
tables). The command (``pystack3d_dask.cli.main``, in this process) must then give a
result or a clear error, never anything else:

- exit status 0 or 2 (1 is the catch-all for an error the package did not foresee);
- no traceback;
- the input folder byte for byte what it was;
- after an error, the step that failed (and so the workflow's last) not marked complete.

``PYSTACK3D_FUZZ_CASES`` sets the number of cases (default 40); the seeds are fixed, so
a failure is reproduced by its case number.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import tree_hashes, write_stack

from pystack3d_dask.cli import main

N_CASES = int(os.environ.get("PYSTACK3D_FUZZ_CASES", "40"))
SHAPE = (40, 48)

STEPS = {
    "cropping": {"area": [2, 44, 3, 36]},
    "bkg_removal": {"dim": 2, "orders": [1, 1], "skip_factors": [4, 4]},
    "intensity_rescaling": {"nbins": 64, "filter_size": -1},
    "destriping": {"method": "column_profile"},
    "resampling": {"dz": 0.015},
    "cropping_final": {"area": [0, 30, 0, 24]},
}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def _write_workflow(path: Path, steps: list[str], tables: dict[str, dict], top: dict) -> None:
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    lines.append(f"process_steps = {_toml_value(steps)}")
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")


# -- mutations of the slices ------------------------------------------------------------

def _slices(folder: Path) -> list[Path]:
    """The slice files (not the folders or broken links an earlier mutation added)."""
    return sorted(p for p in folder.glob("*.tif") if p.is_file() and not p.is_symlink())


def _names_without_z(folder: Path, rng: random.Random) -> None:
    for p in _slices(folder):
        p.rename(folder / (p.name.split("_z=")[0].replace("slice_", "img_") + ".tif"))


def _duplicate_z(folder: Path, rng: random.Random) -> None:
    files = _slices(folder)
    if len(files) < 2:
        return
    a, b = rng.sample(range(len(files)), 2)
    z = files[a].name.split("_z=")[1]
    files[b].rename(folder / (files[b].name.split("_z=")[0] + "_z=" + z))


def _decreasing_z(folder: Path, rng: random.Random) -> None:
    files = _slices(folder)
    n = len(files)
    for k, p in enumerate(files):
        p.rename(folder / f"tmp_{k}")
    for k in range(n):
        (folder / f"tmp_{k}").rename(folder / f"slice_{k:04d}_z={(n - k) * 0.01:.4f}um.tif")


def _upper_case_extension(folder: Path, rng: random.Random) -> None:
    for p in _slices(folder)[::2]:
        p.rename(p.with_suffix(".TIF"))


def _stray_files(folder: Path, rng: random.Random) -> None:
    (folder / "notes.txt").write_text("acquired on Monday")
    (folder / "._slice_0000_z=0.0000um.tif").write_bytes(b"\x00\x05\x16\x07")
    (folder / "Thumbs.db").write_bytes(b"\x00" * 16)


def _folder_named_like_a_slice(folder: Path, rng: random.Random) -> None:
    (folder / "slice_0099_z=0.9900um.tif").mkdir()


def _broken_link(folder: Path, rng: random.Random) -> None:
    (folder / "slice_0098_z=0.9800um.tif").symlink_to(folder / "offline" / "gone.tif")


def _other_dtype(folder: Path, rng: random.Random) -> None:
    if not _slices(folder):
        return
    p = rng.choice(_slices(folder))
    dtype = rng.choice(["uint8", "float32", "int16", "float64"])
    tifffile.imwrite(p, (np.random.default_rng(1).random(SHAPE) * 100).astype(dtype))


def _all_dtype(folder: Path, rng: random.Random) -> None:
    dtype = rng.choice(["uint8", "float32", "int32"])
    for p in _slices(folder):
        tifffile.imwrite(p, (np.random.default_rng(2).random(SHAPE) * 120).astype(dtype))


def _other_shape(folder: Path, rng: random.Random) -> None:
    if not _slices(folder):
        return
    p = rng.choice(_slices(folder))
    shape = rng.choice([(SHAPE[0] + 1, SHAPE[1]), (SHAPE[1], SHAPE[0]), (3, 3), (4, 5, 3)])
    tifffile.imwrite(p, np.ones(shape, np.uint16))


def _truncated(folder: Path, rng: random.Random) -> None:
    if not _slices(folder):
        return
    p = rng.choice(_slices(folder))
    p.write_bytes(p.read_bytes()[: rng.randint(0, 600)])


def _blank_slice(folder: Path, rng: random.Random) -> None:
    if not _slices(folder):
        return
    p = rng.choice(_slices(folder))
    tifffile.imwrite(p, np.zeros(SHAPE, np.uint16))


def _few_slices(folder: Path, rng: random.Random) -> None:
    for p in _slices(folder)[rng.randint(1, 2):]:
        p.unlink()


def _odd_z_values(folder: Path, rng: random.Random) -> None:
    if not _slices(folder):
        return
    p = rng.choice(_slices(folder))
    z = rng.choice(["-0.0500", "1e3", "nan", "0.0.1", ""])
    p.rename(folder / (p.name.split("_z=")[0] + f"_z={z}um.tif"))


SLICE_MUTATIONS = [_names_without_z, _duplicate_z, _decreasing_z, _upper_case_extension,
                   _stray_files, _folder_named_like_a_slice, _broken_link, _other_dtype,
                   _all_dtype, _other_shape, _truncated, _blank_slice, _few_slices,
                   _odd_z_values]

# -- mutations of the workflow ----------------------------------------------------------

ODD_VALUES = ["text", -1, 0, 10**9, 1.5, [], [1], [1, 2, 3, 4, 5], True, {"a": 1}]


def _mutate_tables(tables: dict[str, dict], steps: list[str], top: dict,
                   rng: random.Random) -> None:
    kind = rng.choice(["value", "unknown_key", "drop_table", "unknown_step", "top"])
    name = rng.choice(steps)
    if kind == "value" and tables.get(name):
        key = rng.choice(sorted(tables[name]))
        tables[name][key] = rng.choice(ODD_VALUES)
    elif kind == "unknown_key":
        tables.setdefault(name, {})[rng.choice(["aera", "orders_", "dzz"])] = 1
    elif kind == "drop_table":
        tables.pop(name, None)
    elif kind == "unknown_step":
        steps.insert(rng.randrange(len(steps) + 1), rng.choice(["croping", "denoise"]))
    else:
        top[rng.choice(["ind_min", "ind_max", "channels", "nproc"])] = rng.choice(ODD_VALUES)


def _complete_steps(store: Path) -> list[str]:
    out = []
    for meta in store.rglob("zarr.json") if store.is_dir() else []:
        doc = json.loads(meta.read_text())
        if doc.get("node_type") == "group" and "steps" in meta.parent.parts \
                and doc.get("attributes", {}).get("complete") is True:
            out.append(str(meta.parent.relative_to(store)))
    return out


def _toml_safe(value: object) -> bool:
    return not isinstance(value, dict)


@pytest.mark.parametrize("number", range(N_CASES))
def test_mutated_project_gives_a_result_or_a_clear_error(number, tmp_path, capsys):
    rng = random.Random(1000 + number)
    folder = tmp_path / "slices"
    write_stack(folder, n=6, shape=SHAPE, seed=number)
    applied = rng.sample(SLICE_MUTATIONS, rng.choice([0, 1, 1, 2]))
    for mutate in applied:
        mutate(folder, rng)
    steps = rng.sample(list(STEPS), rng.randint(1, 4))
    steps.sort(key=list(STEPS).index)
    tables = {s: dict(STEPS[s]) for s in steps}
    top: dict = {"project_dir": "slices"}
    changes = rng.choice([0, 1, 1, 2]) if applied else rng.choice([1, 2])
    for _ in range(changes):
        _mutate_tables(tables, steps, top, rng)
    tables = {k: {kk: vv for kk, vv in v.items() if _toml_safe(vv)} for k, v in tables.items()}
    top = {k: v for k, v in top.items() if _toml_safe(v)}
    workflow = tmp_path / "wf.toml"
    _write_workflow(workflow, steps, tables, top)
    before = tree_hashes(folder)

    rc = main(["run", str(workflow), "--quiet", "--no-report", "--scheduler", "threads",
               "--workers", "1"])
    err = capsys.readouterr().err
    what = (f"case {number}: mutations {[m.__name__ for m in applied]}, workflow:\n"
            f"{workflow.read_text()}\nexit {rc}, stderr:\n{err}")
    assert rc in (0, 2), what
    assert "Traceback" not in err, what
    if rc == 2:
        assert err.count("error: ") == 1 and len(err.split("error: ")[1]) > 20, what
        # the steps before the one that failed on its data may be complete (a resume
        # starts from them); the failed one, and so the last, never
        done = _complete_steps(tmp_path / "wf.zarr")
        assert not [g for g in done if g.endswith(f"_{steps[-1]}")], what
        named = [s for s in STEPS if f"[{s}]" in err or f"{s}:" in err]
        assert not [g for g in done if any(g.endswith(f"_{s}") for s in named)], what
    assert tree_hashes(folder) == before, what
