"""What every synthetic defect is: its parameters, its check, its draws, its action.

A defect is a frozen dataclass of parameters. :meth:`Defect.check` validates them,
:meth:`Defect.draw` makes the defect's random choices for the whole stack (which slices,
which factors) and records them on the shared :class:`Acquisition`, and
:meth:`Defect.apply` acts on one acquired slice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..material import data_range

__all__ = ["Acquisition", "Defect"]

#: Index of the material's random stream; the defects use the indices after it.
STRUCTURE_STREAM = 0

#: Stages of one slice's acquisition, in order. ``sample``: on the sample face, in the
#: frame enlarged by the drift margin, before the crop to the detector frame; ``frame``:
#: in the detector frame, in fractions of the data range; ``output``: in output units,
#: just before the cast. ``none``: the defect acts through its draws only.
STAGES: tuple[str, ...] = ("sample", "frame", "output")


@dataclass
class Acquisition:
    """The acquisition of one stack, as the defects' draws shape it.

    Starts as an acquisition without defects (every slice kept, no drift, gain 1, no
    curtains, no background, no border); each defect's :meth:`Defect.draw` records its
    own choices here, and the per-slice :meth:`Defect.apply` reads them back.

    Parameters
    ----------
    shape : tuple of 3 int
        ``(nz, ny, nx)`` of the truth and of the detector frame.
    dtype : numpy.dtype
        Output dtype.

    Attributes
    ----------
    kept, missing : numpy.ndarray
        Original indices (int64) of the acquired and of the dropped slices.
    margin : int
        Hidden border (pixels per side) around the detector frame, which the drift
        brings into view.
    shifts : numpy.ndarray
        ``(nz, 2)`` drift ``(dy, dx)`` of every original slice, in pixels.
    jump_slice : int or None
        Original index from which the drift jump applies.
    gain : numpy.ndarray
        Gain of each acquired slice.
    curtains : numpy.ndarray
        Boolean mask of the acquired slices carrying curtains.
    bkg_coeffs : dict
        Background polynomial in output units (see :func:`.frame.background_field`).
    pad_widths : tuple of 4 int
        Border widths ``(top, bottom, left, right)``.
    pad_value : float
        Border value in output units, as cast.
    drawn : dict
        Private draws of a defect that only its own :meth:`Defect.apply` reads, by
        defect name.
    """

    shape: tuple[int, int, int]
    dtype: np.dtype
    kept: np.ndarray = field(init=False, repr=False)
    missing: np.ndarray = field(init=False, repr=False)
    margin: int = field(init=False, default=0)
    shifts: np.ndarray = field(init=False, repr=False)
    jump_slice: int | None = field(init=False, default=None)
    gain: np.ndarray = field(init=False, repr=False)
    curtains: np.ndarray = field(init=False, repr=False)
    bkg_coeffs: dict[str, float] = field(init=False, default_factory=dict)
    pad_widths: tuple[int, int, int, int] = field(init=False, default=(0, 0, 0, 0))
    pad_value: float = field(init=False, default=0.0)
    drawn: dict[str, Any] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.dtype = np.dtype(self.dtype)
        nz = self.shape[0]
        self.kept = np.arange(nz, dtype=np.int64)
        self.missing = np.empty(0, dtype=np.int64)
        self.shifts = np.zeros((nz, 2))
        self.gain = np.ones(nz)
        self.curtains = np.zeros(nz, dtype=bool)

    @property
    def scale(self) -> float:
        """Full intensity range of the output dtype (1.0 for floats)."""
        return data_range(self.dtype)

    @property
    def n_kept(self) -> int:
        """Number of acquired slices."""
        return int(self.kept.size)


@dataclass(frozen=True, kw_only=True)
class Defect:
    """One defect of a synthetic acquisition: its parameters and how it acts.

    Subclasses are frozen dataclasses whose fields are the defect's parameters, and set
    the class attributes below. A defect switched off (``on=False``) is still checked
    and recorded, and its draws still run: they record the defect-free values, and
    some shape the acquisition all the same (the drift's sets the hidden margin).

    Parameters
    ----------
    on : bool
        Whether the defect is acquired.
    """

    on: bool = True

    #: Name of the defect: its switch keyword of :func:`.synthetic.generate`.
    name: ClassVar[str]
    #: Index of its random stream among ``SeedSequence(seed).spawn(n)``; one stream per
    #: defect, so switching one off leaves the others' draws unchanged.
    stream: ClassVar[int]
    #: Stage of a slice's acquisition it acts in (see :data:`STAGES`), and its rank there.
    stage: ClassVar[str] = "none"
    rank: ClassVar[int] = 0
    #: Order of the draws: lower first (what the others' draws depend on).
    draw_rank: ClassVar[int] = 2
    #: Keyword of :func:`.synthetic.generate` for each parameter field.
    keywords: ClassVar[dict[str, str]] = {}

    def check(self) -> Defect:
        """Validate the parameters.

        Returns
        -------
        Defect
            A copy with the parameters normalised (numbers as ``float``, counts as
            ``int``).

        Raises
        ------
        InputError
            On a bad parameter; the message names its keyword.
        """
        return self

    def draw(self, acq: Acquisition, rng: np.random.Generator) -> None:
        """Make the defect's random choices for the stack and record them on ``acq``.

        Parameters
        ----------
        acq : Acquisition
            The acquisition being drawn.
        rng : numpy.random.Generator
            The defect's own random stream.
        """

    def apply(self, img: np.ndarray, acq: Acquisition, rng: np.random.Generator,
              i: int) -> np.ndarray:
        """Act on acquired slice ``i`` (called only when :attr:`on`).

        Parameters
        ----------
        img : numpy.ndarray
            float64 slice at the defect's :attr:`stage`; it may be changed in place.
        acq : Acquisition
            The drawn acquisition.
        rng : numpy.random.Generator
            The defect's own random stream (per-slice draws follow the slice order).
        i : int
            Index of the slice among the acquired ones (``acq.kept[i]`` is its
            original index).

        Returns
        -------
        numpy.ndarray
            The slice with the defect.
        """
        return img

    def record(self) -> dict[str, Any]:
        """The parameters by their :func:`.synthetic.generate` keyword, for the record."""
        return {key: getattr(self, name) for key, name in self.keywords.items()}

    @classmethod
    def from_keywords(cls, values: dict[str, Any]) -> Defect:
        """The defect from the keywords of :func:`.synthetic.generate`.

        Parameters
        ----------
        values : dict
            The switch (``values[cls.name]``) and the parameters, by keyword.

        Returns
        -------
        Defect
            Not yet checked.
        """
        return cls(on=values[cls.name], **{name: values[key] for key, name in cls.keywords.items()})

    @classmethod
    def keyword_defaults(cls) -> dict[str, Any]:
        """The switch (on) and the default parameters, by keyword."""
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        return {cls.name: True, **{key: fields[name] for key, name in cls.keywords.items()}}
