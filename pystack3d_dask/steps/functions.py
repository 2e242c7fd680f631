"""Every step as a function of a stack: ``pystack3d_dask.steps.<name>(stack, **params)``.

The functions are made from the registry. Their parameters, defaults and checks are the
step's table (:attr:`~.base.Step.params`), the one the workflow file is validated
against, and they build the step as a run does (:func:`build`): a step called from
Python and the same table in a TOML file give the same bytes.
"""

from __future__ import annotations

import inspect
import textwrap
import warnings
from collections.abc import Callable
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import ConfigError
from ..params import ROUNDING, Param, validate_table
from .base import Compute, Derived, Step, StepOutput, as_output, map_slice_values

__all__ = ["build", "reduction_params", "step_function", "validate_params"]


#: Keys every step's table has besides its own, for the slices' tasks.
COMMON = {"rounding": ROUNDING}


def reduction_params(params: dict[str, Any]) -> dict[str, Any]:
    """A step's parameters less ``rounding``: how a float goes back to the dtype
    concerns the slices' tasks (``apply``) alone, not ``prepare`` nor ``validate``."""
    return {k: v for k, v in params.items() if k != "rounding"}


def _plain(value: Any) -> Any:
    """Tuples, NumPy arrays and scalars as the workflow file's lists and numbers."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def validate_params(step: Step, given: dict[str, Any]) -> dict[str, Any]:
    """A Python call's parameters checked against the step's table, defaults filled in.

    ``None`` stands for "not given" where the table's default is None, as in a
    function's signature; elsewhere it is checked like any value.
    """
    table = {**step.params, **COMMON}
    given = {k: _plain(v) for k, v in given.items()
             if not (v is None and k in table and table[k].default is None)}
    params = validate_table(step.name, given, step.params, COMMON, where=f"of {step.name}()")
    if step.validate is not None:
        step.validate(**reduction_params(params))
    return params


def build(step: Step, stack: xr.DataArray, params: dict[str, Any], compute: Compute,
          upstream: dict[str, xr.Dataset] | None = None,
          prepared: dict[str, xr.DataArray] | None = None) -> StepOutput:
    """A step's lazy output: its small cross-slice values computed now with ``compute``
    (unless ``prepared`` gives them, reloaded from a partial checkpoint), then the
    per-slice graph. ``params`` is a validated table; ``upstream`` the outputs of the
    steps it ``needs``. The run and the Python functions both build steps with it."""
    if prepared is None:
        prepared = {}
        if step.prepare is not None:
            extra = {"upstream": upstream or {}} if step.needs else {}
            prepared = step.prepare(stack, compute, **extra, **reduction_params(params))
    out = as_output(step.apply(stack, prepared, **params))
    return StepOutput(out.stack, {**prepared, **out.extras}, out.derived)


def _compute(objects: list[Any]) -> list[Any]:
    # dask's active scheduler: a notebook's distributed Client when there is one
    return list(dask.compute(*objects))


def _derived_array(name: str, derived: Derived, stack: xr.DataArray) -> xr.DataArray:
    """A step's per-slice derived quantity as a lazy (channel, z, *dims) array, as the
    run stores it; its shape and dtype are those of the function on a blank slice."""
    data = derived.source if derived.source is not None else stack.data
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = np.asarray(derived.func(np.zeros(data.shape[2:], data.dtype), 0, 0))
    values = map_slice_values(derived.func, data, probe.shape, probe.dtype)
    return xr.DataArray(values, dims=("channel", "z", *derived.dims),
                        coords={"channel": stack["channel"], "z": stack["z"]},
                        attrs=dict(derived.attrs), name=name)


def _as_dataset(out: StepOutput) -> xr.Dataset:
    variables = {"stack": out.stack, **out.extras}
    variables.update({n: _derived_array(n, d, out.stack) for n, d in out.derived.items()})
    return xr.Dataset(variables, attrs=dict(out.stack.attrs))


def _tmats_upstream(tmats: Any) -> dict[str, xr.Dataset]:
    """``tmats`` as given to ``registration_transformation(stack, tmats=...)``: what
    ``registration_calculation`` returned, its Dataset, or an array of 3x3 matrices."""
    if tmats is None:
        return {}
    if isinstance(tmats, xr.Dataset):
        tmats = tmats.get("tmats")
    elif not isinstance(tmats, xr.DataArray):
        try:
            tmats = xr.DataArray(np.asarray(tmats, dtype=np.float64))
        except (TypeError, ValueError):
            tmats = None
    if tmats is None or tmats.ndim < 3 or tmats.shape[-2:] != (3, 3):
        raise ConfigError("registration_transformation(): tmats must be what "
                          "registration_calculation() returned, or an array of 3x3 "
                          "matrices (one per slice, or per slice and block)")
    return {"registration_calculation": xr.Dataset({"tmats": tmats})}


def _describe(key: str, param: Param) -> str:
    default = "" if param.default is None else f", default {param.default!r}"
    return f"{key} : optional{default}\n" + _wrap(param.doc[:1].upper() + param.doc[1:] + ".")


def _wrap(text: str) -> str:
    return textwrap.fill(text, 84, initial_indent="    ", subsequent_indent="    ")


def _docstring(step: Step) -> str:
    lines = [f"{step.doc[:1].upper()}{step.doc[1:]}.", "",
             textwrap.fill(f"PyStack3D's ``{step.name}`` step on a (channel, z, y, x) stack, "
                           f"with the parameters of the workflow file's [{step.name}] table "
                           "(same names, checks and defaults). Small cross-slice values are "
                           "computed now, on dask's active scheduler; the slices stay lazy.",
                           88), "", "Parameters", "----------",
             "stack : xarray.DataArray", "    (channel, z, y, x), whole slices per chunk."]
    lines += [_describe(k, p) for k, p in {**step.params, **COMMON}.items()]
    if step.needs:
        lines += ["tmats : xarray.DataArray, optional",
                  "    The matrices returned by registration_calculation (or an array of "
                  "3x3 matrices);", "    else pre_calculated_tmats names a file of them."]
    lines += ["outputs : bool, default False",
              _wrap("Return a Dataset shaped like the step's checkpoint: the stack and the "
                    "arrays stored beside it."), "", "Returns", "-------"]
    if step.passthrough:
        lines += ["xarray.DataArray or xarray.Dataset",
                  "    The step's own output (its slices are its input's), or the Dataset "
                  "with ``outputs=True``."]
    else:
        lines += ["xarray.DataArray or xarray.Dataset",
                  "    The lazy corrected stack, or the Dataset with ``outputs=True``."]
    return "\n".join(lines)


def _signature(step: Step) -> inspect.Signature:
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("stack", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation="xr.DataArray")]
    params += [inspect.Parameter(k, kw, default=p.default)
               for k, p in {**step.params, **COMMON}.items()]
    if step.needs:
        params.append(inspect.Parameter("tmats", kw, default=None))
    params.append(inspect.Parameter("outputs", kw, default=False, annotation="bool"))
    return inspect.Signature(params, return_annotation="xr.DataArray | xr.Dataset")


def step_function(step: Step) -> Callable[..., xr.DataArray | xr.Dataset]:
    """The Python function of a registered step (see the module's docstring)."""

    def call(stack: xr.DataArray, **params: Any) -> xr.DataArray | xr.Dataset:
        outputs = bool(params.pop("outputs", False))
        upstream = _tmats_upstream(params.pop("tmats", None)) if step.needs else {}
        if not isinstance(stack, xr.DataArray) or stack.dims[:2] != ("channel", "z"):
            raise ConfigError(f"{step.name}(): stack must be an xarray DataArray with dims "
                              "(channel, z, y, x), such as open_result(...) returns; got "
                              f"{type(stack).__name__}")
        values = validate_params(step, params)
        if step.needs and not upstream and not any(values.get(k) for k in step.needs_unless):
            raise ConfigError(f"{step.name}(): give tmats= (what registration_calculation() "
                              "returned) or pre_calculated_tmats= (a file of matrices)")
        out = build(step, stack, values, _compute, upstream)
        if outputs:
            return _as_dataset(out)
        if step.passthrough:  # its slices are its input's: what it computed is its result
            return (next(iter(out.extras.values())) if len(out.extras) == 1
                    else xr.Dataset(out.extras))
        return out.stack

    call.__name__ = call.__qualname__ = step.name
    call.__module__ = "pystack3d_dask.steps"
    call.__doc__ = _docstring(step)
    call.__signature__ = _signature(step)  # type: ignore[attr-defined]
    return call
