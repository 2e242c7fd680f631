"""The step registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import xarray as xr

from ..errors import ConfigError, NotAvailableError
from ..schema import PYSTACK3D_STEPS, suggest

__all__ = ["REGISTRY", "Step", "available_steps", "get_step", "register"]


@dataclass(frozen=True)
class Step:
    """A registered correction step.

    Attributes
    ----------
    name
        PyStack3D's name of the step (its table in the workflow file).
    func
        ``func(stack, **params) -> stack``: builds the lazy graph; computes nothing.
    kind
        ``"per-slice"`` (a map over slices) or ``"cross-slice"`` (a reduction first).
    doc
        One line for listings.
    """

    name: str
    func: Callable[..., xr.DataArray]
    kind: str
    doc: str = ""


REGISTRY: dict[str, Step] = {}


def register(step: Step) -> Step:
    """Add a step to the registry (its name must be a PyStack3D step name)."""
    if step.name not in PYSTACK3D_STEPS:
        raise ValueError(f"{step.name!r} is not a PyStack3D step name")
    REGISTRY[step.name] = step
    return step


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
