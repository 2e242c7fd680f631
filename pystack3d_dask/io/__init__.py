"""Formats in and out: TIFF, Zeiss and array inputs (Zarr, OME-Zarr, N5, HDF5, MRC), the
input identity check, TIFF export, OME-Zarr.

Imports the kernels and the store; never the workflow, the runtime or the report.
"""
