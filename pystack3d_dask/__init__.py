"""pystack3d-dask: PyStack3D's corrections of 3D image stacks, out of core on Dask and Zarr.

Python API::

    import pystack3d_dask as p3d
    result = p3d.run("workflow.toml")          # ingest + every step, checkpointed
    stack = p3d.open_result(result.store)      # lazy xarray DataArray (channel, z, y, x)
    flat = p3d.steps.bkg_removal(stack, dim=2, orders=[2, 2])   # any step, lazily
    flat = p3d.checkpoint(flat, result.store, "flat")           # written, resumable
"""

from typing import Any

from ._version import __version__
from .errors import ConfigError, InputError, NotAvailableError, Pystack3dDaskError, StoreError

_LAZY = {"checkpoint": "workflow.checkpointing", "Workflow": "workflow.config",
         "load_workflow": "workflow.config", "RunResult": "workflow.pipeline",
         "open_result": "workflow.pipeline", "run": "workflow.pipeline"}


def __getattr__(name: str) -> Any:
    # imported on first use: a process that only needs a kernel (the registration pool's
    # workers) does not load dask, xarray and zarr
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name == "steps":
        return importlib.import_module(".steps", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ConfigError",
    "InputError",
    "NotAvailableError",
    "Pystack3dDaskError",
    "RunResult",
    "StoreError",
    "Workflow",
    "__version__",
    "checkpoint",
    "load_workflow",
    "open_result",
    "run",
    "steps",
]
