"""Pure functions on numpy arrays: one slice, one profile, one matrix. No dask, no I/O."""
