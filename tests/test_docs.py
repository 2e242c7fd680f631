"""The documentation's generated pages: every step and every key with its default, drawn
from the schemas, and an API page for every public module (docs/_ext)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import p3d_api  # noqa: E402
import p3d_params  # noqa: E402

from pystack3d_dask.params import PYSTACK3D_STEPS  # noqa: E402
from pystack3d_dask.steps import REGISTRY, available_steps  # noqa: E402
from pystack3d_dask.workflow.schema import OWN_TABLES  # noqa: E402

COLUMNS = ("type", "default", "unit", "doc")


def _sections(rst: str) -> dict[str, dict[str, dict[str, str]]]:
    """title -> key -> cells, read back from the rendered reStructuredText."""
    lines = rst.splitlines()
    out: dict[str, dict[str, dict[str, str]]] = {}
    title, row = None, None
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and line and lines[i + 1] == "-" * len(line):
            title = line
            out[title] = {}
        elif line.startswith("   * - ``"):
            row = []
            out[title][line.removeprefix("   * - ``").removesuffix("``")] = row
        elif line.startswith("     - ") and row is not None:
            row.append(line.removeprefix("     - "))
            if len(row) == len(COLUMNS):
                key = next(k for k, v in out[title].items() if v is row)
                out[title][key] = dict(zip(COLUMNS, row))
                row = None
    return out


@pytest.fixture(scope="module")
def steps_page():
    return _sections(p3d_params.steps_rst())


@pytest.fixture(scope="module")
def workflow_page():
    return _sections(p3d_params.workflow_rst())


def test_every_step_in_pystack3d_order(steps_page):
    steps = [t for t in steps_page if t in PYSTACK3D_STEPS]
    assert steps == available_steps()
    assert steps == [s for s in PYSTACK3D_STEPS if s in steps]
    assert len(steps) == 9  # every PyStack3D step is implemented


def test_every_key_with_its_default(steps_page):
    for name in available_steps():
        rows = steps_page[name]
        assert list(rows) == list(REGISTRY[name].params), name
        for key, param in REGISTRY[name].params.items():
            shown = p3d_params.default_text(param.default)
            assert rows[key]["default"].lstrip("*`").startswith(shown), (name, key)


@pytest.mark.parametrize(("step", "key", "default"), [
    ("bkg_removal", "max_samples", "``1000000``"),
    ("bkg_removal", "weight_func", '``"HuberT"``'),
    ("intensity_rescaling", "nbins", "``256``"),
    ("intensity_rescaling_area", "factors_range", "``[0.8, 1.2]``"),
    ("registration_calculation", "transformation", '``"TRANSLATION"``'),
    ("registration_transformation", "mode", '``"constant"``'),
    ("registration_transformation", "subpixel", "``true``"),
    ("destriping", "stripe_threshold", '``"auto"``'),
    ("destriping", "maxit", "``100``"),
    ("resampling", "policy", '``"slice_{slice_nb}_z={z_coord}um.tif"``'),
    ("cropping", "area", "*unset*"),
    ("Keys of every step table", "checkpoint", "``true``"),
])
def test_known_defaults(steps_page, step, key, default):
    assert steps_page[step][key]["default"].split(" (profile")[0] == default


def test_profile_values_follow_the_default(steps_page):
    assert steps_page["bkg_removal"]["skip_median"]["default"] == \
        "``false`` (profile ``recommended``: ``true``)"
    assert steps_page["Keys of every step table"]["rounding"]["default"] == \
        "``false`` (profile ``recommended``: ``true``)"


@pytest.mark.parametrize(("step", "key", "unit"), [
    ("cropping", "area", "pixels"),  # named by the area check's docstring
    ("resampling", "dz", "um"),
    ("resampling", "zpos_out", "um"),
    ("registration_calculation", "max_shift", "pixels"),
    ("destriping", "angle", "degrees"),
    ("bkg_removal", "threshold_min", "\\"),  # "pixels below ..." names no unit
])
def test_units_from_the_documentation(steps_page, step, key, unit):
    assert steps_page[step][key]["unit"] == unit


def test_type_is_what_the_check_expects(steps_page):
    assert steps_page["intensity_rescaling"]["nbins"]["type"] == "an integer >= 2"
    assert "'TukeyBiweight'" in steps_page["bkg_removal"]["weight_func"]["type"]


def test_workflow_tables(workflow_page):
    for name, schema in OWN_TABLES.items():
        assert list(workflow_page[f"[{name}]"]) == list(schema)
    assert workflow_page["[store]"]["compression_level"]["default"] == "``3``"
    timeout = workflow_page["[scheduler]"]["worker_timeout"]
    assert (timeout["default"], timeout["unit"]) == ("``300.0``", "seconds")
    assert workflow_page["[input]"]["z_spacing"]["unit"] == "um"
    assert workflow_page["Top-level keys"]["profile"]["default"] == '``"pystack3d"``'


def test_every_public_module_has_a_page_and_the_kept_names_none():
    modules, aliases = p3d_api.public_modules()
    package = ROOT / "pystack3d_dask"
    files = {".".join(("pystack3d_dask", *p.relative_to(package).with_suffix("").parts))
             .removesuffix(".__init__") for p in package.rglob("*.py")}
    public = {m for m in files if not any(part.startswith("_") for part in m.split("."))}
    assert set(modules) | set(aliases) == public
    assert aliases["pystack3d_dask.config"] == "pystack3d_dask.workflow.config"
    assert aliases["pystack3d_dask.io.store"] == "pystack3d_dask.store"
    assert not set(aliases) & set(modules)
