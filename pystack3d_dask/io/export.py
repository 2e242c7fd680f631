"""Export a step of the store as TIFF slices, named as PyStack3D names them.

An export never loses a user's file: each folder it writes into gets a record of the
files written (:data:`RECORD`); a folder holding anything else, or the store's own
input folder, is refused, even with ``overwrite``, which replaces a previous export of
this package whole (every file it recorded removed first, so no stale slice is left).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import dask
import numpy as np
import tifffile
import xarray as xr

from ..errors import StoreError
from .tiff import slice_folders

__all__ = ["RECORD", "check_export_target", "export_tiff", "protected_paths", "same_path",
           "slice_name"]

#: The file, in each folder an export writes, that lists what it wrote.
RECORD = ".pystack3d-dask-export.json"


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
        Replace a previous export of this package in the same folders (every file it
        wrote). A folder holding any other file, the store's input folders and the store
        itself are refused whatever ``overwrite`` says.
    compute
        ``compute(delayed_list)``; default ``dask.compute``.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    StoreError
        From :func:`check_export_target`, before anything is written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StoreError(f"export target {out} is a file; expected a folder")
    zs = stack["z"].values
    protected = protected_paths(stack)
    plan = {}
    for channel in stack["channel"].values:
        folder = out / str(channel)
        plan[folder] = [slice_name(k, float(z)) for k, z in enumerate(zs)]
        check_export_target(folder, overwrite, protected)
    blocks = stack.data.rechunk((1, 1, *stack.shape[2:])).to_delayed()
    tasks = []
    write = dask.delayed(_write_slice, pure=False)
    for c, (folder, names) in enumerate(plan.items()):
        _clear_previous(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # the record first: an export cut short is still known as one, and replaceable
        (folder / RECORD).write_text(json.dumps(
            {"store": stack.attrs.get("store"), "group": stack.attrs.get("group"),
             "files": names}, indent=1), encoding="utf-8")
        tasks += [write(blocks[c, k, 0, 0], str(folder / name)) for k, name in enumerate(names)]
    results = (compute or (lambda t: dask.compute(*t)))(tasks)
    return [Path(p) for p in results]


def protected_paths(stack: xr.DataArray) -> list[Path]:
    """The store of ``stack``, its input's root and the folders its slices were read
    from."""
    path = stack.attrs.get("store")
    if not path:
        return []
    from ..store.checkpoints import INPUT_GROUP, Store
    from ..store.location import is_url

    if is_url(path):  # a store on object storage: no local folder of it to protect
        return []

    try:
        source = (Store(path, create=False).attrs(INPUT_GROUP) or {}).get("source") or {}
    except StoreError:
        source = {}
    if not source.get("root"):
        return [Path(path)]
    root = Path(source["root"])
    return [Path(path), root, *slice_folders(root, source.get("channels") or ["."])]


def same_path(a: Path, b: Path) -> bool:
    """Whether both exist and are the same file or folder (links and spellings aside)."""
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def check_export_target(folder: Path, overwrite: bool, protected: Iterable[Path] = ()) -> None:
    """Refuse to write an export into ``folder`` where a file would be lost.

    Parameters
    ----------
    folder
        A folder the export writes slices into (it may not exist yet).
    overwrite
        Whether a previous export of this package there may be replaced.
    protected
        The store and its input folders: never written into.

    Raises
    ------
    StoreError
        When ``folder`` is (or is inside) a protected path, holds files that no export
        of this package wrote (naming some), or holds a previous export and
        ``overwrite`` is false.
    """
    folder = Path(folder)
    for path in protected:
        if same_path(folder, path):
            raise StoreError(f"export target {folder} is the store's own input folder or "
                             f"the store itself ({path}): its files would be replaced; "
                             "choose another folder")
        if (path / "zarr.json").is_file() and _inside(folder, path):  # within a store
            raise StoreError(f"export target {folder} is inside the store {path}; choose a "
                             "folder outside it")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise StoreError(f"export target {folder} is a file; expected a folder")
    recorded = _recorded(folder)
    foreign = sorted(p.name for p in folder.iterdir()
                     if p.name != RECORD and p.name not in recorded)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        raise StoreError(f"export target {folder} holds files that no export of "
                         f"pystack3d-dask wrote ({shown}); nothing is written there, even "
                         "with --overwrite: choose an empty or new folder")
    if recorded and not overwrite:
        raise StoreError(f"export target {folder} holds a previous export; pass --overwrite "
                         "to replace it (all of it) or choose another folder")


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def _recorded(folder: Path) -> set[str]:
    """The files a previous export recorded in ``folder`` (none: empty)."""
    record = folder / RECORD
    if not record.is_file():
        return set()
    try:
        files = json.loads(record.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError) as exc:
        raise StoreError(f"{record} is not an export record pystack3d-dask can read ({exc}); "
                         "remove the folder's files yourself or choose another folder"
                         ) from None
    return {str(f) for f in files if "/" not in str(f) and "\\" not in str(f)}


def _clear_previous(folder: Path) -> None:
    """Remove every file a previous export recorded in ``folder``, then its record."""
    for name in _recorded(folder):
        (folder / name).unlink(missing_ok=True)
    (folder / RECORD).unlink(missing_ok=True)
