"""Correction steps: each a function ``(stack: xr.DataArray, **params) -> xr.DataArray``
that builds a lazy dask graph from kernels, registered here under PyStack3D's name."""

from __future__ import annotations

from . import cropping as _cropping
from .base import REGISTRY, Step, StepOutput, available_steps, get_step, register
from .cropping import cropping, cropping_final

__all__ = [
    "REGISTRY",
    "Step",
    "StepOutput",
    "available_steps",
    "cropping",
    "cropping_final",
    "get_step",
    "register",
]

register(Step("cropping", _cropping.apply, "per-slice", "keep an area of every slice"))
register(Step("cropping_final", _cropping.apply, "per-slice", "keep an area of every slice"))
