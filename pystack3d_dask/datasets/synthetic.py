"""Synthetic FIB-SEM-like stacks whose defect-free ground truth is known.

:func:`generate` builds a porous material (matrix, dark pores, bright particles) as a
smooth 3D field, keeps it as the truth, then "acquires" it slice by slice with one
defect per correction step of PyStack3D:

=================  =================================================  ===================
defect             model                                               aimed at
=================  =================================================  ===================
padding            constant dark border around the sample region      ``cropping``
background         additive 3D polynomial (x, y, y², z, x·z)           ``bkg_removal``
gain               blocks of slices multiplied by a factor             ``intensity_rescaling``
drift              sub-pixel random walk in (y, x) plus one jump       ``registration_*``
curtains           vertical stripes on a subset of the slices         ``destriping``
missing            a few slices dropped, so z is not uniform           ``resampling``
noise              Gaussian plus signal-dependent (shot-like) noise   (all)
=================  =================================================  ===================

Each defect is a small class of :mod:`pystack3d_dask.datasets.defects` (``Padding``,
``Background``, ``Gain``, ``Drift``, ``Curtains``, ``Missing``, ``Noise``) holding its
parameters; ``generate(shape, defects=[...])`` takes them directly, and the keywords of
:func:`generate` build them.

The acquisition order follows the physics: curtains are milled into the sample face and
so move with it (added before the drift), while the background, the gain, the noise and
the padding belong to the detector frame (applied after it).

:func:`write_synthetic` writes the acquired slices as PyStack3D-named TIFF files, the
truth as a Zarr v3 store and a PyStack3D workflow file that corrects the stack.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..workflow.profiles import DEFAULT_PROFILE
from .acquisition import acquire
from .checks import check_dtype, check_seed, check_shape, positive_float
from .defects import Defect, complete_defects, defects_from_keywords, keyword_defaults
from .results import Synthetic, SyntheticFiles
from .results import slice_filename as slice_filename  # kept importable from here
from .truth_store import load_truth, truth_dataset
from .workflow_file import STEPS
from .workflow_file import workflow_toml as workflow_toml  # kept importable from here

__all__ = [
    "STEPS",
    "Synthetic",
    "SyntheticFiles",
    "generate",
    "load_truth",
    "write_synthetic",
]

def generate(
    shape: tuple[int, int, int] = (200, 300, 340),
    seed: int | None = 0,
    dz: float = 0.01,
    dtype: str | np.dtype = "uint8",
    *,
    defects: Sequence[Defect] | None = None,
    padding: bool = True, background: bool = True, gain: bool = True, drift: bool = True,
    curtains: bool = True, missing: bool = True, noise: bool = True,
    pad_widths: tuple[int, int, int, int] | None = None, pad_value: float = 0.03,
    bkg_amplitude: float = 0.1,
    gain_range: tuple[float, float] = (0.85, 1.2), n_gain_jumps: int = 3,
    drift_step: float = 0.25, drift_jump: tuple[float, float] = (4.0, -6.0),
    curtain_fraction: float = 0.35, curtain_amplitude: float = 0.08, n_curtains: int = 12,
    missing_fraction: float = 0.07,
    noise_sigma: float = 0.02, shot_noise: float = 0.03,
) -> Synthetic:
    """Generate a synthetic FIB-SEM stack and its ground truth.

    Each defect draws from its own random stream, so switching one off leaves the
    others (and the truth) unchanged. The truth depends only on ``shape``, ``seed``,
    ``dz`` and the drift magnitude (which sets the hidden margin the drift brings into
    view).

    Parameters
    ----------
    shape : tuple of 3 int
        ``(nz, ny, nx)`` of the truth and of the acquired frame.
    seed : int or None
        Seed of every random draw.
    dz : float
        Slice spacing in micrometres; the truth lies at ``arange(nz) * dz``.
    dtype : str or numpy.dtype
        Output dtype: an integer type (values in ``[0, max]``) or a float type
        (values in ``[0, 1]``).
    defects : sequence of Defect, optional
        The defects to acquire (:mod:`pystack3d_dask.datasets.defects`); the types left
        out are off. Given, the defect keywords below must keep their defaults.
    padding, background, gain, drift, curtains, missing, noise : bool
        Switch each defect on or off.
    pad_widths, pad_value
        :class:`~.defects.Padding` ``widths`` and ``value`` (fraction of the range).
    bkg_amplitude
        :class:`~.defects.Background` ``amplitude``.
    gain_range, n_gain_jumps
        :class:`~.defects.Gain` ``factor_range`` and ``n_jumps``.
    drift_step, drift_jump
        :class:`~.defects.Drift` ``step`` and ``jump``.
    curtain_fraction, curtain_amplitude, n_curtains
        :class:`~.defects.Curtains` ``fraction``, ``amplitude`` and ``count``.
    missing_fraction
        :class:`~.defects.Missing` ``fraction``.
    noise_sigma, shot_noise
        :class:`~.defects.Noise` ``sigma`` and ``shot``.

    Returns
    -------
    Synthetic
        The truth, the acquired stack and the defect metadata.

    Raises
    ------
    InputError
        On a bad argument.
    """
    keywords = {
        "padding": padding, "background": background, "gain": gain, "drift": drift,
        "curtains": curtains, "missing": missing, "noise": noise,
        "pad_widths": pad_widths, "pad_value": pad_value, "bkg_amplitude": bkg_amplitude,
        "gain_range": gain_range, "n_gain_jumps": n_gain_jumps, "drift_step": drift_step,
        "drift_jump": drift_jump, "curtain_fraction": curtain_fraction,
        "curtain_amplitude": curtain_amplitude, "n_curtains": n_curtains,
        "missing_fraction": missing_fraction, "noise_sigma": noise_sigma,
        "shot_noise": shot_noise,
    }
    return _generate(shape, seed, dz, dtype, _defects(defects, keywords))


def _defects(defects: Sequence[Defect] | None, keywords: dict[str, Any]) -> Sequence[Defect]:
    """The defects given, or those the keywords build; refuse both at once."""
    if defects is None:
        return defects_from_keywords(keywords)
    given = [k for k, v in keyword_defaults().items() if not _equal(keywords[k], v)]
    if given:
        raise InputError("give the defects either as defects=[...] or as keywords, not "
                         f"both; got defects and {', '.join(given)}")
    return defects


def _generate(shape: Any, seed: Any, dz: Any, dtype: Any,
              defects: Sequence[Defect]) -> Synthetic:
    """Check the arguments, record them and acquire the stack."""
    shape = check_shape(shape)
    out_dtype = check_dtype(dtype)
    dz = positive_float("dz", dz)
    seed = check_seed(seed)
    checked = [d.check() for d in complete_defects(defects)]
    options = {"shape": shape, "seed": seed, "dz": dz, "dtype": out_dtype.name,
               **{d.name: d.on for d in checked}}
    for defect in checked:
        options.update(defect.record())
    return acquire(shape, seed, dz, out_dtype, checked, options)


def _equal(a: Any, b: Any) -> bool:
    """``a == b`` as one bool; False where the comparison is not a plain truth value."""
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------ writing


def write_synthetic(
    out_dir: str | Path,
    shape: tuple[int, int, int] = (200, 300, 340),
    seed: int | None = 0,
    *,
    overwrite: bool = False,
    profile: str = DEFAULT_PROFILE,
    **kwargs: Any,
) -> SyntheticFiles:
    """Generate a synthetic stack and write it as a PyStack3D project plus its truth.

    Layout of ``out_dir``:

    * ``slices/slice_{k:04d}_z={z:.4f}um.tif``: the acquired slices, one single-page
      TIFF each, ``k`` being the original index (so dropped slices leave gaps);
    * ``truth.zarr``: Zarr v3 store of an xarray Dataset: ``truth`` (z, y, x) restricted
      to the valid (non-padded) region, with z in micrometres and y, x the pixel indices
      of the full frame; the defect metadata as variables over the acquired slices
      (dim ``slice``: ``kept``, ``z_acquired``, ``shift_y``, ``shift_x``, ``gain``,
      ``curtains``) and as attributes;
    * ``workflow.toml``: a PyStack3D workflow with every correction step.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        Output folder; created if needed, must be empty unless ``overwrite``.
    shape, seed
        See :func:`generate`.
    overwrite : bool
        Allow a non-empty ``out_dir``: the ``slices`` folder, ``truth.zarr`` and
        ``workflow.toml`` there are replaced; other files are left alone.
    profile : str
        Profile of the workflow file (see :func:`workflow_toml`).
    **kwargs
        Passed to :func:`generate` (``dz``, ``dtype``, ``defects`` or the defect switches
        and strengths).

    Returns
    -------
    SyntheticFiles
        The written paths and the generated data.

    Raises
    ------
    InputError
        If ``out_dir`` is a file, or is not empty and ``overwrite`` is false, or on a
        bad generation argument.
    """
    import tifffile

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"out_dir must be a folder, got the file {out}")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"out_dir {out} is not empty; pass overwrite=True to write into it")

    syn = generate(shape=shape, seed=seed, **kwargs)

    slices_dir = out / "slices"
    truth_path = out / "truth.zarr"
    workflow_path = out / "workflow.toml"
    for old in (slices_dir, truth_path):
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    slices_dir.mkdir(parents=True)

    paths = []
    for img, name in zip(syn.stack, syn.filenames, strict=True):
        path = slices_dir / name
        tifffile.imwrite(path, img)
        paths.append(path)

    truth_dataset(syn).to_zarr(truth_path, mode="w", zarr_format=3, consolidated=False)
    workflow_path.write_text(workflow_toml(syn, profile=profile), encoding="utf-8")
    return SyntheticFiles(out_dir=out, slices_dir=slices_dir, slice_paths=paths,
                          truth=truth_path, workflow=workflow_path, synthetic=syn)
