"""``python -m pystack3d_dask``: the ``pystack3d-dask`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
