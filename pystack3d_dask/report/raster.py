"""Image figures drawn straight into pixels with Pillow: the cut planes and the 3D view.

A grey image needs no plotting library: each panel is the section itself, scaled to its
box, with a title, axis names and a few ticks in the text of matplotlib's own font. This
is two orders of magnitude cheaper than drawing the same panels through matplotlib (its
3D surfaces above all), which is what a report pays for every step of every run.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["cube_image", "grey", "panels_image", "ticks"]

# grey levels: every image here is grey, stored as one channel (a third of RGB's bytes)
BACKGROUND = 255
INK = 30
EDGE = 90


@lru_cache(maxsize=8)
def font(size: int) -> Any:
    """DejaVu Sans (shipped with matplotlib) at ``size`` pixels; Pillow's own font where
    FreeType is missing."""
    from PIL import ImageFont

    try:
        from matplotlib import get_data_path

        return ImageFont.truetype(f"{get_data_path()}/fonts/ttf/DejaVuSans.ttf", size)
    except (ImportError, OSError):
        return ImageFont.load_default()


def grey(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` scaled from [low, high] to uint8 grey levels (clipped)."""
    scale = 255.0 / (high - low) if high > low else 0.0
    out = (np.asarray(values, dtype=np.float32) - np.float32(low)) * np.float32(scale)
    return np.clip(out, 0, 255).astype(np.uint8)


def ticks(first: float, last: float, n: int = 5) -> list[float]:
    """Round tick values between ``first`` and ``last`` (either order), at most about ``n``."""
    from matplotlib.ticker import MaxNLocator

    lo, hi = min(first, last), max(first, last)
    if hi == lo:
        return [lo]
    return [float(v) for v in MaxNLocator(nbins=n).tick_values(lo, hi) if lo <= v <= hi]


def _text(draw: Any, xy: tuple[float, float], text: str, size: int, anchor: str = "la") -> None:
    draw.text(xy, text, fill=INK, font=font(size), anchor=anchor)


def _panel(canvas: Any, draw: Any, img: np.ndarray, box: tuple[int, int, int, int],
           title: str, axes: tuple[tuple[str, float, float], tuple[str, float, float]]) -> None:
    """One image panel in ``box`` (left, top, width, height): the uint8 image stretched to
    it, a frame, ``title`` above, and for ``axes = ((name, first, last) of the columns,
    (name, first, last) of the rows)`` the ticks and the names of both axes."""
    from PIL import Image

    left, top, width, height = box
    panel = Image.fromarray(img).resize((width, height), Image.Resampling.BILINEAR
                                        if img.shape[0] > height or img.shape[1] > width
                                        else Image.Resampling.NEAREST)
    canvas.paste(panel, (left, top))
    draw.rectangle((left - 1, top - 1, left + width, top + height), outline=EDGE)
    _text(draw, (left + width / 2, top - 4), title, 12, "md")
    (cname, c0, c1), (rname, r0, r1) = axes
    for value in ticks(c0, c1):
        x = left + (value - c0) / (c1 - c0) * width if c1 != c0 else left + width / 2
        draw.line((x, top + height, x, top + height + 4), fill=INK)
        _text(draw, (x, top + height + 5), f"{value:g}", 10, "ma")
    for value in ticks(r0, r1, 4):
        y = top + (value - r0) / (r1 - r0) * height if r1 != r0 else top + height / 2
        draw.line((left - 4, y, left, y), fill=INK)
        _text(draw, (left - 6, y), f"{value:g}", 10, "rm")
    _text(draw, (left + width / 2, top + height + 20), cname, 11, "ma")
    _text(draw, (left - 44, top + height / 2), rname, 11, "rm")


def panels_image(rows: list[list[tuple[np.ndarray, str, tuple]]], title: str = "",
                 panel: tuple[int, int] = (300, 200)) -> Any:
    """A grid of image panels (see :func:`_panel`: ``(uint8 image, title, axes)`` each)
    with ``title`` above, as a grey Pillow image."""
    from PIL import Image, ImageDraw

    width, height = panel
    cell_w, cell_h = width + 90, height + 70
    ncols = max(len(r) for r in rows)
    canvas = Image.new("L", (ncols * cell_w + 20, len(rows) * cell_h + 30), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    _text(draw, (canvas.width / 2, 6), title, 13, "ma")
    for r, row in enumerate(rows):
        for c, (img, label, axes) in enumerate(row):
            _panel(canvas, draw, img, (c * cell_w + 80, r * cell_h + 50, width, height),
                   label, axes)
    return canvas


def _face(canvas: Any, img: np.ndarray, origin: tuple[float, float],
          e_u: tuple[float, float], e_v: tuple[float, float]) -> None:
    """Paste the uint8 image ``img`` (h, w) as the parallelogram whose corner is
    ``origin`` and whose edges are ``w * e_u`` (along its columns) and ``h * e_v`` (along
    its rows), in canvas pixels."""
    from PIL import Image

    h, w = img.shape
    matrix = np.array([[e_u[0], e_v[0]], [e_u[1], e_v[1]]], dtype=np.float64)
    inv = np.linalg.inv(matrix)
    shift = -inv @ np.asarray(origin, dtype=np.float64)
    coefs = (inv[0, 0], inv[0, 1], shift[0], inv[1, 0], inv[1, 1], shift[1])
    size = canvas.size
    face = Image.fromarray(img).transform(size, Image.Transform.AFFINE, coefs,
                                          Image.Resampling.BILINEAR)
    mask = Image.new("L", (w, h), 255).transform(size, Image.Transform.AFFINE, coefs,
                                                 Image.Resampling.NEAREST)
    canvas.paste(face, (0, 0), mask)


def cube_image(top: np.ndarray, front: np.ndarray, side: np.ndarray, title: str = "",
               size: tuple[int, int] = (600, 480), depth: float = 0.5) -> Any:
    """The three visible faces of a (z, y, x) volume in an oblique view, slices upwards.

    Parameters
    ----------
    top
        The last slice, (y, x), uint8.
    front
        The first row of every slice, (z, x), uint8.
    side
        The last column of every slice, (z, y), uint8.
    title
        Above the view.
    size
        Largest width and height of the image in pixels.
    depth
        Length of the y edge relative to x and z (drawn at 45 degrees).
    """
    from PIL import Image, ImageDraw

    nz, nx = front.shape
    ny = side.shape[1]
    diag = depth * np.sqrt(0.5)
    margin_l, margin_t, margin_r, margin_b = 70, 40, 60, 50
    avail_w, avail_h = size[0] - margin_l - margin_r, size[1] - margin_t - margin_b
    s = min(avail_w / (nx + ny * diag), avail_h / (nz + ny * diag))
    dx = dy = ny * diag * s
    size = (int(margin_l + nx * s + dx + margin_r), int(margin_t + dy + nz * s + margin_b))
    canvas = Image.new("L", size, BACKGROUND)
    left, base = margin_l, margin_t + dy + nz * s  # front face's lower left corner
    _face(canvas, front, (left, base), (s * nx / front.shape[1], 0),
          (0, -s * nz / front.shape[0]))
    _face(canvas, side, (left + nx * s, base), (diag * s * ny / side.shape[1],
                                                -diag * s * ny / side.shape[1]),
          (0, -s * nz / side.shape[0]))
    _face(canvas, top, (left, base - nz * s), (s * nx / top.shape[1], 0),
          (diag * s * ny / top.shape[0], -diag * s * ny / top.shape[0]))
    draw = ImageDraw.Draw(canvas)
    corners = {"front": [(left, base), (left + nx * s, base), (left + nx * s, base - nz * s),
                         (left, base - nz * s)],
               "side": [(left + nx * s, base), (left + nx * s + dx, base - dy),
                        (left + nx * s + dx, base - dy - nz * s), (left + nx * s, base - nz * s)],
               "top": [(left, base - nz * s), (left + nx * s, base - nz * s),
                       (left + nx * s + dx, base - nz * s - dy), (left + dx, base - nz * s - dy)]}
    for points in corners.values():
        draw.polygon(points, outline=EDGE)
    _text(draw, (size[0] / 2, 8), title, 13, "ma")
    _text(draw, (left, base + 4), "0", 10, "ma")
    _text(draw, (left + nx * s, base + 4), f"{nx - 1}", 10, "ma")
    _text(draw, (left + nx * s / 2, base + 18), "x (px)", 11, "ma")
    _text(draw, (left - 6, base), "0", 10, "rm")
    _text(draw, (left - 6, base - nz * s), f"{nz - 1}", 10, "rm")
    _text(draw, (left - 6, base - nz * s / 2), "slice", 11, "rm")
    _text(draw, (left + nx * s + dx + 6, base - dy), f"y {ny - 1}", 10, "lm")
    _text(draw, (left + nx * s + dx / 2 + 8, base - dy / 2 + 4), "y (px)", 11, "la")
    return canvas
