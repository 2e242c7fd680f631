"""The defects of a synthetic acquisition, one small class each.

Pass them to :func:`pystack3d_dask.datasets.synthetic.generate` as
``generate(shape, defects=[Padding(), Drift(step=0.5), Noise()], seed=0)``; a defect
left out of the list is switched off. The generator's keywords (``padding=``,
``drift_step=``, ...) build the same objects (:func:`defects_from_keywords`).

A new defect is one :class:`Defect` subclass with its own random stream (the next free
index): ``defects=[...]`` takes it as is. :data:`DEFECT_TYPES` lists the types the
generator's keywords build.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...errors import InputError
from .base import STRUCTURE_STREAM, Acquisition, Defect
from .frame import Background, Gain, Noise, Padding, background_field
from .sample import Curtains, Drift, Missing

__all__ = [
    "DEFECT_TYPES",
    "Acquisition",
    "Background",
    "Curtains",
    "Defect",
    "Drift",
    "Gain",
    "Missing",
    "Noise",
    "Padding",
    "background_field",
    "complete_defects",
    "defects_from_keywords",
    "keyword_defaults",
]

#: Every defect type, in the order of the generator's keywords (and of the record).
DEFECT_TYPES: tuple[type[Defect], ...] = (Padding, Background, Gain, Drift, Curtains,
                                          Missing, Noise)


def keyword_defaults() -> dict[str, Any]:
    """The generator's defect keywords (switches, then parameters) and their defaults."""
    defaults = [cls.keyword_defaults() for cls in DEFECT_TYPES]
    switches = {cls.name: True for cls in DEFECT_TYPES}
    return {**switches, **{k: v for d in defaults for k, v in d.items() if k not in switches}}


def defects_from_keywords(values: dict[str, Any]) -> list[Defect]:
    """One defect of each type, switched and set by the generator's keywords.

    Parameters
    ----------
    values : dict
        Every keyword of :func:`keyword_defaults`.

    Returns
    -------
    list of Defect
        In :data:`DEFECT_TYPES` order, not yet checked.
    """
    return [cls.from_keywords(values) for cls in DEFECT_TYPES]


def complete_defects(defects: Iterable[Defect]) -> list[Defect]:
    """The defects given, each type at most once, plus the missing types switched off.

    Every type takes part in the acquisition, so that a type left out draws its
    defect-free values (and the drift's default walk still sets the hidden margin).

    Parameters
    ----------
    defects : iterable of Defect
        The defects to acquire.

    Returns
    -------
    list of Defect
        The known types in :data:`DEFECT_TYPES` order, then any other type as given.

    Raises
    ------
    InputError
        If an item is not a :class:`Defect` or a type (or a random stream) comes twice.
    """
    if isinstance(defects, (Defect, str)) or not isinstance(defects, Iterable):
        raise InputError(f"defects must be a list of Defect objects, got {defects!r}")
    given: dict[type[Defect], Defect] = {}
    for item in defects:
        if not isinstance(item, Defect) or not hasattr(item, "stream"):
            raise InputError(f"defects must hold Defect objects (Padding(), Noise(), ...), "
                             f"got {item!r}")
        if type(item) in given:
            raise InputError(f"defects holds two {type(item).__name__} objects; give each "
                             "defect once")
        given[type(item)] = item
    known = [given.pop(cls, None) or cls(on=False) for cls in DEFECT_TYPES]
    out = known + list(given.values())
    streams = [d.stream for d in out]
    if len(set(streams)) != len(streams) or STRUCTURE_STREAM in streams:
        raise InputError(f"defects must each draw from their own random stream (not "
                         f"{STRUCTURE_STREAM}, the material's), got streams {streams}")
    return out
