"""The store lock under contention: runs racing for a stale lock, exactly one wins."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import time
from pathlib import Path

import pytest

from pystack3d_dask.errors import StoreError
from pystack3d_dask.store.lock import LOCK_NAME, StoreLock, read_lock, takeover_claim

RACERS = 6
ROUNDS = 12


def _dead_pid() -> int:
    """A process id that is not running on this host."""
    proc = mp.get_context("spawn").Process(target=time.sleep, args=(0,))
    proc.start()
    proc.join()
    return proc.pid


def _stale_lock(store: Path, pid: int) -> None:
    (store / LOCK_NAME).write_text(json.dumps({
        "pid": pid, "host": socket.gethostname(), "started": time.time() - 3600,
        "token": "stale", "command": "a crashed run"}))


def _racer(store: str, start_at: float, results: mp.Queue) -> None:
    """Wait for the common start time, then try to take the lock; report the outcome and
    the token found in the lock file afterwards; never release (a winner keeps it)."""
    lock = StoreLock(store, heartbeat_s=3600)
    while time.time() < start_at:
        pass
    try:
        lock.acquire()
    except StoreError as exc:
        results.put(("refused", lock.token, str(exc)))
        return
    time.sleep(0.3)  # let every racer finish before reading who holds the file
    holder = read_lock(Path(store))
    results.put(("won", lock.token, holder and holder.get("token")))


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_runs_racing_for_a_stale_lock_exactly_one_wins(tmp_path, round_):
    """``RACERS`` processes, started at the same instant, all find the same stale lock
    (its process is gone): exactly one takes it over, the file names that one, and every
    other is refused as the store being in use."""
    store = tmp_path / "store"
    store.mkdir()
    _stale_lock(store, _dead_pid())
    ctx = mp.get_context("fork")
    results: mp.Queue = ctx.Queue()
    start_at = time.time() + 0.5
    procs = [ctx.Process(target=_racer, args=(str(store), start_at, results))
             for _ in range(RACERS)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=30) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    winners = [o for o in outcomes if o[0] == "won"]
    assert len(winners) == 1, f"{len(winners)} runs hold the lock: {outcomes}"
    assert winners[0][2] == winners[0][1], "the lock file does not name the run that won"
    for outcome in outcomes:
        if outcome[0] == "refused":
            assert "in use by another run" in outcome[2], outcome[2]
    assert read_lock(store)["token"] == winners[0][1]
    assert sorted(p.name for p in store.iterdir()) == [LOCK_NAME], "takeover files left"


def test_stale_takeover_left_by_a_crash_does_not_block_forever(tmp_path):
    """A run that crashed in the middle of a takeover leaves its claim file; once that
    claim is older than the takeover takes, the next run takes the lock over."""
    store = tmp_path / "store"
    store.mkdir()
    _stale_lock(store, _dead_pid())
    claim = takeover_claim(store, read_lock(store))
    claim.write_text("")
    old = time.time() - 600
    os.utime(claim, (old, old))
    lock = StoreLock(store)
    lock.acquire()
    try:
        assert read_lock(store)["token"] == lock.token
        assert not claim.exists()
    finally:
        lock.release()
    assert read_lock(store) is None
