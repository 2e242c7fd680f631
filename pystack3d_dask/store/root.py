"""The store's root: its layout version and who made it, checked on open; created when
absent, on a local folder or under a URL of object storage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import zarr

from .._version import __version__
from ..errors import StoreError
from .location import LocalFiles, ObjectFiles, StoreRef, StoreTarget, files_of, zarr_store

if TYPE_CHECKING:
    from .checkpoints import Store

__all__ = ["LAYOUT_VERSION", "ROOT_KEY", "check_or_create", "existing_store"]

LAYOUT_VERSION = 1
#: The root attribute holding this package's information about the store.
ROOT_KEY = "pystack3d_dask"


def check_or_create(path: Path | StoreRef, files: LocalFiles | ObjectFiles, target: StoreTarget,
                    create: bool) -> None:
    """Check that ``path`` is a store of this package that this version can read, or
    create it there (``create``) when nothing is there.

    Raises
    ------
    StoreError
        For a file, a Zarr store not made here or of a newer layout, a non-empty folder
        that is no store, or a location that cannot be written.
    """
    if not files.remote and path.exists() and not path.is_dir():
        raise StoreError(f"store path {path} is a file; expected a folder (a Zarr store)")
    if files.exists("zarr.json"):
        try:
            attrs = dict(zarr.open_group(zarr_store(target), mode="r", zarr_format=3).attrs)
        except Exception as exc:
            raise StoreError(f"{path}: not a readable Zarr v3 store ({exc})") from None
        info = attrs.get(ROOT_KEY)
        if info is None:
            raise StoreError(f"{path} is a Zarr store not made by pystack3d-dask; "
                             "refusing to write into it")
        if info.get("layout_version", 0) > LAYOUT_VERSION:
            raise StoreError(f"{path} has layout version {info['layout_version']}, newer "
                             f"than this package's ({LAYOUT_VERSION}); upgrade pystack3d-dask")
        return
    if files.children(""):
        raise StoreError(f"store path {path} is a non-empty folder that is not a Zarr "
                         "store; choose another path")
    if not create:
        raise StoreError(f"no store at {path}")
    try:
        if not files.remote:
            path.parent.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(zarr_store(target), mode="w", zarr_format=3)
    except OSError as exc:
        raise StoreError(f"cannot create the store {path}: {exc.strerror or exc}; expected "
                         "a location this user can write to: choose another [store] path "
                         "(or --store)") from None
    root.attrs[ROOT_KEY] = {"layout_version": LAYOUT_VERSION, "created_by": __version__}


def existing_store(location: str | Path | StoreRef) -> Store | None:
    """The store at ``location``, or None when there is none yet (nothing created)."""
    files = files_of(location)
    if files.remote:
        files.check()
    from .checkpoints import Store

    return Store(location, create=False) if files.exists("zarr.json") else None
