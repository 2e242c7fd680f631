"""The Zarr store: checkpoint states, the write path, xarray metadata, chunk I/O, the lock.

Imports the kernels only (and :mod:`pystack3d_dask.errors`).
"""

from .checkpoints import (
    CHUNK_KEY_ENCODING,
    CUT_NAMES,
    INPUT_GROUP,
    LAYOUT_VERSION,
    Store,
    WriteReport,
    make_compressors,
    to_json,
)

__all__ = ["CHUNK_KEY_ENCODING", "CUT_NAMES", "INPUT_GROUP", "LAYOUT_VERSION", "Store",
           "WriteReport", "make_compressors", "to_json"]
