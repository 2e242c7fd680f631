"""Registration: pairwise matrices, cumulative transforms, warps, parity with PyStack3D."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import tifffile
import xarray as xr
from helpers import run_ours
from pystack3d_runner import requires_pystack3d, run_pystack3d_subprocess
from scipy import ndimage

import pystack3d_dask as p3d
from pystack3d_dask.errors import ConfigError
from pystack3d_dask.kernels.registration import (
    cumulative,
    pair_matrices,
    remove_drift,
    remove_running_mean,
)
from pystack3d_dask.steps import registration_pairs


def _structured(shape=(96, 112), seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 4) * 2000


def _shift_stack(tmp_path, shifts):
    """Slices of one image shifted by (dy, dx), written as uint16 TIFFs."""
    folder = tmp_path / "slices"
    folder.mkdir()
    base = _structured()
    for k, (dy, dx) in enumerate(shifts):
        img = ndimage.shift(base, (dy, dx), order=3, mode="nearest")
        tifffile.imwrite(folder / f"slice_{k:04d}_z={k * 0.01:.4f}um.tif",
                         np.clip(img * 20, 0, 65535).astype(np.uint16))
    return folder


def test_pair_matrix_recovers_a_known_shift():
    ref = _structured()
    moved = ndimage.shift(ref, (2.5, -1.25), order=3, mode="nearest")
    tmat = pair_matrices(ref, moved)[0]
    np.testing.assert_allclose(tmat[:2, 2], [-1.25, 2.5], atol=0.05)  # (x, y) translation
    with pytest.raises(ConfigError, match="BILINEAR.*refused"):
        pair_matrices(ref, moved, "BILINEAR")
    with pytest.raises(ConfigError, match="'SHEAR'"):
        pair_matrices(ref, moved, "SHEAR")


def test_cumulative_and_drift_options():
    t = np.tile(np.identity(3), (4, 1, 1, 1))
    t[1:, 0, 0, 2] = 1.0  # one pixel along x per slice
    cum = cumulative(t)
    np.testing.assert_allclose(cum[:, 0, 0, 2], [0, 1, 2, 3])
    np.testing.assert_allclose(remove_drift(cum, (1.0, 0.0))[:, 0, 0, 2], 0)
    flat = remove_running_mean(cum, 1)
    assert flat is cum
    smooth = remove_running_mean(cum, 3)
    np.testing.assert_allclose(smooth[1:3, 0, 0, 2], 0, atol=1e-12)  # linear drift removed


def test_valid_mask_equals_the_finite_pixels_of_the_warp():
    """The crop rectangle's masks are computed without warping: the same pixels as
    scikit-image's warp of ones leaves finite, to the bit, for integer and sub-pixel
    shifts, rotations and shears, and exact-boundary shifts."""
    from pystack3d_dask.kernels.registration import valid_mask, warp_slice

    rng = np.random.default_rng(3)
    shape = (61, 77)
    mats = [np.identity(3)]
    for tx, ty in [(3, -2), (-5, 7), (0.5, -0.5), (12.25, 0), (-60, 0), (0, 61)]:
        mats.append(np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], float))
    for _ in range(20):
        angle = rng.uniform(-0.2, 0.2)
        scale = rng.uniform(0.9, 1.1)
        m = np.identity(3)
        m[:2, :2] = scale * np.array([[np.cos(angle), -np.sin(angle)],
                                      [np.sin(angle), np.cos(angle)]])
        m[:2, :2] += rng.normal(0, 0.02, (2, 2))
        m[:2, 2] = rng.uniform(-9, 9, 2)
        mats.append(m)
    for m in mats:
        expected = np.isfinite(warp_slice(np.ones(shape), m[None]))
        np.testing.assert_array_equal(valid_mask(m[None], shape), expected)


def test_translation_crop_from_matrices_equals_the_masks():
    """For translations (and axis-aligned scales) the crop rectangle comes from the
    matrices alone: the same as the largest rectangle of the AND of every slice's mask,
    including exact-boundary and sub-pixel shifts, flips, and a drift that leaves nothing."""
    from pystack3d_dask.kernels.registration import (
        axis_aligned_bounds,
        inner_rectangle,
        valid_mask,
    )

    rng = np.random.default_rng(5)
    shape = (61, 77)

    def stack(pairs, scale=(1.0, 1.0)):
        return np.array([[[[scale[0], 0, tx], [0, scale[1], ty], [0, 0, 1]]]
                         for tx, ty in pairs], float)

    cases = [stack([(0, 0)]),
             stack([(0, 0), (3, -2), (-5, 7), (0.5, -0.5), (12.25, 0)]),
             stack([(0, 0), (76, 0)]), stack([(0, 0), (0, -60)]),
             stack(rng.uniform(-6, 6, (40, 2))),
             stack(rng.uniform(-3, 3, (10, 2)), scale=(0.95, 1.04)),
             stack([(76, 60)], scale=(-1.0, -1.0)),
             stack([(0, 0), (80, 0)])]
    for cumul in cases:
        valid = np.logical_and.reduce([valid_mask(m, shape) for m in cumul])
        expected = inner_rectangle(valid) if valid.any() else (0, 0, 0, 0)
        assert axis_aligned_bounds(cumul, shape) == expected
    rotated = stack([(0, 0), (1, 1)])
    rotated[1, 0, 0, 1] = 0.01
    assert axis_aligned_bounds(rotated, shape) is None


@pytest.mark.parametrize("mode", ["constant", "edge", "symmetric", "reflect", "wrap"])
def test_translation_warp_equals_scikit_image(mode):
    """Pure translations take a path of their own (shifted views, no per-pixel loop): the
    same values and NaN border as scikit-image's bilinear warp, float64 to 1e-9, 8-bit
    slices (computed in float32) to 1e-4 grey level, for whole, half, sub-pixel, and
    larger-than-the-slice shifts."""
    from skimage.transform import AffineTransform, warp

    from pystack3d_dask.kernels.registration import warp_slice

    rng = np.random.default_rng(5)
    for dtype, tol in ((np.float64, 1e-9), (np.uint8, 1e-4)):
        img = (rng.random((41, 57)) * 200).astype(dtype)
        for tx, ty in [(0, 0), (3, -2), (0.5, -0.5), (-2.25, 7.75), (12.3, 0), (0, -5.9),
                       (-70.5, 3), (100.2, -80.7)]:
            m = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]])
            ref = warp(img.astype(np.float64), AffineTransform(matrix=m), mode=mode,
                       cval=np.nan, preserve_range=True)
            ours = warp_slice(img, m[None], (1, 1), mode)
            np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
            if np.isfinite(ref).any():
                assert np.nanmax(np.abs(ours - ref)) <= tol, (dtype, tx, ty)


def test_registration_through_pipeline_aligns_slices(tmp_path):
    shifts = [(0, 0), (1.5, -2.0), (3.0, -1.0), (2.0, 1.5)]
    folder = _shift_stack(tmp_path, shifts)
    wf = {"project_dir": str(folder),
          "process_steps": ["registration_calculation", "registration_transformation"],
          "registration_transformation": {"mode": "edge", "cropping": True},
          "store": {"path": str(tmp_path / "s.zarr")}}
    p3d.run(wf, progress=False)
    calc = xr.open_zarr(tmp_path / "s.zarr", group="steps/01_registration_calculation",
                        consolidated=False)
    assert calc["tmats"].dims == ("z", "block", "row", "col")
    cum = cumulative(calc["tmats"].values)
    np.testing.assert_allclose(cum[:, 0, 1, 2], [s[0] for s in shifts], atol=0.1)
    np.testing.assert_allclose(cum[:, 0, 0, 2], [s[1] for s in shifts], atol=0.1)
    out = p3d.open_result(tmp_path / "s.zarr").values[0].astype(float)
    assert out.shape[1] < 96 and out.shape[2] < 112  # cropped to the valid rectangle
    spread = np.abs(out - out[0]).mean(axis=(1, 2))
    raw = p3d.open_result(tmp_path / "s.zarr", "input").values[0].astype(float)
    assert spread.max() < 0.1 * np.abs(raw - raw[0]).mean(axis=(1, 2)).max()


def test_transformation_without_calculation_and_bad_threshold(tmp_path):
    folder = _shift_stack(tmp_path, [(0, 0), (1, 1)])
    wf = {"project_dir": str(folder), "process_steps": ["registration_transformation"],
          "store": {"path": str(tmp_path / "s.zarr")}}
    with pytest.raises(ConfigError, match="needs the output of registration_calculation"):
        p3d.run(wf, progress=False)
    assert not (tmp_path / "s.zarr").exists()  # refused before the input is read
    wf["process_steps"] = ["registration_calculation"]
    wf["registration_calculation"] = {"threshold": -5}
    with pytest.raises(ConfigError, match=r"leaves slice z = 0.0100 um \(index 1\) uniform"):
        p3d.run(wf, progress=False)
    wf["registration_calculation"] = {"area": [500, 600, 0, 10]}
    with pytest.raises(ConfigError, match="outside the image"):
        p3d.run(wf, progress=False)


@requires_pystack3d
@pytest.mark.slow
@pytest.mark.parametrize(("transformation", "mode", "cropping", "blocks"), [
    ("TRANSLATION", "edge", True, [1, 1]),
    ("RIGID_BODY", "constant", False, [1, 1]),
    ("TRANSLATION", "reflect", False, [2, 2]),
])
def test_parity_with_pystack3d(tmp_path, transformation, mode, cropping, blocks):
    from pystack3d_dask.datasets.synthetic import write_synthetic

    files = write_synthetic(tmp_path / "syn", shape=(24, 96, 110), seed=3)
    params = tomllib.loads(files.workflow.read_text())
    params["registration_calculation"].update(transformation=transformation, nb_blocks=blocks)
    # PyStack3D applies nb_blocks only when the transformation table names it too, and a
    # list [1, 1] there makes it use a piecewise warp through one point (docs/migration.md)
    params["registration_transformation"] = {"mode": mode, "cropping": cropping}
    if blocks != [1, 1]:
        params["registration_transformation"]["nb_blocks"] = blocks
    steps = ["cropping", "registration_calculation", "registration_transformation"]
    ref = run_pystack3d_subprocess(files.slices_dir, params, steps, tmp_path / "ps3d",
                                   nproc=1, plots=False, timeout=600).raise_on_error()
    result = run_ours(files.slices_dir, params, steps, tmp_path / "ours.zarr")
    calc = xr.open_zarr(result.store, group="steps/02_registration_calculation",
                        consolidated=False)
    theirs = ref["registration_calculation"].output("tmats.npy")
    ours = calc["tmats"].values.reshape(np.shape(theirs))
    np.testing.assert_allclose(ours[..., :2, 2], theirs[..., :2, 2], atol=0.01)  # pixels
    np.testing.assert_allclose(ours[..., :2, :2], theirs[..., :2, :2], atol=2e-4)  # ~0.01 deg
    out = p3d.open_result(result.store).values[0].astype(np.int64)
    expected = ref["registration_transformation"].stack.astype(np.int64)
    assert out.shape == expected.shape
    inner = (slice(None), slice(3, -3), slice(3, -3))
    assert (np.abs(out[inner] - expected[inner]) <= 1).mean() >= 0.995


def test_pairs_from_threads_run_in_a_process_pool_with_same_result():
    from concurrent.futures import ThreadPoolExecutor

    from pystack3d_dask.runtime import pool as pools

    ref = _structured()
    moved = ndimage.shift(ref, (1.0, 2.0), order=3, mode="nearest")
    direct = pair_matrices(ref, moved)
    assert pools.gil_free_pool() is None  # the main thread registers in place
    block = lambda a: a[None, None]  # noqa: E731 - the (1, 1, Y, X) chunk of a slice
    with ThreadPoolExecutor(2) as threads:
        pool = threads.submit(pools.gil_free_pool).result()
        found = threads.submit(registration_pairs.pair, block(ref), block(moved), slice(None), slice(None),
                               None, "TRANSLATION", (1, 1)).result()
    assert pool is not None and pool is pools._POOL
    np.testing.assert_allclose(found, direct)


@pytest.mark.parametrize("options", [{}, {"bandpass": [1.0, 6.0]}, {"threshold": "median"}])
def test_matrices_do_not_depend_on_the_slabs(options):
    """calc_prepare registers a slab of slices per task, each on the one before it (the
    first of a slab on the previous slab's last): same matrices as pair by pair, however
    the stack is cut into slabs."""
    import dask

    from pystack3d_dask.steps import registration as reg

    rng = np.random.default_rng(5)
    base = _structured((64, 72), seed=2)
    shifts = np.cumsum(rng.uniform(-1.5, 1.5, (7, 2)), axis=0)
    slices = [ndimage.shift(base, s, order=3, mode="nearest") for s in shifts]
    stack = np.stack(slices)[None]
    if options.get("threshold") == "median":
        options = {"threshold": float(np.median(base))}
    rows, cols = slice(4, 60), slice(6, 66)
    expected = [registration_pairs.pair(stack[:, k - 1:k], stack[:, k:k + 1], rows, cols,
                          options.get("threshold"), "TRANSLATION", (1, 1), "",
                          0.0, options.get("bandpass")) for k in range(1, 7)]
    for chunks in ((1,) * 7, (3, 3, 1), (7,), (2, 5)):
        data = xr.DataArray(dask.array.from_array(stack, chunks=(1, chunks, 64, 72)),
                            dims=("channel", "z", "y", "x"),
                            coords={"z": np.arange(7) * 0.01})
        zs = data["z"].values
        blocks = data.data[:1].to_delayed(optimize_graph=False)[0, :, 0, 0]
        starts = np.cumsum((0, *chunks[:-1]))
        found = dask.compute(*[dask.delayed(reg._slab_pairs)(
            blocks[b - 1] if b else None, blocks[b], int(starts[b]), zs, rows, cols,
            options.get("threshold"), "TRANSLATION", (1, 1), 0.0,
            None if "bandpass" not in options else tuple(options["bandpass"]))
            for b in range(len(chunks))], scheduler="threads")
        np.testing.assert_array_equal(np.concatenate(found), np.asarray(expected))


def test_gaussian_sigma_reduces_the_error_that_noise_brings():

    rng = np.random.default_rng(3)
    base = _structured((128, 128), seed=1)
    errors = {0.0: [], 1.0: []}
    for _ in range(12):
        truth = rng.uniform(-1.5, 1.5, 2)
        moved = ndimage.shift(base, truth, order=3, mode="nearest")
        noisy = [(a + rng.normal(0, 0.25 * base.std(), a.shape))[None, None]
                 for a in (base, moved)]
        for sigma in errors:
            tmat = registration_pairs.pair(*noisy, slice(None), slice(None), None, "TRANSLATION", (1, 1),
                             gaussian_sigma=sigma)[0]
            errors[sigma].append(np.hypot(tmat[1, 2] - truth[0], tmat[0, 2] - truth[1]))
    rms = {s: float(np.sqrt(np.mean(np.square(e)))) for s, e in errors.items()}
    assert rms[1.0] < 0.8 * rms[0.0]  # 0.021 against 0.032 px


def test_bandpass_ignores_shading_that_changes_between_slices():
    """FIB-SEM shading (charging, shadowing) differs from slice to slice; a ramp is larger
    than any feature, so the band-pass leaves it out where plain or smoothed registration
    reads part of it as motion."""

    rng = np.random.default_rng(3)
    base = _structured((128, 128), seed=1)
    yy, xx = np.mgrid[:128, :128] / 128
    filters = {"none": {}, "gaussian_sigma": {"gaussian_sigma": 1.0},
               "bandpass": {"bandpass": (1.0, 8.0)}}
    errors = {name: [] for name in filters}
    for _ in range(12):
        truth = rng.uniform(-1.5, 1.5, 2)
        moved = ndimage.shift(base, truth, order=3, mode="nearest")
        moved += base.std() * (rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy)
        noisy = [(a + rng.normal(0, 0.25 * base.std(), a.shape))[None, None]
                 for a in (base, moved)]
        for name, kwargs in filters.items():
            tmat = registration_pairs.pair(*noisy, slice(None), slice(None), None, "TRANSLATION", (1, 1),
                             **kwargs)[0]
            errors[name].append(np.hypot(tmat[1, 2] - truth[0], tmat[0, 2] - truth[1]))
    rms = {name: float(np.sqrt(np.mean(np.square(e)))) for name, e in errors.items()}
    # 0.031 px against 0.143 (none) and 0.144 (gaussian_sigma)
    assert rms["bandpass"] < 0.4 * min(rms["none"], rms["gaussian_sigma"])


def test_bandpass_is_the_difference_of_gaussians_of_both_slices():

    base = _structured((96, 112), seed=2)
    moved = ndimage.shift(base, (0.6, -1.3), order=3, mode="nearest")
    # the 12 pixels (4 x 3.0) along the slice's edges see mirrored content: left out
    dog = [(ndimage.gaussian_filter(a.astype(np.float32), 1.5)
            - ndimage.gaussian_filter(a.astype(np.float32), 3.0))[12:-12, 12:-12]
           for a in (base, moved)]
    found = registration_pairs.pair(base[None, None], moved[None, None], slice(None), slice(None), None,
                      "TRANSLATION", (1, 1), bandpass=(1.5, 3.0))
    np.testing.assert_allclose(found, pair_matrices(*dog), atol=1e-9)
    assert abs(found[0, 1, 2] - 0.6) < 0.05 and abs(found[0, 0, 2] + 1.3) < 0.05
    # an area away from the edges is filtered on its real neighbours, and kept whole
    area_rows, area_cols = slice(20, 70), slice(30, 90)
    dog = [(ndimage.gaussian_filter(a.astype(np.float32), 1.5)
            - ndimage.gaussian_filter(a.astype(np.float32), 3.0))[area_rows, area_cols]
           for a in (base, moved)]
    found = registration_pairs.pair(base[None, None], moved[None, None], area_rows, area_cols, None,
                      "TRANSLATION", (1, 1), bandpass=(1.5, 3.0))
    np.testing.assert_allclose(found, pair_matrices(*dog), atol=1e-9)


def test_bandpass_rotation_is_about_the_area_origin():
    """Leaving the edges out moves the registered image's origin: the matrices are
    brought back to the area's, so a rotation agrees with the unfiltered registration."""
    from skimage.transform import AffineTransform, warp


    base = _structured((160, 180), seed=4)
    moved = warp(base, AffineTransform(rotation=np.deg2rad(1.5), translation=(2.0, -1.0)),
                 mode="edge")
    plain, band = (registration_pairs.pair(base[None, None], moved[None, None], slice(None), slice(None),
                             None, "RIGID_BODY", (1, 1), **kwargs)[0]
                   for kwargs in ({}, {"bandpass": (1.0, 8.0)}))
    # 32 pixels left out per edge: about the wrong origin the translation would be 0.8 px off
    np.testing.assert_allclose(band, plain, atol=0.02)


def test_bandpass_through_the_pipeline_and_its_bad_values(tmp_path):
    shifts = [(0, 0), (1.5, -2.0), (3.0, -1.0), (2.0, 1.5)]
    folder = _shift_stack(tmp_path, shifts)
    wf = {"project_dir": str(folder), "process_steps": ["registration_calculation"],
          "registration_calculation": {"bandpass": [1, 6]},
          "store": {"path": str(tmp_path / "s.zarr")}}
    p3d.run(wf, progress=False)
    calc = xr.open_zarr(tmp_path / "s.zarr", group="steps/01_registration_calculation",
                        consolidated=False)
    cum = cumulative(calc["tmats"].values)
    np.testing.assert_allclose(cum[:, 0, 1, 2], [s[0] for s in shifts], atol=0.1)
    np.testing.assert_allclose(cum[:, 0, 0, 2], [s[1] for s in shifts], atol=0.1)
    for value, message in [([3, 1.5], r"bandpass.*strictly increasing"),
                           ([1, 2, 3], r"bandpass.*a list of 2 numbers"),
                           ([-1, 2], r"bandpass.*>= 0")]:
        wf["registration_calculation"] = {"bandpass": value}
        with pytest.raises(ConfigError, match=message):
            p3d.run(wf, progress=False)
    wf["registration_calculation"] = {"bandpass": [1, 4], "gaussian_sigma": 1}
    with pytest.raises(ConfigError, match="gaussian_sigma = 1.* and bandpass = .*give one"):
        p3d.run(wf, progress=False)


def test_unguarded_script_gets_a_clear_error_and_no_second_run(tmp_path):
    """The pystackreg pool's processes import the main script (as any forkserver or spawn
    pool does): an unguarded run() at its top must stop in the child, not run again."""
    import subprocess
    import sys

    _shift_stack(tmp_path, [(0, 0), (1, 1), (2, 0)])
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import pystack3d_dask as p3d\n"
        f"p3d.run({{'project_dir': {str(tmp_path / 'slices')!r}, "
        "'process_steps': ['registration_calculation'], "
        f"'store': {{'path': {str(tmp_path / 's.zarr')!r}}}}}, progress=False)\n"
        "print('finished')\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0 and "finished" not in done.stdout
    assert 'if __name__ == "__main__"' in done.stderr
    from pystack3d_dask.workflow.status import store_status

    complete = {g["step"]: g["complete"] for g in store_status(tmp_path / "s.zarr")}
    assert complete.get("registration_calculation") is not True  # never recorded as done


def test_calc_prepare_same_matrices_whatever_the_chunks():
    """A stack given through the Python API in any chunks (z in one chunk, y and x cut)
    is registered as one read from the store."""
    import dask

    from pystack3d_dask.steps import registration as reg

    rng = np.random.default_rng(8)
    base = _structured((48, 56), seed=4)
    shifts = np.cumsum(rng.uniform(-1.0, 1.0, (11, 2)), axis=0)
    stack = np.stack([ndimage.shift(base, s, order=3, mode="nearest") for s in shifts])[None]
    expected = [np.identity(3)] + [
        registration_pairs.pair(stack[:, k - 1:k], stack[:, k:k + 1], slice(None), slice(None), None,
                  "TRANSLATION", (1, 1))[0] for k in range(1, 11)]
    for chunks in ((1, 1, 48, 56), (1, 11, 48, 56), (1, 4, 24, 20)):
        data = xr.DataArray(dask.array.from_array(stack, chunks=chunks),
                            dims=("channel", "z", "y", "x"), coords={"z": np.arange(11) * 0.01})
        tmats = reg.calc_prepare(data, lambda tasks: list(dask.compute(*tasks)))["tmats"]
        np.testing.assert_array_equal(tmats.values[:, 0], np.asarray(expected))


def test_blank_slice_and_absurd_shift_are_named_not_cropped_to_a_sliver(tmp_path):
    from pystack3d_dask.errors import InputError

    folder = _shift_stack(tmp_path, [(0.5 * k, -0.3 * k) for k in range(8)])
    blank = sorted(folder.glob("*.tif"))[4]
    tifffile.imwrite(blank, np.zeros((96, 112), np.uint16))  # a frame the microscope lost
    wf = {"project_dir": str(folder), "process_steps": ["registration_calculation",
                                                        "registration_transformation"],
          "registration_transformation": {"cropping": True},
          "store": {"path": str(tmp_path / "a.zarr")}}
    with pytest.raises(InputError, match=r"slices 3 -> 4\): a blank slice.*slices 4 -> 5"):
        p3d.run(wf, progress=False)
    wf["registration_calculation"] = {"on_outlier": "skip"}
    with pytest.warns(UserWarning, match="2 pair\\(s\\) beyond max_shift = 24 px"):
        p3d.run(wf, progress=False)
    out = p3d.open_result(tmp_path / "a.zarr")
    assert out.shape[2] >= 90 and out.shape[3] >= 100  # not a sliver: at most the drift
    tmats = xr.open_zarr(tmp_path / "a.zarr", group="steps/01_registration_calculation")["tmats"]
    np.testing.assert_allclose(tmats.values[[4, 5], 0], np.identity(3)[None].repeat(2, 0))
    np.testing.assert_allclose(tmats.values[3, 0, 1, 2], 0.5, atol=0.1)  # others as found


def test_shift_beyond_max_shift_is_an_error_naming_the_pair(tmp_path):
    from pystack3d_dask.errors import InputError

    folder = _shift_stack(tmp_path, [(0, 0), (0, 0), (0.0, 9.0), (0.0, 9.0)])
    wf = {"project_dir": str(folder), "process_steps": ["registration_calculation"],
          "registration_calculation": {"max_shift": 5},
          "store": {"path": str(tmp_path / "b.zarr")}}
    with pytest.raises(InputError, match=r"max_shift = 5 px\): .*slices 1 -> 2\): shift 9\.0 px"):
        p3d.run(wf, progress=False)
    wf["registration_calculation"] = {"max_shift": 10}
    p3d.run(wf, progress=False)  # a real drift, allowed by the user's bound
