"""One run at a time per store: a lock file that a crashed run does not leave stuck.

The lock is ``STORE/.run.lock``, created exclusively (``O_CREAT | O_EXCL`` on a local
folder; on object storage, a conditional write, ``If-None-Match: *``, that the server
refuses when the object exists), holding who runs (host, process id, command, start
time). While the run lasts, a thread touches the file (rewrites the object) every
``HEARTBEAT_S`` seconds; the age of an object is the server's time of its last write.
A lock is stale, and taken over, when its process is gone (same host) or when its
heartbeat is older than ``STALE_S`` (any host: a job killed on a compute node cannot be
asked whether it is alive).

Taking a stale lock over is itself guarded: a run first creates, exclusively, a claim
file named after the stale holder (``.run.lock.takeover.<id>``), then checks again that
the lock file still holds that same stale holder before removing it. Without the claim,
two runs that both judged the lock stale could each remove it, the second removing the
fresh lock the first had just made, and both would go on as its holder.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..runtime.log import LOGGER
from .location import LocalFiles, ObjectFiles, StoreRef, files_of, remote_error

__all__ = ["HEARTBEAT_S", "LOCK_NAME", "STALE_S", "StoreLock", "claim_name", "read_lock",
           "takeover_claim"]

LOCK_NAME = ".run.lock"
HEARTBEAT_S = 10.0
STALE_S = 60.0
#: A lock file with no readable holder older than this is stale: a run writes its holder
#: right after creating the file, in one write.
UNREADABLE_S = 5.0
#: A takeover claim older than this was left by a run that died while taking over (the
#: takeover itself is a read, an unlink and an exclusive create).
CLAIM_STALE_S = 10.0
#: How long a run waits for another run's takeover to finish before giving up.
CLAIM_WAIT_S = 15.0


def _files(store: str | Path | StoreRef | LocalFiles | ObjectFiles) -> LocalFiles | ObjectFiles:
    return store if isinstance(store, (LocalFiles, ObjectFiles)) else files_of(store)


def read_lock(store: str | Path | StoreRef | LocalFiles | ObjectFiles) -> dict[str, Any] | None:
    """The holder of a store's lock, with ``age_s`` (seconds since its last heartbeat),
    or None when the store is not locked."""
    found = _files(store).read(LOCK_NAME)
    if found is None:
        return None
    data, age = found
    try:
        holder = json.loads(data.decode("utf-8", "replace"))
    except json.JSONDecodeError:  # cut while being written: its age still tells
        holder = {}
    if not isinstance(holder, dict):
        holder = {}
    holder["age_s"] = age
    return holder


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _stale(holder: dict[str, Any], stale_s: float) -> str | None:
    """Why a lock is stale, or None when its run may still be going."""
    if _names_no_run(holder) and holder["age_s"] > UNREADABLE_S:
        # empty or garbage (a disk that filled up, an editor, a copy): nobody holds it
        return "its file names no run"
    same_host = holder.get("host") == socket.gethostname()
    if same_host and isinstance(holder.get("pid"), int) and not _process_alive(holder["pid"]):
        return f"process {holder['pid']} is gone"
    if holder["age_s"] > stale_s:
        return f"no heartbeat for {holder['age_s']:.0f} s"
    return None


def _names_no_run(holder: dict[str, Any]) -> bool:
    """An empty or unreadable lock file (or one not written yet): no holder in it."""
    return "pid" not in holder and "host" not in holder


def _holder_id(holder: dict[str, Any]) -> str:
    """What identifies one holding of the lock: its token, or for a file naming no run,
    that it names none (such a file is only judged stale once it is old)."""
    token = holder.get("token")
    return token if isinstance(token, str) else "<no run>"


def claim_name(holder: dict[str, Any]) -> str:
    """Name (in the store) of the claim a run creates before taking over the lock of
    ``holder``."""
    digest = hashlib.sha256(_holder_id(holder).encode()).hexdigest()[:16]
    return f"{LOCK_NAME}.takeover.{digest}"


def takeover_claim(store: str | Path, holder: dict[str, Any]) -> Path:
    """The claim file a run creates before taking over the lock of ``holder`` (in a
    local store)."""
    return Path(store) / claim_name(holder)


def _claim(files: LocalFiles | ObjectFiles, name: str) -> bool:
    """Create a takeover claim exclusively; remove a claim left by a dead run."""
    if files.create(name, b""):
        return True
    found = files.read(name)
    if found is not None and found[1] > CLAIM_STALE_S:
        LOGGER.warning(f"warning: removing {name}, left by a run that stopped while taking "
                       "over the lock")
        files.delete(name)
    return False


def _describe(holder: dict[str, Any]) -> str:
    if _names_no_run(holder):
        return (f"its lock file ({holder['age_s']:.0f} s old) does not name the run yet; "
                f"if no run is starting, it is taken over after {UNREADABLE_S:.0f} s")
    started = holder.get("started")
    when = (datetime.datetime.fromtimestamp(started).isoformat(sep=" ", timespec="seconds")
            if isinstance(started, (int, float)) else "an unknown time")
    return (f"process {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
            f"{when} ({holder.get('command', '?')})")


class StoreLock:
    """Exclusive use of a store by one run.

    Parameters
    ----------
    store
        Folder of the store (it must exist), or its URL (a :class:`~.location.StoreRef`
        carries the storage options).
    heartbeat_s, stale_s
        Heartbeat period, and the age after which a lock of another host is stale.
    """

    def __init__(self, store: str | Path | StoreRef, heartbeat_s: float = HEARTBEAT_S,
                 stale_s: float = STALE_S) -> None:
        self.files = _files(store)
        self.store: Path | StoreRef = (self.files.ref if isinstance(self.files, ObjectFiles)
                                       else Path(store))
        self.path = f"{self.store}/{LOCK_NAME}"
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _payload(self) -> bytes:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.time(), "token": self.token,
                           "command": " ".join(sys.argv) or sys.executable}).encode()

    def _create(self) -> bool:
        try:
            self._data = self._payload()
            return self.files.create(LOCK_NAME, self._data)
        except OSError as exc:  # a read-only store or file system, a folder not ours
            if isinstance(exc, FileNotFoundError) and not self.files.exists(""):
                raise StoreError(f"no store at {self.store}") from None
            raise StoreError(f"cannot lock the store {self.store} ({exc.strerror or exc}: "
                             f"{self.path}): the store must be writable, even to clean or "
                             "run an unchanged workflow") from None
        except Exception as exc:  # an object store's own errors (endpoint, credentials)
            if isinstance(self.files, ObjectFiles):
                raise StoreError(remote_error(self.files.ref, exc)) from None
            raise

    def acquire(self) -> None:
        """Take the lock, or raise :class:`StoreError` naming the run that holds it."""
        deadline = time.monotonic() + CLAIM_WAIT_S
        while not self._create():
            if time.monotonic() > deadline:
                raise StoreError(f"could not lock the store {self.store} (another run "
                                 "keeps taking it)")
            holder = read_lock(self.files)
            if holder is None:  # released in between
                continue
            reason = _stale(holder, self.stale_s)
            if reason is None:
                raise StoreError(
                    f"the store {self.store} is in use by another run: {_describe(holder)}. "
                    "Wait for it to finish, or stop it; a lock whose process is gone (or "
                    f"silent for {self.stale_s:.0f} s) is taken over")
            if not self._take_over(holder, reason):
                time.sleep(0.02)  # another run is taking it over: see what it leaves
        self._thread = threading.Thread(target=self._beat, name="store-lock-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _take_over(self, holder: dict[str, Any], reason: str) -> bool:
        """Remove the stale lock of ``holder`` under a claim; False when another run
        holds the claim (it is taking the lock over)."""
        claim = claim_name(holder)
        if not _claim(self.files, claim):
            return False
        try:
            # the file read before the claim may have been replaced since, by a run
            # that took it over and released its claim: only the same holder goes
            again = read_lock(self.files)
            if (again is not None and _holder_id(again) == _holder_id(holder)
                    and _stale(again, self.stale_s) is not None):
                LOGGER.warning(f"warning: taking over the stale lock of {self.store} "
                               f"({reason}): {_describe(holder)}")
                self.files.delete(LOCK_NAME)
        finally:
            self.files.delete(claim)
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with contextlib.suppress(Exception):  # a missed beat is retried at the next
                self.files.touch(LOCK_NAME, self._data)

    def release(self) -> None:
        """Give the lock back (only ours: a lock taken over meanwhile stays)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder = read_lock(self.files)
        if holder is not None and holder.get("token") == self.token:
            self.files.delete(LOCK_NAME)

    @contextlib.contextmanager
    def held(self) -> Iterator[StoreLock]:
        """``with lock.held(): ...``"""
        self.acquire()
        try:
            yield self
        finally:
            self.release()
