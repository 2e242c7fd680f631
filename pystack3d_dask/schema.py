"""Parameter schemas of every workflow table, PyStack3D's and this project's own.

A schema is a mapping ``key -> Param``. Validation turns a raw TOML table into a
dictionary with every key present (defaults filled in), or raises a
:class:`~pystack3d_dask.errors.ConfigError` naming the table, the key, the value and
what was expected. Unknown keys are refused with the nearest valid name.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = [
    "OWN_TABLES",
    "PYSTACK3D_STEPS",
    "STEP_SCHEMAS",
    "Param",
    "suggest",
    "validate_table",
]

#: PyStack3D's step names, in its documentation's order.
PYSTACK3D_STEPS = (
    "cropping",
    "bkg_removal",
    "intensity_rescaling",
    "intensity_rescaling_area",
    "registration_calculation",
    "registration_transformation",
    "destriping",
    "resampling",
    "cropping_final",
)

Checker = Callable[[str, str, Any], Any]


@dataclass(frozen=True)
class Param:
    """One parameter of a table.

    Parameters
    ----------
    check
        ``check(table, key, value) -> normalised value``; raises ConfigError.
    default
        Value used when the key is absent (or given as ``""``, which PyStack3D
        writes for ``None`` when it rewrites a workflow file).
    doc
        One line for the documentation.
    """

    check: Checker
    default: Any = None
    doc: str = ""


def _fail(table: str, key: str, value: Any, expected: str) -> ConfigError:
    where = f"[{table}] {key}" if table else key
    return ConfigError(f"{where} = {value!r} is invalid: expected {expected}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def integer(minimum: int | None = None, maximum: int | None = None) -> Checker:
    """An integer within ``[minimum, maximum]``."""

    def check(table: str, key: str, value: Any) -> int:
        ok = _is_int(value)
        ok = ok and (minimum is None or value >= minimum)
        ok = ok and (maximum is None or value <= maximum)
        if not ok:
            bounds = []
            if minimum is not None:
                bounds.append(f">= {minimum}")
            if maximum is not None:
                bounds.append(f"<= {maximum}")
            raise _fail(table, key, value, "an integer" + (" " + " and ".join(bounds) if bounds else ""))
        return int(value)

    return check


def number(minimum: float | None = None, strict_min: bool = False) -> Checker:
    """A finite real number, optionally bounded below."""

    def check(table: str, key: str, value: Any) -> float:
        ok = _is_number(value)
        if ok and minimum is not None:
            ok = value > minimum if strict_min else value >= minimum
        if not ok:
            bound = "" if minimum is None else f" {'>' if strict_min else '>='} {minimum}"
            raise _fail(table, key, value, f"a number{bound}")
        return float(value)

    return check


def boolean(table: str, key: str, value: Any) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise _fail(table, key, value, "true or false")
    return value


def string(choices: tuple[str, ...] | None = None) -> Checker:
    """A string, optionally one of ``choices``."""

    def check(table: str, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise _fail(table, key, value, "a string")
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(value, choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _fail(table, key, value, f"one of {list(choices)}{hint}")
        return value

    return check


def numbers(length: int | None = None, integers: bool = False, minimum: float | None = None,
            increasing: bool = False) -> Checker:
    """A list of numbers (of a fixed ``length`` when given)."""

    def check(table: str, key: str, value: Any) -> list:
        kind = "integers" if integers else "numbers"
        expected = f"a list of {length} {kind}" if length else f"a list of {kind}"
        if minimum is not None:
            expected += f" >= {minimum}"
        if increasing:
            expected += ", strictly increasing"
        test = _is_int if integers else _is_number
        if not isinstance(value, list) or (length is not None and len(value) != length):
            raise _fail(table, key, value, expected)
        if not all(test(v) for v in value) or (length is None and not value):
            raise _fail(table, key, value, expected)
        if minimum is not None and any(v < minimum for v in value):
            raise _fail(table, key, value, expected)
        if increasing and any(b <= a for a, b in zip(value, value[1:])):
            raise _fail(table, key, value, expected)
        return [int(v) if integers else float(v) for v in value]

    return check


def area(table: str, key: str, value: Any) -> list[int]:
    """``[xmin, xmax, ymin, ymax]`` in pixels, origin at the bottom-left."""
    expected = "[xmin, xmax, ymin, ymax]: 4 integers >= 0 with xmin < xmax and ymin < ymax"
    if (not isinstance(value, list) or len(value) != 4
            or not all(_is_int(v) and v >= 0 for v in value)
            or value[0] >= value[1] or value[2] >= value[3]):
        raise _fail(table, key, value, expected)
    return [int(v) for v in value]


def string_list(table: str, key: str, value: Any) -> list[str]:
    """A non-empty list of strings."""
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v for v in value)):
        raise _fail(table, key, value, "a non-empty list of non-empty strings")
    return list(value)


def _filters(table: str, key: str, value: Any) -> list[dict]:
    expected = ('a list of tables such as { name = "Gabor", noise_level = 20, '
                'sigma = [0.5, 200], theta = 0 } or { name = "Dirac", noise_level = 10 }')
    if not isinstance(value, list) or not value or not all(isinstance(f, dict) for f in value):
        raise _fail(table, key, value, expected)
    out = []
    for i, filt in enumerate(value):
        sub = f"{table}.{key}[{i}]"
        name = string(("Gabor", "Dirac"))(sub, "name", filt.get("name"))
        schema = dict(_DIRAC) if name == "Dirac" else dict(_GABOR)
        out.append(validate_table(sub, filt, schema))
    return out


def _wavelet(table: str, key: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise _fail(table, key, value, 'a table such as { wavelet = "coif3", level = 4, sigma = 4 }')
    return validate_table(f"{table}.{key}", value, _WAVELET)


def _stripe_threshold(table: str, key: str, value: Any) -> str | float:
    if value == "auto":
        return value
    if _is_number(value) and value > 0:
        return float(value)
    raise _fail(table, key, value, '"auto" or a score above 0 (1 means no stripes)')


def policy(table: str, key: str, value: Any) -> str:
    """A file-name pattern with ``{z_coord}`` and optionally ``{slice_nb}``, once each."""
    expected = ('a file-name pattern with the field {z_coord} (and optionally {slice_nb}), '
                'each once, such as "slice_{slice_nb}_z={z_coord}um.tif"')
    if not isinstance(value, str):
        raise _fail(table, key, value, expected)
    fields = re.findall(r"\{(\w*)\}", value)
    if ("z_coord" not in fields or len(fields) != len(set(fields))
            or not set(fields) <= {"slice_nb", "z_coord"}):
        unknown = sorted(set(fields) - {"slice_nb", "z_coord"})
        hint = f" (unknown field(s): {', '.join('{' + f + '}' for f in unknown)})" if unknown else ""
        raise _fail(table, key, value, expected + hint)
    return value


def keep_policy(table: str, key: str, value: Any) -> str | list[str]:
    """``"all"``, ``"last"`` or a list of step names (``"input"`` allowed)."""
    names = ["input", *PYSTACK3D_STEPS]
    if value in ("all", "last"):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        unknown = [v for v in value if v not in names]
        if not unknown:
            return list(value)
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(table, key, value, f'step names among {names}; {unknown[0]!r} is not one{hint}')
    raise _fail(table, key, value, '"all" (every checkpoint), "last" (only the last step\'s) or '
                'a list of step names, such as ["registration_transformation"]')


def _slurm(table: str, key: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise _fail(table, key, value, 'a table such as { queue = "debug", cores = 1, '
                    'memory = "4GB", walltime = "01:00:00", jobs = 2 }')
    return validate_table(f"{table}.{key}", value, _SLURM)


_REQUIRED = object()

_GABOR = {
    "name": Param(string(("Gabor", "Dirac")), _REQUIRED),
    "noise_level": Param(number(0.0), _REQUIRED, "noise level of the filter (>= 0)"),
    "sigma": Param(numbers(2, minimum=0.0), _REQUIRED, "[sx, sy] of the Gabor filter"),
    "theta": Param(number(), 0.0, "orientation in degrees (0: vertical stripes)"),
}
_DIRAC = {
    "name": Param(string(("Gabor", "Dirac")), _REQUIRED),
    "noise_level": Param(number(0.0), _REQUIRED, "noise level of the filter (>= 0)"),
}
_WAVELET = {
    "wavelet": Param(string(), "coif3", "PyWavelets wavelet name"),
    "level": Param(integer(1), 4, "decomposition level"),
    "sigma": Param(number(0.0, strict_min=True), 4.0, "damping width in Fourier space"),
}

_SLURM = {
    "queue": Param(string(), None, "partition (sbatch -p)"),
    "account": Param(string(), None, "account (sbatch -A)"),
    "cores": Param(integer(1), 1, "cores per job (one dask worker per job)"),
    "memory": Param(string(), "4GB", "memory per job"),
    "walltime": Param(string(), "01:00:00", "time limit per job"),
    "jobs": Param(integer(0), 1, "jobs (workers) to start; ignored when adaptive"),
    "minimum_jobs": Param(integer(0), None, "adaptive: fewest jobs"),
    "maximum_jobs": Param(integer(1), None, "adaptive: most jobs (setting it turns adaptive on)"),
    "job_extra_directives": Param(string_list, None, "extra #SBATCH lines, e.g. ['--qos=low']"),
    "worker_lifetime": Param(string(), None, "workers leave after this (e.g. '55m'), before the "
                             "walltime kills them, and are replaced"),
    "lifetime_stagger": Param(string(), "4m", "random spread of worker_lifetime"),
    "local_directory": Param(string(), None, "workers' scratch folder on the node"),
    "log_directory": Param(string(), None, "folder of the jobs' output files"),
    "interface": Param(string(), None, "network interface of the workers (e.g. 'ib0')"),
}

#: Key present in every step table: whether the step's output is written to the store.
CHECKPOINT = Param(boolean, True, "write this step's output to the store (false: fuse into the next step)")
#: Key present in every step table: how floats go back to an integer dtype.
ROUNDING = Param(boolean, False, "round to the nearest grey level when casting back to an integer "
                 "dtype (false: truncate, as PyStack3D). Not in PyStack3D")

_POLICY = "slice_{slice_nb}_z={z_coord}um.tif"

#: The step tables, with PyStack3D's key names and its defaults.
STEP_SCHEMAS: dict[str, dict[str, Param]] = {
    "cropping": {
        "area": Param(area, None, "area kept [xmin, xmax, ymin, ymax], origin bottom-left"),
    },
    "bkg_removal": {
        "dim": Param(integer(2, 3), None, "2 or 3 (with poly_basis)"),
        "poly_basis": Param(string(), None, 'polynomial basis such as "1 + x + y + x*y + z"'),
        "orders": Param(numbers(None, integers=True, minimum=0), None, "[ox, oy] or [ox, oy, oz]"),
        "cross_terms": Param(boolean, False, "all products of powers up to each order"),
        "skip_factors": Param(numbers(None, integers=True, minimum=1), None,
                              "fit sample: every s-th pixel per axis"),
        "skip_averaging": Param(boolean, False, "area-averaged down-sampling instead of decimation"),
        "threshold_min": Param(number(), None, "pixels below are left out of the fit"),
        "threshold_max": Param(number(), None, "pixels above are left out of the fit"),
        "skip_median": Param(boolean, False,
                             "each sample is the median of the valid pixels of its skip block, "
                             "so that a second phase (pores, particles) does not pull the fit. "
                             "Not in PyStack3D"),
        "weight_func": Param(string(("HuberT", "Hampel", "TukeyBiweight", "None")), "HuberT",
                             "robust weights (TukeyBiweight: redescending, gives no weight to "
                             "samples of another phase; not in PyStack3D)"),
        "preserve_avg": Param(boolean, False, "keep the mean of the stack (3D only)"),
        "max_samples": Param(integer(1), 1_000_000,
                             "cap of the 3D fit sample (memory O(samples x terms))"),
    },
    "intensity_rescaling": {
        "nbins": Param(integer(2), 256, "number of histogram bins"),
        "filter_size": Param(integer(-1), 10, "-1: mean histogram; n: running mean over n slices"),
        "method": Param(string(("histogram", "gain")), "histogram",
                        "histogram: match every slice's histogram to the reference (PyStack3D); "
                        "gain: scale every slice by one factor fitted to the running median of "
                        "its neighbours' quantiles (keeps each histogram's shape). Not in PyStack3D"),
        "window": Param(integer(1), None, "gain method: slices of the running reference (default: "
                        "a fifth of the stack, at least 5). Not in PyStack3D"),
    },
    "intensity_rescaling_area": {
        "area": Param(area, None, "area of the reference means"),
        "threshold_min": Param(number(), None, "pixels below are left out of the means"),
        "threshold_max": Param(number(), None, "pixels above are left out of the means"),
        "factors_range": Param(numbers(2, minimum=0.0), [0.8, 1.2], "clip range of the factors"),
    },
    "registration_calculation": {
        "area": Param(area, None, "area used for the calculation"),
        "threshold": Param(number(), None, "binarise (img <= threshold) before registering"),
        "nb_blocks": Param(numbers(2, integers=True, minimum=1), [1, 1], "[p, q] blocks"),
        "gaussian_sigma": Param(number(0.0), 0.0,
                                "Gaussian smoothing (pixels) of both slices before registering "
                                "them; 0 = off (PyStack3D). Not in PyStack3D"),
        "bandpass": Param(numbers(2, minimum=0.0, increasing=True), None,
                          "[sigma_low, sigma_high] (pixels): register the difference of two "
                          "Gaussian smoothings of both slices; off by default (PyStack3D). "
                          "Not in PyStack3D"),
        "transformation": Param(
            string(("TRANSLATION", "RIGID_BODY", "SCALED_ROTATION", "AFFINE", "BILINEAR")),
            "TRANSLATION", "pystackreg transformation"),
        "max_shift": Param(number(0.0), None,
                           "largest shift (pixels) believed between consecutive slices; "
                           "default: a quarter of the registered area's smaller side. Not "
                           "in PyStack3D"),
        "on_outlier": Param(string(("error", "skip", "keep")), "error",
                            "a pair beyond max_shift or with a blank slice: error (names "
                            "it), skip (no shift) or keep (as found, as PyStack3D does). Not "
                            "in PyStack3D"),
    },
    "registration_transformation": {
        "nb_blocks": Param(numbers(2, integers=True, minimum=1), None, "[p, q] blocks"),
        "pre_calculated_tmats": Param(string(), None, "matrices file computed elsewhere"),
        "constant_drift": Param(numbers(2), None, "[dx, dy] drift removed per slice"),
        "box_size_averaging": Param(integer(1), None, "running-mean window of the matrices"),
        "subpixel": Param(boolean, True, "keep sub-pixel translations"),
        "mode": Param(string(("constant", "edge", "symmetric", "reflect", "wrap")), "constant",
                      "how pixels outside the image are filled"),
        "cropping": Param(boolean, False, "crop to the largest rectangle valid under all warps"),
    },
    "destriping": {
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
    },
    "resampling": {
        "policy": Param(policy, _POLICY, "file-name pattern carrying the z position"),
        "dz": Param(number(0.0, strict_min=True), None, "output slice spacing (um)"),
        "zpos_out": Param(numbers(None, increasing=True), None, "explicit output z positions (um)"),
    },
    "cropping_final": {
        "area": Param(area, None, "area kept [xmin, xmax, ymin, ymax], origin bottom-left"),
    },
}

#: This project's own tables, beside PyStack3D's.
OWN_TABLES: dict[str, dict[str, Param]] = {
    "store": {
        "path": Param(string(), None, "Zarr store (default: <workflow name>.zarr beside the file)"),
        "overwrite": Param(boolean, False, "replace a store made from another input"),
        "compressor": Param(string(("zstd", "blosc-zstd", "blosc-lz4", "none")), "zstd",
                            "chunk compression"),
        "compression_level": Param(integer(0, 22), 3, "compression level"),
        "shard_slices": Param(integer(1), 1, "slices per Zarr v3 shard (1: one file per slice); "
                              "fewer files on parallel file systems"),
        "keep": Param(keep_policy, "all", 'checkpoints kept: "all", "last" or a list of steps; the '
                      "others lose their slices once the next step is complete"),
    },
    "scheduler": {
        "name": Param(string(("threads", "processes", "local", "synchronous", "address",
                              "slurm")), "threads",
                      "dask scheduler: threads, processes, a distributed local cluster, a "
                      "running scheduler (address), or SLURM jobs (slurm)"),
        "address": Param(string(), None, "address of a running dask scheduler (name = "
                         '"address"), such as "tcp://10.0.0.5:8786"'),
        "slurm": Param(_slurm, None, "SLURMCluster settings (name = \"slurm\")"),
        "worker_timeout": Param(number(0.0, strict_min=True), 300.0,
                                "seconds to wait for the first worker of a cluster"),
        "workers": Param(integer(1), None, "workers (default: nproc)"),
        "threads_per_worker": Param(integer(1), 1, "threads per worker of a local cluster"),
        "memory_limit": Param(string(), "auto", "memory per worker of a local cluster"),
        "dashboard_address": Param(string(), "127.0.0.1:0", "dashboard of a local cluster"),
    },
    "input": {
        "policy": Param(policy, None, "file-name pattern (default: [resampling] policy)"),
        "z_spacing": Param(number(0.0, strict_min=True), 1.0,
                           "slice spacing (um) when names carry no z"),
        "pixel_size": Param(number(0.0, strict_min=True), None, "pixel size (um) for y/x"),
    },
}


def suggest(name: str, valid: list[str] | tuple[str, ...]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the nearest valid name, or ``""``."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate_table(table: str, values: Mapping[str, Any], schema: Mapping[str, Param],
                   extra: Mapping[str, Param] | None = None) -> dict[str, Any]:
    """Check one table against its schema and fill in the defaults.

    Parameters
    ----------
    table
        Name of the table, for messages.
    values
        The raw table.
    schema, extra
        Accepted keys (``extra`` adds keys such as ``checkpoint``).

    Returns
    -------
    dict
        Every key of the schema, normalised, with defaults where absent.
    """
    full = dict(schema)
    if extra:
        full.update(extra)
    if not isinstance(values, Mapping):
        raise _fail("", table, values, "a table")
    where = f"in [{table}]" if table else "at the top level"
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in full:
            raise ConfigError(
                f"unknown key {key!r} {where}{suggest(key, sorted(full))}; "
                f"valid keys: {', '.join(sorted(full))}")
        if value == "" and full[key].default is not _REQUIRED:
            continue  # PyStack3D writes None as ""
        out[key] = full[key].check(table, key, value)
    for key, param in full.items():
        if key not in out:
            if param.default is _REQUIRED:
                raise ConfigError(f"{where}: the required key {key!r} is missing")
            out[key] = param.default
    return out
