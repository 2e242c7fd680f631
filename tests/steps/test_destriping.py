"""Destriping: VSNR and wavelet-Fourier kernels, the stripe score, "only where needed",
numpy.fft left alone, bad parameters, and parity with PyStack3D."""

from __future__ import annotations

import copy
import tomllib

import numpy as np
import pytest
import xarray as xr
from helpers import run_ours
from pystack3d_runner import requires_pystack3d, run_pystack3d_subprocess
from scipy import ndimage

import pystack3d_dask as p3d
from pystack3d_dask.datasets.synthetic import write_synthetic
from pystack3d_dask.errors import ConfigError, NotAvailableError
from pystack3d_dask.kernels.destriping import (
    FALLBACK_THRESHOLD,
    auto_threshold,
    pyvsnr_vsnr,
    stripe_score,
    vsnr,
    wavelet_fourier,
)
from pystack3d_dask.store.checkpoints import Store

GABOR = [{"name": "Gabor", "noise_level": 20, "sigma": [0.5, 200], "theta": 0}]


def _clean(shape=(128, 144), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 120 + 60 * ndimage.gaussian_filter(rng.standard_normal(shape), 3) / 0.1


def _stripes(shape, seed=1, amplitude=25.0) -> np.ndarray:
    """Thin vertical stripes over the whole height."""
    rng = np.random.default_rng(seed)
    cols = np.zeros(shape[1])
    cols[rng.choice(shape[1], 10, replace=False)] = amplitude * rng.choice([-1, 1], 10)
    return np.broadcast_to(ndimage.gaussian_filter1d(cols, 0.7) * 2.5, shape).copy()


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(a, 0, 255).astype(np.uint8)


def _rms(a) -> float:
    return float(np.sqrt(np.mean(np.square(a))))


def test_vsnr_removes_curtains_of_the_synthetic_stack():
    from pystack3d_dask.datasets.synthetic import generate

    syn = generate(shape=(12, 200, 220), seed=4, drift=False, background=False, gain=False,
                   missing=False, padding=False)
    for i in np.flatnonzero(syn.curtains)[:2]:
        img, truth = syn.stack[i], syn.truth[syn.kept[i]].astype(float)
        out = vsnr(img, GABOR, maxit=50)
        assert out.dtype == np.uint8 and out.shape == img.shape
        # what is left of the stripes: the column means of the error
        assert (_rms((out - truth).mean(axis=0) - (out - truth).mean())
                < 0.9 * _rms((img - truth).mean(axis=0) - (img - truth).mean()))
        assert stripe_score(out) < 0.5 * stripe_score(img)
    batch = vsnr(syn.stack[:2], GABOR, maxit=5)  # a batch gives each slice's own result
    np.testing.assert_array_equal(batch[1], vsnr(syn.stack[1], GABOR, maxit=5))


@pytest.mark.parametrize(("shape", "dtype", "filters", "maxit", "cvg"), [
    ((128, 144), np.uint8, GABOR, 30, 0.0),
    ((97, 131), np.uint16, [*GABOR, {"name": "Dirac", "noise_level": 5}], 20, 0.0),
    ((96, 120), np.float32, [{"name": "Gabor", "noise_level": 30, "sigma": [1, 60],
                              "theta": 20}], 25, 0.0),
    ((128, 144), np.uint8, GABOR, 100, 1e-2),
], ids=["uint8", "uint16-odd-dirac", "float32-tilted", "convergence-threshold"])
def test_vsnr_kernel_agrees_with_pyvsnr(shape, dtype, filters, maxit, cvg):
    """The package's VSNR (its own ADMM code) against pyvsnr's on the same slice."""
    scale = 200 if dtype == np.uint16 else 1
    img = (_clean(shape) + _stripes(shape)) * scale
    img = np.clip(img, 0, np.iinfo(dtype).max).astype(dtype) if dtype != np.float32 \
        else img.astype(np.float32)
    ours = vsnr(img, filters, maxit=maxit, cvg_threshold=cvg)
    ref = pyvsnr_vsnr(img, filters, maxit=maxit, cvg_threshold=cvg)
    assert ours.dtype == ref.dtype == img.dtype and ours.shape == img.shape
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    if dtype == np.float32:
        assert diff.max() <= 1e-3 * scale * float(np.abs(ref).max())
    else:
        # float32 rounding flips a truncation here and there (more often on 16-bit values)
        assert diff.max() <= 1 and (diff == 0).mean() >= 0.99
    # and it really destripes: the result differs from the input where pyvsnr's does
    assert np.abs(ours.astype(float) - img).mean() > 0.5 * np.abs(ref.astype(float) - img).mean()


def test_vsnr_kernel_row_blocks_change_nothing(monkeypatch):
    """The element-wise passes run by blocks of rows; the blocks' edges (and the last,
    shorter block, whose row below wraps to row 0) must not show in the result."""
    from pystack3d_dask.kernels import vsnr as module

    img = _u8(_clean((101, 131)) + _stripes((101, 131)))
    whole = vsnr(img, GABOR, maxit=15)
    monkeypatch.setattr(module, "BLOCK_BYTES", 4 * 131 * 8)  # 8 rows: 13 blocks, 5 left
    np.testing.assert_array_equal(vsnr(img, GABOR, maxit=15), whole)
    ref = pyvsnr_vsnr(img, GABOR, maxit=15)
    assert np.abs(whole.astype(int) - ref.astype(int)).max() <= 1


def test_vsnr_kernel_blank_slice_and_determinism():
    blank = np.zeros((40, 50), np.uint8)
    np.testing.assert_array_equal(vsnr(blank, GABOR, maxit=5), blank)  # pyvsnr: NaN
    img = _u8(_clean() + _stripes((128, 144)))
    np.testing.assert_array_equal(vsnr(img, GABOR, maxit=10), vsnr(img, GABOR, maxit=10))


def test_vsnr_leaves_numpy_fft_alone():
    fft = np.fft
    vsnr(_u8(_clean()), GABOR, maxit=3)
    assert np.fft is fft and np.fft.__name__ == "numpy.fft"


def test_wavelet_orientation_and_odd_sizes():
    vertical = _stripes((200, 200))
    # vertical stripes on a flat background: the detail bands carry most of them
    out = wavelet_fourier(100 + vertical[:101, :131], "db4", 3, 4)
    assert out.shape == (101, 131)  # odd sizes come back at their size
    assert _rms(out - 100) < 0.7 * _rms(vertical[:101, :131])
    # horizontal stripes: angle 90 is an exact transposition
    horizontal = vertical[:131, :101].T
    turned = wavelet_fourier(100 + horizontal, "db4", 3, 4, angle=90)
    assert _rms(turned - 100) < 0.7 * _rms(horizontal)
    assert _rms(wavelet_fourier(100 + horizontal, "db4", 3, 4) - 100) > 0.95 * _rms(horizontal)
    # stripes turned by 20 degrees: the matching angle removes them, the vertical filter not
    tilted = ndimage.rotate(vertical, 20, reshape=False, order=1)[50:151, 35:166]
    good = wavelet_fourier(100 + tilted, "db4", 3, 4, angle=20)
    assert _rms(good - 100) < 0.75 * _rms(tilted)
    assert _rms(good - 100) < 0.8 * _rms(wavelet_fourier(100 + tilted, "db4", 3, 4) - 100)
    assert stripe_score(tilted, angle=20) > stripe_score(tilted, angle=-20)


def test_stripe_score_and_automatic_threshold():
    clean = _clean()
    rng = np.random.default_rng(0)
    noisy = clean + rng.normal(0, 10, clean.shape)
    assert 0.7 < stripe_score(noisy) < 1.3
    assert stripe_score(noisy + _stripes(clean.shape, amplitude=10)) > 1.6
    assert stripe_score(np.full((32, 32), 7.0)) == 1.0  # flat: no stripes
    two_groups = np.r_[rng.uniform(0.9, 1.2, 30), rng.uniform(2, 3, 20)]
    thr = auto_threshold(two_groups)
    assert 1.2 < thr <= FALLBACK_THRESHOLD
    assert ((two_groups > thr) == (two_groups > 1.5)).all()
    assert auto_threshold(rng.uniform(2.5, 3.0, 40)) == FALLBACK_THRESHOLD  # striped everywhere
    assert auto_threshold(rng.uniform(0.95, 1.1, 40)) == FALLBACK_THRESHOLD  # clean everywhere
    # very striped slices beside mildly striped ones: the mild ones stay above the threshold
    assert auto_threshold(np.r_[rng.uniform(1.6, 1.8, 20), rng.uniform(6, 8, 20)]) < 1.6


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    files = write_synthetic(tmp_path_factory.mktemp("destriping") / "syn",
                            shape=(30, 280, 320), seed=4, drift=False, background=False,
                            gain=False, missing=False)
    return files, tomllib.loads(files.workflow.read_text())


def test_only_striped_treats_the_curtain_slices(synthetic, tmp_path):
    files, workflow = synthetic
    params = copy.deepcopy(workflow)
    params["destriping"].update(only_striped=True, maxit=20)
    result = run_ours(files.slices_dir, params, ["cropping", "destriping"], tmp_path / "s.zarr")
    ds = xr.open_zarr(result.store, group="steps/02_destriping", consolidated=False)
    treated = ds["treated"].values[0]
    curtains = files.synthetic.curtains
    assert (treated == curtains).mean() >= 0.95 and treated[curtains].mean() >= 0.9
    assert ds["stripe_score"].attrs["threshold"] == pytest.approx(
        auto_threshold(ds["stripe_score"].values))
    before = p3d.open_result(result.store, "cropping").values[0]
    after = ds["stack"].values[0]
    np.testing.assert_array_equal(after[~treated], before[~treated])  # untouched
    assert (after[treated] != before[treated]).any(axis=(1, 2)).all()
    score_out = ds["stripe_score_out"].values[0]
    assert np.median(score_out[treated]) < np.median(ds["stripe_score"].values[0][treated])
    # every slice (PyStack3D's behaviour) by default
    params["destriping"].pop("only_striped")
    result = run_ours(files.slices_dir, params, ["cropping", "destriping"], tmp_path / "all.zarr")
    ds = xr.open_zarr(result.store, group="steps/02_destriping", consolidated=False)
    assert ds["treated"].values.all() and ds["stripe_score"].attrs["threshold"] is None
    # without a pass of their own, the input's scores are those of the slices read
    inputs = p3d.open_result(result.store, "cropping").values[0]
    np.testing.assert_allclose(ds["stripe_score"].values[0],
                               [stripe_score(img) for img in inputs], rtol=1e-12)
    outputs = ds["stack"].values[0]
    np.testing.assert_allclose(ds["stripe_score_out"].values[0],
                               [stripe_score(img) for img in outputs], rtol=1e-12)
    assert ds["stripe_score"].attrs["only_striped"] is False


def test_input_scores_of_a_resumed_write_come_from_the_input(synthetic, tmp_path):
    """Slices already written when a killed destriping resumes: their input scores are
    computed from the input slices, not from the written ones."""
    files, workflow = synthetic
    params = copy.deepcopy(workflow)
    params["destriping"]["maxit"] = 5
    result = run_ours(files.slices_dir, params, ["cropping", "destriping"], tmp_path / "s.zarr")
    st = Store(result.store, create=False)
    group = "steps/02_destriping"
    expected = xr.open_zarr(result.store, group=group, consolidated=False)["stripe_score"].values
    for z in (0, 3, 7):  # as if the run had been killed with these slices unwritten
        st._chunk_file(group, 0, z).unlink()
    st.update_attrs(group, complete=False)
    again = run_ours(files.slices_dir, params, ["cropping", "destriping"], tmp_path / "s.zarr")
    assert {r.group: r.chunks_computed for r in again.reports}[group] == 3
    ds = xr.open_zarr(result.store, group=group, consolidated=False)
    np.testing.assert_allclose(ds["stripe_score"].values, expected, rtol=1e-12)
    outputs = ds["stack"].values[0]
    assert not np.allclose(expected[0], [stripe_score(img) for img in outputs])


@pytest.mark.parametrize("scheduler", ["threads", "local"])
def test_pipeline_leaves_numpy_fft_alone(synthetic, tmp_path, scheduler):
    files, workflow = synthetic
    params = copy.deepcopy(workflow)
    params["destriping"]["maxit"] = 2
    params["scheduler"] = {"name": scheduler, "workers": 2}
    fft = np.fft
    result = run_ours(files.slices_dir, params, ["destriping"], tmp_path / "s.zarr")
    assert result.reports[-1].status == "computed"
    assert np.fft is fft and np.fft.__name__ == "numpy.fft"


def test_worker_processes_keep_numpy_fft():
    from distributed import Client, LocalCluster

    img = _u8(_clean((64, 64)))
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        out = client.submit(vsnr, img, GABOR, 3).result()
        names = client.run(lambda: __import__("numpy").fft.__name__)
    assert out.shape == img.shape
    assert set(names.values()) == {"numpy.fft"}


@pytest.mark.parametrize(("table", "message"), [
    ({"filters": [{"name": "Gauss", "noise_level": 1}]}, r"name = 'Gauss'"),
    ({"filters": [{"name": "Gabor", "noise_level": 1, "theta": 0}]}, "sigma"),
    ({"filters": [{"name": "Dirac", "noise_level": -1}]}, "noise_level = -1"),
    ({"filters": GABOR, "maxit": 0}, "maxit = 0"),
    ({"wavelet_decomposition": {"wavelet": "coif99"}}, "'coif99' is not a discrete wavelet"),
    ({"wavelet_decomposition": {"wavelet": "db4", "level": 7}}, "largest valid level is 6"),
    ({"filters": GABOR, "wavelet_decomposition": {"level": 2}}, 'method = "vsnr"'),
    ({}, "needs filters"),
    ({"filters": GABOR, "stripe_threshold": -1}, "stripe_threshold = -1"),
    ({"filters": GABOR, "method": "fourier"}, "method = 'fourier'"),
])
def test_bad_parameters(tmp_path, table, message):
    from helpers import write_stack

    write_stack(tmp_path / "slices", n=3, shape=(64, 80), dtype="uint8")
    wf = {"project_dir": str(tmp_path / "slices"), "process_steps": ["destriping"],
          "destriping": table, "store": {"path": str(tmp_path / "s.zarr")}}
    with pytest.raises(ConfigError, match=message):
        p3d.run(wf, progress=False)
    from pystack3d_dask.workflow.status import store_status

    status = store_status(tmp_path / "s.zarr") if (tmp_path / "s.zarr").exists() else []
    assert not any(g["step"] == "destriping" and g["complete"] for g in status)


def test_gpu_device_without_cupy_is_a_clear_error(tmp_path):
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is installed: the GPU tests cover this")
    except ImportError:
        pass
    from helpers import write_stack

    write_stack(tmp_path / "slices", n=2, shape=(32, 32), dtype="uint8")
    wf = {"project_dir": str(tmp_path / "slices"), "process_steps": ["destriping"],
          "destriping": {"filters": GABOR, "device": "gpu"},
          "store": {"path": str(tmp_path / "s.zarr")}}
    with pytest.raises(NotAvailableError, match=r"needs CuPy and a CUDA GPU"):
        p3d.run(wf, progress=False)


def test_gpu_without_pyvsnr_names_the_gpu_extra(monkeypatch):
    """pyvsnr is in the gpu extra, not a core dependency: asking for the GPU without it
    says what to install."""
    import sys

    from pystack3d_dask.steps.destriping import _require_gpu

    monkeypatch.setitem(sys.modules, "pyvsnr", None)  # import pyvsnr now fails
    with pytest.raises(NotAvailableError, match=r"pyvsnr: .*") as err:
        _require_gpu()
    assert "pip install 'pystack3d-dask[gpu]'" in str(err.value)


def _gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_available(), reason="needs CuPy and a CUDA GPU")
def test_gpu_same_result_as_cpu(synthetic, tmp_path):
    files, workflow = synthetic
    steps = ["cropping", "destriping"]
    results = {}
    for device in ("cpu", "gpu"):
        params = copy.deepcopy(workflow)
        params["destriping"].update(maxit=20, device=device, batch_size=8)
        result = run_ours(files.slices_dir, params, steps, tmp_path / f"{device}.zarr")
        results[device] = p3d.open_result(result.store).values
    diff = np.abs(results["cpu"].astype(int) - results["gpu"].astype(int))
    assert (diff <= 1).mean() >= 0.999


@requires_pystack3d
@pytest.mark.slow
@pytest.mark.parametrize(("table", "need"), [
    ({"maxit": 30, "cvg_threshold": 1e-2, "filters": GABOR}, 0.999),
    ({"maxit": 20, "filters": [{"name": "Gabor", "noise_level": 30, "sigma": [1, 60],
                                "theta": 0}, {"name": "Dirac", "noise_level": 5}]}, 0.999),
    ({"wavelet_decomposition": {"wavelet": "coif3", "level": 3, "sigma": 4}}, 0.99),
    ({"wavelet_decomposition": {"wavelet": "db4", "level": 2, "sigma": 2}}, 0.99),
], ids=["vsnr-gabor", "vsnr-gabor-dirac", "wavelet-coif3", "wavelet-db4"])
def test_parity_with_pystack3d(synthetic, tmp_path, table, need):
    files, workflow = synthetic
    params = copy.deepcopy(workflow)
    params["destriping"] = table
    steps = ["cropping", "destriping"]
    ref = run_pystack3d_subprocess(files.slices_dir, params, steps, tmp_path / "ps3d",
                                   nproc=1, plots=False, timeout=600).raise_on_error()
    result = run_ours(files.slices_dir, params, steps, tmp_path / "ours.zarr")
    ours = p3d.open_result(result.store, "destriping").values[0]
    theirs = ref["destriping"].stack
    if "wavelet_decomposition" in table:
        # PyStack3D keeps PyWavelets' reconstruction, one pixel larger along an odd size
        grown = [n + n % 2 for n in ours.shape[1:]]
        assert list(theirs.shape[1:]) == grown
        theirs = theirs[:, : ours.shape[1], : ours.shape[2]]
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    share = float((np.abs(ours.astype(int) - theirs.astype(int)) <= 1).mean())
    assert share >= need, f"{share:.5f} of pixels within 1 grey level"


def test_deep_wavelet_level_runs_with_one_warning(tmp_path):
    from helpers import write_stack

    write_stack(tmp_path / "slices", n=3, shape=(64, 80), dtype="uint8")
    wf = {"project_dir": str(tmp_path / "slices"), "process_steps": ["destriping"],
          "destriping": {"wavelet_decomposition": {"wavelet": "coif3", "level": 4}},
          "store": {"path": str(tmp_path / "s.zarr")}}
    with pytest.warns(UserWarning, match="beyond level 1 every coefficient") as record:
        p3d.run(wf, progress=False)
    assert sum("coefficient" in str(w.message) for w in record) == 1
    assert p3d.open_result(tmp_path / "s.zarr").shape == (1, 3, 64, 80)
