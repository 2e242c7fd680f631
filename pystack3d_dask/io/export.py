"""Export a step of the store as TIFF slices, named as PyStack3D names them."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import tifffile
import xarray as xr

from ..errors import StoreError

__all__ = ["export_tiff", "slice_name"]


def slice_name(index: int, z: float) -> str:
    """``slice_0042_z=0.4200um.tif``: PyStack3D's file-name policy."""
    return f"slice_{index:04d}_z={z:.4f}um.tif"


def _write_slice(block: np.ndarray, path: str) -> str:
    tifffile.imwrite(path, np.asarray(block)[0, 0])
    return path


def export_tiff(stack: xr.DataArray, out: str | Path, overwrite: bool = False,
                compute=None) -> list[Path]:
    """Write every slice of a (channel, z, y, x) stack as a single-page TIFF.

    Parameters
    ----------
    stack
        Lazy stack, e.g. from :func:`pystack3d_dask.open_result`.
    out
        Output folder: one sub-folder per channel (channel ``"."`` writes into ``out``
        itself, as PyStack3D's ``channels = ["."]``), slices named
        ``slice_XXXX_z=Z.ZZZZum.tif`` so that the folder can be read back as input.
    overwrite
        Allow writing into folders that already hold TIFF files.
    compute
        ``compute(delayed_list)``; default ``dask.compute``.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StoreError(f"export target {out} is a file; expected a folder")
    zs = stack["z"].values
    blocks = stack.data.rechunk((1, 1, *stack.shape[2:])).to_delayed()
    tasks = []
    for c, channel in enumerate(stack["channel"].values):
        folder = out / str(channel)
        if folder.exists() and any(folder.glob("*.tif")) and not overwrite:
            raise StoreError(f"{folder} already holds .tif files; choose an empty folder or "
                             "pass --overwrite")
        folder.mkdir(parents=True, exist_ok=True)
        write = dask.delayed(_write_slice, pure=False)
        tasks += [write(blocks[c, k, 0, 0], str(folder / slice_name(k, float(z))))
                  for k, z in enumerate(zs)]
    results = (compute or (lambda t: dask.compute(*t)))(tasks)
    return [Path(p) for p in results]
