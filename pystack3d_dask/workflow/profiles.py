"""Profiles: named sets of step parameters that a workflow file selects with its top-level
``profile`` key.

``"pystack3d"`` (the default) adds nothing: PyStack3D's files give PyStack3D's results.
``"recommended"`` switches the steps to the settings that ``benchmarks/quality_by_step.py``
measures best against the ground truth; a key the file sets itself always wins, and a
profile value is left out where the file sets a key it cannot go with (the file's
``filters`` say VSNR, so the profile's destriping method stays out).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, suggest

__all__ = ["DEFAULT_PROFILE", "PROFILES", "conflicting_keys", "profile_defaults"]

DEFAULT_PROFILE = "pystack3d"

#: step -> key -> value, per profile; ``"*"`` stands for every step.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "pystack3d": {},
    "recommended": {
        # truncation lowers every slice by half a grey level at every step that casts
        "*": {"rounding": True},
        # the background fitted to the level of the main phase (block medians, weights
        # that drop the other phases), not to the mean of whatever phases a region holds
        "bkg_removal": {"skip_median": True, "weight_func": "TukeyBiweight"},
        # one gain per slice: gain jumps fixed, each histogram's shape kept
        "intensity_rescaling": {"method": "gain"},
        # registering a band-pass of each pair halves the drift residual
        "registration_calculation": {"bandpass": [1.5, 3.0]},
        # only the stripes subtracted, and only on the slices that carry them
        "destriping": {"method": "column_profile", "only_striped": True},
    },
}

#: (step, profile key) -> keys of the file that rule the profile's value out.
_EXCLUDED_BY: dict[tuple[str, str], tuple[str, ...]] = {
    ("destriping", "method"): ("filters", "wavelet_decomposition"),
    ("bkg_removal", "skip_median"): ("skip_averaging",),
    ("registration_calculation", "bandpass"): ("threshold", "gaussian_sigma"),
}


def conflicting_keys(step: str, key: str) -> tuple[str, ...]:
    """The keys of a step's table that keep a profile's value of ``key`` out.

    Parameters
    ----------
    step : str
        The step's table name.
    key : str
        A key that a profile sets in that table.

    Returns
    -------
    tuple of str
        Empty when nothing the file sets rules the profile's value out.
    """
    return _EXCLUDED_BY.get((step, key), ())


def profile_defaults(profile: str, step: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """The values ``profile`` gives the step's keys that ``table`` (the file's own
    table of the step) does not set.

    Parameters
    ----------
    profile : str
        A name of :data:`PROFILES`.
    step : str
        The step's table name.
    table : mapping
        What the workflow file sets in that table.

    Returns
    -------
    dict
        Keys to add to the table before it is validated.

    Raises
    ------
    ConfigError
        For an unknown profile, naming the allowed ones.
    """
    if profile not in PROFILES:
        raise ConfigError(f"profile = {profile!r} is invalid: expected one of "
                          f"{list(PROFILES)}{suggest(str(profile), list(PROFILES))}")
    chosen = PROFILES[profile]
    values = {**chosen.get("*", {}), **chosen.get(step, {})}
    out = {}
    for key, value in values.items():
        if key in table:
            continue
        if any(other in table for other in conflicting_keys(step, key)):
            continue
        out[key] = value
    return out
