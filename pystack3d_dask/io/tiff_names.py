"""TIFF input, file names: natural order, PyStack3D's file-name policy, z from the names.

The slices' z positions come from their names when these follow the policy (such as
``slice_{slice_nb}_z={z_coord}um.tif``), else from ``z_spacing``; the checks here refuse
names that would misplace a slice along z, naming the file.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = [
    "POLICY_FIELDS",
    "TIFF_SUFFIXES",
    "check_channel_z",
    "fold_suffix",
    "in_z_order",
    "natural_key",
    "policy_regex",
    "z_from_names",
    "z_positions",
]

TIFF_SUFFIXES = (".tif", ".tiff")

#: The fields a file-name policy may hold, and the text each matches.
POLICY_FIELDS = {
    "slice_nb": r"[-+]?\d+",
    "z_coord": r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?",
}


def natural_key(name: str) -> list[Any]:
    """Sort key putting ``slice_2`` before ``slice_10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def policy_regex(policy: str, loose: bool = False) -> re.Pattern[str]:
    """Compile a PyStack3D file-name policy such as ``slice_{slice_nb}_z={z_coord}um.tif``.

    Only the fields ``{slice_nb}`` and ``{z_coord}`` are understood; the rest of the
    pattern must match literally. ``loose``: each field matches any text, to tell a
    name with a malformed number from a name of another form.
    """
    out, pos = [], 0
    seen: set[str] = set()
    for match in re.finditer(r"\{(\w*)\}", policy):
        name = match.group(1)
        if name not in POLICY_FIELDS or name in seen:
            what = "unknown" if name not in seen else "repeated"
            raise InputError(f"file-name policy {policy!r}: {what} field {{{name}}}; "
                             "expected {slice_nb} and {z_coord}, each at most once")
        seen.add(name)
        out.append(re.escape(policy[pos:match.start()]))
        out.append(f"(?P<{name}>{'.+?' if loose else POLICY_FIELDS[name]})")
        pos = match.end()
    out.append(re.escape(policy[pos:]))
    return re.compile("".join(out) + r"\Z")


def fold_suffix(name: str) -> str:
    """``name`` with a .tif/.tiff extension in lower case: ``slice_1.TIF`` is a slice of
    the policy ``slice_{slice_nb}.tif``, as the listing already takes it."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{suffix.lower()}" if dot and f".{suffix.lower()}" in TIFF_SUFFIXES else name


def _check_fields_are_numbers(files: list[Path], matches: list[re.Match[str] | None],
                              policy: str) -> None:
    """Refuse a name that has the policy's form but a field that is not a number.

    Parameters
    ----------
    files
        The slices' files.
    matches
        The strict policy's match of each file's name (None where it does not match).
    policy
        The file-name policy, as the workflow gives it.

    Raises
    ------
    InputError
        Naming the file, the field and its value.
    """
    loose = policy_regex(fold_suffix(policy), loose=True)
    for path, match in zip(files, matches):
        if match is not None:
            continue
        shaped = loose.match(fold_suffix(path.name))
        if shaped is None:
            continue
        # the name has the policy's form but a field is not a number: say which, rather
        # than fall back silently to z_spacing or blame the whole name
        for name, value in shaped.groupdict().items():
            if re.fullmatch(POLICY_FIELDS[name], value) is None:
                kind = "an integer" if name == "slice_nb" else "a number (micrometres)"
                raise InputError(f"{path}: {{{name}}} = {value!r} in the file name is not "
                                 f"{kind}; expected names following the policy {policy!r}")


def _check_unique_z(files: list[Path], z: np.ndarray) -> None:
    """Refuse two slices whose names give the same z, naming both files."""
    seen: dict[float, Path] = {}
    for path, value in zip(files, z):
        if value in seen:
            raise InputError(f"{path} and {seen[value].name} have the same z = {value:g} um "
                             "in their names; expected one z position per slice: remove the "
                             "duplicate file or correct its name")
        seen[value] = path


def z_from_names(files: list[Path], policy: str) -> np.ndarray | None:
    """z positions read from the file names, or None when the names carry none.

    Parameters
    ----------
    files
        The slices' files, in the order of the stack.
    policy
        The file-name policy, e.g. ``slice_{slice_nb}_z={z_coord}um.tif``.

    Returns
    -------
    numpy.ndarray or None
        One z (micrometres) per file; None when the policy has no ``{z_coord}`` or no
        name follows it.

    Raises
    ------
    InputError
        When some names follow the policy and others do not, when a field of a name
        that has the policy's form is not a number, or when two slices share a z.
    """
    regex = policy_regex(fold_suffix(policy))
    if "z_coord" not in regex.groupindex:
        return None
    matches = [regex.match(fold_suffix(p.name)) for p in files]
    _check_fields_are_numbers(files, matches, policy)
    if not any(matches):
        return None
    if not all(matches):
        first = next(p for p, m in zip(files, matches) if m is None)
        raise InputError(f"{first}: file name does not follow the policy {policy!r} while "
                         "other slices do; rename it or fix the policy")
    z = np.array([float(m["z_coord"]) for m in matches])
    _check_unique_z(files, z)
    return z


def z_positions(files: list[Path], policy: str, spacing: float) -> tuple[np.ndarray, bool]:
    """The slices' z positions and whether they come from the names.

    From the names when they follow ``policy``; else the position in the list times
    ``spacing``, with a warning aimed at the caller of the caller (:func:`discover`'s).

    Parameters
    ----------
    files
        The slices' files, in natural order.
    policy
        The file-name policy.
    spacing
        Slice spacing (micrometres) used when the names give no z.

    Returns
    -------
    tuple of numpy.ndarray and bool
    """
    z = z_from_names(files, policy)
    if z is not None:
        return z, True
    warnings.warn(f"file names do not follow the policy {policy!r}: z = slice position x "
                  f"z_spacing ({spacing} um)", UserWarning, stacklevel=3)
    return np.arange(len(files)) * spacing, False


def in_z_order(per_channel: list[list[Path]], z: np.ndarray
               ) -> tuple[list[list[Path]], np.ndarray]:
    """The slices sorted by the z of their names, saying so when the names' natural order
    is not that of z (a later slice with a smaller z would otherwise be dropped or
    misplaced by the steps that go along z).

    Parameters
    ----------
    per_channel
        ``per_channel[c][k]``: the file of channel ``c``, slice ``k``, in natural order.
    z
        The z of each slice, from the first channel's names.

    Returns
    -------
    tuple
        The files and the z positions, both in increasing z (a stable sort).
    """
    if np.all(np.diff(z) > 0):
        return per_channel, z
    order = np.argsort(z, kind="stable")
    k = int(np.flatnonzero(np.diff(z) <= 0)[0]) + 1
    files = per_channel[0]
    warnings.warn(f"{files[k].name} (z = {z[k]:g} um) comes after {files[k - 1].name} (z = "
                  f"{z[k - 1]:g} um) in the files' natural order: the slices are taken in the "
                  "order of the z in their names", UserWarning, stacklevel=3)
    return [[f[i] for i in order] for f in per_channel], z[order]


def check_channel_z(channels: list[str], per_channel: list[list[Path]], z: np.ndarray,
                    policy: str) -> None:
    """Refuse channels whose names give other z positions than the first channel's.

    Parameters
    ----------
    channels
        Channel names, in the order of ``per_channel``.
    per_channel
        Each channel's files, in the order of ``z``.
    z
        The first channel's z positions.
    policy
        The file-name policy.

    Raises
    ------
    InputError
        Naming the first file whose z differs, and the first channel's file it differs
        from.
    """
    for files in per_channel[1:]:
        other = z_from_names(files, policy)
        if other is None:
            continue  # names without z: the first channel's positions apply
        differ = np.flatnonzero(~np.isclose(other, z, rtol=1e-9, atol=1e-12))
        if differ.size:
            k = int(differ[0])
            raise InputError(f"{files[k]}: z = {other[k]:g} um differs from z = {z[k]:g} um of "
                             f"{per_channel[0][k]} (slice {k} of channel {channels[0]!r}); "
                             f"expected every channel to have the same z positions")
