"""`srsan-np plot` and the training log: pictures of a run, finished or not, and a log a
file can hold. The command-line runs are at small size (hidden 8, one learning rate)."""

import os
import struct
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

from srsan_np.cli import main
from srsan_np.files import MARKER

TREE = Path(__file__).resolve().parents[1]  # the tree under test, for subprocesses
SMALL = ["--epochs", "2", "--hidden", "8", "--lr", "0.01", "--no-baselines", "--bootstrap", "0"]


def pngs(directory):
    return sorted(p for p in directory.iterdir() if p.suffix == ".png")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "R"
    assert main(["train", "--out", str(run), *SMALL]) == 0
    return run


@pytest.mark.parametrize("mode", ["sequence", "faithful"])
def test_train_then_plot_writes_real_figures(tmp_path, capsys, mode):
    run = tmp_path / "R"
    assert main(["train", "--out", str(run), "--mode", mode, *SMALL]) == 0
    capsys.readouterr()
    out = tmp_path / "F"
    assert main(["plot", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    written = pngs(out)
    assert len(written) >= 3 and [str(p) for p in written] == sorted(printed)
    names = {p.name for p in written}
    assert {"curves.png", "loss_per_step.png", "gradients.png", "attention_statistics.png",
            "attention_test_0.png"} <= names
    for path in written:
        assert path.stat().st_size > 5000, path
        assert path.read_bytes().startswith(b"\x89PNG")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # plotting again replaces its own files
    assert main(["plot", str(run), "--out", str(out)]) == 0


def test_plot_a_run_still_training(run, tmp_path, capsys):
    # in progress: no summary.json yet, the history is in last.npz
    in_progress = tmp_path / "running"
    in_progress.mkdir()
    for name in ("config.json", "data.json", "last.npz", "best.npz", "diagnostics.json"):
        (in_progress / name).write_bytes((run / name).read_bytes())
    assert main(["plot", str(in_progress)]) == 0
    assert "curves.png" in capsys.readouterr().out
    assert len(pngs(in_progress / "plots")) >= 3
    # the first epoch not yet done: only the step diagnostics so far
    first = tmp_path / "first"
    first.mkdir()
    (first / "diagnostics.json").write_bytes((run / "diagnostics.json").read_bytes())
    assert main(["plot", str(first)]) == 0
    assert {p.name for p in pngs(first / "plots")} >= {"loss_per_step.png", "gradients.png"}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["plot", str(empty)]) == 2
    assert "nothing to plot yet" in capsys.readouterr().err
    (in_progress / "summary.json").write_text("{\"history\": [")  # a torn file: one line
    assert main(["plot", str(in_progress)]) == 2
    assert "summary.json: not valid JSON" in capsys.readouterr().err


def test_plot_never_replaces_what_it_did_not_write(run, tmp_path, capsys):
    out = tmp_path / "F"
    out.mkdir()
    (out / "curves.png").write_bytes(b"mine")
    assert main(["plot", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "curves.png exists and was not written by srsan-np plot" in err
    assert (out / "curves.png").read_bytes() == b"mine"
    assert sorted(p.name for p in out.iterdir()) == ["curves.png"]  # nothing else written

    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    assert main(["plot", str(run), "--out", str(a_file)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert a_file.read_text() == "keep"
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_plot_a_run_with_several_learning_rates(tmp_path, capsys):
    run = tmp_path / "R"
    assert main(["train", "--out", str(run), *SMALL, "--lr", "0.01", "0.003"]) == 0
    capsys.readouterr()
    assert main(["plot", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"plotting {run / 'lr-0.01'}" in out or f"plotting {run / 'lr-0.003'}" in out
    assert len(pngs(run / "plots")) >= 3
    assert (run / "plots" / MARKER).exists()


def _train_log(tmp_path, env):
    """``srsan-np train`` in a fresh interpreter, its stdout and stderr into one file."""
    log = tmp_path / "log"
    with open(log, "wb") as f:
        done = subprocess.run([sys.executable, "-m", "srsan_np", "train", "--out",
                               str(tmp_path / "R"), *SMALL], stdout=f, stderr=subprocess.STDOUT,
                              env=env, cwd=tmp_path, timeout=600)
    return done.returncode, log.read_bytes()


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    return {**env, "PYTHONPATH": str(TREE), **extra}


def test_a_log_file_holds_one_line_per_epoch(tmp_path):
    code, log = _train_log(tmp_path, _env())  # no TQDM_DISABLE: the bar decides by itself
    assert code == 0, log.decode()
    assert b"\r" not in log
    lines = log.decode().splitlines()
    assert [line.split()[:2] for line in lines if line.startswith("epoch")] == [
        ["epoch", "0"], ["epoch", "1"]]
    assert len(lines) < 30  # the header, an epoch line each, the table and its legend


def _on_a_terminal(run_dir, env):
    """``srsan-np train --out run_dir`` with stdout and stderr on a pseudo-terminal: what it
    shows there."""
    pty = pytest.importorskip("pty")
    import fcntl
    import termios
    master, slave = pty.openpty()
    # a fresh pseudo-terminal is 0 columns wide, and tqdm draws nothing into 0 columns
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    child = subprocess.Popen([sys.executable, "-m", "srsan_np", "train", "--out",
                              str(run_dir), *SMALL], stdout=slave, stderr=slave,
                             env=env, cwd=run_dir.parent)
    os.close(slave)
    out = b""
    try:  # read as it comes, so the terminal's buffer never fills
        while chunk := os.read(master, 4096):
            out += chunk
    except OSError:  # Linux: EIO once the child has closed the terminal
        pass
    os.close(master)
    assert child.wait(timeout=600) == 0, out.decode(errors="replace")
    return out


def test_a_terminal_gets_the_bar_unless_tqdm_disable(tmp_path):
    # a terminal turns "\n" into "\r\n"; a bar's refresh is a "\r" alone
    refreshes = lambda out: out.replace(b"\r\n", b"\n").count(b"\r")  # noqa: E731
    assert refreshes(_on_a_terminal(tmp_path / "bar", _env())) > 0
    assert refreshes(_on_a_terminal(tmp_path / "no-bar", _env(TQDM_DISABLE="1"))) == 0


def test_the_run_explains_itself_and_keeps_a_record(tmp_path, capsys):
    """The output ends with a legend and holds no raw dict; train.log is what was printed;
    metrics.csv has one row per epoch and learning rate, as the epoch lines say."""
    import csv

    from srsan_np.run import Run

    run = tmp_path / "R"
    assert main(["train", "--epochs", "2", "--hidden", "8", "--bootstrap", "0", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "How to read it." in out and "HR@K" in out and "POP the most clicked" in out
    assert "{" not in out and "}" not in out
    assert (run / "train.log").read_text() == out
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    printed = [line.split() for line in out.splitlines() if line.startswith("epoch")]
    assert len(rows) == len(printed) == 4  # the sample preset tries two learning rates
    for row, line in zip(rows, printed):
        assert row["epoch"] == line[1] and float(row["epoch_lr"]) == float(line[3])
        assert f"{float(row['train_loss']):.4f}" == line[5]
        assert f"{float(row['valid_HR@20']):.2f}" == line[8]
        assert f"{float(row['test_HR@20']):.2f}" == line[11]
    assert [r["learning_rate"] for r in rows] == ["0.003", "0.003", "0.01", "0.01"]
    back = Run(run).metrics()
    assert list(back) == ["0.003", "0.01"] and back["0.01"][1]["test_HR@20"] == float(rows[3]["test_HR@20"])
