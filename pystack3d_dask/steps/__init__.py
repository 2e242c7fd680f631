"""Correction steps, registered under PyStack3D's names, each a Python function.

``pystack3d_dask.steps.<name>(stack, **params)`` applies a step to a (channel, z, y, x)
stack with the parameters, defaults and checks of the workflow file's ``[<name>]``
table, and returns the lazy result::

    from pystack3d_dask import open_result, steps

    stack = open_result("run.zarr")
    flat = steps.bkg_removal(stack, dim=2, orders=[2, 2])
    tmats = steps.registration_calculation(flat, area=[50, 950, 50, 950])
    aligned = steps.registration_transformation(flat, tmats=tmats, cropping=True)

Adding a step: a kernel module (``kernels/``), a step module here (its ``PARAMS`` table,
``prepare``, ``apply``), a test file, and one statement below.
"""

from __future__ import annotations

from . import bkg_removal as _bkg
from . import cropping as _cropping
from . import destriping as _destriping
from . import intensity as _intensity
from . import registration as _registration
from . import resampling as _resampling
from .base import REGISTRY, Step, StepOutput, available_steps, get_step, register, step_schemas
from .functions import step_function

__all__ = [
    "REGISTRY",
    "Step",
    "StepOutput",
    "available_steps",
    "bkg_removal",
    "cropping",
    "cropping_final",
    "destriping",
    "get_step",
    "intensity_rescaling",
    "intensity_rescaling_area",
    "register",
    "registration_calculation",
    "registration_transformation",
    "resampling",
    "step_schemas",
]

cropping = step_function(register(Step(
    "cropping", _cropping.apply, "per-slice", "keep an area of every slice",
    params=_cropping.PARAMS)))
bkg_removal = step_function(register(Step(
    "bkg_removal", _bkg.apply, "cross-slice",
    "subtract a polynomial background (2D per slice, or 3D over the stack)",
    prepare=_bkg.prepare, prepared_names=_bkg.prepared_names, check=_bkg.check,
    validate=_bkg.validate, params=_bkg.PARAMS)))
intensity_rescaling = step_function(register(Step(
    "intensity_rescaling", _intensity.rescaling_apply, "cross-slice",
    "match every slice's histogram to the mean (or running mean) histogram",
    prepare=_intensity.rescaling_prepare,
    prepared_names=_intensity.rescaling_prepared_names, params=_intensity.RESCALING_PARAMS)))
intensity_rescaling_area = step_function(register(Step(
    "intensity_rescaling_area", _intensity.area_apply, "cross-slice",
    "scale every slice so that the mean of an area follows the median",
    prepare=_intensity.area_prepare, prepared_names=_intensity.area_prepared_names,
    validate=_intensity.area_validate, params=_intensity.AREA_PARAMS)))
registration_calculation = step_function(register(Step(
    "registration_calculation", _registration.calc_apply, "cross-slice",
    "register every slice on the previous one (pystackreg), pairs in parallel",
    prepare=_registration.calc_prepare, prepared_names=_registration.calc_prepared_names,
    passthrough=True, validate=_registration.calc_validate,
    params=_registration.CALC_PARAMS)))
registration_transformation = step_function(register(Step(
    "registration_transformation", _registration.transform_apply, "cross-slice",
    "apply the cumulative matrices of registration_calculation, slice by slice",
    prepare=_registration.transform_prepare,
    prepared_names=_registration.transform_prepared_names,
    needs=("registration_calculation",), needs_unless=("pre_calculated_tmats",),
    params=_registration.TRANSFORM_PARAMS)))
destriping = step_function(register(Step(
    "destriping", _destriping.apply, "cross-slice",
    "remove curtains: VSNR or wavelet-Fourier, on every slice or only where striped",
    prepare=_destriping.prepare, prepared_names=_destriping.prepared_names,
    validate=_destriping.validate, params=_destriping.PARAMS)))
resampling = step_function(register(Step(
    "resampling", _resampling.apply, "cross-slice",
    "uniform slice spacing: linear interpolation between the two z neighbours",
    validate=_resampling.validate, params=_resampling.PARAMS)))
cropping_final = step_function(register(Step(
    "cropping_final", _cropping.apply, "per-slice", "keep an area of every slice",
    params=_cropping.PARAMS)))
