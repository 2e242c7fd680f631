"""Argument checks shared by the synthetic generator and its defects.

Each returns the value normalised (ints as ``int``, numbers as ``float``) or raises
:class:`~pystack3d_dask.errors.InputError` naming the argument.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError


def check_shape(shape: Any) -> tuple[int, int, int]:
    """``(nz, ny, nx)`` as ints: nz >= 2, ny and nx >= 16."""
    try:
        dims = tuple(int(n) for n in shape)
        ok = len(dims) == 3 and all(int(n) == n for n in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or dims[0] < 2 or dims[1] < 16 or dims[2] < 16:
        raise InputError(f"shape must be 3 integers (nz, ny, nx) with nz >= 2 and ny, nx >= 16, "
                         f"got {shape!r}")
    return dims


def check_dtype(dtype: Any) -> np.dtype:
    """An integer or float numpy dtype."""
    try:
        out = np.dtype(dtype)
    except TypeError as exc:
        raise InputError(f"dtype must be a numpy integer or float dtype, got {dtype!r}") from exc
    if out.kind not in "iuf":
        raise InputError(f"dtype must be a numpy integer or float dtype, got {dtype!r}")
    return out


def check_seed(seed: Any) -> int | None:
    """A non-negative int seed, or None."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer or None, got {seed!r}")
    return int(seed)


def positive_float(name: str, value: Any) -> float:
    """A finite number > 0, as a float."""
    out = nonnegative_float(name, value)
    if out == 0:
        raise InputError(f"{name} must be a positive number, got {value!r}")
    return out


def nonnegative_float(name: str, value: Any) -> float:
    """A finite number >= 0, as a float (a bool is refused)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = float("nan")
    if isinstance(value, bool) or not math.isfinite(out) or out < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return out


def fraction(name: str, value: Any, upper: float = 1.0) -> float:
    """A number in ``[0, upper]``, as a float."""
    out = nonnegative_float(name, value)
    if out > upper:
        raise InputError(f"{name} must be a fraction in [0, {upper}], got {value!r}")
    return out


def nonnegative_int(name: str, value: Any) -> int:
    """An integer >= 0, as an int (a bool is refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def float_pair(name: str, value: Any) -> tuple[float, float]:
    """Two finite numbers, as a tuple of floats."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be two numbers, got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise InputError(f"{name} must be two finite numbers, got {value!r}")
    return a, b


def check_gain_range(value: Any) -> tuple[float, float]:
    """``(low, high)`` gain factors, reaching at least 0.05 away from 1."""
    lo, hi = float_pair("gain_range", value)
    if not 0 < lo <= hi or (lo > 0.95 and hi < 1.05):
        raise InputError("gain_range must be (low, high) with 0 < low <= high, reaching at "
                         f"least 0.05 away from 1, got {value!r}")
    return lo, hi


def check_pad_widths(value: Any) -> tuple[int, int, int, int]:
    """Four border widths ``(top, bottom, left, right)``, integers >= 0."""
    try:
        widths = tuple(int(v) for v in value)
        ok = len(widths) == 4 and all(int(v) == v and v >= 0 for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError("pad_widths must be 4 integers >= 0 (top, bottom, left, right), "
                         f"got {value!r}")
    return widths

