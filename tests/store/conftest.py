"""A real S3 server for the object-storage tests: the one CI started
(``P3D_S3_ENDPOINT``, see .ci/s3-up.sh), else moto's server mode started here in a
process of its own, spoken to over HTTP like any S3 endpoint."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

#: moto accepts any key; these are the ones the tests hand over explicitly.
KEYS = {"key": "p3d-test", "secret": "p3d-test-secret"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(endpoint: str, proc: subprocess.Popen | None, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the S3 server stopped at start (exit {proc.returncode})")
        try:
            urllib.request.urlopen(endpoint, timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"no S3 server answered at {endpoint} in {seconds:.0f} s")


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """URL of a running S3 server."""
    endpoint = os.environ.get("P3D_S3_ENDPOINT")
    if endpoint:
        _wait(endpoint, None)
        yield endpoint
        return
    pytest.importorskip("moto.server", reason="moto[server] (the test extra) runs the S3 server")
    pytest.importorskip("s3fs", reason="s3fs opens s3:// stores")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait(endpoint, proc)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def s3_options(s3_endpoint) -> dict:
    """Storage options naming the server and the keys: nothing from the environment."""
    return {"endpoint_url": s3_endpoint, **KEYS}


@pytest.fixture
def bucket(s3) -> str:
    """A new, empty bucket for one test."""
    name = f"p3d-{uuid.uuid4().hex[:12]}"
    s3.mkdir(name)
    return name


@pytest.fixture
def s3(s3_options):
    """An s3fs file system on the test server, without a listing cache."""
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **s3_options)
