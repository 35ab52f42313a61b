"""Shared fixtures. Real data lives in ../shared beside the checkout (CI has it; users do not)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data (real mocap and a LeRobot v3.0 dataset)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return path
