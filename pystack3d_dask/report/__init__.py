"""The report: figures per step (plots, cut sections), the HTML page, and their cache.

Reads the store, never recomputes a step. Imports store and datasets (for scores against
a ground truth); matplotlib and bokeh load only when a figure is drawn.
"""

from typing import Any

_LAZY = {"write_report": "figures", "default_report_dir": "figures",
         "write_html_report": "html", "step_figures": "plots", "draw_sections": "sections",
         "cut_planes": "sections"}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
