"""The PyStack3D workflow file written next to a synthetic stack.

:func:`workflow_toml` turns what the generator knows (the valid region, the true
drift, the padding value) into the areas and thresholds of a workflow that corrects
the stack, so that the written project runs as is.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..workflow.profiles import DEFAULT_PROFILE, PROFILES

if TYPE_CHECKING:
    from .synthetic import Synthetic

__all__ = ["STEPS", "workflow_toml"]

#: Process steps of the written workflow, in PyStack3D's order.
STEPS: tuple[str, ...] = (
    "cropping",
    "bkg_removal",
    "intensity_rescaling",
    "registration_calculation",
    "registration_transformation",
    "destriping",
    "resampling",
    "cropping_final",
)


def workflow_toml(syn: Synthetic, final_margin: int = 4, profile: str = DEFAULT_PROFILE) -> str:
    """PyStack3D workflow text (TOML) that corrects the stack of ``syn``.

    Areas of later steps are given in the frame those steps see: the registration
    area within the cropped frame, the final area within the frame left by the
    registration's own cropping (predicted from the true shifts, with a margin).

    Parameters
    ----------
    syn : Synthetic
        The generated data.
    final_margin : int
        Extra pixels removed on each side by ``cropping_final``.
    profile : str
        ``"pystack3d"``: a file PyStack3D runs as is (VSNR destriping with its usual
        parameters). ``"recommended"``: this project's ``profile = "recommended"``, with
        the keys the profile chooses (the destriping method) left to it.

    Returns
    -------
    str
        The TOML text (``project_dir = "slices"``, relative to the file's folder).

    Raises
    ------
    InputError
        If ``final_margin`` is not an integer >= 0 or ``profile`` is unknown.
    """
    if isinstance(final_margin, bool) or not isinstance(final_margin, (int, np.integer)) \
            or final_margin < 0:
        raise InputError(f"final_margin must be an integer >= 0, got {final_margin!r}")
    if profile not in PROFILES:
        raise InputError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    reg_area, final_area = _areas(syn, int(final_margin))
    return "\n".join([*_header(profile), *_sections(syn, reg_area, final_area, profile)])


def _areas(syn: Synthetic, final_margin: int) -> tuple[list[int], list[int]]:
    """Registration area (in the cropped frame) and final area (in the registered frame)."""
    xmin, xmax, ymin, ymax = syn.valid_area
    width, height = xmax - xmin, ymax - ymin
    reg_margin = max(2, round(0.1 * min(width, height)))
    reg_area = [reg_margin, width - reg_margin, reg_margin, height - reg_margin]

    # registration_transformation(cropping=true) keeps the rectangle every shifted slice
    # covers; one extra pixel per side absorbs the estimation error of pystackreg.
    rel = syn.shifts - syn.shifts[0]
    loss_y = math.ceil(max(rel[:, 0].max(), 0.0)) + math.ceil(max(-rel[:, 0].min(), 0.0))
    loss_x = math.ceil(max(rel[:, 1].max(), 0.0)) + math.ceil(max(-rel[:, 1].min(), 0.0))
    if loss_x or loss_y:
        loss_x, loss_y = loss_x + 2, loss_y + 2
    reg_w, reg_h = width - loss_x, height - loss_y
    m = final_margin
    if reg_w - 2 * m < 2 or reg_h - 2 * m < 2:
        m = 0
    return reg_area, [m, reg_w - m, m, reg_h - m]


def _header(profile: str) -> list[str]:
    """Top-level keys of the workflow file."""
    steps = ", ".join(f'"{s}"' for s in STEPS)
    return [
        "# PyStack3D workflow for a synthetic stack written by pystack3d_dask.datasets.synthetic",
        'project_dir = "slices"',
        "ind_min = 0",
        "ind_max = 99999",
        'channels = ["."]',
        "nproc = 2",
        f"process_steps = [{steps}]",
        "history = []",
        *([f'profile = "{profile}"'] if profile != DEFAULT_PROFILE else []),
        "",
    ]


def _sections(syn: Synthetic, reg_area: list[int], final_area: list[int],
              profile: str) -> list[str]:
    """One table per process step, each followed by a blank line."""
    # The background fit leaves out the padded border: just above its value.
    threshold_min = syn.pad_value + 0.03 * syn.data_range
    threshold_min = round(threshold_min) if syn.dtype.kind in "iu" else threshold_min
    return [
        "[cropping]",
        f"area = {_toml(syn.valid_area)}",
        "",
        "[bkg_removal]",
        "dim = 3",
        "orders = [1, 2, 1]",
        "cross_terms = true",
        "skip_factors = [10, 10, 10]",
        f"threshold_min = {_toml(threshold_min)}",
        "preserve_avg = true",
        "",
        "[intensity_rescaling]",
        "nbins = 256",
        "filter_size = -1",
        "",
        "[registration_calculation]",
        'transformation = "TRANSLATION"',
        f"area = {_toml(reg_area)}",
        "nb_blocks = [1, 1]",
        "",
        "[registration_transformation]",
        'mode = "edge"',
        "cropping = true",
        "",
        "[destriping]",
        *(["maxit = 50", "cvg_threshold = 1e-2",
           'filters = [{ name = "Gabor", noise_level = 20, sigma = [0.5, 200], theta = 0 }]']
          if profile == DEFAULT_PROFILE else
          ["# method, only_striped: from the profile (column_profile, only where striped)"]),
        "",
        "[resampling]",
        'policy = "slice_{slice_nb}_z={z_coord}um.tif"',
        f"dz = {_toml(float(syn.dz))}",
        "",
        "[cropping_final]",
        f"area = {_toml(final_area)}",
        "",
    ]


def _toml(value: Any) -> str:
    """TOML literal of a bool, number or list of them."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        text = repr(float(value))
        # TOML floats need a fraction or an exponent; repr gives "2.0" or "1e-05".
        return text if any(c in text for c in ".eE") or "inf" in text or "nan" in text \
            else text + ".0"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML literal for {value!r}")
