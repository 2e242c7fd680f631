"""Is this process a Jupyter kernel? (progress bars and figures behave accordingly)"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["kernel_shell"]


def kernel_shell() -> Any:
    """The IPython shell of a Jupyter kernel running this process, else None (a plain
    interpreter, a terminal IPython). IPython is not imported to find out."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell if getattr(shell, "kernel", None) is not None else None
