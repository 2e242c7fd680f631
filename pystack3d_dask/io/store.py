"""Kept for the imports the README and notebooks show.

This name is :mod:`pystack3d_dask.store`; both are one module."""

import sys

from .. import store as _module

sys.modules[__name__] = _module
