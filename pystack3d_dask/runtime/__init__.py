"""Where the graph runs: executors and clusters, jobqueue, the process pool, heap, faults, logs.

Imports nothing of the package above :mod:`pystack3d_dask.errors` and the kernels.
"""
