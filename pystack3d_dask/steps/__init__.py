"""Correction steps: each a function ``(stack: xr.DataArray, **params) -> xr.DataArray``
that builds a lazy dask graph from kernels, registered here under PyStack3D's name."""

from __future__ import annotations

from .base import REGISTRY, Step, available_steps, get_step, register
from .cropping import cropping, cropping_final

__all__ = [
    "REGISTRY",
    "Step",
    "available_steps",
    "cropping",
    "cropping_final",
    "get_step",
    "register",
]

register(Step("cropping", cropping, "per-slice", "keep an area of every slice"))
register(Step("cropping_final", cropping_final, "per-slice", "keep an area of every slice"))
