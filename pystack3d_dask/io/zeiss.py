"""Zeiss (Fibics Atlas 3D) acquisition metadata: a starting workflow from the raw files.

An Atlas 3D acquisition folder holds ``Atlas3D.a3d-setup`` (XML: detectors, pixel size,
field of view, slice thickness) and the slices, one sub-folder per detector. Every slice
carries the Fibics XML in TIFF tag 51023 (image size, bounding box of the imaged area,
beam current). From these, :func:`workflow_from_zeiss` writes the workflow PyStack3D's
``params_from_metadata`` makes: the channels, the cropping area (bounding box plus a
20-pixel margin, y counted from the bottom) and the resampling step ``dz``.

Only the standard library's :mod:`xml.etree.ElementTree` parses the XML.
"""

from __future__ import annotations

import json
import math
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = [
    "FIBICS_TAG",
    "MARGIN",
    "SETUP_NAME",
    "beam_current",
    "read_a3d_setup",
    "read_fibics_tag",
    "workflow_from_zeiss",
]

#: Name of the setup file inside an acquisition folder.
SETUP_NAME = "Atlas3D.a3d-setup"
#: TIFF tag holding the Fibics XML of a slice.
FIBICS_TAG = 51023
#: Pixels added around the bounding box for the cropping area (PyStack3D's value).
MARGIN = 20

# field -> (XML paths tried in order, what is expected). The first path is the one of
# current Atlas 3D setup files; the second the one of older files (no attribute on the
# root element), which PyStack3D also reads.
_SETUP_FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "pixel_size": (("Settings/Imaging/DefaultAcquisition/PixelSize",
                    "Settings/Imaging/FibicsRasterInfo/PixelSizeX"),
                   "the pixel size in um, a number > 0"),
    "fov": (("Settings/Imaging/DefaultAcquisition/FOV", "Settings/Imaging/FOV"),
            "the field of view in um, a number > 0"),
    "slice_thickness": (("Settings/Imaging/DefaultAcquisition/Interval/Distance/Interval",
                         "Settings/Imaging/Interval"),
                        "the slice thickness in um, a number > 0"),
}

_BBOX_PATHS = {side: f"Image/BoundingBox.{side.capitalize()}"
               for side in ("left", "right", "top", "bottom")}
_BEAM_CURRENT_PATH = 'BeamInfo/item[@name="Ext I"]'


def _text(root: ET.Element, paths: tuple[str, ...]) -> tuple[str | None, str | None]:
    """Text of the first of ``paths`` found under ``root`` (stripped), and that path."""
    for path in paths:
        node = root.find(path)
        if node is not None and node.text is not None and node.text.strip():
            return node.text.strip(), path
    return None, None


def _required(root: ET.Element, source: Path, paths: tuple[str, ...], expected: str) -> tuple[str, str]:
    text, used = _text(root, paths)
    if text is None or used is None:
        names = " nor ".join(paths)
        raise InputError(f"{source}: no element {names}; expected {expected}")
    return text, used


def _number(text: str, source: Path | str, path: str, expected: str,
            positive: bool = False) -> float:
    """A finite number (> 0 when ``positive``) from an element's text."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{source}: {path} = {text!r} is not a number; expected {expected}") from None
    if not math.isfinite(value) or (positive and value <= 0):
        raise InputError(f"{source}: {path} = {text!r}; expected {expected}")
    return value


def _xml_of_tag(value: str | bytes) -> ET.Element:
    """The XML tree of a Fibics tag's value (raises ``ET.ParseError``)."""
    text = value.decode("iso-8859-1") if isinstance(value, bytes) else str(value)
    text = text.strip()
    if text.startswith("<?xml"):  # the declaration's encoding does not apply to a str
        text = text[text.find("?>") + 2:]
    return ET.fromstring(text)


def read_a3d_setup(path: str | Path) -> dict[str, Any]:
    """Read the acquisition settings of an ``Atlas3D.a3d-setup`` file.

    Parameters
    ----------
    path
        The setup file (XML, written by Fibics Atlas 3D).

    Returns
    -------
    dict
        ``detectors`` (list of str: ``Settings/Imaging/Detector`` then
        ``Settings/Imaging/DetectorB`` when given; the channel names),
        ``pixel_size`` (um), ``fov`` (field of view, um), ``fov_px`` (``fov /
        pixel_size`` rounded to a whole number of pixels), ``slice_thickness`` (um),
        ``job_name`` (str or None) and ``paths`` (field -> XML path the value came from).

    Raises
    ------
    InputError
        When the file is missing or not XML, or a field is missing or not a positive
        number; the message names the file and the XML path(s) looked for.
    """
    source = Path(path)
    if not source.is_file():
        raise InputError(f"{source}: setup file not found; expected the {SETUP_NAME} file "
                         "of a Zeiss Atlas 3D acquisition")
    try:
        root = ET.parse(source).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{source}: not an XML file ({exc}); expected the {SETUP_NAME} "
                         "file of a Zeiss Atlas 3D acquisition") from None
    paths: dict[str, str] = {}
    detector, paths["detectors"] = _required(root, source, ("Settings/Imaging/Detector",),
                                             "the name of the first detector (a channel name)")
    detectors = [detector]
    detector_b, _ = _text(root, ("Settings/Imaging/DetectorB",))
    if detector_b is not None and detector_b != detector:
        detectors.append(detector_b)
    out: dict[str, Any] = {"detectors": detectors}
    for name, (candidates, expected) in _SETUP_FIELDS.items():
        text, used = _required(root, source, candidates, expected)
        out[name] = _number(text, source, used, expected, positive=True)
        paths[name] = used
    job, _ = _text(root, ("JobName",))
    out["fov_px"] = round(out["fov"] / out["pixel_size"])
    out["job_name"] = job
    out["paths"] = paths
    return out


def _int_field(root: ET.Element, source: str, path: str, expected: str) -> float:
    text, used = _required(root, Path(source), (path,), expected)
    return _number(text, source, used, expected)


def read_fibics_tag(tiff_path: str | Path) -> dict[str, Any]:
    """Read the Fibics XML (TIFF tag 51023) of one slice.

    Parameters
    ----------
    tiff_path
        A slice written by Fibics Atlas 3D.

    Returns
    -------
    dict
        ``width``, ``height`` (pixels: ``Image/Width``, ``Image/Height``), ``bbox``
        (``left``, ``right``, ``top``, ``bottom`` in pixels from the top-left corner:
        ``Image/BoundingBox.Left`` ...; a fractional edge is rounded outwards),
        ``beam_current`` (float, the number in ``BeamInfo/item[@name="Ext I"]``, or None
        when absent) and ``beam_current_text`` (that element's text, with its unit).

    Raises
    ------
    InputError
        When the file cannot be read as a TIFF, has no tag 51023, the tag is not XML, or
        a field is missing or out of the image; the message names the file and the XML
        path.
    """
    import tifffile

    source = str(tiff_path)
    try:
        with tifffile.TiffFile(tiff_path) as tif:
            tag = tif.pages[0].tags.get(FIBICS_TAG)
            value = None if tag is None else tag.value
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise InputError(f"{source}: cannot read as a TIFF file ({exc})") from None
    if value is None:
        raise InputError(f"{source}: no TIFF tag {FIBICS_TAG} (Fibics XML); expected a slice "
                         "written by Fibics Atlas 3D")
    try:
        root = _xml_of_tag(value)
    except ET.ParseError as exc:
        raise InputError(f"{source}: TIFF tag {FIBICS_TAG} is not XML ({exc}); expected the "
                         "Fibics metadata") from None

    size = {}
    for key in ("width", "height"):
        path = f"Image/{key.capitalize()}"
        number = _int_field(root, source, path, "a whole number of pixels > 0")
        if number <= 0 or number != int(number):
            raise InputError(f"{source}: {path} = {number:g}; expected a whole number of pixels > 0")
        size[key] = int(number)
    raw = {side: _int_field(root, source, path, "a pixel position in the image")
           for side, path in _BBOX_PATHS.items()}
    bbox = {"left": math.floor(raw["left"]), "top": math.floor(raw["top"]),
            "right": math.ceil(raw["right"]), "bottom": math.ceil(raw["bottom"])}
    for low, high, extent in (("left", "right", "width"), ("top", "bottom", "height")):
        if not 0 <= bbox[low] < bbox[high] <= size[extent]:
            raise InputError(
                f"{source}: bounding box {_BBOX_PATHS[low]} = {raw[low]:g}, {_BBOX_PATHS[high]} = "
                f"{raw[high]:g} does not fit the image ({extent} {size[extent]} px); expected "
                f"0 <= {low} < {high} <= {size[extent]}")

    current_text, _ = _text(root, (_BEAM_CURRENT_PATH,))
    current = _beam_number(current_text, source)
    return {**size, "bbox": bbox, "beam_current": current, "beam_current_text": current_text}


def _beam_number(text: str | None, source: str) -> float | None:
    if text is None:
        return None
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        raise InputError(f"{source}: {_BEAM_CURRENT_PATH} = {text!r}; expected a number "
                         "followed by its unit") from None


def beam_current(tag_value: str | bytes | None, source: str = "") -> tuple[float | None, str]:
    """The beam current (``Ext I``) in a Fibics tag's XML, and its unit.

    Returns ``(None, "")`` when the tag is absent, is not XML or has no beam current:
    ingest reads it from every slice when present, and a slice without it is not an
    error there.
    """
    if tag_value is None:
        return None, ""
    try:
        root = _xml_of_tag(tag_value)
    except ET.ParseError:
        return None, ""
    found, _ = _text(root, (_BEAM_CURRENT_PATH,))
    value = _beam_number(found, source)
    unit = found.split()[1] if value is not None and len(found.split()) > 1 else ""
    return value, unit


def _slices(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in (".tif", ".tiff"))


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def workflow_from_zeiss(folder: str | Path) -> str:
    """A workflow file (TOML text) for a Zeiss Atlas 3D acquisition, as PyStack3D makes it.

    Parameters
    ----------
    folder
        The acquisition folder: ``Atlas3D.a3d-setup`` and the slices, either in one
        sub-folder per detector (Atlas 3D's layout) or directly in ``folder``.

    Returns
    -------
    str
        TOML text with ``project_dir`` (absolute), ``channels`` (the detectors that have
        a sub-folder, or ``["."]``), ``process_steps = ["cropping", "resampling"]``,
        ``[cropping] area`` and ``[resampling] dz``.

    Notes
    -----
    The cropping area is ``[left - 20, right + 20, H - bottom - 20, H - top + 20]``
    (origin at the bottom-left, H the height of the first slice), clipped to the image.
    ``dz`` is the slice thickness of the setup file.

    Warns
    -----
    UserWarning
        When the first slice is not square, when its width disagrees with the field of
        view divided by the pixel size by more than one pixel, or when a detector has no
        sub-folder.

    Raises
    ------
    InputError
        See :func:`read_a3d_setup` and :func:`read_fibics_tag`; also for a folder without
        slices.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; expected a Zeiss Atlas 3D acquisition folder "
                         f"holding {SETUP_NAME} and the slices")
    setup = read_a3d_setup(folder / SETUP_NAME)
    detectors = setup["detectors"]
    channels, first_dir = _channel_folders(folder, detectors)
    slices = _slices(first_dir)
    if not slices:
        raise InputError(f"{first_dir}: no .tif slice; expected the slices of detector(s) "
                         f"{detectors} in sub-folders named after them, or directly in {folder}")
    first = slices[0]
    tags = read_fibics_tag(first)
    _warn_on_slice_size(first, tags["width"], tags["height"], setup)
    area = _cropping_area(tags["bbox"], tags["width"], tags["height"])
    return _workflow_toml(folder, first, setup, tags, channels, area)


def _channel_folders(folder: Path, detectors: list[str]) -> tuple[list[str], Path]:
    """The channels (the detectors with a sub-folder, else ``["."]``) and the folder of
    the first one's slices; warns, at :func:`workflow_from_zeiss`'s caller, of detectors
    without a sub-folder when some have one."""
    with_folder = [d for d in detectors if (folder / d).is_dir()]
    if not with_folder:
        return ["."], folder
    missing = [d for d in detectors if d not in with_folder]
    if missing:
        warnings.warn(f"{folder}: detector(s) {missing} of {SETUP_NAME} have no sub-folder; "
                      f"channels = {with_folder}", UserWarning, stacklevel=3)
    return with_folder, folder / with_folder[0]


def _warn_on_slice_size(first: Path, width: int, height: int, setup: dict[str, Any]) -> None:
    """Warn, at :func:`workflow_from_zeiss`'s caller, when the first slice is not square
    or its width disagrees with the setup's field of view by more than one pixel."""
    if width != height:
        warnings.warn(f"{first}: the slice is not square ({width} x {height} px, width - height = "
                      f"{width - height} px); Atlas 3D slices are; the area is computed from the "
                      "actual size", UserWarning, stacklevel=3)
    ratio = setup["fov"] / setup["pixel_size"]
    if abs(ratio - width) > 1:
        warnings.warn(f"{first}: the field of view of {SETUP_NAME} ({setup['fov']:g} um / "
                      f"{setup['pixel_size']:g} um = {ratio:.1f} px) disagrees with the slice "
                      f"width ({width} px) by {width - ratio:+.1f} px", UserWarning, stacklevel=3)


def _cropping_area(bbox: dict[str, int], width: int, height: int) -> list[int]:
    """PyStack3D's cropping area ``[xmin, xmax, ymin, ymax]`` (y from the bottom): the
    bounding box plus :data:`MARGIN` pixels on every side, clipped to the image.

    Parameters
    ----------
    bbox
        ``left``, ``right``, ``top``, ``bottom`` in pixels from the top-left corner.
    width, height
        The slice's size in pixels.

    Returns
    -------
    list of int
    """
    return [max(bbox["left"] - MARGIN, 0), min(bbox["right"] + MARGIN, width),
            max(height - bbox["bottom"] - MARGIN, 0), min(height - bbox["top"] + MARGIN, height)]


def _workflow_toml(folder: Path, first: Path, setup: dict[str, Any], tags: dict[str, Any],
                   channels: list[str], area: list[int]) -> str:
    """The workflow file's TOML text, with comments saying where each value comes from:
    ``setup`` from :func:`read_a3d_setup` on ``folder``'s setup file, ``tags`` from
    :func:`read_fibics_tag` on the slice ``first``, ``area`` from :func:`_cropping_area`.
    """
    width, height, bbox = tags["width"], tags["height"], tags["bbox"]
    lines = [
        f"# made by pystack3d-dask metadata from {folder / SETUP_NAME}",
        f"# and the Fibics tag of {first.relative_to(folder).as_posix()}",
        f"# pixel size {setup['pixel_size']!r} um, field of view {setup['fov']!r} um, "
        f"slice {width} x {height} px, bounding box (from the top-left) left "
        f"{bbox['left']}, right {bbox['right']}, top {bbox['top']}, bottom {bbox['bottom']}",
        f"project_dir = {_toml_str(folder.resolve().as_posix())}",
        "channels = [" + ", ".join(_toml_str(c) for c in channels) + "]",
        'process_steps = ["cropping", "resampling"]',
        "",
        "[cropping]",
        f"# bounding box +/- {MARGIN} px, [xmin, xmax, ymin, ymax] with y from the bottom",
        f"area = [{', '.join(str(v) for v in area)}]",
        "",
        "[resampling]",
        f"# slice thickness (um), {setup['paths']['slice_thickness']}",
        f"dz = {setup['slice_thickness']!r}",
        "",
        "[input]",
        "# ingest labels y and x in micrometres with it",
        f"pixel_size = {setup['pixel_size']!r}",
        "",
    ]
    return "\n".join(lines)
