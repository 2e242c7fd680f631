"""Back to the input dtype, as PyStack3D does it."""

from __future__ import annotations

import numpy as np

__all__ = ["cast_to"]


def cast_to(values: np.ndarray, dtype: np.dtype | str, rounding: bool = False) -> np.ndarray:
    """Clip to the range of ``dtype`` and cast by truncation (PyStack3D's rule), or to
    the nearest integer with ``rounding`` (truncation lowers every slice by half a grey
    level on average, at every step that casts).

    NaN becomes 0 for integer dtypes, so that no undefined value is ever written.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        if rounding:
            values = np.rint(values)
        info = np.iinfo(dtype)
        if info.min == 0:
            # fmax/fmin drop NaN in favour of the bound: NaN -> 0 in two cheap passes
            return np.fmin(np.fmax(values, 0), info.max).astype(dtype)
        out = np.nan_to_num(values, nan=0.0, posinf=info.max, neginf=info.min)
        return np.clip(out, info.min, info.max).astype(dtype)
    info = np.finfo(dtype)
    return np.clip(values, info.min, info.max).astype(dtype)
