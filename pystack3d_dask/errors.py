"""Exceptions raised for bad input, so that callers can tell them from bugs."""

from __future__ import annotations

import difflib

__all__ = [
    "ConfigError",
    "InputError",
    "NotAvailableError",
    "Pystack3dDaskError",
    "StoreError",
    "suggest",
]


class Pystack3dDaskError(Exception):
    """Base class of every error this package raises on purpose.

    The command line prints these as one message without a traceback.
    """


class ConfigError(Pystack3dDaskError, ValueError):
    """A workflow file or parameter is invalid (unknown key, wrong type, bad value)."""


class InputError(Pystack3dDaskError, ValueError):
    """Input images are missing, unreadable or inconsistent."""


class StoreError(Pystack3dDaskError):
    """The Zarr store cannot be used as asked (another input, wrong layout, ...)."""


class NotAvailableError(Pystack3dDaskError, NotImplementedError):
    """A PyStack3D step that this package does not implement yet."""


def suggest(name: str, valid: list[str] | tuple[str, ...]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the nearest valid name, or ``""``."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""
