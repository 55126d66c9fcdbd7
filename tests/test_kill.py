"""Runs are transactions: training SIGKILLed before, during and after each file it writes
always resumes to the weights of a run that was never interrupted, bit for bit, and in
between `evaluate` always reads a consistent pair of checkpoints.

The kill points come from the test hook ``SRSAN_NP_TEST_KILL_AT=NAME:POINT:N`` (see
``srsan_np/files.py``): the process kills itself at the ``N``-th write of ``NAME`` at
``POINT``. Each chain kills a run, resumes it and kills the resumed run at the next point,
and so on, then lets the last resume finish.
"""

import json
import signal

import numpy as np
import pytest

from conftest import TINY_TRAIN
from srsan_np.checkpoint import load_checkpoint
from srsan_np.run import Run

EPOCHS = 3  # no validation split: every epoch is the selected one, and writes best.npz

CHAINS = {
    # the checkpoint pair: each point of each file, and a resume that re-exports best.npz
    "checkpoints": ["last.npz:before:1", "last.npz:during:1", "last.npz:after:1",
                    "best.npz:before:1", "best.npz:during:2", "best.npz:after:2",
                    "summary.json:during:1"],
    # the files written when a run starts and ends
    "run files": [".srsan-np:during:1", ".srsan-np:after:1", "config.json:before:1",
                  "config.json:during:1", "data.json:before:1", "data.json:after:1",
                  "raw_ids.npy:during:1", "last.npz:during:2", "summary.json:before:1",
                  "summary.json:after:1"],
}


def _train(cli, out, data, *more, env=None):
    return cli("train", "--data", data, "--out", out, "--epochs", EPOCHS, *TINY_TRAIN, *more,
               env=env)


def _arrays(path):
    return load_checkpoint(path)[0]


def _timeless(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.fixture(scope="module")
def straight(cli, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    assert _train(cli, out, tiny_data).returncode == 0
    return out


def _check_pair(cli, out, evaluate):
    """The killed run's checkpoints, if any, are a consistent pair."""
    if not (out / "last.npz").exists():
        return
    best, _, best_meta = Run(out).load_model("best")
    last, _, last_meta = Run(out).load_model("last")
    assert best_meta["best"]["epoch"] == last_meta["epoch"]  # every epoch is selected here
    for name in best:
        np.testing.assert_array_equal(best[name], last[name], err_msg=name)
    if evaluate:
        proc = cli("evaluate", out, "--bootstrap", "0")
        assert proc.returncode == 0, proc.stderr
        assert f"(best checkpoint, epoch {last_meta['epoch']})" in proc.stdout


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_killed_anywhere_resumes_bit_identical(cli, tiny_data, straight, tmp_path, chain):
    out = tmp_path / "run"
    for k, point in enumerate(CHAINS[chain]):
        proc = _train(cli, out, tiny_data, *(["--resume"] if k else []),
                      env={"SRSAN_NP_TEST_KILL_AT": point})
        assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr)
        _check_pair(cli, out, evaluate=k in (2, 5))
    proc = _train(cli, out, tiny_data, "--resume")
    assert proc.returncode == 0, proc.stderr

    for name in ("last.npz", "best.npz"):
        a, b = _arrays(straight / name), _arrays(out / name)
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key}")
    summary = [json.loads((d / "summary.json").read_text()) for d in (straight, out)]
    assert _timeless(summary[0]["history"]) == _timeless(summary[1]["history"])
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
