"""Where a store lives: a local folder, or a URL of object storage opened through fsspec.

A local store is handed to tasks as its absolute path (a string); a store on object
storage as a :class:`StoreRef`, the URL and the storage options, small and picklable, so
that a worker in another process (or on another machine, sharing no folder with the
client) opens the same bucket. :func:`zarr_store` turns either into what zarr opens.

The store's own bookkeeping (does a group exist, which chunks are there, removing a
group, the lock file) goes through :class:`LocalFiles` or :class:`ObjectFiles`, the
same operations on a folder or on keys under a prefix.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StoreError

__all__ = ["LocalFiles", "ObjectFiles", "StoreRef", "StoreTarget", "files_of", "is_url",
           "store_ref", "zarr_store"]


def is_url(location: str | Path) -> bool:
    """Whether a store location is a URL (``s3://...``, ``gs://...``, ``memory://...``)
    rather than a local path; ``file://`` URLs are local paths."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


@dataclass(frozen=True)
class StoreRef:
    """A store on object storage: its URL and fsspec storage options (as sorted JSON,
    so that the reference is hashable: per-process handles are cached on it)."""

    url: str
    options: str = "{}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """The fsspec storage options (endpoint, credentials, ...)."""
        return json.loads(self.options)

    @property
    def name(self) -> str:
        """Last part of the URL (``s3://b/p/run.zarr`` -> ``run.zarr``)."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return self.url


#: What the chunk I/O and the tasks get: a local store's absolute path, or a StoreRef.
StoreTarget = str | StoreRef


def store_ref(location: str | Path | StoreRef, storage_options: dict[str, Any] | None = None
              ) -> StoreRef:
    """A :class:`StoreRef` for a URL (its options: ``storage_options``, else the ones
    the reference already has, else none: fsspec then reads the environment)."""
    if isinstance(location, StoreRef):
        if storage_options is None:
            return location
        location = location.url
    try:
        options = json.dumps(storage_options or {}, sort_keys=True)
    except TypeError as exc:
        raise StoreError(f"[store] storage_options: {exc}; expected a table of strings, "
                         "numbers and booleans") from None
    return StoreRef(str(location).rstrip("/"), options)


@functools.lru_cache(maxsize=32)
def _fsspec_store(ref: StoreRef) -> Any:
    from zarr.storage import FsspecStore

    return FsspecStore.from_url(ref.url, storage_options=ref.storage_options, read_only=False)


def zarr_store(target: StoreTarget) -> Any:
    """What zarr (and xarray) open for a store: the path itself, or an fsspec store
    made once per process and reference."""
    return _fsspec_store(target) if isinstance(target, StoreRef) else target


@functools.lru_cache(maxsize=32)
def _filesystem(ref: StoreRef) -> tuple[Any, str]:
    import fsspec.core

    try:
        return fsspec.core.url_to_fs(ref.url, **ref.storage_options)
    except (ImportError, ValueError) as exc:
        raise StoreError(f"cannot open {ref.url}: {exc}; expected a URL that fsspec opens "
                         "(for s3://, install s3fs: pip install 'pystack3d-dask[s3]')") from None


class LocalFiles:
    """The store's files under a local folder ``root``; keys are ``/``-separated."""

    remote = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def _p(self, key: str) -> Path:
        return self.root / key if key else self.root

    def exists(self, key: str) -> bool:
        """Whether a file (or folder) exists."""
        return self._p(key).exists()

    def children(self, prefix: str) -> list[str]:
        """Names directly under a folder (none when it is absent)."""
        try:
            return [entry.name for entry in os.scandir(self._p(prefix))]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def files(self, prefix: str) -> set[str]:
        """Names of the files directly under a folder (one listing)."""
        try:
            return {entry.name for entry in os.scandir(self._p(prefix)) if entry.is_file()}
        except FileNotFoundError:
            return set()

    def remove(self, prefix: str) -> None:
        """Remove a folder and everything in it (nothing when absent)."""
        shutil.rmtree(self._p(prefix), ignore_errors=True)

    def size(self, prefix: str, only_here: bool = False) -> int:
        """Bytes under a folder, each file counted once even when hard-linked twice
        below it; ``only_here``: only the files no other folder links."""
        folder = self._p(prefix)
        if not folder.is_dir():
            return 0
        seen: dict[int, int] = {}
        for path in folder.rglob("*"):
            if path.is_file():
                stat = path.stat()
                if not only_here or stat.st_nlink == 1:
                    seen[stat.st_ino] = stat.st_size
        return sum(seen.values())

    def put_all(self, items: Mapping[str, bytes]) -> None:
        """Write files (their folders made as needed), replacing those that exist."""
        for key, data in items.items():
            path = self._p(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def remove_partial(self, prefix: str) -> None:
        """Remove the temporary ``*.partial`` files a killed writer left."""
        for stray in self._p(prefix).rglob("*.partial"):
            stray.unlink(missing_ok=True)

    # -- the lock's operations ---------------------------------------------------------
    def create(self, key: str, data: bytes) -> bool:
        """Create a file exclusively with ``data``; False when it exists."""
        try:
            fd = os.open(self._p(key), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fid:
            fid.write(data)
        return True

    def read(self, key: str) -> tuple[bytes, float] | None:
        """A file's content and age (seconds since last written), or None."""
        path = self._p(key)
        try:
            return path.read_bytes(), time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None

    def touch(self, key: str, data: bytes) -> None:
        """Mark a file as written now (its content stays)."""
        os.utime(self._p(key))

    def delete(self, key: str) -> None:
        """Remove a file (nothing when absent)."""
        with contextlib.suppress(FileNotFoundError):
            self._p(key).unlink()


class ObjectFiles:
    """The store's objects under the prefix of a URL, through fsspec."""

    remote = True

    def __init__(self, ref: StoreRef) -> None:
        self.ref = ref
        self.fs, self.root = _filesystem(ref)
        self.root = self.root.rstrip("/")

    def _p(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def check(self) -> None:
        """Raise a :class:`StoreError` saying what is wrong when the bucket cannot be
        reached: no answer from the endpoint, no credentials, no such bucket."""
        bucket = self.root.split("/", 1)[0]
        try:
            try:
                self.fs.info(bucket)
            except FileNotFoundError:  # older s3fs: an empty bucket has no info
                self.fs.ls(bucket, detail=False)
        except FileNotFoundError:
            raise StoreError(f"{self.ref.url}: the bucket {bucket!r} does not exist (or these "
                             "credentials cannot see it); expected an existing bucket: create "
                             "it first, or correct [store] path") from None
        except Exception as exc:  # botocore's and other backends' own exception types
            raise StoreError(remote_error(self.ref, exc)) from None

    def exists(self, key: str) -> bool:
        """Whether an object (or a prefix with objects) exists."""
        path = self._p(key)
        self.fs.invalidate_cache(path)
        return bool(self.fs.exists(path))

    def children(self, prefix: str) -> list[str]:
        """Names directly under a prefix."""
        path = self._p(prefix)
        self.fs.invalidate_cache(path)
        try:
            return [entry.rstrip("/").rsplit("/", 1)[-1]
                    for entry in self.fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []

    def files(self, prefix: str) -> set[str]:
        """Names of the objects directly under a prefix (one listing, paginated)."""
        path = self._p(prefix)
        self.fs.invalidate_cache(path)
        try:
            entries = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return set()
        return {e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries
                if e.get("type") == "file"}

    def remove(self, prefix: str) -> None:
        """Remove every object under a prefix."""
        path = self._p(prefix)
        self.fs.invalidate_cache(path)
        with contextlib.suppress(FileNotFoundError):
            keys = self.fs.find(path)
            if keys:
                self.fs.rm(keys)
        self.fs.invalidate_cache(path)

    def size(self, prefix: str, only_here: bool = False) -> int:
        """Bytes under a prefix (objects are never shared between groups)."""
        path = self._p(prefix)
        self.fs.invalidate_cache(path)
        try:
            return int(self.fs.du(path, total=True))
        except FileNotFoundError:
            return 0

    def put_all(self, items: Mapping[str, bytes]) -> None:
        """Write objects, replacing those that exist, all at once (one batch of
        concurrent requests, not one round trip after the other)."""
        if items:
            self.fs.pipe({self._p(key): data for key, data in items.items()})
            self.fs.invalidate_cache(self.root)

    def remove_partial(self, prefix: str) -> None:
        """Nothing to do: an object is written whole or not at all."""

    def create(self, key: str, data: bytes) -> bool:
        """Create an object only if absent (a conditional write, ``If-None-Match: *``);
        False when it exists."""
        try:
            self.fs.pipe_file(self._p(key), data, mode="create")
        except FileExistsError:
            return False
        finally:
            self.fs.invalidate_cache(self._p(key))
        return True

    def read(self, key: str) -> tuple[bytes, float] | None:
        """An object's content and age (from the server's time of its last write, so
        that clocks of other hosts do not matter beyond the server's own)."""
        path = self._p(key)
        self.fs.invalidate_cache(path)
        try:
            info = self.fs.info(path)
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        modified = info.get("LastModified") or info.get("mtime")
        stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)
        return data, max(time.time() - stamp, 0.0)

    def touch(self, key: str, data: bytes) -> None:
        """Rewrite an object with its content: its time of last write moves."""
        self.fs.pipe_file(self._p(key), data)

    def delete(self, key: str) -> None:
        """Remove an object (nothing when absent)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._p(key))
        self.fs.invalidate_cache(self._p(key))


def remote_error(ref: StoreRef, exc: BaseException) -> str:
    """What went wrong reaching object storage, and the usual fix."""
    kind = type(exc).__name__
    endpoint = ref.storage_options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")
    where = f" at {endpoint}" if endpoint else ""
    if kind == "NoCredentialsError":
        return (f"{ref.url}: no credentials found for the object store{where}; expected "
                "them in the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), a "
                "profile (AWS_PROFILE, ~/.aws/credentials) or [store] storage_options "
                "(key, secret; anon = true for a public bucket)")
    if "EndpointConnection" in kind or "ConnectTimeout" in kind or "ConnectionError" in kind:
        return (f"{ref.url}: cannot reach the object store{where} ({exc}); expected a "
                "running server: check endpoint_url in [store] storage_options (or "
                "AWS_ENDPOINT_URL) and the network")
    if isinstance(exc, PermissionError) or kind in ("ClientError", "AccessDenied"):
        return (f"{ref.url}: access refused by the object store{where} ({exc}); expected "
                "credentials allowed to list and write the bucket")
    return f"{ref.url}: the object store{where} failed ({kind}: {exc})"


def files_of(location: str | Path | StoreRef) -> LocalFiles | ObjectFiles:
    """The bookkeeping operations for a store's location: a folder (a path), or a URL
    (a :class:`StoreRef`, or a URL string whose credentials come from the environment)."""
    if isinstance(location, StoreRef) or is_url(location):
        return ObjectFiles(store_ref(location))
    return LocalFiles(Path(location))


# fsspec's async file systems refuse to be used in a forked child (their event loop stays
# in the parent): a child (the report's drawing processes) opens its own
os.register_at_fork(after_in_child=lambda: (_fsspec_store.cache_clear(),
                                            _filesystem.cache_clear()))
