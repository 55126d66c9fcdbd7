"""Shared fixtures: the real SR-GNN sample file beside the checkout (tests skip without it).

The tests run with the thread settings the command line uses (``configure_threads``, before
NumPy is imported where pytest has not imported it already), so that training in a test
runs as it does for a user.
"""

from srsan_np.runtime import configure_threads

configure_threads()

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# `pytest --workspace DIR` in a checkout (an installed srsan-np registers it by entry point)
pytest_plugins = ["srsan_np.exercises.pytest_plugin"]

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def real_sample_csv() -> Path:
    path = SHARED_DATA / "sample_train-item-views.csv"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path
