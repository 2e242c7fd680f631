"""The package's messages go through one logger, ``pystack3d_dask``.

Applications and notebooks configure it like any other (``logging.getLogger(
"pystack3d_dask").setLevel(...)``). A run with progress on makes sure its INFO messages
are seen: when neither this logger nor the root logger has a handler (a plain script, a
notebook, the command), it adds one that writes them to stderr, as the command always
did.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER", "show_messages"]

LOGGER = logging.getLogger("pystack3d_dask")


class _Stderr(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment: a notebook or a test may have
    replaced it since the handler was made."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def show_messages() -> None:
    """Write the package's INFO messages to stderr unless logging is configured."""
    if LOGGER.handlers or logging.getLogger().handlers:
        return
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOGGER.addHandler(handler)
    if LOGGER.level == logging.NOTSET:
        LOGGER.setLevel(logging.INFO)
