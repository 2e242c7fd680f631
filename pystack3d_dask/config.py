"""Kept for the imports the README and notebooks show.

This name is :mod:`pystack3d_dask.workflow.config`; both are one module."""

import sys

from .workflow import config as _module

sys.modules[__name__] = _module
