"""Shared test fixtures: the real logs in ../shared/data (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("E2E_DRIVE_SHARED", REPO.parent / "shared")) / "data"


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real sample {name!r} not found at {path} (../shared/data is absent on this machine)")
    return path


@pytest.fixture(scope="session")
def udacity_sim_a() -> Path:
    """The real Udacity-simulator log (613 rows x 3 cameras, absolute Windows paths)."""
    return _shared("udacity_sim_a")


@pytest.fixture(scope="session")
def donkey_tub_a() -> Path:
    """The real donkeycar tub v2 (250 records in 3 catalogs, 25 deleted)."""
    return _shared("donkey_tub_a")
