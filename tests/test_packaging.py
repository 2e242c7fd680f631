"""Release metadata that must agree: version, licence and citation, in one place each."""

from __future__ import annotations

from pathlib import Path

import yaml

from pystack3d_dask import __version__
from pystack3d_dask.workflow.config import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_citation_names_this_version_licence_and_the_methods_to_cite():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    assert cff["version"] == __version__
    assert cff["license"] == _pyproject()["project"]["license"]
    dois = {ref["doi"] for ref in cff["references"]}
    # PyStack3D, TurboReg (pystackreg's licence asks for it), VSNR
    assert dois == {"10.21105/joss.07079", "10.1109/83.650848", "10.1109/TIP.2012.2206037"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(doi in readme for doi in dois), "the README's Citing section lists them all"


def test_licence_file_is_the_gpl3_the_metadata_declares():
    project = _pyproject()["project"]
    assert project["license"] == "GPL-3.0-or-later"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in text and "Version 3, 29 June 2007" in text
    # an SPDX expression in `license` needs setuptools 77 (PEP 639)
    assert "setuptools>=77" in _pyproject()["build-system"]["requires"]


def test_pyvsnr_only_in_the_gpu_and_test_extras():
    project = _pyproject()["project"]
    names = [dep.split(">")[0].split("=")[0].strip().lower() for dep in project["dependencies"]]
    assert "pyvsnr" not in names
    extras = project["optional-dependencies"]
    assert any(dep.startswith("pyvsnr") for dep in extras["gpu"])
    assert any(dep.startswith("pyvsnr") for dep in extras["test"])
