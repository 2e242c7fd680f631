"""``checkpoint(stack, store, name)``: a stack composed in Python, written and reopened.

The Python API's counterpart of a run's checkpoints: the stack (or a step's
``outputs=True`` Dataset) is written as a group of a Zarr store, one slice per chunk, on
dask's active scheduler (a notebook's distributed Client when there is one), and the
group is reopened lazily. A second call with the same graph reuses the group; a call
interrupted half-way resumes where it stopped.
"""

from __future__ import annotations

import re
from pathlib import Path

import dask.base
import xarray as xr

from ..errors import ConfigError
from ..store.checkpoints import INPUT_GROUP, Store
from ..store.write import StepOutput

__all__ = ["checkpoint"]

_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name.split("/"):
        raise ConfigError(f"checkpoint name {name!r}: expected a group path of letters, "
                          "digits, '_', '-', '.' and '/', such as 'flat' or 'notebook/flat'")
    if name == INPUT_GROUP or name.split("/")[0] == "steps":
        raise ConfigError(f"checkpoint name {name!r} is a run's own group ('input', "
                          "'steps/...'): choose another name")


def checkpoint(stack: xr.DataArray | xr.Dataset, store: str | Path, name: str
               ) -> xr.DataArray | xr.Dataset:
    """Write a lazy stack as group ``name`` of a Zarr store and return it reopened.

    Parameters
    ----------
    stack
        (channel, z, y, x) DataArray, or a step's ``outputs=True`` Dataset (its
        ``stack`` variable and the arrays beside it).
    store
        Zarr store path: a run's store or a new one.
    name
        Group path in the store, such as ``"flat"``; not ``input`` nor ``steps/...``,
        which belong to runs.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The group reopened lazily, in the type given.

    Notes
    -----
    The group's fingerprint is dask's token of the graph: the same lazy stack written
    again is reused without computing, a changed one replaces the group, and a write
    that was interrupted resumes with the slices not yet on disk.
    """
    _check_name(name)
    if isinstance(stack, xr.Dataset):
        if "stack" not in stack:
            raise ConfigError("checkpoint: a Dataset needs a 'stack' variable (a step's "
                              "outputs=True Dataset has one)")
        data, extras = stack["stack"], {k: v for k, v in stack.data_vars.items() if k != "stack"}
    elif isinstance(stack, xr.DataArray):
        data, extras = stack, {}
    else:
        raise ConfigError(f"checkpoint: expected an xarray DataArray or Dataset, got "
                          f"{type(stack).__name__}")
    if data.dims != ("channel", "z", "y", "x"):
        raise ConfigError(f"checkpoint: the stack's dims are {data.dims}, expected "
                          "(channel, z, y, x)")
    st = Store(store)
    fingerprint = dask.base.tokenize(stack)
    st.write(name, StepOutput(data, extras), fingerprint, {"step": name, "checkpoint": True})
    if isinstance(stack, xr.Dataset):
        return st.open_dataset(name).assign(stack=st.open_stack(name))
    return st.open_stack(name)
