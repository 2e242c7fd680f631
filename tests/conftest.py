"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import write_stack


@pytest.fixture
def stack_dir(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A folder of 12 uint16 slices of 48 x 64 named by PyStack3D's policy."""
    folder = tmp_path / "slices"
    return folder, write_stack(folder)
