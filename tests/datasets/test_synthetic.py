"""Tests of the synthetic FIB-SEM stack generator and its written project."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from pystack3d_dask.datasets.synthetic import STEPS, generate, load_truth, write_synthetic
from pystack3d_dask.errors import InputError

SHAPE = (24, 64, 72)
DEFECTS = ("padding", "background", "gain", "drift", "curtains", "missing", "noise")


def only(*names: str) -> dict[str, bool]:
    """Keyword arguments switching every defect off except ``names``."""
    return {d: d in names for d in DEFECTS}


@pytest.fixture(scope="module")
def full():
    return generate(SHAPE, seed=3)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "project"
    return write_synthetic(out, shape=SHAPE, seed=5)


def test_truth_is_clean_and_acquisition_differs(full):
    clean = generate(SHAPE, seed=3, **only())
    # The truth does not depend on which defects are switched on.
    np.testing.assert_array_equal(full.truth, clean.truth)
    assert full.truth.shape == SHAPE and full.truth.dtype == np.uint8
    assert full.stack.dtype == np.uint8
    np.testing.assert_allclose(full.z_truth, np.arange(SHAPE[0]) * 0.01)
    diff = np.abs(full.stack.astype(float) - full.truth[full.kept])
    assert diff[:, full.valid_rows, full.valid_cols].mean() > 5
    # Porous structure: dark pores, matrix and bright particles all present.
    t = full.truth.astype(float) / 255
    assert (t < 0.25).mean() > 0.05
    assert ((t > 0.35) & (t < 0.55)).mean() > 0.4
    assert (t > 0.62).mean() > 0.01


def test_all_defects_off_equals_truth():
    syn = generate(SHAPE, seed=1, **only())
    np.testing.assert_array_equal(syn.stack, syn.truth)
    np.testing.assert_array_equal(syn.kept, np.arange(SHAPE[0]))
    np.testing.assert_array_equal(syn.z, syn.z_truth)
    assert not syn.shifts.any() and syn.jump_slice is None
    assert np.all(syn.gain == 1) and not syn.curtains.any() and syn.curtain_slices.size == 0
    assert syn.valid_area == [0, SHAPE[2], 0, SHAPE[1]]


def test_seed_reproducible():
    a = generate(SHAPE, seed=11)
    b = generate(SHAPE, seed=11)
    c = generate(SHAPE, seed=12)
    np.testing.assert_array_equal(a.stack, b.stack)
    np.testing.assert_array_equal(a.shifts, b.shifts)
    assert not np.array_equal(a.truth, c.truth)


def test_padding_border_and_valid_area(full):
    top, bottom, left, right = full.pad_widths
    ny, nx = SHAPE[1:]
    assert top != bottom and left != right
    assert all(w > 0 for w in full.pad_widths)
    pad = full.pad_value
    assert pad == int(0.03 * 255)
    for img in full.stack:
        assert np.all(img[:top] == pad) and np.all(img[ny - bottom:] == pad)
        assert np.all(img[:, :left] == pad) and np.all(img[:, nx - right:] == pad)
        inner = img[full.valid_rows, full.valid_cols]
        assert (inner != pad).mean() > 0.9
    assert full.valid_rows == slice(top, ny - bottom)
    assert full.valid_cols == slice(left, nx - right)
    # PyStack3D areas have their origin at the bottom-left: rows H - ymax : H - ymin.
    xmin, xmax, ymin, ymax = full.valid_area
    assert slice(ny - ymax, ny - ymin) == full.valid_rows
    assert slice(xmin, xmax) == full.valid_cols
    assert ymin == bottom and ymax == ny - top


def test_explicit_pad_widths():
    syn = generate(SHAPE, seed=0, pad_widths=(3, 5, 7, 2), **only("padding"))
    assert syn.valid_area == [7, SHAPE[2] - 2, 5, SHAPE[1] - 3]
    assert np.all(syn.stack[:, :3] == syn.pad_value)
    assert np.all(syn.stack[:, -5:] == syn.pad_value)
    np.testing.assert_array_equal(syn.stack[:, 3:-5, 7:-2], syn.truth[:, 3:-5, 7:-2])


def test_drift_shifts_start_at_zero_and_jump(full):
    assert full.shifts.shape == (full.n_kept, 2)
    np.testing.assert_array_equal(full.shifts[0], [0.0, 0.0])
    steps = np.diff(full.shifts, axis=0)
    i_jump = int(np.flatnonzero(full.kept == full.jump_slice)[0])
    assert 0 < i_jump < full.n_kept
    np.testing.assert_allclose(steps[i_jump - 1], [4.0, -6.0], atol=1.5)
    others = np.delete(steps, i_jump - 1, axis=0)
    assert np.abs(others).max() < 1.5  # sub-pixel random walk elsewhere
    assert np.abs(others).max() > 0.05


def test_drift_moves_content_by_recorded_shift():
    syn = generate(SHAPE, seed=2, **only("drift"))
    m = 12  # beyond the largest shift, where the truth's own edge is not involved
    errors = []
    for i, k in enumerate(syn.kept):
        expected = ndimage.shift(syn.truth[k].astype(float), syn.shifts[i], order=3)
        errors.append(np.abs(syn.stack[i].astype(float) - expected)[m:-m, m:-m].mean())
        assert np.abs(syn.stack[i].astype(float) - expected)[m:-m, m:-m].max() < 6
    assert max(errors) < 1.0
    # With the opposite sign the content would be far off after the jump.
    last = syn.n_kept - 1
    wrong = ndimage.shift(syn.truth[syn.kept[last]].astype(float), -syn.shifts[last], order=3)
    assert np.abs(syn.stack[last] - wrong)[m:-m, m:-m].mean() > 5


def test_curtains_only_on_recorded_slices():
    syn = generate(SHAPE, seed=4, **only("curtains"))
    n = syn.n_kept
    assert 0 < syn.curtains.sum() < n
    np.testing.assert_array_equal(syn.curtain_slices, syn.kept[syn.curtains])
    assert set(syn.curtain_slices) < set(syn.kept)
    assert 0.2 < syn.curtains.mean() < 0.5
    for i in range(n):
        diff = syn.stack[i].astype(float) - syn.truth[syn.kept[i]]
        if syn.curtains[i]:
            # Vertical stripes: the column means vary much more than the row means.
            assert diff.mean(axis=0).std() > 2.0
            assert diff.mean(axis=0).std() > 3 * diff.mean(axis=1).std()
        else:
            assert np.all(diff == 0)


def test_curtains_are_vertical_stripes(full):
    # In the fully defective stack, column means of curtain slices vary more at small
    # x scales than in the other slices.
    def stripe_energy(img):
        col = img[full.valid_rows, full.valid_cols].astype(float).mean(axis=0)
        return np.abs(col - ndimage.median_filter(col, 7)).mean()

    clean = generate(SHAPE, seed=3, curtains=False)
    with_c = np.mean([stripe_energy(full.stack[i]) - stripe_energy(clean.stack[i])
                      for i in np.flatnonzero(full.curtains)])
    without = np.mean([stripe_energy(full.stack[i]) - stripe_energy(clean.stack[i])
                       for i in np.flatnonzero(~full.curtains)])
    assert without == pytest.approx(0.0, abs=1e-12)
    assert with_c > 0.5


def test_gain_jumps():
    syn = generate(SHAPE, seed=6, **only("gain"))
    assert syn.gain[0] == 1.0
    jumps = syn.gain[syn.gain != 1.0]
    assert jumps.size >= 1
    assert np.all((jumps >= 0.85) & (jumps <= 1.2)) and np.all(np.abs(jumps - 1) >= 0.05)
    for i, k in enumerate(syn.kept):
        t = syn.truth[k].astype(float)
        bright = t > 60
        ratio = np.median(syn.stack[i][bright] / t[bright])
        assert ratio == pytest.approx(syn.gain[i], abs=0.02)


def test_background_is_recorded_polynomial():
    syn = generate(SHAPE, seed=7, **only("background"))
    amp = max(np.abs(syn.background(k)).max() for k in range(SHAPE[0]))
    assert 10 < amp <= 0.1 * 255 + 1e-9
    for i, k in enumerate(syn.kept):
        expected = syn.truth[k].astype(float) + syn.background(k)
        got = syn.stack[i].astype(float)
        inside = (expected > 1) & (expected < 254)
        # Truth and stack are both truncated: they differ by less than one count.
        assert np.abs(got - expected)[inside].max() < 1.0 + 1e-9
    # Varies along x, y and z.
    b0, b1 = syn.background(0), syn.background(SHAPE[0] - 1)
    assert np.ptp(b0[0]) > 1 and np.ptp(b0[:, 0]) > 1 and np.abs(b1 - b0).max() > 1
    with pytest.raises(InputError, match="index"):
        syn.background(SHAPE[0])


def test_missing_slices_make_z_non_uniform(full):
    nz = SHAPE[0]
    assert full.kept[0] == 0 and full.kept[-1] == nz - 1
    assert 1 <= full.missing.size <= 3
    assert np.all(np.diff(full.kept) > 0)
    np.testing.assert_array_equal(np.union1d(full.kept, full.missing), np.arange(nz))
    np.testing.assert_allclose(full.z, full.z_truth[full.kept])
    steps = np.diff(full.z)
    assert steps.max() > 1.5 * steps.min()
    assert full.stack.shape == (full.n_kept, *SHAPE[1:])


def test_noise_level():
    syn = generate(SHAPE, seed=8, **only("noise"))
    res = syn.stack.astype(float) - syn.truth[syn.kept]
    # sqrt(0.02^2 + 0.03^2 * ~0.45) of 255, minus truncation: about 7 counts.
    assert 4 < res.std() < 10
    assert abs(res.mean()) < 1.5


def test_float_dtype():
    syn = generate(SHAPE, seed=0, dtype="float32")
    assert syn.truth.dtype == np.float32 and syn.stack.dtype == np.float32
    assert syn.data_range == 1.0
    assert syn.stack.min() >= 0.0
    assert syn.stack.max() <= 1.0
    assert 0.3 < syn.truth.mean() < 0.6


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"shape": (24, 64)}, "shape"),
    ({"shape": (1, 64, 72)}, "shape"),
    ({"dtype": "complex64"}, "dtype"),
    ({"dz": 0}, "dz"),
    ({"dz": -0.01}, "dz"),
    ({"seed": -1}, "seed"),
    ({"pad_widths": (30, 30, 1, 1)}, "pad_widths"),
    ({"pad_widths": (1, 2, 3)}, "pad_widths"),
    ({"gain_range": (1.2, 0.8)}, "gain_range"),
    ({"noise_sigma": 2.0}, "noise_sigma"),
    ({"drift_jump": "ab"}, "drift_jump"),
])
def test_bad_arguments(kwargs, word):
    kw = {"shape": SHAPE, **kwargs}
    with pytest.raises(InputError, match=word):
        generate(**kw)


def test_slice_files(written):
    syn = written.synthetic
    names = sorted(p.name for p in written.slices_dir.iterdir())
    assert names == sorted(p.name for p in written.slice_paths)
    pattern = re.compile(r"^slice_(\d{4})_z=(\d+\.\d{4})um\.tif$")
    parsed = [pattern.match(n) for n in names]
    assert all(parsed)
    idx = np.array([int(m.group(1)) for m in parsed])
    z = np.array([float(m.group(2)) for m in parsed])
    np.testing.assert_array_equal(idx, syn.kept)
    np.testing.assert_allclose(z, syn.z, atol=5e-5)
    assert np.diff(idx).max() > 1  # the gaps show in the numbering
    for i, path in enumerate(written.slice_paths):
        img = tifffile.imread(path)
        assert img.dtype == np.uint8
        np.testing.assert_array_equal(img, syn.stack[i])


def test_workflow_toml(written):
    syn = written.synthetic
    with open(written.workflow, "rb") as f:
        wf = tomllib.load(f)
    assert (written.workflow.parent / wf["project_dir"]).resolve() == written.slices_dir.resolve()
    assert wf["channels"] == ["."] and wf["ind_min"] == 0 and wf["ind_max"] == 99999
    assert wf["history"] == [] and wf["nproc"] == 2
    assert tuple(wf["process_steps"]) == STEPS
    for step in STEPS:
        assert isinstance(wf[step], dict), step
    assert wf["cropping"]["area"] == syn.valid_area
    bkg = wf["bkg_removal"]
    assert bkg["dim"] == 3 and bkg["orders"] == [1, 2, 1] and bkg["cross_terms"] is True
    assert bkg["skip_factors"] == [10, 10, 10] and bkg["preserve_avg"] is True
    assert syn.pad_value < bkg["threshold_min"] < 0.14 * 255
    assert wf["intensity_rescaling"] == {"nbins": 256, "filter_size": -1}
    reg = wf["registration_calculation"]
    assert reg["transformation"] == "TRANSLATION" and reg["nb_blocks"] == [1, 1]
    xmin, xmax, ymin, ymax = syn.valid_area
    rx0, rx1, ry0, ry1 = reg["area"]
    assert 0 < rx0 < rx1 < xmax - xmin and 0 < ry0 < ry1 < ymax - ymin
    assert wf["registration_transformation"] == {"mode": "edge", "cropping": True}
    assert wf["destriping"]["filters"][0] == {"name": "Gabor", "noise_level": 20,
                                               "sigma": [0.5, 200], "theta": 0}
    assert wf["destriping"]["cvg_threshold"] == pytest.approx(1e-2)
    assert wf["resampling"]["policy"] == "slice_{slice_nb}_z={z_coord}um.tif"
    assert wf["resampling"]["dz"] == pytest.approx(syn.dz)
    fx0, fx1, fy0, fy1 = wf["cropping_final"]["area"]
    # Within the frame left by the registration's cropping (valid region minus drift).
    assert 0 < fx0 < fx1 < xmax - xmin - np.ptp(syn.shifts[:, 1])
    assert 0 < fy0 < fy1 < ymax - ymin - np.ptp(syn.shifts[:, 0])


def test_truth_zarr(written):
    syn = written.synthetic
    truth = load_truth(written.out_dir)
    assert truth.dims == ("z", "y", "x")
    assert truth.chunks is not None  # lazy
    assert truth.z.dtype == np.float64 and truth.y.dtype == np.int64
    assert truth.x.dtype == np.int64
    np.testing.assert_allclose(truth.z.values, syn.z_truth)
    rows, cols = syn.valid_rows, syn.valid_cols
    np.testing.assert_array_equal(truth.y.values, np.arange(SHAPE[1])[rows])
    np.testing.assert_array_equal(truth.x.values, np.arange(SHAPE[2])[cols])
    np.testing.assert_array_equal(truth.values, syn.truth[:, rows, cols])
    assert truth.attrs["valid_area"] == syn.valid_area
    assert truth.attrs["curtain_slices"] == syn.curtain_slices.tolist()
    assert truth.attrs["kept"] == syn.kept.tolist()

    same = load_truth(written.truth)
    np.testing.assert_array_equal(same.values, truth.values)

    import xarray as xr

    ds = xr.open_zarr(written.truth, consolidated=False)
    np.testing.assert_array_equal(ds["kept"].values, syn.kept)
    np.testing.assert_allclose(ds["shift_y"].values, syn.shifts[:, 0])
    np.testing.assert_allclose(ds["shift_x"].values, syn.shifts[:, 1])
    np.testing.assert_allclose(ds["gain"].values, syn.gain)
    np.testing.assert_array_equal(ds["curtains"].values, syn.curtains)
    np.testing.assert_allclose(ds["z_acquired"].values, syn.z)


def test_load_truth_bad_path(tmp_path):
    with pytest.raises(InputError, match="path"):
        load_truth(tmp_path)


def test_write_refuses_non_empty_dir(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    kw = {"shape": (6, 32, 32), "seed": 0}
    with pytest.raises(InputError, match="overwrite"):
        write_synthetic(out, **kw)
    first = write_synthetic(out, overwrite=True, **kw)
    again = write_synthetic(out, overwrite=True, missing=False, **kw)
    assert (out / "notes.txt").read_text() == "keep me"
    assert len(list(again.slices_dir.iterdir())) == 6 > len(first.slice_paths)
    with pytest.raises(InputError, match="out_dir"):
        write_synthetic(out / "notes.txt", **kw)


def test_consecutive_slices_register():
    pystackreg = pytest.importorskip("pystackreg")
    syn = generate((24, 128, 128), seed=0, curtains=False, padding=False)
    sr = pystackreg.StackReg(pystackreg.StackReg.TRANSLATION)
    i = int(np.flatnonzero(syn.kept == syn.jump_slice)[0])
    for j in (1, i):
        tmat = sr.register(syn.stack[j - 1].astype(float), syn.stack[j].astype(float))
        # pystackreg's matrix maps reference coordinates to moving-image ones, so its
        # translation is the drift between the two slices, as (x, y).
        np.testing.assert_allclose([tmat[1, 2], tmat[0, 2]],
                                   syn.shifts[j] - syn.shifts[j - 1], atol=0.3)


def test_write_paths_types(written):
    assert isinstance(written.out_dir, Path)
    assert written.truth.name == "truth.zarr" and written.workflow.name == "workflow.toml"
