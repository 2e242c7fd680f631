"""pystack3d-dask: PyStack3D's corrections of 3D image stacks, out of core on Dask and Zarr.

Python API::

    import pystack3d_dask as p3d
    result = p3d.run("workflow.toml")          # ingest + every step, checkpointed
    stack = p3d.open_result(result.store)      # lazy xarray DataArray (channel, z, y, x)
"""

from ._version import __version__
from .config import Workflow, load_workflow
from .errors import ConfigError, InputError, NotAvailableError, Pystack3dDaskError, StoreError
from .pipeline import RunResult, open_result, run

__all__ = [
    "ConfigError",
    "InputError",
    "NotAvailableError",
    "Pystack3dDaskError",
    "RunResult",
    "StoreError",
    "Workflow",
    "__version__",
    "load_workflow",
    "open_result",
    "run",
]
