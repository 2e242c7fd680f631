"""Uniform slice spacing: which two input slices make each output slice, and how."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["ResamplingPlan", "check_grid", "interpolate", "output_positions", "plan"]


def check_grid(dz: float | None = None, zpos_out: list[float] | None = None) -> None:
    """Refuse output-grid keys that are wrong whatever the stack: neither given, a
    spacing not above 0, positions not strictly increasing.

    Raises
    ------
    ConfigError
        Naming the key and what is expected.
    """
    if zpos_out is not None:
        if np.any(np.diff(np.asarray(zpos_out, dtype=np.float64)) <= 0):
            raise ConfigError("[resampling] zpos_out must be strictly increasing")
        return
    if dz is None:
        raise ConfigError("[resampling] needs 'dz' (output slice spacing, um) or 'zpos_out'")
    if dz <= 0:
        raise ConfigError(f"[resampling] dz = {dz}: expected a spacing > 0 (um)")


def output_positions(z_in: np.ndarray, dz: float | None = None,
                     zpos_out: list[float] | None = None) -> np.ndarray:
    """PyStack3D's output grid: ``min(z), min(z) + dz, ...`` strictly below ``max(z)``
    (for a single slice, its own z), or the explicit ``zpos_out`` (which must lie inside
    the input's z range).

    Raises
    ------
    ConfigError
        When neither is given, or ``zpos_out`` leaves the input's range
        (:func:`check_grid` for the rest).
    """
    z_in = np.asarray(z_in, dtype=np.float64)
    low, high = float(z_in.min()), float(z_in.max())
    if zpos_out is not None:
        out = np.asarray(zpos_out, dtype=np.float64)
        outside = out[(out < low) | (out > high)]
        if outside.size:
            raise ConfigError(f"[resampling] zpos_out has {outside.size} position(s) outside "
                              f"the stack's z range [{low}, {high}] um, first {outside[0]}")
        check_grid(zpos_out=zpos_out)
        return out
    check_grid(dz)
    if low == high:  # one slice (or all at one z): it is its own uniform grid
        return np.array([low])
    out = np.arange(low, high, dz)
    return np.unique(np.maximum.accumulate(out[(out >= low) & (out <= high)]))


@dataclass
class ResamplingPlan:
    """For output slice j: ``lower[j]``, ``upper[j]`` input indices and the z positions."""

    z_out: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    skipped: list[int]


def plan(z_in: np.ndarray, z_out: np.ndarray) -> ResamplingPlan:
    """Pair every output position with its two input neighbours, as PyStack3D does.

    Input slices whose z is below that of the last slice kept are skipped; an output at
    ``z`` is interpolated between the last kept slice below ``z`` and the first at or
    above it (an output at the first slice's z is that slice).
    """
    z_in = np.asarray(z_in, dtype=np.float64)
    kept, skipped = [], []
    for k, z in enumerate(z_in):
        if kept and z < z_in[kept[-1]]:
            skipped.append(k)
        else:
            kept.append(k)
    kept_arr = np.asarray(kept)
    zk = z_in[kept_arr]
    upper = np.searchsorted(zk, z_out, side="left")
    upper = np.clip(upper, 0, len(kept_arr) - 1)
    lower = np.maximum(upper - 1, 0)
    at_first = z_out <= zk[0]
    lower[at_first] = upper[at_first] = 0
    return ResamplingPlan(np.asarray(z_out, dtype=np.float64), kept_arr[lower], kept_arr[upper],
                          skipped)


def interpolate(lower: np.ndarray, upper: np.ndarray, z_lower: float, z_upper: float,
                z: float) -> np.ndarray:
    """Linear interpolation between two slices, in PyStack3D's arithmetic (float64)."""
    if z_upper == z_lower:
        return np.asarray(lower, dtype=np.float64)
    slope = (upper.astype(np.float64) - lower.astype(np.float64)) / (z_upper - z_lower)
    return lower + (z - z_lower) * slope
