"""Formats in and out: TIFF and Zeiss inputs, the input identity check, TIFF export, OME-Zarr.

Imports the kernels and the store; never the workflow, the runtime or the report.
"""
