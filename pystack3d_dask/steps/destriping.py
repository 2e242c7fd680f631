"""``destriping``: VSNR (pyvsnr) or wavelet-Fourier filtering, on every slice as
PyStack3D does, or only on the slices whose stripe score says they are striped."""

from __future__ import annotations

import functools
import importlib
import warnings
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import ConfigError, NotAvailableError
from ..kernels.curtains import column_profile
from ..kernels.destriping import (
    auto_threshold,
    check_wavelet,
    stripe_score,
    vsnr,
    wavelet_fourier,
)
from ..kernels.dtype import cast_to
from ..params import (
    REQUIRED,
    Param,
    boolean,
    integer,
    invalid,
    is_number,
    number,
    numbers,
    string,
    validate_table,
)
from .base import Compute, Derived, StepOutput, map_slice_values, map_slices

__all__ = ["PARAMS", "apply", "prepare", "prepared_names", "resolve", "validate"]

_GABOR = {
    "name": Param(string(("Gabor", "Dirac")), REQUIRED),
    "noise_level": Param(number(0.0), REQUIRED, "noise level of the filter (>= 0)"),
    "sigma": Param(numbers(2, minimum=0.0), REQUIRED, "[sx, sy] of the Gabor filter"),
    "theta": Param(number(), 0.0, "orientation in degrees (0: vertical stripes)"),
}
_DIRAC = {
    "name": Param(string(("Gabor", "Dirac")), REQUIRED),
    "noise_level": Param(number(0.0), REQUIRED, "noise level of the filter (>= 0)"),
}
_WAVELET = {
    "wavelet": Param(string(), "coif3", "PyWavelets wavelet name"),
    "level": Param(integer(1), 4, "decomposition level"),
    "sigma": Param(number(0.0, strict_min=True), 4.0, "damping width in Fourier space"),
}


def _filters(table: str, key: str, value: Any) -> list[dict]:
    expected = ('a list of tables such as { name = "Gabor", noise_level = 20, '
                'sigma = [0.5, 200], theta = 0 } or { name = "Dirac", noise_level = 10 }')
    if not isinstance(value, list) or not value or not all(isinstance(f, dict) for f in value):
        raise invalid(table, key, value, expected)
    out = []
    for i, filt in enumerate(value):
        sub = f"{table}.{key}[{i}]"
        name = string(("Gabor", "Dirac"))(sub, "name", filt.get("name"))
        schema = dict(_DIRAC) if name == "Dirac" else dict(_GABOR)
        out.append(validate_table(sub, filt, schema))
    return out


def _wavelet(table: str, key: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise invalid(table, key, value, 'a table such as { wavelet = "coif3", level = 4, sigma = 4 }')
    return validate_table(f"{table}.{key}", value, _WAVELET)


def _stripe_threshold(table: str, key: str, value: Any) -> str | float:
    if value == "auto":
        return value
    if is_number(value) and value > 0:
        return float(value)
    raise invalid(table, key, value, '"auto" or a score above 0 (1 means no stripes)')


#: Parameters of the [destriping] table (the workflow file's keys, their checks and defaults).
PARAMS: dict[str, Param] = {
    "maxit": Param(integer(1), 100, "VSNR iterations"),
    "cvg_threshold": Param(number(0.0), 0.0, "VSNR convergence threshold"),
    "filters": Param(_filters, None, "VSNR filters"),
    "wavelet_decomposition": Param(_wavelet, None, "{ wavelet, level, sigma } (Münch 2009)"),
    "method": Param(string(("vsnr", "wavelet", "column_profile")), None,
                    "vsnr or wavelet (needed only when both filters and "
                    "wavelet_decomposition are given), or column_profile: subtract only "
                    "the stripes, each a column run anchored at the slice's edge. Not in "
                    "PyStack3D"),
    "width": Param(integer(3), 31, "column_profile: width (pixels) across the stripes "
                   "that separates them from the structure. Not in PyStack3D"),
    "only_striped": Param(boolean, False,
                          "destripe only the slices whose stripe score passes "
                          "stripe_threshold (PyStack3D: every slice). Not in PyStack3D"),
    "stripe_threshold": Param(_stripe_threshold, "auto",
                              'score above which a slice is destriped: "auto" or a number. '
                              "Not in PyStack3D"),
    "angle": Param(number(), 0.0, "stripes' angle from the vertical (degrees), for the "
                   "wavelet method and the score. Not in PyStack3D"),
    "device": Param(string(("cpu", "gpu")), "cpu", "cpu, or gpu (CuPy). Not in PyStack3D"),
    "batch_size": Param(integer(1), None, "slices per GPU task (default: from the free GPU "
                        "memory). Not in PyStack3D"),
}

WAVELET_DEFAULTS = {key: param.default for key, param in _WAVELET.items()}
#: Float32 arrays of a slice's size that pyvsnr's ADMM holds at once (images, duals,
#: Fourier transforms), with a margin: sets how many slices go to the GPU together.
VSNR_GPU_COPIES = 24


@dataclass(frozen=True)
class Settings:
    """What one slice's task needs, resolved from the step's parameters."""

    method: str
    filters: tuple[dict[str, Any], ...] = ()
    maxit: int = 100
    cvg_threshold: float = 0.0
    wavelet: str = "coif3"
    level: int = 4
    sigma: float = 4.0
    angle: float = 0.0
    width: int = 31
    rounding: bool = False

    def destripe(self, img: Any) -> Any:
        """One slice (or, for VSNR, a batch): VSNR gives it back in its own dtype, the
        other methods as floats."""
        if self.method == "vsnr":
            return vsnr(img, list(self.filters), self.maxit, self.cvg_threshold)
        if self.method == "column_profile":
            return column_profile(img, self.width, angle=self.angle)
        return wavelet_fourier(img, self.wavelet, self.level, self.sigma, self.angle)


def resolve(shape: tuple[int, int] | None, filters: list[dict] | None = None,
            wavelet_decomposition: dict | None = None, method: str | None = None,
            maxit: int = 100, cvg_threshold: float = 0.0, angle: float = 0.0,
            device: str = "cpu", warn: bool = False, width: int = 31, rounding: bool = False,
            **_: Any) -> Settings:
    """Check the parameters (against the slice shape, when given) and pick the method.

    PyStack3D silently prefers the wavelet method when both ``filters`` and
    ``wavelet_decomposition`` are given; here that needs ``method`` to say which.
    ``method = "column_profile"`` (this project's) needs neither.
    """
    if method == "column_profile":
        if device == "gpu":
            _require_gpu()
        return Settings("column_profile", angle=float(angle), width=int(width),
                        rounding=bool(rounding))
    if method is None:
        if filters is not None and wavelet_decomposition is not None:
            raise ConfigError("[destriping] both filters (VSNR) and wavelet_decomposition are "
                              'given: add method = "vsnr" or method = "wavelet" to say which '
                              "to use (PyStack3D silently used the wavelets)")
        if filters is None and wavelet_decomposition is None:
            raise ConfigError("[destriping] needs filters (VSNR), such as filters = "
                              '[{ name = "Gabor", noise_level = 20, sigma = [0.5, 200], '
                              "theta = 0 }], or wavelet_decomposition = { wavelet = "
                              '"coif3", level = 4, sigma = 4 }')
        method = "vsnr" if filters is not None else "wavelet"
    if device == "gpu":
        _require_gpu()
    if method == "vsnr":
        if not filters:
            raise ConfigError('[destriping] method = "vsnr" needs filters, such as filters = '
                              '[{ name = "Gabor", noise_level = 20, sigma = [0.5, 200], '
                              "theta = 0 }]")
        return Settings("vsnr", tuple(filters), int(maxit), float(cvg_threshold), angle=angle,
                        rounding=bool(rounding))
    wdec = {**WAVELET_DEFAULTS, **(wavelet_decomposition or {})}
    for note in check_wavelet(wdec["wavelet"], int(wdec["level"]), shape):
        if warn:
            warnings.warn(note, UserWarning, stacklevel=3)
    return Settings("wavelet", wavelet=wdec["wavelet"], level=int(wdec["level"]),
                    sigma=float(wdec["sigma"]), angle=float(angle), rounding=bool(rounding))


def validate(**params: Any) -> None:
    """What can be checked before any slice is read (the run checks it first)."""
    resolve(None, **params)


def _require_gpu() -> None:
    # pyvsnr (AGPL-3.0) is not a core dependency: only this path runs it
    missing = []
    for name in ("cupy", "pyvsnr"):
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or CUDA's own errors without a driver
            missing.append(f"{name}: {exc}")
    if missing:
        raise NotAvailableError(f'[destriping] device = "gpu" needs CuPy and a CUDA GPU, '
                                f"and pyvsnr (pip install 'pystack3d-dask[gpu]'): "
                                f"{'; '.join(missing)}")
    import cupy

    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA's own errors without a driver
        raise NotAvailableError(f'[destriping] device = "gpu" needs CuPy and a CUDA GPU: '
                                f"{exc}") from exc
    if count < 1:
        raise NotAvailableError('[destriping] device = "gpu": CuPy sees no CUDA GPU')


def prepared_names(only_striped: bool = False, **params: Any) -> list[str]:
    """What :func:`prepare` returns (the stripe scores only when they choose the slices:
    otherwise the slices' tasks compute them, see :func:`apply`)."""
    return ["stripe_score", "treated"] if only_striped else ["treated"]


def _slice_score(img: np.ndarray, c: int, z: int, angle: float) -> float:
    return stripe_score(img, angle)


def prepare(stack: xr.DataArray, compute: Compute, only_striped: bool = False,
            stripe_threshold: str | float = "auto", angle: float = 0.0, **params: Any
            ) -> dict[str, xr.DataArray]:
    """Which slices are treated: with ``only_striped``, those whose stripe score (a
    reduction to one number per slice, in a pass of its own) is above the threshold;
    else all, and no pass is made (the scores come with the slices, see :func:`apply`)."""
    resolve(tuple(stack.shape[2:]), angle=angle, warn=True, **params)  # before any read
    nc, nz = stack.shape[:2]
    coords = {"channel": stack["channel"].values, "z": stack["z"].values}
    if not only_striped:
        return {"treated": xr.DataArray(np.ones((nc, nz), dtype=bool), dims=("channel", "z"),
                                        coords=coords)}
    lazy = map_slice_values(_slice_score, stack.data, (), np.float64, angle=angle)
    (scores,) = compute([lazy])
    threshold = auto_threshold(scores) if stripe_threshold == "auto" else float(stripe_threshold)
    treated = scores > threshold
    attrs = {"threshold": threshold, "threshold_rule": str(stripe_threshold),
             "only_striped": True}
    return {"stripe_score": xr.DataArray(scores, dims=("channel", "z"), coords=coords,
                                         attrs=attrs),
            "treated": xr.DataArray(treated, dims=("channel", "z"), coords=coords)}


def _cpu_slice(img: np.ndarray, c: int, z: int, treated: np.ndarray, settings: Settings
               ) -> np.ndarray:
    if not treated[c, z]:
        return img
    # the package's VSNR releases the GIL in its FFTs and array passes: threads do as well
    # as the process pool pyvsnr needed, without sending slices to other processes
    out = settings.destripe(img)
    return cast_to(out, img.dtype, settings.rounding)


def _gpu_block(block: np.ndarray, treated: np.ndarray, settings: Settings) -> np.ndarray:
    import cupy

    chosen = np.flatnonzero(treated[0])
    if not chosen.size:
        return block
    out = block.copy()
    batch = cupy.asarray(block[0, chosen])
    if settings.method == "vsnr":
        done = settings.destripe(batch)
    else:
        done = cupy.stack([settings.destripe(img) for img in batch])
    out[0, chosen] = cast_to(cupy.asnumpy(done), block.dtype, settings.rounding)
    return out


def gpu_batch_size(shape: tuple[int, int], workers: int = 1) -> int:
    """Slices per GPU task that fit in a share of the free GPU memory (1 to 64)."""
    import cupy

    free, _ = cupy.cuda.runtime.memGetInfo()
    per_slice = shape[0] * shape[1] * 4 * VSNR_GPU_COPIES
    return int(np.clip(0.8 * free / max(workers, 1) // per_slice, 1, 64))


def apply(stack: xr.DataArray, prepared: dict[str, xr.DataArray], device: str = "cpu",
          batch_size: int | None = None, angle: float = 0.0,
          stripe_threshold: str | float = "auto", **params: Any) -> StepOutput:
    """Destripe the treated slices, each in its own task (on the CPU) or in batches of
    ``batch_size`` slices (on the GPU); the others pass through unchanged. The stripe
    score of every output slice is stored beside the input's; without ``prepare``'s
    scores (``only_striped`` false), the input's are computed by the tasks that write
    the slices, from the input slices they read anyway."""
    settings = resolve(tuple(stack.shape[2:]), angle=angle, device=device, **params)
    treated = np.asarray(prepared["treated"].values, dtype=bool)
    if device == "gpu":
        batch = batch_size or gpu_batch_size(tuple(stack.shape[2:]))
        data = stack.data.rechunk({1: batch})
        flags = da.from_array(treated, chunks=(1, batch))
        out = da.blockwise(_gpu_block, "czyx", data, "czyx", flags, "cz", dtype=stack.dtype,
                           concatenate=True, settings=settings).rechunk(stack.data.chunks)
    else:
        out = map_slices(_cpu_slice, stack.data, {"treated": treated}, stack.dtype,
                         settings=settings)
    derived = {"stripe_score_out": Derived(functools.partial(_slice_score, angle=angle))}
    if "stripe_score" not in prepared:
        derived["stripe_score"] = Derived(
            functools.partial(_slice_score, angle=angle), source=stack.data,
            attrs={"threshold": None, "threshold_rule": str(stripe_threshold),
                   "only_striped": False})
    return StepOutput(stack.copy(data=out), derived=derived)
