"""Zeiss (Fibics Atlas 3D) metadata: the real setup file, synthetic tagged slices, the CLI."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pystack3d_dask.errors import InputError
from pystack3d_dask.io.zeiss import read_a3d_setup, read_fibics_tag, workflow_from_zeiss
from pystack3d_dask.workflow.config import load_workflow, tomllib

SETUP = Path(__file__).resolve().parents[3] / "shared" / "data" / "zeiss-Atlas3D.a3d-setup"

# bounding box of the synthetic slices, pixels from the top-left corner
LEFT, RIGHT, TOP, BOTTOM = 100, 4100, 200, 4000


@pytest.fixture
def setup_text() -> str:
    if not SETUP.is_file():
        pytest.skip(f"real setup file absent: {SETUP}")
    return SETUP.read_text(encoding="iso-8859-1")


def fibics_xml(width: int = 4224, height: int = 4224, bbox=(LEFT, RIGHT, TOP, BOTTOM),
               current: str | None = "1.5 nA") -> str:
    left, right, top, bottom = bbox
    beam = f'<BeamInfo><item name="Ext I">{current}</item></BeamInfo>' if current else ""
    return ('<?xml version="1.0" encoding="iso-8859-1"?>\n'
            f'<FibicsImage version="1.0"><Image><Width>{width}</Width><Height>{height}</Height>'
            f"<BoundingBox.Left>{left}</BoundingBox.Left><BoundingBox.Right>{right}"
            f"</BoundingBox.Right><BoundingBox.Top>{top}</BoundingBox.Top>"
            f"<BoundingBox.Bottom>{bottom}</BoundingBox.Bottom></Image>{beam}</FibicsImage>")


def write_slice(path: Path, xml: str | None) -> Path:
    """A small slice; the size that counts is the one in the Fibics tag, as for PyStack3D."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extratags = [(51023, "s", 0, xml, True)] if xml is not None else []
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), extratags=extratags)
    return path


def acquisition(tmp_path: Path, setup_text: str, xml: str | None = None,
                channels=("SE2", "ESB")) -> Path:
    folder = tmp_path / "acq"
    folder.mkdir(parents=True)
    (folder / "Atlas3D.a3d-setup").write_text(setup_text, encoding="iso-8859-1")
    xml = fibics_xml() if xml is None else xml
    for channel in channels:
        for i, z in enumerate((0.0, 0.01, 0.02)):
            write_slice(folder / channel / f"slice_{i:04d}_z={z:.4f}um.tif", xml)
    return folder


def test_real_setup_values():
    if not SETUP.is_file():
        pytest.skip(f"real setup file absent: {SETUP}")
    setup = read_a3d_setup(SETUP)
    assert setup["detectors"] == ["SE2", "ESB"]
    assert setup["pixel_size"] == 0.00999999888918612
    assert setup["fov"] == 42.2399940490723
    assert setup["fov_px"] == 4224
    assert setup["slice_thickness"] == 0.01
    assert setup["job_name"] == "stack01bis"
    # an older file (no DefaultAcquisition): PyStack3D's fallback paths
    assert setup["paths"] == {"detectors": "Settings/Imaging/Detector",
                              "pixel_size": "Settings/Imaging/FibicsRasterInfo/PixelSizeX",
                              "fov": "Settings/Imaging/FOV",
                              "slice_thickness": "Settings/Imaging/Interval"}


def test_default_acquisition_paths_win(tmp_path, setup_text):
    block = ("<DefaultAcquisition><FOV>20.48</FOV><PixelSize>0.005</PixelSize><Interval>"
             "<Distance><Interval>0.02</Interval></Distance></Interval></DefaultAcquisition>")
    path = tmp_path / "Atlas3D.a3d-setup"
    path.write_text(setup_text.replace("<Imaging>", "<Imaging>" + block, 1), encoding="iso-8859-1")
    setup = read_a3d_setup(path)
    assert (setup["fov"], setup["pixel_size"], setup["slice_thickness"]) == (20.48, 0.005, 0.02)
    assert setup["fov_px"] == 4096


def test_read_fibics_tag(tmp_path):
    path = write_slice(tmp_path / "s.tif", fibics_xml(bbox=(10.5, 99.2, 0, 50)))
    tags = read_fibics_tag(path)
    assert (tags["width"], tags["height"]) == (4224, 4224)
    assert tags["bbox"] == {"left": 10, "right": 100, "top": 0, "bottom": 50}  # rounded outwards
    assert tags["beam_current"] == 1.5 and tags["beam_current_text"] == "1.5 nA"
    no_current = read_fibics_tag(write_slice(tmp_path / "t.tif", fibics_xml(current=None)))
    assert no_current["beam_current"] is None


def test_metadata_cli_end_to_end(tmp_path, setup_text):
    folder = acquisition(tmp_path, setup_text)
    out = tmp_path / "wf.toml"
    cmd = [sys.executable, "-m", "pystack3d_dask.cli", "metadata", str(folder)]
    res = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr
    raw = tomllib.loads(out.read_text())
    assert raw["channels"] == ["SE2", "ESB"]
    height = 4224
    # x: bounding box +/- 20; y: flipped to the bottom-left origin, then +/- 20
    expected = [LEFT - 20, RIGHT + 20, height - BOTTOM - 20, height - TOP + 20]
    assert expected == [80, 4120, 204, 4044]
    assert raw["cropping"]["area"] == expected
    assert raw["resampling"]["dz"] == 0.01
    wf = load_workflow(out)
    assert wf.channels == ["SE2", "ESB"]
    assert wf.project_dir == folder.resolve()
    assert wf.steps["cropping"]["area"] == expected and wf.steps["resampling"]["dz"] == 0.01
    assert wf.process_steps == ["cropping", "resampling"]

    # no --out: the same TOML on stdout; an existing --out is kept unless --overwrite
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout == out.read_text()
    res = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "already exists" in res.stderr and "--overwrite" in res.stderr
    res = subprocess.run([*cmd, "--out", str(out), "--overwrite"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr


def test_slices_in_the_folder_itself(tmp_path, setup_text):
    folder = acquisition(tmp_path, setup_text, channels=(".",))
    raw = tomllib.loads(workflow_from_zeiss(folder))
    assert raw["channels"] == ["."]


def test_area_clipped_to_the_image(tmp_path, setup_text):
    folder = acquisition(tmp_path, setup_text, xml=fibics_xml(bbox=(5, 4220, 0, 4224)))
    raw = tomllib.loads(workflow_from_zeiss(folder))
    assert raw["cropping"]["area"] == [0, 4224, 0, 4224]


def test_setup_not_xml(tmp_path):
    folder = tmp_path / "acq"
    write_slice(folder / "SE2" / "s.tif", fibics_xml())
    (folder / "Atlas3D.a3d-setup").write_text("JobName = stack01\n")
    with pytest.raises(InputError, match=r"Atlas3D\.a3d-setup: not an XML file"):
        workflow_from_zeiss(folder)
    res = subprocess.run([sys.executable, "-m", "pystack3d_dask.cli", "metadata", str(folder)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "not an XML file" in res.stderr and "Traceback" not in res.stderr


def test_setup_missing_field(tmp_path, setup_text):
    text = setup_text.replace("      <Interval>0.01</Interval>\n", "", 1)
    assert text != setup_text
    folder = acquisition(tmp_path, text)
    with pytest.raises(InputError, match=r"a3d-setup: no element "
                       r"Settings/Imaging/DefaultAcquisition/Interval/Distance/Interval nor "
                       r"Settings/Imaging/Interval; expected the slice thickness"):
        workflow_from_zeiss(folder)


def test_setup_bad_pixel_size(tmp_path, setup_text):
    text = setup_text.replace("<PixelSizeX>0.00999999888918612</PixelSizeX>", "<PixelSizeX>0</PixelSizeX>", 1)
    path = tmp_path / "Atlas3D.a3d-setup"
    path.write_text(text, encoding="iso-8859-1")
    with pytest.raises(InputError, match=r"FibicsRasterInfo/PixelSizeX = '0'; expected the pixel size"):
        read_a3d_setup(path)


def test_first_slice_without_fibics_tag(tmp_path, setup_text):
    folder = acquisition(tmp_path, setup_text)
    write_slice(folder / "SE2" / "slice_0000_z=0.0000um.tif", None)
    with pytest.raises(InputError, match=r"slice_0000_z=0\.0000um\.tif: no TIFF tag 51023"):
        workflow_from_zeiss(folder)


def test_bounding_box_outside_the_image(tmp_path):
    path = write_slice(tmp_path / "s.tif", fibics_xml(bbox=(100, 5000, 0, 10)))
    with pytest.raises(InputError, match=r"BoundingBox\.Right = 5000 does not fit"):
        read_fibics_tag(path)


def test_not_square_warns(tmp_path, setup_text):
    folder = acquisition(tmp_path, setup_text, xml=fibics_xml(width=4224, height=4000))
    with pytest.warns(UserWarning, match=r"not square \(4224 x 4000 px, width - height = 224 px\)"):
        raw = tomllib.loads(workflow_from_zeiss(folder))
    # the flip uses the slice's own height
    assert raw["cropping"]["area"][2:] == [4000 - BOTTOM, 4000 - TOP + 20]


def test_field_of_view_disagreement_warns(tmp_path, setup_text):
    folder = acquisition(tmp_path, setup_text, xml=fibics_xml(width=4096, height=4096,
                                                             bbox=(LEFT, 4000, TOP, BOTTOM)))
    with pytest.warns(UserWarning, match=r"4224\.0 px\) disagrees with the slice width \(4096 px\) "
                                         r"by -128\.0 px"):
        workflow_from_zeiss(folder)
    # within one pixel of 42.2399940490723 / 0.00999999888918612 = 4223.9999 px: no warning
    # (PyStack3D accepts int(4223.9999) = 4223 and 4224)
    folder = acquisition(tmp_path / "b", setup_text, xml=fibics_xml(width=4223, height=4223))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        workflow_from_zeiss(folder)


def test_ingest_carries_pixel_size_and_beam_current(tmp_path, setup_text):
    """The workflow the metadata command writes labels y, x in micrometres, and the
    Fibics beam current of every slice becomes a coordinate along z, kept by the steps
    that keep z."""
    import pystack3d_dask as p3d

    folder = tmp_path / "acq"
    folder.mkdir()
    (folder / "Atlas3D.a3d-setup").write_text(setup_text, encoding="iso-8859-1")
    currents = [1.5, 1.25, 1.75, 2.0]
    for channel in ("SE2", "ESB"):
        for i, current in enumerate(currents):
            xml = fibics_xml(width=64, height=64, bbox=(4, 60, 2, 62), current=f"{current} nA")
            path = folder / channel / f"slice_{i:04d}_z={i * 0.01:.4f}um.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, np.full((64, 64), 10 * i + 5, np.uint8),
                             extratags=[(51023, "s", 0, xml, True)])
    out = tmp_path / "wf.toml"
    res = subprocess.run([sys.executable, "-m", "pystack3d_dask.cli", "metadata", str(folder),
                          "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    text = out.read_text().replace('process_steps = ["cropping", "resampling"]',
                                   'process_steps = ["cropping"]')
    out.write_text(text)
    result = p3d.run(out, store=tmp_path / "acq.zarr", progress=False)
    for group in ("input", "cropping"):
        stack = p3d.open_result(result.store, group)
        np.testing.assert_allclose(stack["beam_current"].values, currents)
        assert stack["beam_current"].attrs["units"] == "nA"
        assert stack["x"].attrs["units"] == "um"
        np.testing.assert_allclose(np.diff(stack["x"].values), 0.00999999888918612)
    assert list(p3d.open_result(result.store, "input")["channel"].values) == ["SE2", "ESB"]
    from pystack3d_dask.report.figures import write_report

    files = write_report(result.store, tmp_path / "report", sections=False, cube=False)
    assert tmp_path / "report" / "input" / "beam_current.png" in files
