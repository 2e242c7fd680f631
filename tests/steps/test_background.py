"""Background removal: polynomial bases, robust fits, 2D and 3D steps."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

import pystack3d_dask as p3d
from pystack3d_dask.errors import ConfigError
from pystack3d_dask.kernels.background import fit_slice, remove_background
from pystack3d_dask.kernels.polynomial import (
    evaluate_slice,
    parse_poly_basis,
    powers_from_orders,
    term_names,
    vandermonde,
)
from pystack3d_dask.kernels.robust import robust_lstsq
from pystack3d_dask.steps import get_step
from pystack3d_dask.steps.bkg_removal import prepare


def _stack(data: np.ndarray) -> xr.DataArray:
    nz, ny, nx = data.shape
    return xr.DataArray(da.from_array(data[None], chunks=(1, 1, ny, nx)),
                        dims=("channel", "z", "y", "x"),
                        coords={"channel": ["."], "z": np.arange(nz) * 0.01})


def _params(**kw) -> dict:
    base = {"orders": None, "cross_terms": False, "poly_basis": None, "dim": None,
            "skip_factors": None, "skip_averaging": False, "threshold_min": None,
            "threshold_max": None, "weight_func": "None", "preserve_avg": False,
            "max_samples": 1_000_000}
    base.update(kw)
    return base


def test_powers_from_orders_in_pystack3d_order():
    assert powers_from_orders([2, 1], False) == [(0, 0), (0, 1), (1, 0), (2, 0)]
    assert powers_from_orders([2, 1], True) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert len(powers_from_orders([1, 2, 1], True)) == 12
    assert list(term_names([(0, 0), (1, 1), (2, 0)])) == ["1", "x*y", "x**2"]


def test_poly_basis_grammar():
    assert parse_poly_basis("y + x + x*y + x**2 + x**2*y", 2) == [
        (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert parse_poly_basis("1 + x^2 * z + z", 3) == [(0, 0, 0), (0, 0, 1), (2, 0, 1)]
    for bad, piece in [("x + w", "unknown symbol 'w'"), ("x + z", "unknown symbol 'z'"),
                       ("__import__('os').system('ls')", r"unexpected \"\('os'\)"),
                       ("x +", "ends too early"), ("x ** y", "not an integer"),
                       ("x - y", "unexpected")]:
        with pytest.raises(ConfigError, match=piece):
            parse_poly_basis(bad, 2)


def test_separable_evaluation_equals_design_matrix():
    powers = powers_from_orders([2, 3, 1], True)
    rng = np.random.default_rng(0)
    coefs = rng.normal(size=len(powers))
    h, w, zpos = 7, 9, 0.4
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    full = vandermonde([xx.ravel(), yy.ravel(), np.full(h * w, zpos)], powers) @ coefs
    np.testing.assert_allclose(evaluate_slice(coefs, powers, (h, w), zpos), full.reshape(h, w))
    no_const = evaluate_slice(coefs, powers, (h, w), zpos, skip_constant=True)
    np.testing.assert_allclose(no_const, full.reshape(h, w) - coefs[0])


def test_robust_fit_resists_outliers():
    rng = np.random.default_rng(1)
    x = np.linspace(0, 1, 400)
    y = 3 + 2 * x + rng.normal(0, 0.05, x.size)
    y[::10] += 40  # 10 % gross outliers
    design = np.stack([np.ones_like(x), x], axis=1)
    ols = robust_lstsq(design, y, None)
    np.testing.assert_allclose(ols, np.linalg.lstsq(design, y, rcond=None)[0])
    assert abs(ols[0] - 3) > 2  # least squares is dragged by the outliers
    for name in ("HuberT", "Hampel", "TukeyBiweight"):
        coefs = robust_lstsq(design, y, name)
        np.testing.assert_allclose(coefs, [3, 2], atol=0.1 if name == "HuberT" else 0.03)


def test_block_medians_and_tukey_fit_the_main_phase():
    # a matrix on a tilted background, with pores (15 % of it, 30 % in its left half, in
    # patches larger than a pixel, smaller than a block) 80 grey levels darker: the mean
    # of a region depends on how many pores it holds, the level of the matrix does not
    rng = np.random.default_rng(4)
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w]
    bkg = 120 + 30 * xx / (w - 1) - 20 * yy / (h - 1)
    pores = np.kron(rng.random((h // 4, w // 4)) < 0.15, np.ones((4, 4), dtype=bool))
    pores[:, : w // 2] |= np.kron(rng.random((h // 4, w // 8)) < 0.2, np.ones((4, 4), dtype=bool))
    img = bkg - 80 * pores + rng.normal(0, 3, (h, w))
    powers = powers_from_orders([1, 1], False)  # 1, y, x
    huber, _ = fit_slice(img, powers, (10, 10), weight_func="HuberT")
    robust, used = fit_slice(img, powers, (10, 10), weight_func="TukeyBiweight", median=True)
    assert used == (h // 10) * (w // 10)
    # the slopes (what is subtracted) to within 1.5 grey levels; the level of a block's
    # median sits slightly inside the matrix's noise, towards the pores
    np.testing.assert_allclose(robust[1:], [-20, 30], atol=1.5)
    assert abs(robust[0] - 120) < 3
    assert np.abs(huber[1:] - [-20, 30]).max() > 4 * np.abs(robust[1:] - [-20, 30]).max()
    # a block with no pixel inside the thresholds gives no sample
    img[:10, :10] = 0
    _, used = fit_slice(img, powers, (10, 10), threshold_min=1, median=True)
    assert used == (h // 10) * (w // 10) - 1


def test_fit_slice_recovers_background_and_leaves_masked_pixels():
    h, w = 60, 80
    yy, xx = np.mgrid[0:h, 0:w]
    bkg = 50 + 30 * xx / (w - 1) + 20 * (yy / (h - 1)) ** 2
    img = bkg.copy()
    img[10:15, 10:15] = 255  # excluded by threshold_max, kept as is
    powers = powers_from_orders([1, 2], False)
    coefs, used = fit_slice(img, powers, (5, 5), None, 200, "None")
    np.testing.assert_allclose(coefs, [50, 0, 20, 30], atol=1e-9)  # 1, y, y**2, x
    assert used == (h // 5) * (w // 5) - 1  # the grid point (10, 10) is left out
    out = remove_background(img, coefs, powers, threshold_max=200)
    np.testing.assert_allclose(out[img < 200], 50)  # constant term kept
    assert (out[10:15, 10:15] == 255).all()


def test_2d_step_through_pipeline_stores_coefficients(tmp_path):
    from helpers import write_stack

    folder = tmp_path / "slices"
    write_stack(folder, n=4, shape=(40, 50), dtype="uint8")
    wf = {"project_dir": str(folder), "process_steps": ["bkg_removal"],
          "bkg_removal": {"orders": [1, 1], "cross_terms": True, "skip_factors": [5, 5],
                          "weight_func": "HuberT"},
          "store": {"path": str(tmp_path / "s.zarr")}}
    p3d.run(wf, progress=False)
    ds = xr.open_zarr(tmp_path / "s.zarr", group="steps/01_bkg_removal", consolidated=False)
    assert ds["coefs"].dims == ("channel", "z", "term")
    assert list(ds["term"].values) == ["1", "y", "x", "x*y"]
    assert ds["stack"].dtype == np.uint8
    assert (ds["fit_pixels"].values == 80).all()


def test_3d_fit_recovers_stack_background_and_caps_sample():
    nz, h, w = 21, 40, 50
    zz, yy, xx = np.mgrid[0:nz, 0:h, 0:w]
    truth = 80 + 10 * xx / (w - 1) - 15 * yy / (h - 1) + 25 * zz / (nz - 1)
    stack = _stack(truth.astype(np.float32))
    params = _params(orders=[1, 1, 1], skip_factors=[2, 2, 2])
    seen = []

    def compute(objects):
        seen.extend(objects)
        return list(dask.compute(*objects))

    coefs = prepare(stack, compute, **params)["coefs_3d"]
    assert list(coefs["term"].values) == ["1", "z", "y", "x"]
    np.testing.assert_allclose(coefs.values[0], [80, 25, -15, 10], atol=1e-3)
    out = get_step("bkg_removal")(stack, **params).values[0]
    np.testing.assert_allclose(out, 80, atol=1e-3)
    # the sample of each slice is thinned so that the whole sample stays under the cap
    capped = prepare(stack, compute, **_params(orders=[1, 1, 1], skip_factors=[1, 1, 1],
                                               max_samples=2100))["coefs_3d"]
    np.testing.assert_allclose(capped.values[0], [80, 25, -15, 10], atol=1e-3)


def test_preserve_avg_gives_zero_mean_background():
    nz, h, w = 11, 30, 30
    zz, _, xx = np.mgrid[0:nz, 0:h, 0:w]
    data = (100 + 20 * xx / (w - 1) + 10 * zz / (nz - 1)).astype(np.float32)
    params = _params(orders=[1, 0, 1], skip_factors=[1, 1, 1], preserve_avg=True)
    out = get_step("bkg_removal")(_stack(data), **params).values[0]
    np.testing.assert_allclose(out.mean(), data.mean(), rtol=1e-5)
    np.testing.assert_allclose(out, data.mean(), atol=1e-3)


@pytest.mark.parametrize(("table", "piece"), [
    ({"orders": [1, 1], "threshold_min": 10, "threshold_max": 5}, "threshold_min = 10"),
    ({"orders": [1, -1]}, "orders"),
    ({"orders": [1, 1.5]}, "orders"),
    ({"poly_basis": "1 + x + exp(y)"}, r"unexpected '\(y\)'"),
    ({"poly_basis": "1 + x + w"}, "unknown symbol 'w'"),
    ({"orders": [1, 1], "preserve_avg": True}, "preserve_avg"),
    ({"orders": [1, 1], "skip_factors": [2, 2, 2]}, "skip_factors"),
    ({"cross_terms": True}, "needs 'orders'"),
    ({"orders": [1, 1], "skip_averaging": True, "skip_median": True}, "skip_median"),
    ({"orders": [1, 1], "weight_func": "Tukey"}, "weight_func"),
])
def test_bad_background_parameters(tmp_path, stack_dir, table, piece):
    folder, _ = stack_dir
    wf = {"project_dir": str(folder), "process_steps": ["bkg_removal"], "bkg_removal": table,
          "store": {"path": str(tmp_path / "s.zarr")}}
    with pytest.raises(ConfigError, match=piece):
        p3d.run(wf, progress=False)


def test_2d_slice_without_fit_pixels_left_unchanged_with_warning(tmp_path):
    import tifffile
    from helpers import write_stack

    folder = tmp_path / "slices"
    data = write_stack(folder, n=4, shape=(30, 40), dtype="uint8")
    dark = np.full((30, 40), 3, np.uint8)
    tifffile.imwrite(folder / "slice_0002_z=0.0200um.tif", dark)
    wf = {"project_dir": str(folder), "process_steps": ["bkg_removal"],
          "bkg_removal": {"orders": [1, 1], "threshold_min": 10, "skip_factors": [3, 3]},
          "store": {"path": str(tmp_path / "s.zarr")}}
    with pytest.warns(UserWarning, match=r"slice z = 0.0200 um \(index 2.*left unchanged"):
        p3d.run(wf, progress=False)
    out = p3d.open_result(tmp_path / "s.zarr").values[0]
    np.testing.assert_array_equal(out[2], dark)
    assert not np.array_equal(out[1], data[1])
