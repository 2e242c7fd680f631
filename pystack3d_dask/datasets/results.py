"""What the synthetic generator returns: the acquisition, its truth, the written paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.export import slice_name
from .defects import background_field

__all__ = ["Synthetic", "SyntheticFiles", "slice_filename"]


@dataclass
class Synthetic:
    """A synthetic acquisition and the ground truth it was made from.

    Per-acquired-slice arrays (``stack``, ``z``, ``kept``, ``shifts``, ``gain``,
    ``curtains``) have ``n_kept`` entries, aligned with each other; ``kept``,
    ``missing``, ``curtain_slices`` and ``jump_slice`` are *original* slice indices
    (indices into ``truth``). Intensities (``pad_value``, ``bkg_coeffs``) are in the
    units of the output dtype.

    Attributes
    ----------
    truth : numpy.ndarray
        Defect-free volume ``(nz, ny, nx)`` in the output dtype, on the full frame
        (the padded border included) and the uniform grid ``z_truth``.
    z_truth : numpy.ndarray
        ``arange(nz) * dz``, in micrometres.
    stack : numpy.ndarray
        Acquired slices ``(n_kept, ny, nx)`` in the output dtype.
    z : numpy.ndarray
        z positions of the acquired slices (``z_truth[kept]``).
    kept : numpy.ndarray
        Original indices of the acquired slices (increasing; first and last always kept).
    missing : numpy.ndarray
        Original indices of the dropped slices.
    shifts : numpy.ndarray
        ``(n_kept, 2)`` true drift ``(dy, dx)`` in pixels: ``stack[i]`` shows the
        sample moved by ``+dy`` rows and ``+dx`` columns
        (``scipy.ndimage.shift(truth[kept[i]], shifts[i])``), so registration must
        apply ``-shifts[i]``. ``shifts[0]`` is zero.
    jump_slice : int or None
        Original index from which the drift jump applies (None without drift).
    gain : numpy.ndarray
        Multiplicative gain of each acquired slice (1 outside the gain jumps).
    curtains : numpy.ndarray
        Boolean mask of the acquired slices carrying curtains.
    curtain_slices : numpy.ndarray
        Original indices of the slices carrying curtains.
    valid_rows, valid_cols : slice
        Sample (non-padded) region in array indices.
    valid_area : list of int
        The same region as a PyStack3D area ``[xmin, xmax, ymin, ymax]`` (pixels,
        origin at the bottom-left of the image).
    pad_widths : tuple of int
        Border widths ``(top, bottom, left, right)`` in pixels.
    pad_value : float
        Constant value of the border, in output units.
    bkg_coeffs : dict
        Background polynomial, in output units, over ``x``, ``y`` and ``z`` normalised to
        ``[-1, 1]``: x over the columns, y over the rows counted from the bottom
        (PyStack3D's convention), z over the original slice indices. See
        :meth:`background`.
    dz : float
        Slice spacing of the truth, in micrometres.
    dtype : numpy.dtype
        Output dtype.
    data_range : float
        Full intensity range of the output (dtype maximum; 1.0 for floats).
    seed : int or None
        Seed that was used.
    options : dict
        Every generation option, as resolved (for the record).
    """

    truth: np.ndarray = field(repr=False)
    z_truth: np.ndarray = field(repr=False)
    stack: np.ndarray = field(repr=False)
    z: np.ndarray = field(repr=False)
    kept: np.ndarray = field(repr=False)
    missing: np.ndarray
    shifts: np.ndarray = field(repr=False)
    jump_slice: int | None
    gain: np.ndarray = field(repr=False)
    curtains: np.ndarray = field(repr=False)
    curtain_slices: np.ndarray = field(repr=False)
    valid_rows: slice
    valid_cols: slice
    valid_area: list[int]
    pad_widths: tuple[int, int, int, int]
    pad_value: float
    bkg_coeffs: dict[str, float]
    dz: float
    dtype: np.dtype
    data_range: float
    seed: int | None
    options: dict[str, Any] = field(repr=False)

    @property
    def n_kept(self) -> int:
        """Number of acquired slices."""
        return int(self.stack.shape[0])

    @property
    def filenames(self) -> list[str]:
        """PyStack3D file names of the acquired slices (original index, 4-decimal z)."""
        return [slice_filename(int(k), float(z)) for k, z in zip(self.kept, self.z, strict=True)]

    def background(self, index: int) -> np.ndarray:
        """Background added to original slice ``index``, before the gain.

        Parameters
        ----------
        index : int
            Original slice index (0 to nz - 1).

        Returns
        -------
        numpy.ndarray
            ``(ny, nx)`` float64 field in output units (zero when the background defect
            was off).
        """
        nz, ny, nx = self.truth.shape
        if not 0 <= index < nz:
            raise InputError(f"index must be in [0, {nz - 1}], got {index}")
        return background_field(self.bkg_coeffs, index, nz, ny, nx)


@dataclass
class SyntheticFiles:
    """Paths written by :func:`.synthetic.write_synthetic`.

    Attributes
    ----------
    out_dir : pathlib.Path
        The output folder.
    slices_dir : pathlib.Path
        Folder of the acquired slices (``out_dir/slices``).
    slice_paths : list of pathlib.Path
        One TIFF file per acquired slice, in acquisition order.
    truth : pathlib.Path
        The truth Zarr store (``out_dir/truth.zarr``).
    workflow : pathlib.Path
        The PyStack3D workflow file (``out_dir/workflow.toml``).
    synthetic : Synthetic
        The in-memory data that was written.
    """

    out_dir: Path
    slices_dir: Path
    slice_paths: list[Path] = field(repr=False)
    truth: Path
    workflow: Path
    synthetic: Synthetic = field(repr=False)


slice_filename = slice_name  # PyStack3D's naming, shared with the TIFF export
