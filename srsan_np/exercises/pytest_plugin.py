"""``pytest --workspace [DIR]``: the exercise checks of a workspace as pytest tests.

One test per exercise output, the diagnosis as its failure message. With ``--workspace``,
pytest runs these tests instead of collecting any others; without a DIR, the workspace is
the one :func:`srsan_np.exercises.find_workspace` finds (``$SRSAN_EXERCISES``, else the
nearest ``srsan-exercises/`` here or above). Registered as a pytest plugin by the package's
entry point (``pytest11``); in a checkout, ``pytest -p srsan_np.exercises.pytest_plugin
--workspace DIR`` does the same.
"""

from __future__ import annotations

import pytest

from .checks import check
from .workspace import find_workspace


def pytest_addoption(parser):
    parser.getgroup("srsan-np").addoption(
        "--workspace", metavar="DIR", nargs="?", const="",
        help="run the srsan-np exercise checks of the workspace DIR (one test per output); "
             "without DIR, the one $SRSAN_EXERCISES names, else the nearest srsan-exercises/")


def pytest_collection(session):
    directory = session.config.getoption("workspace")
    if directory is None:
        return None
    directory = directory or find_workspace()
    if directory is None:
        raise pytest.UsageError("--workspace: no workspace found ($SRSAN_EXERCISES is not "
                                "set, and there is no srsan-exercises/ here or above)")
    result = check(directory)
    session.items = [ExerciseOutput.from_parent(session, name=str(row), row=row)
                     for row in result.rows]
    session.testscollected = len(session.items)
    session.config.hook.pytest_collection_modifyitems(session=session, config=session.config,
                                                      items=session.items)
    session.config.hook.pytest_collection_finish(session=session)
    return True


class _Failed(Exception):
    pass


class ExerciseOutput(pytest.Item):
    """One row of the check: passes if the row passed."""

    def __init__(self, *, row, **kwargs):
        super().__init__(**kwargs)
        self.row = row

    def runtest(self):
        if not self.row.passed:
            raise _Failed(f"{self.row.status}: {self.row.message}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, _Failed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, str(self.row)
