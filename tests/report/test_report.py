"""Per-step figures, cut planes and the 3D view, from a real run's store."""

from __future__ import annotations

import copy
import tomllib

import numpy as np
import pytest
from helpers import run_ours

import pystack3d_dask as p3d
from pystack3d_dask.datasets.synthetic import write_synthetic
from pystack3d_dask.errors import StoreError
from pystack3d_dask.report.figures import default_report_dir, write_report
from pystack3d_dask.report.plots import decompose
from pystack3d_dask.report.sections import cut_planes

STEPS = ["cropping", "bkg_removal", "intensity_rescaling", "registration_calculation",
         "registration_transformation", "destriping", "resampling"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    files = write_synthetic(root / "syn", shape=(24, 110, 130), seed=5)
    params = tomllib.loads(files.workflow.read_text())
    params["destriping"].update(maxit=5, only_striped=True)
    return root, files, params


@pytest.fixture(scope="module")
def store(synthetic):
    root, files, params = synthetic
    return run_ours(files.slices_dir, copy.deepcopy(params), STEPS, root / "s.zarr").store


def _not_blank(path) -> bool:
    import matplotlib.image as mpimg

    img = mpimg.imread(path)  # RGB(A) figures, grey images
    grey = img if img.ndim == 2 else img[..., :3]
    return float(grey.std()) > 0.02


def test_report_writes_every_steps_figures(store, tmp_path):
    files = write_report(store, tmp_path / "rep")
    names = {(p.parent.name, p.name) for p in files}
    expected = {
        ("input", "statistics.png"), ("01_cropping", "statistics.png"),
        ("02_bkg_removal", "coefficients.png"), ("02_bkg_removal", "background.png"),
        ("03_intensity_rescaling", "histograms.png"),
        ("04_registration_calculation", "matrices.png"),
        ("05_registration_transformation", "matrices.png"),
        ("06_destriping", "stripe_score.png"), ("07_resampling", "z.png"),
    }
    assert expected <= names
    groups = {p.parent.name for p in files}
    assert len(groups) == len(STEPS) + 1
    for group in groups:
        assert {(group, "sections.png"), (group, "cube.png")} <= names
    assert all(p.is_file() and _not_blank(p) for p in files)
    assert default_report_dir(store) == store.with_name("s-report")


def test_cut_planes_are_the_stack_sections(store):
    stack = p3d.open_result(store, "registration_transformation")
    full = stack.values[0]
    z = float(stack["z"].values[5])
    y = float(stack["y"].values[7])
    x = float(stack["x"].values[-3])
    cuts = cut_planes(stack, z=z, y=y, x=x)
    np.testing.assert_array_equal(cuts["xy"].values, full[5])
    np.testing.assert_array_equal(cuts["xz"].values, full[:, 7, :])
    np.testing.assert_array_equal(cuts["yz"].values, full[:, :, -1 - 2])
    assert cuts["xz"].dims == ("z", "x") and cuts["yz"].attrs["at"] == x
    middle = cut_planes(stack)
    assert middle["xy"].attrs["index"] == stack.sizes["z"] // 2


def test_checkpoints_keep_the_rows_and_columns_the_report_draws(store):
    from pystack3d_dask.report.sections import group_views
    from pystack3d_dask.store.checkpoints import Store

    st = Store(store, create=False)
    for group in ["input", "steps/05_registration_transformation", "steps/07_resampling"]:
        ds = st.open_dataset(group)
        full = ds["stack"].values
        ny, nx = full.shape[2:]
        np.testing.assert_array_equal(ds["cut_rows"].values[:, :, 0], full[:, :, ny // 2, :])
        np.testing.assert_array_equal(ds["cut_rows"].values[:, :, 1], full[:, :, 0, :])
        np.testing.assert_array_equal(ds["cut_columns"].values[:, :, 0], full[:, :, :, nx // 2])
        np.testing.assert_array_equal(ds["cut_columns"].values[:, :, 1], full[:, :, :, -1])
        assert ds["cut_rows"].attrs["rows"] == [ny // 2, 0]
        # the views from the kept rows are those cut from the stack (an older store's way)
        kept, faces = group_views(st, group, ds)
        cut = cut_planes(ds["stack"])
        for name in ("xy", "xz", "yz"):
            np.testing.assert_array_equal(kept[name].values, cut[name].values)
            assert kept[name].attrs == cut[name].attrs
            assert kept[name].dims == cut[name].dims
        np.testing.assert_array_equal(faces[0], full[0, -1])
        np.testing.assert_array_equal(faces[1], full[0, :, 0, :])
        np.testing.assert_array_equal(faces[2], full[0, :, :, -1])


def test_sections_and_cube_are_drawn_as_images(store):
    from pystack3d_dask.report.sections import draw_cube, draw_sections

    after = cut_planes(p3d.open_result(store, "registration_transformation"))
    before = cut_planes(p3d.open_result(store, "registration_calculation"))
    one, two = draw_sections(None, after, "t"), draw_sections(before, after, "t")
    assert two.width == one.width and two.height > 1.8 * one.height  # input row above
    grid = np.asarray(two.convert("L"), dtype=float)
    assert grid.std() > 20  # the sections, not a blank canvas
    cube = np.asarray(draw_cube(p3d.open_result(store), title="t").convert("L"), dtype=float)
    assert (cube < 250).mean() > 0.3 and cube.std() > 20


def test_report_redraws_only_the_groups_that_changed(synthetic, tmp_path):
    import shutil

    from pystack3d_dask.report.html import write_html_report

    _, files, params = synthetic
    store = tmp_path / "s.zarr"
    steps = ["cropping", "bkg_removal", "cropping_final"]
    params = copy.deepcopy(params)
    run_ours(files.slices_dir, params, steps, store)
    out = tmp_path / "rep"
    first = write_report(store, out, workers=2, truth=False)
    page = write_html_report(store, out / "report.html", figures_dir=out, score=False)
    times = {p: p.stat().st_mtime_ns for p in first}
    page_time = page.stat().st_mtime_ns

    # nothing changed: nothing drawn, the page not written again
    again = write_report(store, out, workers=2, truth=False)
    write_html_report(store, out / "report.html", figures_dir=out, score=False)
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in again} == times
    assert page.stat().st_mtime_ns == page_time

    # the last step changed: its group alone is drawn again, and the page
    params["cropping_final"]["area"] = [a + (2 if i % 2 == 0 else -2)
                                        for i, a in enumerate(params["cropping_final"]["area"])]
    run_ours(files.slices_dir, params, steps, store)
    later = write_report(store, out, workers=2, truth=False)
    write_html_report(store, out / "report.html", figures_dir=out, score=False)
    assert [p.name for p in later] == [p.name for p in first]
    redrawn = {p.parent.name for p in later if p.stat().st_mtime_ns != times.get(p)}
    assert redrawn == {"03_cropping_final"}
    assert page.stat().st_mtime_ns != page_time
    text = page.read_text()
    assert text.count("<img alt=") == len(later)
    assert "not scored in the report of a run" in text

    # other options: every group drawn again; a lost file: its group drawn again
    assert not (out / "input" / "cube.png").with_name("x.png").exists()
    write_report(store, out, cube=False, workers=1)
    assert not (out / "input" / "cube.png").exists()
    (out / "01_cropping" / "statistics.png").unlink()
    shutil.rmtree(out / "02_bkg_removal")
    restored = write_report(store, out, cube=False, workers=1)
    assert all(p.is_file() for p in restored)


def test_decompose_recovers_a_known_affine_matrix():
    theta = np.radians(10.0)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    upper = np.array([[1.1, 0.2 * 0.9], [0.0, 0.9]])
    m = np.identity(3)
    m[:2, :2] = rot @ upper
    m[:2, 2] = [3.0, -2.0]
    parts = decompose(m[None])
    assert parts["rotation"][0] == pytest.approx(10.0)
    assert parts["scale x"][0] == pytest.approx(1.1)
    assert parts["scale y"][0] == pytest.approx(0.9)
    assert parts["shear"][0] == pytest.approx(0.2)
    assert (parts["tx"][0], parts["ty"][0]) == (3.0, -2.0)


def test_report_of_an_empty_store_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="no store|no complete step"):
        write_report(tmp_path / "missing.zarr")


def test_cli_run_writes_the_report_unless_asked_not_to(store, tmp_path):
    from pystack3d_dask.cli import main

    assert main(["report", str(store), str(tmp_path / "r"), "--no-cube"]) == 0
    assert (tmp_path / "r" / "06_destriping" / "stripe_score.png").is_file()
    assert not (tmp_path / "r" / "06_destriping" / "cube.png").exists()


def test_html_report_is_one_self_contained_file(store, tmp_path):
    from pystack3d_dask.report.html import write_html_report

    figures = tmp_path / "rep"
    write_report(store, figures, cube=False)
    page = write_html_report(store, figures / "report.html", figures_dir=figures)
    text = page.read_text()
    import re

    assert re.search(r"<script[^>]*\bsrc=", text) is None  # bokeh's JavaScript inline
    assert re.search(r"<link[^>]*\bhref=", text) is None
    for group in ["input", *(f"{i:02d}_{s}" for i, s in enumerate(STEPS, start=1))]:
        assert f'id="step-{group}"' in text
    assert text.count("<img alt=") == len(list(figures.rglob("*.png")))
    assert "Quality against the ground truth" in text  # the synthetic truth beside the slices
    assert '&quot;maxit&quot;: 5' in text  # each step's parameters


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium (Debian 'chromium') is "
                    "not installed; .ci/run installs it")
def test_html_report_opens_in_chromium(store, tmp_path):
    import subprocess

    import matplotlib.image as mpimg

    from pystack3d_dask.report.html import write_html_report

    figures = tmp_path / "rep"
    write_report(store, figures, sections=False, cube=False)
    page = write_html_report(store, figures / "report.html", figures_dir=figures)
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Error" in line], console
    assert "document idle" in dom.stderr  # bokeh rendered the document
    for group in ["input", *(f"{i:02d}_{s}" for i, s in enumerate(STEPS, start=1))]:
        assert f'id="step-{group}"' in dom.stdout
    assert dom.stdout.count('class="bk-Figure') == len(STEPS) + 1  # one profile per group
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    img = mpimg.imread(shot)
    assert img.shape[:2] == (1600, 1200) and float(img[..., :3].std()) > 0.05


def test_ome_zarr_export_reads_back_with_ome_zarr_py(store, tmp_path):
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from pystack3d_dask.cli import main

    out = tmp_path / "out.ome.zarr"
    assert main(["export", str(store), str(out), "--format", "ome-zarr", "--levels", "3",
                 "--step", "registration_transformation"]) == 0
    stack = p3d.open_result(store, "registration_transformation")
    nodes = list(Reader(parse_url(str(out)))())
    image = nodes[0]
    levels = [np.asarray(level) for level in image.data]
    assert len(levels) == 3
    np.testing.assert_array_equal(levels[0], stack.values)
    full = stack.values.astype(np.float64)
    ny, nx = full.shape[2] // 2 * 2, full.shape[3] // 2 * 2
    half = full[:, :, :ny, :nx].reshape(*full.shape[:2], ny // 2, 2, nx // 2, 2).mean((3, 5))
    np.testing.assert_array_equal(levels[1], np.rint(half).astype(stack.dtype))
    assert levels[2].shape[2:] == (ny // 4, nx // 4)
    meta = image.metadata
    assert [a["name"] for a in meta["axes"]] == ["c", "z", "y", "x"]
    assert meta["axes"][1]["unit"] == "micrometer"
    scales = [t[0]["scale"] for t in meta["coordinateTransformations"]]
    dz = float(np.median(np.diff(stack["z"].values)))
    assert scales[0] == pytest.approx([1.0, dz, 1.0, 1.0])
    assert scales[2] == pytest.approx([1.0, dz, 4.0, 4.0])
    assert meta["channel_names"] == ["."]
    # an existing output is refused without --overwrite
    assert main(["export", str(store), str(out), "--format", "ome-zarr"]) == 2


_NAPARI_SCRIPT = """
import sys

import numpy as np
import napari
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

node = list(Reader(parse_url(sys.argv[1]))())[0]
scale = node.metadata["coordinateTransformations"][0][0]["scale"]
viewer = napari.Viewer(show=True)  # under Xvfb: a hidden viewer renders nothing
layers = viewer.add_image(node.data, multiscale=True, channel_axis=0, scale=scale[1:],
                          name=node.metadata["channel_names"])
viewer.dims.set_point(0, float(viewer.dims.range[0][1]) / 2)
viewer.reset_view()
shot = viewer.screenshot(canvas_only=True)
np.save(sys.argv[2], shot)
print("levels", len(node.data), layers[0].data[0].shape)
viewer.close()
"""


@pytest.mark.slow
def test_ome_zarr_opens_in_napari(store, tmp_path):
    import shutil
    import subprocess
    import sys

    pytest.importorskip("ome_zarr")
    if shutil.which("xvfb-run") is None:
        pytest.skip("xvfb-run (Debian 'xvfb') is not installed; .ci/run installs it")
    try:
        import importlib.util

        if importlib.util.find_spec("napari") is None:
            pytest.skip("napari is not installed; .ci/run installs it")
    except ValueError:
        pytest.skip("napari is not importable")
    from pystack3d_dask.cli import main

    out = tmp_path / "view.ome.zarr"
    assert main(["export", str(store), str(out), "--format", "ome-zarr", "--levels", "2"]) == 0
    script = tmp_path / "view.py"
    script.write_text(_NAPARI_SCRIPT)
    shot = tmp_path / "shot.npy"
    done = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", sys.executable,
                           str(script), str(out), str(shot)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "levels 2 " in done.stdout  # both levels seen
    img = np.load(shot)
    assert img.ndim == 3 and img.shape[0] > 100 and float(img[..., :3].std()) > 5
