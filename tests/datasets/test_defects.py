"""Tests of the synthetic defects, one class at a time, and of generate(defects=[...])."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from pystack3d_dask.datasets.defects import (
    Acquisition,
    Background,
    Curtains,
    Drift,
    Gain,
    Missing,
    Noise,
    Padding,
    background_field,
    keyword_defaults,
)
from pystack3d_dask.datasets.synthetic import generate
from pystack3d_dask.errors import InputError

SHAPE = (12, 32, 48)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def acquisition(shape=SHAPE, dtype="uint8") -> Acquisition:
    return Acquisition(shape, np.dtype(dtype))


def test_padding_border_is_constant_and_of_the_requested_widths():
    acq = acquisition()
    pad = Padding(widths=(2, 3, 4, 5), value=0.1).check()
    pad.draw(acq, rng())
    assert acq.pad_widths == (2, 3, 4, 5)
    assert acq.pad_value == 25.0  # 0.1 * 255 = 25.5, cast by truncation
    img = pad.apply(np.full(SHAPE[1:], 100.0), acq, rng(), 0)
    border = np.ones(SHAPE[1:], dtype=bool)
    border[2:-3, 4:-5] = False
    assert np.all(img[border] == 25.5)
    assert np.all(img[~border] == 100.0)
    # Off: no border at all, whatever the widths asked.
    Padding(on=False, widths=(2, 3, 4, 5)).draw(acq, rng())
    assert acq.pad_widths == (0, 0, 0, 0) and acq.pad_value == 0.0


def test_padding_random_widths_differ_and_checks():
    acq = acquisition()
    Padding().draw(acq, rng(4))
    top, bottom, left, right = acq.pad_widths
    assert top != bottom and left != right
    assert max(top, bottom) <= SHAPE[1] // 5 and max(left, right) <= SHAPE[2] // 5
    with pytest.raises(InputError, match="pad_value"):
        Padding(value=1.5).check()
    with pytest.raises(InputError, match="pad_widths"):
        Padding(widths=(1, 2, 3)).check()
    with pytest.raises(InputError, match="pad_widths"):
        Padding(widths=(14, 14, 0, 0)).draw(acquisition(), rng())


def test_background_adds_a_bounded_polynomial_of_the_slice_index():
    acq = acquisition()
    bkg = Background(amplitude=0.2).check()
    bkg.draw(acq, rng(1))
    nz, ny, nx = SHAPE
    fields = [background_field(acq.bkg_coeffs, k, nz, ny, nx) for k in range(nz)]
    assert max(np.abs(f).max() for f in fields) <= 0.2 * 255 + 1e-9
    assert not np.allclose(fields[0], fields[-1])  # it varies in z
    img = np.full((ny, nx), 0.5)
    out = bkg.apply(img, acq, rng(), 3)  # acquired slice 3 is original slice 3
    np.testing.assert_allclose(out - 0.5, fields[3] / 255)
    Background(on=False).draw(acq, rng(1))
    assert set(acq.bkg_coeffs.values()) == {0.0}
    with pytest.raises(InputError, match="bkg_amplitude"):
        Background(amplitude=-0.1).check()


def test_gain_multiplies_its_blocks_by_their_factor():
    acq = acquisition((60, 32, 32))
    gain = Gain(factor_range=(1.1, 1.3), n_jumps=2).check()
    gain.draw(acq, rng(2))
    assert acq.gain[0] == 1.0
    jumped = acq.gain != 1.0
    assert jumped.any()
    assert np.all((acq.gain[jumped] >= 1.1) & (acq.gain[jumped] <= 1.3))
    i = int(np.flatnonzero(jumped)[0])
    img = np.full((32, 32), 0.4)
    np.testing.assert_allclose(gain.apply(img, acq, rng(), i), 0.4 * acq.gain[i])
    first = gain.apply(img, acq, rng(), 0)
    assert first is img  # a gain of 1 leaves the slice alone
    with pytest.raises(InputError, match="gain_range"):
        Gain(factor_range=(1.2, 0.8)).check()
    with pytest.raises(InputError, match="n_gain_jumps"):
        Gain(n_jumps=True).check()


def test_noise_has_the_requested_spread():
    acq = acquisition((2, 256, 256))
    img = np.full((256, 256), 0.5)
    out = Noise(sigma=0.05, shot=0.0).check().apply(img, acq, rng(3), 0)
    assert abs((out - img).std() - 0.05) < 0.002
    out = Noise(sigma=0.0, shot=0.1).apply(img, acq, rng(3), 0)
    assert abs((out - img).std() - 0.1 * np.sqrt(0.5)) < 0.002
    with pytest.raises(InputError, match="noise_sigma"):
        Noise(sigma=2.0).check()
    with pytest.raises(InputError, match="shot_noise"):
        Noise(shot="x").check()


def test_drift_records_the_jump_and_shifts_the_slice():
    acq = acquisition((30, 32, 32))
    drift = Drift(step=0.0, jump=(2.0, -3.0)).check()
    drift.draw(acq, rng(5))
    k = acq.jump_slice
    assert 10 <= k < 20  # in the middle third
    np.testing.assert_array_equal(acq.shifts[:k], 0.0)
    np.testing.assert_array_equal(acq.shifts[k:], np.tile([2.0, -3.0], (30 - k, 1)))
    assert acq.margin == 3 + 4
    img = rng().random((32, 32))
    out = drift.apply(img, acq, rng(), k)
    # Whole-pixel shift: the content moves by +2 rows and -3 columns.
    np.testing.assert_allclose(out[2:, :-3], img[:-2, 3:], atol=1e-9)
    assert drift.apply(img, acq, rng(), 0) is img
    # Off: no shift, but the same margin (the truth must not depend on the switch).
    Drift(on=False, step=0.0, jump=(2.0, -3.0)).draw(acq, rng(5))
    assert not acq.shifts.any() and acq.jump_slice is None and acq.margin == 7
    with pytest.raises(InputError, match="drift_step"):
        Drift(step=-1.0).check()
    with pytest.raises(InputError, match="drift_jump"):
        Drift(jump=(1.0,)).check()


def test_curtains_are_vertical_stripes_on_the_drawn_slices():
    acq = acquisition((20, 40, 40))
    curtains = Curtains(fraction=0.5, amplitude=0.1, count=5).check()
    curtains.draw(acq, rng(6))
    assert acq.curtains.sum() == 10
    img = np.zeros((40 + 2 * acq.margin, 40 + 2 * acq.margin))
    plain = int(np.flatnonzero(~acq.curtains)[0])
    assert curtains.apply(img, acq, rng(), plain) is img
    striped = curtains.apply(img, acq, rng(), int(np.flatnonzero(acq.curtains)[0]))
    top = striped[:10]  # every stripe covers the top rows fully: constant down a column
    assert np.abs(top).max() > 0.01
    np.testing.assert_allclose(top, np.broadcast_to(top[0], top.shape))
    with pytest.raises(InputError, match="curtain_fraction"):
        Curtains(fraction=0.0).check()
    Curtains(on=False, fraction=0.0).check()  # a switched-off defect may be empty
    with pytest.raises(InputError, match="n_curtains"):
        Curtains(count=-1).check()


def test_missing_drops_inner_slices_only():
    acq = acquisition((10, 32, 32))
    Missing(fraction=0.5).check().draw(acq, rng(7))
    assert acq.missing.size == 5 and acq.kept.size == 5
    assert acq.kept[0] == 0 and acq.kept[-1] == 9
    np.testing.assert_array_equal(np.union1d(acq.kept, acq.missing), np.arange(10))
    Missing(on=False, fraction=0.5).draw(acq, rng(7))
    np.testing.assert_array_equal(acq.kept, np.arange(10))
    with pytest.raises(InputError, match="missing_fraction"):
        Missing(fraction=0.6).check()


def test_generate_with_defect_objects_equals_the_keywords():
    by_objects = generate(SHAPE, seed=2, defects=[Noise(sigma=0.05), Gain(n_jumps=2), Drift()])
    on = {"noise", "gain", "drift"}
    by_keywords = generate(SHAPE, seed=2, noise_sigma=0.05, n_gain_jumps=2,
                           **{d: d in on for d in ("padding", "background", "gain", "drift",
                                                    "curtains", "missing", "noise")})
    np.testing.assert_array_equal(by_objects.stack, by_keywords.stack)
    assert by_objects.options == by_keywords.options
    with pytest.raises(InputError, match="noise_sigma"):
        generate(SHAPE, defects=[Noise()], noise_sigma=0.1)
    with pytest.raises(InputError, match="Noise"):
        generate(SHAPE, defects=[Noise(), Noise()])


def test_generate_keyword_defaults_are_the_defects_defaults():
    params = inspect.signature(generate).parameters
    assert {k: params[k].default for k in keyword_defaults()} == keyword_defaults()
