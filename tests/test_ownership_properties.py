"""Whatever a user keeps in an output directory -- files, folders, links to files and folders
outside it, a ``.lock`` of their own, FIFOs, a ``.srsan-np`` that is not srsan-np's --
``generate``, ``preprocess`` and ``train``, with and without ``--overwrite`` or ``--resume``,
change nothing srsan-np did not write, and end in exit 0 or 2.

The commands run in this process (``cli.main``), on tiny data, from a directory that is
empty, missing, or holds srsan-np's own run or dataset; an alarm turns a command that hangs
(on a FIFO, say) into a failure instead of a stuck test run.
"""

import contextlib
import io
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import snapshot
from srsan_np.cli import main

NAMES = ["NOTES.md", "analysis", ".lock", ".srsan-np", "config.json", "last.npz",
         "summary.json", "lr-0.01", "train.npz", "stats.json", "pickles", "log.csv",
         "lr-0.01/NOTES.md", "pickles/mine.txt"]  # the last two: in srsan-np's own folders
KINDS = ["file", "folder", "link to a file", "link to a folder", "FIFO", "dangling link"]
TRAIN = ["--epochs", "1", "--hidden", "8", "--heads", "2", "--batch-size", "32",
         "--valid-fraction", "0.2", "--lr", "0.01", "0.02", "--no-baselines", "--bootstrap", "0"]
SECONDS = 120  # far more than any of these commands takes: beyond it, one hangs


class Hung(BaseException):
    """Raised by the alarm: not an Exception, so that the command line cannot take it for a
    user's error."""


def _run(argv):
    """``(exit status, stderr)`` of the command line ``argv`` in this process."""
    def alarm(signum, frame):
        raise Hung(f"{argv} still running after {SECONDS} s")

    err = io.StringIO()
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(SECONDS)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main([str(a) for a in argv])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return status, err.getvalue()


@pytest.fixture(scope="module")
def bases(tiny_data, tiny_log, tmp_path_factory):
    """srsan-np's own outputs to start from: a run of two learning rates, a dataset with
    the original's pickles."""
    root = tmp_path_factory.mktemp("bases")
    assert _run(["train", "--data", tiny_data, "--out", root / "run", *TRAIN])[0] == 0
    assert _run(["preprocess", "--dataset", "diginetica", "--input", tiny_log, "--out",
                 root / "dataset", "--export-pickles"])[0] == 0
    return root


def _plant(folder, name, kind, outside):
    """Put a user's ``kind`` called ``name`` into ``folder``; False if srsan-np has an entry
    there that a file or folder of the user's could not be told from."""
    path = folder / name
    if not path.parent.is_dir() or path.parent.is_symlink():
        return False
    if os.path.lexists(path):
        if kind in ("file", "folder"):
            return False
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    if kind == "file":
        path.write_bytes(b"\x00mine: " + name.encode())
    elif kind == "folder":
        path.mkdir()
        (path / "inside.txt").write_text("mine")
    elif kind == "FIFO":
        os.mkfifo(path)
    else:
        target = {"link to a file": outside / "diary.txt", "link to a folder": outside / "notes",
                  "dangling link": outside / "nothing"}[kind]
        path.symlink_to(target, target_is_directory=kind == "link to a folder")
    return True


CASES = st.tuples(
    st.sampled_from(["generate", "preprocess", "train"]),
    st.sampled_from([None, "empty", "run", "dataset"]),  # what the folder holds first
    st.sampled_from(["", "--overwrite", "--resume"]),
    st.dictionaries(st.sampled_from(NAMES), st.sampled_from(KINDS), max_size=3),
    st.sampled_from(NAMES))  # generate's --out, in the folder


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=CASES)
def test_nothing_srsan_np_did_not_write_is_changed(bases, tiny_data, tiny_log, tmp_path, case):
    command, base, flag, planted, target = case
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    outside = work / "outside"
    (outside / "notes").mkdir(parents=True)
    (outside / "diary.txt").write_text("dear diary")
    (outside / "notes" / "n.txt").write_text("a note")
    folder = work / "out"
    if base in ("run", "dataset"):
        shutil.copytree(bases / base, folder, symlinks=True)
    elif base == "empty" or planted:
        folder.mkdir()
    mine = [name for name, kind in sorted(planted.items()) if _plant(folder, name, kind, outside)]
    before = {name: snapshot(folder / name) for name in mine}, snapshot(outside)

    if command == "generate":
        flag = "" if flag == "--resume" else flag
        argv = ["generate", "--out", folder / target]
    elif command == "preprocess":
        flag = "" if flag == "--resume" else flag
        argv = ["preprocess", "--dataset", "diginetica", "--input", tiny_log, "--out", folder]
    else:
        argv = ["train", "--data", tiny_data, "--out", folder, *TRAIN]
    status, err = _run(argv + ([flag] if flag else []))

    event(f"{command} into {base or 'nothing'}: exit {status}")
    assert status in (0, 2), (status, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if status == 2:
        assert err.strip().splitlines()[-1].startswith(f"srsan-np {command}: error: "), err
    after = {name: snapshot(folder / name) for name in mine}, snapshot(outside)
    assert after == before, (case, err)
