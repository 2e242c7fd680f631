"""Kept for the imports the README and notebooks show.

This name is :mod:`pystack3d_dask.datasets.quality`; both are one module."""

import sys

from .datasets import quality as _module

sys.modules[__name__] = _module
