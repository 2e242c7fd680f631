"""Run ``pystack3d-dask`` commands, each in a process of its own forked from one that has
imported the package: the command's real entry point (``cli.main``) with its own working
folder, stdout, stderr and exit status, without the second and a half of imports that a
fresh interpreter spends first (tests/test_errors.py runs some sixty commands).

The server reads one JSON request a line on stdin, ``{"argv": [...], "cwd": folder,
"out": file, "err": file}``, runs it in a forked child and answers ``{"rc": status}`` on
a line of its own. :class:`ForkedCli` is the client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path


def _child(cli, request: dict) -> None:
    """In the forked child: run the command as ``python -m pystack3d_dask.cli`` would."""
    os.chdir(request["cwd"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, key in ((1, "out"), (2, "err")):
        out = os.open(request[key], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, fd)
        os.close(out)
    sys.argv = ["pystack3d-dask", *request["argv"]]
    code = 1
    try:
        code = cli.main(request["argv"])
    except SystemExit as exc:  # argparse's usage errors, as sys.exit reports them
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:  # what the interpreter prints for an uncaught exception
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def serve() -> None:
    """Import the package (what ``run`` needs), then fork a child per request."""
    import pystack3d_dask.workflow.pipeline  # noqa: F401 (the imports the children share)
    from pystack3d_dask import cli

    reply = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(cli, request)
        _, status = os.waitpid(pid, 0)
        reply.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n")
        reply.flush()


class ForkedCli:
    """A server of :func:`serve`; ``run(argv, cwd)`` gives what ``subprocess.run`` would
    for ``python -m pystack3d_dask.cli *argv`` in ``cwd``."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def run(self, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp) / "out", Path(tmp) / "err"
            request = {"argv": [str(a) for a in argv], "cwd": str(cwd), "out": str(out),
                       "err": str(err)}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
            if not answer:
                raise RuntimeError(f"the forked-command server died (status {self.proc.poll()})")
            return subprocess.CompletedProcess(
                ["pystack3d-dask", *request["argv"]], json.loads(answer)["rc"],
                out.read_text(), err.read_text())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


if __name__ == "__main__":
    serve()
