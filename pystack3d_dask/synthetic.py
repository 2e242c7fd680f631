"""Kept for the imports the README and notebooks show.

This name is :mod:`pystack3d_dask.datasets.synthetic`; both are one module."""

import sys

from .datasets import synthetic as _module

sys.modules[__name__] = _module
