"""Kept for the imports the README and notebooks show.

This name is :mod:`pystack3d_dask.report.plots`; both are one module."""

import sys

from .report import plots as _module

sys.modules[__name__] = _module
