"""Shared fixtures: the real SR-GNN sample file beside the checkout (tests skip without it),
the command line run in a subprocess, and a tiny dataset to train on in about a second.

The tests run with the thread settings the command line uses (``configure_threads``, before
NumPy is imported where pytest has not imported it already), so that training in a test
runs as it does for a user.
"""

from srsan_np.runtime import configure_threads

configure_threads()

import os  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
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


# --------------------------------------------------------------------------- the CLI in a subprocess

ROOT = Path(__file__).resolve().parents[1]  # the tree under test, also in CI's fresh clone


def skip_unless_required(reason: str):
    """Skip a test whose tool (Node.js, the site extra, Chromium) is not installed, unless
    ``SRSAN_REQUIRE_SITE=1`` says it must run here: CI installs them and sets it, so a
    missing tool fails there instead of passing unseen."""
    if os.environ.get("SRSAN_REQUIRE_SITE") == "1":
        pytest.fail(f"{reason}; SRSAN_REQUIRE_SITE=1 requires it", pytrace=False)
    pytest.skip(reason)


class Cli:
    """``cli(*args)`` runs ``python -m srsan_np ARGS`` on this tree; ``cli.error(proc, ...)``
    asserts exit 2 and one error line, no traceback, holding every fragment."""

    @staticmethod
    def env(**changes):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
        env.update(changes)
        return {k: v for k, v in env.items() if v is not None}

    def __call__(self, *args, env=None, **kw):
        return subprocess.run([sys.executable, "-m", "srsan_np", *map(str, args)],
                              capture_output=True, text=True, env=self.env(**(env or {})),
                              timeout=300, **kw)

    @staticmethod
    def error(proc, *fragments, status=2):
        assert proc.returncode == status, (proc.returncode, proc.stdout[-2000:], proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        line = proc.stderr.strip().splitlines()[-1]
        assert line.startswith("srsan-np ") and ": error: " in line, proc.stderr
        for fragment in fragments:
            assert fragment in line, (fragment, line)
        return line


@pytest.fixture(scope="session")
def cli():
    return Cli()


TINY_TRAIN = ["--hidden", "8", "--heads", "2", "--batch-size", "32", "--valid-fraction", "0",
              "--no-baselines", "--bootstrap", "0"]


@pytest.fixture(scope="session")
def tiny_log(tmp_path_factory) -> Path:
    """A generated Diginetica log of 300 sessions (about 300 training examples, 60 items)."""
    from srsan_np.data.generate import preset_config, scaled, write_diginetica_csv
    path = tmp_path_factory.mktemp("tiny") / "tiny.csv"
    write_diginetica_csv(scaled(preset_config("sample"), 300), path, 0)
    return path


@pytest.fixture(scope="session")
def tiny_data(tiny_log) -> Path:
    """``tiny_log`` prepared: a dataset directory (do not modify it; copy it)."""
    from srsan_np.data import preprocess, save_dataset
    from srsan_np.data.readers import read_diginetica
    out = tiny_log.parent / "data"
    save_dataset(preprocess(read_diginetica(tiny_log), "diginetica").dataset, out)
    return out


def snapshot(path):
    """What is at ``path``, without following a link: ``("file", bytes)``, ``("dir", {name:
    snapshot})``, ``("link", target)``, ``("fifo",)``, ``("other", mode)`` or None."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        return ("link", os.readlink(path))
    if stat.S_ISDIR(mode):
        return ("dir", {e.name: snapshot(e) for e in Path(path).iterdir()})
    if stat.S_ISREG(mode):
        return ("file", Path(path).read_bytes())
    return ("fifo",) if stat.S_ISFIFO(mode) else ("other", stat.S_IFMT(mode))
