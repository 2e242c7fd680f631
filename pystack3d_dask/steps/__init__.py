"""Correction steps: each a function ``(stack: xr.DataArray, **params) -> xr.DataArray``
that builds a lazy dask graph from kernels, registered here under PyStack3D's name."""

from __future__ import annotations

from . import bkg_removal as _bkg
from . import cropping as _cropping
from . import destriping as _destriping
from . import intensity as _intensity
from . import registration as _registration
from . import resampling as _resampling
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
register(Step("bkg_removal", _bkg.apply, "cross-slice",
              "subtract a polynomial background (2D per slice, or 3D over the stack)",
              prepare=_bkg.prepare, prepared_names=_bkg.prepared_names, check=_bkg.check,
              validate=_bkg.validate))
register(Step("intensity_rescaling", _intensity.rescaling_apply, "cross-slice",
              "match every slice's histogram to the mean (or running mean) histogram",
              prepare=_intensity.rescaling_prepare,
              prepared_names=_intensity.rescaling_prepared_names))
register(Step("intensity_rescaling_area", _intensity.area_apply, "cross-slice",
              "scale every slice so that the mean of an area follows the median",
              prepare=_intensity.area_prepare, prepared_names=_intensity.area_prepared_names,
              validate=_intensity.area_validate))
register(Step("resampling", _resampling.apply, "cross-slice",
              "uniform slice spacing: linear interpolation between the two z neighbours",
              validate=_resampling.validate))
register(Step("registration_calculation", _registration.calc_apply, "cross-slice",
              "register every slice on the previous one (pystackreg), pairs in parallel",
              prepare=_registration.calc_prepare,
              prepared_names=_registration.calc_prepared_names, passthrough=True,
              validate=_registration.calc_validate))
register(Step("registration_transformation", _registration.transform_apply, "cross-slice",
              "apply the cumulative matrices of registration_calculation, slice by slice",
              prepare=_registration.transform_prepare,
              prepared_names=_registration.transform_prepared_names,
              needs=("registration_calculation",),
              needs_unless=("pre_calculated_tmats",)))
register(Step("destriping", _destriping.apply, "cross-slice",
              "remove curtains: VSNR or wavelet-Fourier, on every slice or only where striped",
              prepare=_destriping.prepare, prepared_names=_destriping.prepared_names,
              validate=_destriping.validate))
