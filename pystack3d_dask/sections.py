"""Kept for the imports the README and notebooks show.

This name is :mod:`pystack3d_dask.report.sections`; both are one module."""

import sys

from .report import sections as _module

sys.modules[__name__] = _module
