"""profile = "recommended": each step, on a stack where its defect is the only one, brings
the error against the truth down and never up; the profile's precedence rules; errors."""

from __future__ import annotations

import numpy as np
import pytest

import pystack3d_dask as p3d
from pystack3d_dask.datasets.synthetic import load_truth, write_synthetic
from pystack3d_dask.errors import ConfigError
from pystack3d_dask.kernels.curtains import column_profile
from pystack3d_dask.kernels.destriping import stripe_score
from pystack3d_dask.kernels.dtype import cast_to
from pystack3d_dask.kernels.histogram import fit_gains
from pystack3d_dask.workflow.config import load_workflow

SHAPE = (40, 96, 110)
ONLY = {"padding": False, "background": False, "gain": False, "drift": False,
        "curtains": False, "missing": False}


def _slice_mae(stack: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.abs(stack.astype(np.float64) - truth.astype(np.float64)).mean(axis=(1, 2))


def _run_one(tmp_path, step: str, table: dict, shape: tuple[int, int, int] = SHAPE, **defect
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, object]:
    files = write_synthetic(tmp_path / "syn", shape=shape, seed=4, **{**ONLY, **defect})
    wf = {"project_dir": str(files.slices_dir), "process_steps": [step], "profile": "recommended",
          step: table, "store": {"path": str(tmp_path / "out.zarr")},
          "scheduler": {"name": "threads", "workers": 2}}
    p3d.run(wf, progress=False)
    truth = load_truth(files.truth).values
    before = p3d.open_result(tmp_path / "out.zarr", "input").values[0]
    after = p3d.open_result(tmp_path / "out.zarr", step).values[0]
    return before, after, truth, files.synthetic


def test_destriping_alone_removes_curtains_and_never_adds_error(tmp_path):
    # curtains are told from structure by their length: slices of 256 rows, not 96
    before, after, truth, syn = _run_one(tmp_path, "destriping", {}, (24, 256, 256),
                                         curtains=True, curtain_fraction=0.4,
                                         curtain_amplitude=0.1)
    mae_in, mae_out = _slice_mae(before, truth), _slice_mae(after, truth)
    striped = syn.curtains
    # the striped slices get better on the whole (not every one); slices not treated
    # are untouched
    assert mae_out[striped].mean() < 0.95 * mae_in[striped].mean()
    import xarray as xr

    treated = xr.open_zarr(tmp_path / "out.zarr", group="steps/01_destriping",
                           consolidated=False)["treated"].values[0]
    assert treated[striped].mean() > 0.8
    np.testing.assert_array_equal(after[~treated], before[~treated])
    assert mae_out.mean() < mae_in.mean()
    score_in = np.mean([stripe_score(s) for s in before[striped]])
    score_out = np.mean([stripe_score(s) for s in after[striped]])
    assert score_out < score_in


def test_gain_rescaling_alone_fixes_gain_jumps_and_keeps_contrast(tmp_path):
    before, after, truth, syn = _run_one(tmp_path, "intensity_rescaling", {}, gain=True,
                                         gain_range=(0.8, 1.25))
    mae_in, mae_out = _slice_mae(before, truth), _slice_mae(after, truth)
    jumped = syn.gain != 1
    assert jumped.any()
    assert np.all(mae_out[jumped] < mae_in[jumped])
    # slices without a jump: 4 of 40 lose up to 5 % here when this was written
    assert mae_out[~jumped].mean() <= 1.02 * mae_in[~jumped].mean()
    stored = p3d.open_result(tmp_path / "out.zarr", "intensity_rescaling")
    assert stored.shape == before[None].shape
    ds = __import__("xarray").open_zarr(tmp_path / "out.zarr", group="steps/01_intensity_rescaling",
                                        consolidated=False)
    factors = ds["factors"].values[0]
    # the fitted factors undo the true gains
    np.testing.assert_allclose(factors * syn.gain, 1.0, atol=0.03)


def test_background_removal_alone_brings_the_error_down(tmp_path):
    # the profile samples block medians: blocks (skip_factors) larger than most pores and
    # particles, so that a block's median is the matrix's level. PyStack3D's fit of the
    # same table (HuberT on pixels) makes this error 1.7x larger on the mean.
    table = {"dim": 3, "orders": [1, 2, 1], "cross_terms": True, "skip_factors": [10, 10, 10],
             "preserve_avg": True}
    before, after, truth, _ = _run_one(tmp_path, "bkg_removal", table, background=True,
                                       bkg_amplitude=0.15)
    # the background's constant term cannot be told from the sample's mean grey level
    # (preserve_avg keeps the stack's): the error is judged without each slice's offset
    offset_in = (before.astype(float) - truth).mean(axis=(1, 2), keepdims=True)
    offset_out = (after.astype(float) - truth).mean(axis=(1, 2), keepdims=True)
    mae_in = _slice_mae(before - offset_in, truth)
    mae_out = _slice_mae(after - offset_out, truth)
    assert np.all(mae_out <= mae_in * 1.02)
    assert mae_out.mean() < 0.8 * mae_in.mean()


def test_rounding_casts_to_the_nearest_grey_level():
    values = np.array([0.4, 0.6, 1.5, 254.7, 300.0, -3.0, np.nan])
    np.testing.assert_array_equal(cast_to(values, np.uint8), [0, 0, 1, 254, 255, 0, 0])
    np.testing.assert_array_equal(cast_to(values, np.uint8, rounding=True),
                                  [0, 1, 2, 255, 255, 0, 0])
    rng = np.random.default_rng(1)
    smooth = rng.uniform(10, 240, 100_000)
    assert abs(cast_to(smooth, np.uint8, rounding=True).mean() - smooth.mean()) < 0.01
    assert cast_to(smooth, np.uint8).mean() - smooth.mean() < -0.45


def test_column_profile_subtracts_a_stripe_and_leaves_the_rest():
    rng = np.random.default_rng(1)
    clean = np.round(100 + 5 * rng.standard_normal((128, 128)))
    striped = clean.copy()
    striped[:90, 60:63] += 20.0  # a curtain from the top edge, 90 rows long
    out = column_profile(cast_to(striped, np.uint8))
    assert np.abs(out[:90, 60:63] - clean[:90, 60:63]).mean() < 2.0
    assert np.abs(out - clean).mean() < 0.2
    assert stripe_score(out) < 1.3 < stripe_score(striped)
    untouched = np.ones(128, dtype=bool)
    untouched[55:68] = False
    np.testing.assert_array_equal(out[:, untouched], clean[:, untouched])


def test_column_profile_takes_stripes_side_by_side_out_of_the_structure_level():
    # two wide curtains 12 columns apart fill most of the 31-column running median: in
    # one pass half of them is taken for structure; the later passes take the level
    # from the slice less the stripes found
    rng = np.random.default_rng(2)
    clean = np.round(100 + 5 * rng.standard_normal((128, 160)))
    cols = np.arange(160.0)
    curtains = sum(25 * np.exp(-0.5 * ((cols - c) / 3.0) ** 2) for c in (70, 82))
    striped = cast_to(clean + curtains[None, :], np.uint8)
    band = slice(55, 100)
    before = np.abs(striped - clean)[:, band].mean()
    after = np.abs(column_profile(striped) - clean)[:, band].mean()
    assert before > 7.5
    assert after < 0.45 * before  # one pass leaves 0.6 of it
    assert np.abs(column_profile(striped) - clean)[:, :50].max() == 0  # far columns untouched


def test_fit_gains_recovers_a_gain_block():
    rng = np.random.default_rng(0)
    drift = np.linspace(1.0, 1.1, 60)[:, None] * (1 + 0.005 * rng.standard_normal((60, 1)))
    q = np.array([40.0, 70, 100, 140, 190]) * drift
    gains = np.ones(60)
    gains[20:26] = 1.2
    fitted, _ = fit_gains(q * gains[:, None], window=15)
    np.testing.assert_allclose(fitted * gains, 1.0, atol=0.03)


def test_profile_fills_only_what_the_file_leaves_out(tmp_path):
    base = {"project_dir": str(tmp_path), "profile": "recommended"}
    wf = load_workflow(base)
    assert wf.profile == "recommended"
    assert wf.steps["destriping"]["method"] == "column_profile"
    assert wf.steps["destriping"]["only_striped"] is True
    assert wf.steps["intensity_rescaling"]["method"] == "gain"
    assert wf.steps["registration_calculation"]["bandpass"] == [1.5, 3.0]
    assert all(wf.steps[s]["rounding"] is True for s in wf.steps)
    # explicit keys win; VSNR filters keep the profile's method out; a threshold keeps
    # the band-pass out (the two cannot go together)
    filters = [{"name": "Gabor", "noise_level": 20, "sigma": [0.5, 200], "theta": 0}]
    wf = load_workflow({**base, "destriping": {"filters": filters, "only_striped": False},
                        "intensity_rescaling": {"method": "histogram"},
                        "registration_calculation": {"threshold": 30},
                        "cropping": {"rounding": False}})
    assert wf.steps["destriping"]["method"] is None
    assert wf.steps["destriping"]["only_striped"] is False
    assert wf.steps["intensity_rescaling"]["method"] == "histogram"
    assert wf.steps["registration_calculation"]["bandpass"] is None
    assert wf.steps["cropping"]["rounding"] is False
    # the default profile changes nothing
    plain = load_workflow({"project_dir": str(tmp_path)})
    assert plain.profile == "pystack3d"
    assert plain.steps["destriping"]["method"] is None
    assert plain.steps["intensity_rescaling"]["method"] == "histogram"
    assert not any(plain.steps[s]["rounding"] for s in plain.steps)


def test_unknown_profile_names_the_allowed_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"profile = 'recomended'.*'pystack3d', 'recommended'"):
        load_workflow({"project_dir": str(tmp_path), "profile": "recomended"})


def test_status_says_the_profile(tmp_path):
    files = write_synthetic(tmp_path / "syn", shape=(8, 48, 56), seed=1, profile="recommended",
                            **ONLY)
    wf = load_workflow(files.workflow)
    wf.process_steps = ["cropping"]
    p3d.run(wf, store=tmp_path / "s.zarr", progress=False)
    from pystack3d_dask.workflow.status import format_status, store_status

    rows = store_status(tmp_path / "s.zarr")
    assert rows[-1]["profile"] == "recommended"
    assert format_status(rows).splitlines()[-1] == "profile: recommended"
    from pystack3d_dask.report.html import write_html_report

    page = write_html_report(tmp_path / "s.zarr", tmp_path / "r.html").read_text()
    assert "<tr><th>profile</th><td>recommended</td></tr>" in page
