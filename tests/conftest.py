"""Shared fixtures. Real data lives in ../shared/data (never in the repo).

Tests that read it use the ``real_data`` fixture: it skips with a reason when the folder is
absent, and fails instead when ``CELLWEAVE_REAL_DATA=required`` (CI sets it).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

REAL_DATA_DIR = Path(
    os.environ.get(
        "CELLWEAVE_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
).resolve()


@pytest.fixture(scope="session")
def real_data():
    """Return a function ``name -> Path`` into the shared real-data folder."""

    def get(name: str) -> Path:
        path = REAL_DATA_DIR / name
        if not path.exists():
            msg = f"real data file {path} is absent"
            if os.environ.get("CELLWEAVE_REAL_DATA") == "required":
                pytest.fail(f"{msg} but CELLWEAVE_REAL_DATA=required")
            pytest.skip(msg)
        return path

    return get
