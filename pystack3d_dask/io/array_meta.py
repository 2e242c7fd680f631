"""Array inputs, metadata: which axis is which, and the voxel size, from OME-Zarr, N5,
HDF5 and MRC metadata or from the workflow's ``[input] dims``.

Pure functions on the metadata already read (dictionaries, lists, numbers): no file is
opened here. Axes are written as a string of letters, one per array dimension, in the
array's order: ``t`` (time, singleton only), ``c`` (channel), ``z``, ``y`` and ``x``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError

__all__ = ["AXIS_LETTERS", "axes_from_dims", "check_axes", "default_axes",
           "n5_scales", "ome_axes", "ome_scales", "to_um"]

#: The axis letters an input may carry.
AXIS_LETTERS = "tczyx"
_NAMES = {"t": "t", "time": "t", "c": "c", "channel": "c", "z": "z", "y": "y", "x": "x"}
_TYPES = {"time": "t", "channel": "c"}
#: Micrometres per unit, for OME-NGFF's unit names and the short ones of N5 and ImageJ.
_UM_PER_UNIT = {
    "angstrom": 1e-4, "å": 1e-4, "nanometer": 1e-3, "nm": 1e-3, "micrometer": 1.0,
    "micron": 1.0, "um": 1.0, "µm": 1.0, "μm": 1.0, "millimeter": 1e3, "mm": 1e3,
    "centimeter": 1e4, "cm": 1e4, "meter": 1e6, "m": 1e6,
}


def to_um(value: float, unit: str | None, where: str) -> float:
    """``value`` in ``unit`` as micrometres (no unit: already micrometres).

    Raises
    ------
    InputError
        For a unit that is no length, naming ``where`` it was found.
    """
    if unit is None or unit == "":
        return float(value)
    factor = _UM_PER_UNIT.get(str(unit).strip().lower())
    if factor is None:
        raise InputError(f"{where}: unit {unit!r} is not a length unit known here; expected one "
                         f"of {', '.join(sorted(_UM_PER_UNIT))}")
    return float(value) * factor


def check_axes(axes: str, shape: Sequence[int], where: str) -> str:
    """Refuse axes that do not map to (channel, z, y, x): one letter per dimension, z, y
    and x once each, c and t at most once, t of length 1 (dropped)."""
    expected = ("one letter per dimension among t, c, z, y, x, with z, y and x once each "
                "and c and t at most once")
    if len(axes) != len(shape):
        raise InputError(f"{where}: axes {axes!r} for an array of {len(shape)} dimensions "
                         f"{tuple(shape)}; expected {expected}")
    if set(axes) - set(AXIS_LETTERS) or len(set(axes)) != len(axes) or not set("zyx") <= set(axes):
        raise InputError(f"{where}: axes {axes!r} do not map to (channel, z, y, x); expected "
                         f"{expected}")
    if "t" in axes and shape[axes.index("t")] != 1:
        raise InputError(f"{where}: a time axis of {shape[axes.index('t')]} points (axes "
                         f"{axes!r}, shape {tuple(shape)}); expected a single time point: "
                         "select one time point into an array of its own")
    return axes


def default_axes(shape: Sequence[int], where: str) -> str:
    """(z, y, x) for a 3-D array, (c, z, y, x) for a 4-D one."""
    if len(shape) == 3:
        return "zyx"
    if len(shape) == 4:
        return "czyx"
    raise InputError(f"{where}: an array of {len(shape)} dimensions {tuple(shape)}; expected "
                     "3 (z, y, x) or 4 (c, z, y, x), or set [input] dims (such as \"tczyx\") "
                     "to say which dimension is which")


def axes_from_dims(dims: str | Sequence[str], shape: Sequence[int], where: str) -> str:
    """The axes that ``[input] dims`` gives (``"zcyx"`` or ``["z", "channel", "y", "x"]``),
    checked against the array's shape."""
    names = list(dims)
    letters = [_NAMES.get(str(n).lower()) for n in names]
    if None in letters:
        bad = names[letters.index(None)]
        raise InputError(f"{where}: [input] dims = {dims!r}: {bad!r} is no axis; expected "
                         "letters among t, c, z, y, x (or the names time, channel)")
    return check_axes("".join(letters), shape, f"{where} ([input] dims = {dims!r})")


def ome_axes(axes: Any, shape: Sequence[int], where: str) -> str:
    """The axes of an OME-Zarr image from its ``multiscales[0].axes`` (names, or the type
    for a time or channel axis named otherwise)."""
    if not isinstance(axes, list) or not axes:
        raise InputError(f"{where}: OME-Zarr image without 'axes' in its multiscales "
                         "metadata; expected OME-NGFF 0.4 or later (which requires them), or "
                         "set [input] dims")
    letters = []
    for axis in axes:
        name = axis.get("name") if isinstance(axis, dict) else axis
        kind = axis.get("type") if isinstance(axis, dict) else None
        letter = _NAMES.get(str(name).lower()) or _TYPES.get(str(kind).lower())
        if letter is None:
            raise InputError(f"{where}: OME axis {axis!r} maps to none of t, c, z, y, x; "
                             "set [input] dims to say which dimension is which")
        letters.append(letter)
    return check_axes("".join(letters), shape, f"{where} (OME axes)")


def _transform(transforms: Any, kind: str, ndim: int) -> list[float] | None:
    """The ``scale`` or ``translation`` values of a list of OME coordinate transforms."""
    for item in transforms or []:
        if isinstance(item, dict) and item.get("type") == kind and len(item.get(kind, [])) == ndim:
            return [float(v) for v in item[kind]]
    return None


def ome_scales(axes: str, axes_meta: Any, level_transforms: Any, global_transforms: Any,
               where: str) -> dict[str, tuple[float, float]]:
    """``axis -> (scale, translation)`` in micrometres for z, y and x, from the level's
    coordinate transformations composed with the image's own (applied after them), in
    each axis' ``unit``. Empty when the level has no scale."""
    ndim = len(axes)
    scale = _transform(level_transforms, "scale", ndim)
    if scale is None:
        return {}
    shift = _transform(level_transforms, "translation", ndim) or [0.0] * ndim
    outer_scale = _transform(global_transforms, "scale", ndim) or [1.0] * ndim
    outer_shift = _transform(global_transforms, "translation", ndim) or [0.0] * ndim
    units = [a.get("unit") if isinstance(a, dict) else None for a in (axes_meta or [])]
    units += [None] * (ndim - len(units))
    out = {}
    for i, letter in enumerate(axes):
        if letter in "zyx":
            here = f"{where} (axis {letter})"
            out[letter] = (to_um(scale[i] * outer_scale[i], units[i], here),
                           to_um(shift[i] * outer_scale[i] + outer_shift[i], units[i], here))
    return out


def n5_scales(attrs: dict[str, Any], axes: str, where: str) -> dict[str, tuple[float, float]]:
    """``axis -> (scale, 0)`` in micrometres from N5 attributes: ``resolution`` with
    ``units`` (n5-viewer), or ``pixelResolution`` (BigDataViewer: ``dimensions`` and one
    ``unit``). Both list the axes in N5's order, x first: reversed here, as the array is.
    """
    ndim = len(axes)
    values: list[float] | None = None
    units: list[str | None] = [None] * ndim
    if isinstance(attrs.get("resolution"), list) and len(attrs["resolution"]) == ndim:
        values = [float(v) for v in attrs["resolution"]][::-1]
        if isinstance(attrs.get("units"), list) and len(attrs["units"]) == ndim:
            units = list(attrs["units"])[::-1]
    elif isinstance(attrs.get("pixelResolution"), dict):
        pixel = attrs["pixelResolution"]
        if len(pixel.get("dimensions", [])) == ndim:
            values = [float(v) for v in pixel["dimensions"]][::-1]
            units = [pixel.get("unit")] * ndim
    if values is None:
        return {}
    return {letter: (to_um(values[i], units[i], f"{where} (axis {letter})"), 0.0)
            for i, letter in enumerate(axes) if letter in "zyx"}
