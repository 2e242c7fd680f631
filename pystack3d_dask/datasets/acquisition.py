"""The synthetic acquisition: the material, then the defects, slice by slice.

:func:`acquire` is the engine behind :func:`.synthetic.generate`: it gives every
defect its own random stream, lets the defects draw their choices for the stack, builds
the material (in a frame enlarged by the drift's hidden margin) and acquires each kept
slice through the defects' stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .defects import Acquisition, Defect
from .defects.base import STAGES, STRUCTURE_STREAM
from .material import cast, porous_volume
from .results import Synthetic

__all__ = ["acquire"]


def acquire(shape: tuple[int, int, int], seed: int | None, dz: float, dtype: np.dtype,
            defects: Sequence[Defect], options: dict[str, Any]) -> Synthetic:
    """Acquire a synthetic stack with checked arguments.

    Parameters
    ----------
    shape : tuple of 3 int
        ``(nz, ny, nx)``.
    seed : int or None
        Seed of every random stream.
    dz : float
        Slice spacing in micrometres.
    dtype : numpy.dtype
        Output dtype.
    defects : sequence of Defect
        One checked defect of each type (switched off or on), each with its own stream.
    options : dict
        The generation options, for the record.

    Returns
    -------
    Synthetic
        The truth, the acquired stack and the defect metadata.
    """
    n_streams = max(STRUCTURE_STREAM, *(d.stream for d in defects)) + 1
    # One independent stream per concern, so toggling a defect changes nothing else;
    # spawned children depend on their index only, so a new defect's stream leaves the
    # others unchanged.
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n_streams)]
    acq = Acquisition(shape, dtype)
    for defect in sorted(defects, key=lambda d: d.draw_rank):
        defect.draw(acq, rngs[defect.stream])

    nz, ny, nx = shape
    sample = porous_volume(rngs[STRUCTURE_STREAM], (nz, ny + 2 * acq.margin, nx + 2 * acq.margin))
    truth, stack = _acquire_slices(sample, acq, defects, rngs)
    del sample

    kept = acq.kept
    z_truth = np.arange(nz, dtype=np.float64) * dz
    top, bottom, left, right = acq.pad_widths
    return Synthetic(
        truth=truth, z_truth=z_truth, stack=stack, z=z_truth[kept], kept=kept,
        missing=acq.missing, shifts=acq.shifts[kept].copy(), jump_slice=acq.jump_slice,
        gain=acq.gain, curtains=acq.curtains, curtain_slices=kept[acq.curtains],
        valid_rows=slice(top, ny - bottom), valid_cols=slice(left, nx - right),
        valid_area=[left, nx - right, bottom, ny - top], pad_widths=acq.pad_widths,
        pad_value=acq.pad_value, bkg_coeffs=acq.bkg_coeffs, dz=dz, dtype=acq.dtype,
        data_range=acq.scale, seed=seed, options=options,
    )


def _acquire_slices(sample: np.ndarray, acq: Acquisition, defects: Sequence[Defect],
                    rngs: list[np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
    """The truth and the acquired stack, in the output dtype."""
    nz, ny, nx = acq.shape
    stages = {stage: sorted((d for d in defects if d.on and d.stage == stage),
                            key=lambda d: d.rank) for stage in STAGES}
    truth = np.empty((nz, ny, nx), dtype=acq.dtype)
    stack = np.empty((acq.n_kept, ny, nx), dtype=acq.dtype)
    m = acq.margin
    inner = (slice(m, m + ny), slice(m, m + nx))
    pos = {int(k): i for i, k in enumerate(acq.kept)}
    for k in range(nz):
        # float64 on both paths so that, with every defect off, acquisition and truth go
        # through identical arithmetic and compare equal.
        clean = sample[k].astype(np.float64)
        truth[k] = cast(clean[inner] * acq.scale, acq.dtype)
        i = pos.get(k)
        if i is None:
            continue
        img = clean
        for defect in stages["sample"]:
            img = defect.apply(img, acq, rngs[defect.stream], i)
        img = img[inner]
        for defect in stages["frame"]:
            img = defect.apply(img, acq, rngs[defect.stream], i)
        img = img * acq.scale
        for defect in stages["output"]:
            img = defect.apply(img, acq, rngs[defect.stream], i)
        stack[i] = cast(img, acq.dtype)
    return truth, stack
