"""PyStack3D's area convention: ``[xmin, xmax, ymin, ymax]`` with the origin at the
bottom-left of the image."""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["area_to_slices"]


def area_to_slices(area: list[int] | tuple[int, int, int, int],
                   shape: tuple[int, int]) -> tuple[slice, slice, list[str]]:
    """Rows and columns of an area, clipped to the image.

    Parameters
    ----------
    area
        ``[xmin, xmax, ymin, ymax]`` in pixels, origin at the bottom-left: the rows kept
        are ``H - ymax : H - ymin`` and the columns ``xmin : xmax``.
    shape
        ``(H, W)`` of the image.

    Returns
    -------
    rows, cols : slice
        Index ranges into the (row, column) array.
    warnings : list of str
        One message per direction where the area went past the image and was clipped.

    Raises
    ------
    ConfigError
        When nothing of the area lies inside the image, or the area is malformed.
    """
    if len(area) != 4:
        raise ConfigError(f"area {list(area)}: expected [xmin, xmax, ymin, ymax]")
    xmin, xmax, ymin, ymax = (int(v) for v in area)
    height, width = shape
    if xmin < 0 or ymin < 0 or xmin >= xmax or ymin >= ymax:
        raise ConfigError(f"area {list(area)}: expected 0 <= xmin < xmax and 0 <= ymin < ymax")
    if xmin >= width or ymin >= height:
        raise ConfigError(f"area {list(area)} lies outside the image of {width} x {height} "
                          "pixels (width x height): expected xmin < width and ymin < height")
    notes = []
    if xmax > width:
        notes.append(f"area {list(area)}: xmax = {xmax} exceeds the image width {width}; "
                     f"clipped to {width}")
    if ymax > height:
        notes.append(f"area {list(area)}: ymax = {ymax} exceeds the image height {height}; "
                     f"clipped to {height}")
    xmax, ymax = min(xmax, width), min(ymax, height)
    return slice(height - ymax, height - ymin), slice(xmin, xmax), notes
