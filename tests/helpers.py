"""Helpers for the tests: small real TIFF stacks written with tifffile."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import tifffile


def write_stack(folder: Path, n: int = 12, shape: tuple[int, int] = (48, 64),
                dtype: str = "uint16", dz: float = 0.01, start: int = 0, seed: int = 0,
                names: str = "slice_{k:04d}_z={z:.4f}um.tif") -> np.ndarray:
    """Write ``n`` single-page TIFF slices and return the stack written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind == "u" else None
    high = min(info.max, 60000) if info else 1.0
    stack = (rng.random((n, *shape)) * high).astype(dtype)
    for i in range(n):
        k = start + i
        tifffile.imwrite(folder / names.format(k=k, z=k * dz), stack[i])
    return stack


def tree_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below a folder."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_ours(slices_dir: Path, params: dict, steps: list[str], store: Path):
    """Run a PyStack3D parameter dictionary with this project on ``slices_dir``."""
    import copy

    import pystack3d_dask as p3d

    workflow = copy.deepcopy(params)
    workflow.update({"project_dir": str(slices_dir), "process_steps": list(steps),
                     "store": {"path": str(store)}})
    return p3d.run(workflow, progress=False)


def finish(proc, timeout: float = 600) -> tuple[int, str]:
    """Wait for a command started with its stderr in ``proc.err_file`` (a temporary file,
    not a pipe: waiting never depends on what a killed run's children do with a pipe);
    its exit status and stderr."""
    proc.wait(timeout=timeout)
    proc.err_file.seek(0)
    text = proc.err_file.read()
    proc.err_file.close()
    return proc.returncode, text
