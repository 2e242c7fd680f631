"""The parameter vocabulary shared by the steps and the workflow: one schema for TOML and Python.

A schema is a mapping ``key -> Param``. Validation turns a raw table (a TOML table or a
step function's keywords) into a dictionary with every key present (defaults filled in),
or raises a :class:`~pystack3d_dask.errors.ConfigError` naming the table, the key, the
value and what was expected. Unknown keys are refused with the nearest valid name.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, suggest

__all__ = [
    "CHECKPOINT",
    "DEFAULT_POLICY",
    "PYSTACK3D_STEPS",
    "REQUIRED",
    "ROUNDING",
    "Param",
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


def invalid(table: str, key: str, value: Any, expected: str) -> ConfigError:
    where = f"[{table}] {key}" if table else key
    return ConfigError(f"{where} = {value!r} is invalid: expected {expected}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def integer(minimum: int | None = None, maximum: int | None = None) -> Checker:
    """An integer within ``[minimum, maximum]``."""

    def check(table: str, key: str, value: Any) -> int:
        ok = is_int(value)
        ok = ok and (minimum is None or value >= minimum)
        ok = ok and (maximum is None or value <= maximum)
        if not ok:
            bounds = []
            if minimum is not None:
                bounds.append(f">= {minimum}")
            if maximum is not None:
                bounds.append(f"<= {maximum}")
            raise invalid(table, key, value, "an integer" + (" " + " and ".join(bounds) if bounds else ""))
        return int(value)

    return check


def number(minimum: float | None = None, strict_min: bool = False) -> Checker:
    """A finite real number, optionally bounded below."""

    def check(table: str, key: str, value: Any) -> float:
        ok = is_number(value)
        if ok and minimum is not None:
            ok = value > minimum if strict_min else value >= minimum
        if not ok:
            bound = "" if minimum is None else f" {'>' if strict_min else '>='} {minimum}"
            raise invalid(table, key, value, f"a number{bound}")
        return float(value)

    return check


def boolean(table: str, key: str, value: Any) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise invalid(table, key, value, "true or false")
    return value


def string(choices: tuple[str, ...] | None = None) -> Checker:
    """A string, optionally one of ``choices``."""

    def check(table: str, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise invalid(table, key, value, "a string")
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(value, choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise invalid(table, key, value, f"one of {list(choices)}{hint}")
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
        test = is_int if integers else is_number
        if not isinstance(value, list) or (length is not None and len(value) != length):
            raise invalid(table, key, value, expected)
        if not all(test(v) for v in value) or (length is None and not value):
            raise invalid(table, key, value, expected)
        if minimum is not None and any(v < minimum for v in value):
            raise invalid(table, key, value, expected)
        if increasing and any(b <= a for a, b in zip(value, value[1:])):
            raise invalid(table, key, value, expected)
        return [int(v) if integers else float(v) for v in value]

    return check


def area(table: str, key: str, value: Any) -> list[int]:
    """``[xmin, xmax, ymin, ymax]`` in pixels, origin at the bottom-left."""
    expected = "[xmin, xmax, ymin, ymax]: 4 integers >= 0 with xmin < xmax and ymin < ymax"
    if (not isinstance(value, list) or len(value) != 4
            or not all(is_int(v) and v >= 0 for v in value)
            or value[0] >= value[1] or value[2] >= value[3]):
        raise invalid(table, key, value, expected)
    return [int(v) for v in value]


def string_list(table: str, key: str, value: Any) -> list[str]:
    """A non-empty list of strings."""
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v for v in value)):
        raise invalid(table, key, value, "a non-empty list of non-empty strings")
    return list(value)


def policy(table: str, key: str, value: Any) -> str:
    """A file-name pattern with ``{z_coord}`` and optionally ``{slice_nb}``, once each."""
    expected = ('a file-name pattern with the field {z_coord} (and optionally {slice_nb}), '
                'each once, such as "slice_{slice_nb}_z={z_coord}um.tif"')
    if not isinstance(value, str):
        raise invalid(table, key, value, expected)
    fields = re.findall(r"\{(\w*)\}", value)
    if ("z_coord" not in fields or len(fields) != len(set(fields))
            or not set(fields) <= {"slice_nb", "z_coord"}):
        unknown = sorted(set(fields) - {"slice_nb", "z_coord"})
        hint = f" (unknown field(s): {', '.join('{' + f + '}' for f in unknown)})" if unknown else ""
        raise invalid(table, key, value, expected + hint)
    return value


REQUIRED = object()

#: PyStack3D's file-name pattern of the slices.
DEFAULT_POLICY = "slice_{slice_nb}_z={z_coord}um.tif"

#: Key present in every step table: whether the step's output is written to the store.
CHECKPOINT = Param(boolean, True, "write this step's output to the store (false: fuse into the next step)")
#: Key present in every step table: how floats go back to an integer dtype.
ROUNDING = Param(boolean, False, "round to the nearest grey level when casting back to an integer "
                 "dtype (false: truncate, as PyStack3D). Not in PyStack3D")


def validate_table(table: str, values: Mapping[str, Any], schema: Mapping[str, Param],
                   extra: Mapping[str, Param] | None = None, where: str | None = None
                   ) -> dict[str, Any]:
    """Check one table against its schema and fill in the defaults.

    Parameters
    ----------
    table
        Name of the table, for messages.
    values
        The raw table.
    schema, extra
        Accepted keys (``extra`` adds keys such as ``checkpoint``).
    where
        Where the keys come from, for messages (default: ``in [table]``; a Python
        call says ``of step()``).

    Returns
    -------
    dict
        Every key of the schema, normalised, with defaults where absent.
    """
    full = dict(schema)
    if extra:
        full.update(extra)
    if not isinstance(values, Mapping):
        raise invalid("", table, values, "a table")
    where = where or (f"in [{table}]" if table else "at the top level")
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in full:
            raise ConfigError(
                f"unknown key {key!r} {where}{suggest(key, sorted(full))}; "
                f"valid keys: {', '.join(sorted(full))}")
        if isinstance(value, str) and value == "" and full[key].default is not REQUIRED:
            continue  # PyStack3D writes None as ""
        out[key] = full[key].check(table, key, value)
    for key, param in full.items():
        if key not in out:
            if param.default is REQUIRED:
                raise ConfigError(f"{where}: the required key {key!r} is missing")
            out[key] = param.default
    return out
