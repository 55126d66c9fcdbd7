"""Shared fixtures: the real SR-GNN sample file beside the checkout (tests skip without it)."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def real_sample_csv() -> Path:
    path = SHARED_DATA / "sample_train-item-views.csv"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path
