"""The step protocol and registry.

A step is two functions of the (channel, z, y, x) stack:

* ``prepare(stack, compute, **params) -> dict[str, xr.DataArray]`` (optional): the
  small cross-slice quantities the step needs (a global range, histograms, fitted
  coefficients), in memory. It builds reductions over the slices and runs them with
  ``compute(list_of_dask_collections) -> list_of_values``, in passes of their own, so
  that no slice is held in memory while the whole stack is reduced. Their names are
  ``prepared_names``: a resumed step reloads them from its partial checkpoint.
* ``apply(stack, prepared, **params) -> xr.DataArray | StepOutput``: the per-slice graph,
  given the prepared values. Computes nothing.

``StepOutput.extras`` are stored with the step's checkpoint: per-slice arrays (dims
starting with ``channel, z`` or ``z``, lazy, one chunk per slice) are written by the
task that writes the slice; in-memory arrays are written whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import ConfigError, NotAvailableError, suggest
from ..params import PYSTACK3D_STEPS, Param
from ..store.write import Derived, StepOutput

__all__ = ["REGISTRY", "Compute", "Derived", "SliceFunction", "Step", "StepOutput",
           "available_steps", "get_step", "map_slice_values", "map_slices", "register",
           "step_schemas"]

#: ``compute(list_of_dask_collections) -> list_of_values``: how a step's ``prepare`` runs
#: its reductions (on the run's executor).
Compute = Callable[[list[Any]], list[Any]]
#: ``func(slice, c, z, **tables, **params)``: a 2D slice with its channel and slice
#: indices, the one way step code is called per slice (:func:`map_slices`,
#: :func:`map_slice_values`, :class:`Derived`).
SliceFunction = Callable[..., Any]


@dataclass(frozen=True)
class Step:
    """A registered correction step.

    Attributes
    ----------
    name
        PyStack3D's name of the step (its table in the workflow file).
    apply
        ``apply(stack, prepared, **params) -> DataArray | StepOutput``.
    kind
        ``"per-slice"`` (a map over slices) or ``"cross-slice"`` (a reduction first).
    doc
        One line for listings.
    prepare
        ``prepare(stack, compute, **params) -> dict of in-memory DataArrays``, or None.
    prepared_names
        Names of the arrays ``prepare`` returns for these parameters.
    check
        ``check(dataset) -> list of warnings``, run on the written checkpoint (e.g. slices
        left unchanged because no pixel was inside the thresholds).
    needs
        Earlier steps whose outputs ``prepare`` reads, given to it as
        ``upstream = {step name: Dataset}`` (e.g. the matrices of
        ``registration_calculation`` for ``registration_transformation``).
    needs_unless
        Parameters that, when set, stand in for ``needs`` (``pre_calculated_tmats``):
        otherwise a workflow without the needed steps before this one is refused before
        any work.
    validate
        ``validate(**params)``: checks that need no data, run on every step of a
        workflow before any work, so that a bad table late in the workflow fails first.
    passthrough
        The step's slices are its input's, unchanged (it only computes small outputs):
        its checkpoint hard-links the input's chunk files instead of writing copies.
    params
        The step's table: every key with its check, default and one line of
        documentation. The workflow file and the Python call
        (:mod:`pystack3d_dask.steps`) both validate against it.
    """

    name: str
    apply: Callable[..., Any]
    kind: str
    doc: str = ""
    prepare: Callable[..., dict[str, xr.DataArray]] | None = None
    prepared_names: Callable[..., list[str]] | None = None
    check: Callable[[xr.Dataset], list[str]] | None = None
    needs: tuple[str, ...] = ()
    needs_unless: tuple[str, ...] = ()
    validate: Callable[..., None] | None = None
    passthrough: bool = False
    params: dict[str, Param] = field(default_factory=dict)

    def __call__(self, stack: xr.DataArray, **params: Any) -> Any:
        """The step applied to a stack by hand: ``pystack3d_dask.steps.<name>``."""
        from .functions import step_function

        return step_function(self)(stack, **params)


def _origin(block_info: dict) -> tuple[int, int]:
    """Channel and first slice of a block, from dask's ``block_info``."""
    (c, _), (z0, _) = block_info[0]["array-location"][:2]
    return int(c), int(z0)


def _slice_task(block: np.ndarray, tables: dict[str, np.ndarray], kernel: Callable[..., Any],
                params: dict[str, Any], out_dtype: Any, block_info: dict | None = None
                ) -> np.ndarray:
    c, z0 = _origin(block_info)
    if block.shape[1] == 1:
        return np.asarray(kernel(block[0, 0], c, z0, **tables, **params))[None, None]
    out = np.empty(block.shape, dtype=out_dtype)  # map_blocks keeps the block's shape
    for k in range(block.shape[1]):
        out[0, k] = kernel(block[0, k], c, z0 + k, **tables, **params)
    return out


def map_slices(func: SliceFunction, data: Any, tables: dict[str, np.ndarray], dtype: Any,
               **kwargs: Any) -> Any:
    """``func(slice, c, z, **tables, **kwargs)`` on every slice of ``data``, a dask
    array of the stack (one channel per block, whole slices, any number of slices per
    block: a slab of a few): ``func`` gets one 2D slice with its channel and slice
    indices and returns the output slice, of ``dtype``.

    This is the steps' one per-slice convention: :func:`map_slice_values` and
    :class:`Derived` call their functions the same way. Two graphs pair slices
    otherwise, on purpose: 2D background removal subtracts from each slice its own
    lazily fitted coefficients (a blockwise of the slab and its fits), and GPU
    destriping sends a batch of slices to the device at once.

    ``tables`` (small arrays indexed by channel and slice: histograms, coefficients,
    matrices) are one key of the graph that every slice's task reads. As chunked dask
    arrays, they would add a task per slice and per table; passed as plain arguments,
    they would be sent with every task to a cluster's workers.
    """
    shared = dask.delayed(tables, pure=True)
    return data.map_blocks(_slice_task, shared, kernel=func, params=kwargs, dtype=dtype,
                           out_dtype=dtype, meta=np.empty((0,) * data.ndim, dtype=dtype))


def _values_task(block: np.ndarray, kernel: Callable[..., Any], shape: tuple[int, ...],
                 out_dtype: Any, params: dict[str, Any], block_info: dict | None = None
                 ) -> np.ndarray:
    c, z0 = _origin(block_info)
    out = np.empty((1, block.shape[1], *shape), dtype=out_dtype)
    for k in range(block.shape[1]):
        out[0, k] = kernel(block[0, k], c, z0 + k, **params)
    return out


def map_slice_values(func: SliceFunction, data: Any, shape: tuple[int, ...],
                     dtype: Any, **kwargs: Any) -> Any:
    """``func(slice, c, z, **kwargs)`` (a 2D slice with its channel and slice indices,
    as for :func:`map_slices`) for every slice of ``data`` (one channel per block, whole slices): a lazy
    ``(channel, z, *shape)`` array of its values, in the z blocks of ``data``. The per-slice
    reductions of the steps (histograms, means, samples, scores) are made with it."""
    chunks = (data.chunks[0], data.chunks[1], *((n,) for n in shape))
    return data.map_blocks(_values_task, kernel=func, shape=tuple(shape), out_dtype=dtype,
                           dtype=dtype, params=kwargs, chunks=chunks, drop_axis=(2, 3),
                           new_axis=list(range(2, 2 + len(shape))),
                           meta=np.empty((0,) * (2 + len(shape)), dtype=dtype))


def check_thresholds(table: str, threshold_min: float | None,
                     threshold_max: float | None) -> None:
    """Refuse ``threshold_min > threshold_max`` (no pixel could be inside)."""
    if threshold_min is not None and threshold_max is not None and threshold_min > threshold_max:
        raise ConfigError(f"[{table}] threshold_min = {threshold_min} is larger than "
                          f"threshold_max = {threshold_max}: expected threshold_min <= "
                          "threshold_max")


def as_output(result: xr.DataArray | StepOutput) -> StepOutput:
    """Wrap a bare DataArray as a StepOutput."""
    return result if isinstance(result, StepOutput) else StepOutput(result)


REGISTRY: dict[str, Step] = {}


def register(step: Step) -> Step:
    """Add a step to the registry (its name must be a PyStack3D step name)."""
    if step.name not in PYSTACK3D_STEPS:
        raise ValueError(f"{step.name!r} is not a PyStack3D step name")
    REGISTRY[step.name] = step
    return step


def step_schemas() -> dict[str, dict[str, Param]]:
    """Every registered step's table (key -> Param), in PyStack3D's order."""
    return {name: REGISTRY[name].params for name in available_steps()}


def available_steps() -> list[str]:
    """Names of the steps implemented, in PyStack3D's order."""
    return [name for name in PYSTACK3D_STEPS if name in REGISTRY]


def get_step(name: str) -> Step:
    """The registered step of that name.

    Raises
    ------
    NotAvailableError
        For a PyStack3D step this version does not implement yet.
    ConfigError
        For an unknown name (with the valid names).
    """
    if name in REGISTRY:
        return REGISTRY[name]
    if name in PYSTACK3D_STEPS:
        raise NotAvailableError(
            f"step {name!r} is not available yet in this version of pystack3d-dask; "
            f"available steps: {', '.join(available_steps())}. Remove it from process_steps "
            "(nothing is skipped silently)")
    raise ConfigError(f"unknown step {name!r}{suggest(name, PYSTACK3D_STEPS)}; valid steps: "
                      f"{', '.join(PYSTACK3D_STEPS)}")
