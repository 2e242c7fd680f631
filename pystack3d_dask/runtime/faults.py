"""Named points where a test can kill the running process, to prove that a crash there
loses nothing.

Set ``PYSTACK3D_DASK_FAULT`` to a glob over ``POINT:GROUP`` names, e.g.
``mark-complete:steps/02_*``: the process sends itself SIGKILL at the first point that
matches. The points are ``chunks-written`` (every slice of a group is on disk, its
statistics not yet), ``mark-complete`` (statistics written, ``complete`` not yet set)
and ``between-steps`` (a group complete, the next not started). Unset, a point costs
one dictionary lookup.
"""

from __future__ import annotations

import fnmatch
import os
import signal

__all__ = ["ENV", "fault_point"]

ENV = "PYSTACK3D_DASK_FAULT"


def fault_point(point: str, group: str) -> None:
    """Kill this process here if ``PYSTACK3D_DASK_FAULT`` matches ``point:group``."""
    spec = os.environ.get(ENV)
    if spec and fnmatch.fnmatchcase(f"{point}:{group}", spec):
        os.kill(os.getpid(), signal.SIGKILL)
