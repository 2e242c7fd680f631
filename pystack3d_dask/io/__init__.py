"""Input and output: TIFF ingest, the Zarr store, export."""
