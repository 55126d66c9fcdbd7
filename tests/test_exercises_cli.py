"""The learner track through the command line, in a subprocess: what is refused, what is
reported as the learner's, what is left on disk.

The learner is ``tests/learner_solutions/`` (plain NumPy), copied into a workspace and
changed the way each case needs.
"""

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TINY_TRAIN

SOLUTIONS = Path(__file__).resolve().parent / "learner_solutions"
TRAIN = ["--epochs", "1", "--dropout", "0.1", *TINY_TRAIN]


def workspace(tmp_path, name="ws", **edits):
    """The learner's solutions in ``tmp_path/name``; ``edits``: exercise -> [(old, new)]."""
    directory = tmp_path / name
    shutil.copytree(SOLUTIONS, directory, ignore=shutil.ignore_patterns("*.md", "__pycache__"))
    for exercise, changes in edits.items():
        path = directory / f"{exercise}.py"
        source = path.read_text()
        for old, new in changes:
            assert source.count(old) == 1, (exercise, old)
            source = source.replace(old, new)
        path.write_text(source)
    return directory


def line_of(path, text):
    return path.read_text().splitlines().index(text) + 1


# The two cases the checker used to pass: dropout's backward skipped in the attention, and
# the read-out's gradient allocated in float64.
SILENT = {
    "attention": ([("datt = dropout_backward(datt_drop, drop_cache)", "datt = datt_drop")],
                  "dropout's backward skipped"),
    "scoring": ([("dx = np.zeros(shape, dtype=dh.dtype)", "dx = np.zeros(shape)")],
                "dtype float64, expected float32"),
}


@pytest.mark.parametrize("exercise", SILENT)
def test_the_silent_cases_fail_check_and_train_refuses_them(cli, tiny_data, tmp_path, exercise):
    edits, words = SILENT[exercise]
    ws = workspace(tmp_path, **{exercise: edits})
    checked = cli("exercises", "check", ws, exercise)
    assert checked.returncode == 1 and words in checked.stdout, checked.stdout
    assert "Traceback" not in checked.stdout + checked.stderr
    out = tmp_path / "run"
    line = cli.error(cli("train", "--data", tiny_data, "--out", out, "--ops", ws, *TRAIN),
                     f"your {exercise} fails its check", words)
    assert "this run's configuration" in line
    assert not out.exists()  # refused before anything is written


def test_train_ops_with_plain_numpy_solutions_matches_the_reference_kernels(cli, tiny_data,
                                                                            tmp_path):
    """Every op the learner's, dropout on, float32: the epoch's loss is the reference
    kernels' to float32 rounding."""
    ws = workspace(tmp_path)
    mine = cli("train", "--data", tiny_data, "--out", tmp_path / "mine", "--ops", ws,
               "--batch-size", "16", *TRAIN)
    assert mine.returncode == 0, mine.stderr
    for op in ("linear", "relu", "embedding", "scoring", "layernorm", "dropout", "attention",
               "encoder", "adam"):
        assert any(line.split() == [op, "yours"] for line in mine.stdout.splitlines()), op
    ref = cli("train", "--data", tiny_data, "--out", tmp_path / "ref", "--kernels", "reference",
              "--batch-size", "16", *TRAIN)
    assert ref.returncode == 0, ref.stderr
    loss = [json.loads((tmp_path / run / "summary.json").read_text())["history"][0]["train_loss"]
            for run in ("mine", "ref")]
    assert loss[0] == pytest.approx(loss[1], rel=2e-6, abs=0)


def test_an_error_in_your_code_while_training_is_yours(cli, tiny_data, tmp_path):
    """An op that passes its check (small arrays) and raises on a training batch: reported
    at the learner's file and line, exit 2, never as a bug in srsan-np."""
    raising = "    if x.size > 1000:\n        raise RuntimeError('my bug')\n    mu = x.mean"
    ws = workspace(tmp_path, layernorm=[("    mu = x.mean", raising)])
    where = line_of(ws / "layernorm.py", "        raise RuntimeError('my bug')")
    line = cli.error(cli("train", "--data", tiny_data, "--out", tmp_path / "run", "--ops", ws,
                         *TRAIN), "your code raised while training", f"layernorm.py:{where}",
                     "in layernorm_forward: RuntimeError: my bug")
    assert "internal error" not in line


EXITS = {
    "sys.exit": ("import sys\n\n\ndef linear_forward", "    sys.exit(0)\n    x, W = cache"),
    "os._exit": ("import os\n\n\ndef linear_forward", "    os._exit(0)\n    x, W = cache"),
}


@pytest.mark.parametrize("how", EXITS)
def test_an_op_that_exits_is_reported_as_yours(cli, tiny_data, tmp_path, how):
    head, body = EXITS[how]
    ws = workspace(tmp_path, linear=[("def linear_forward", head),
                                     ("    x, W = cache", body)])
    checked = cli("exercises", "check", ws, "linear", "relu")
    assert checked.returncode == 1, checked.stdout
    assert "Traceback" not in checked.stdout + checked.stderr
    exit_line = line_of(ws / "linear.py", body.splitlines()[0])
    assert f"linear.py:{exit_line}: in linear_backward" in checked.stdout, checked.stdout
    assert "an op must return its result" in checked.stdout
    assert "relu      dx" in checked.stdout  # the next exercise is still checked
    cli.error(cli("train", "--data", tiny_data, "--out", tmp_path / "run", "--ops", ws, *TRAIN),
              "your linear raises", f"linear.py:{exit_line}")
    assert not (tmp_path / "run" / "last.npz").exists()


def test_an_op_that_never_returns_is_stopped(cli, tmp_path):
    ws = workspace(tmp_path, relu=[("    return dout * (x > 0)",
                                    "    while True:\n        pass")])
    checked = cli("exercises", "check", ws, "relu", "linear", "--time-limit", "6")
    assert checked.returncode == 1
    assert "did not finish within 6 s, and was stopped: an endless loop in your code?" \
        in checked.stdout, checked.stdout
    assert "linear    dW" in checked.stdout  # the exercises after it are checked


def test_an_endless_op_does_not_hang_train_ops(tmp_path):
    from srsan_np.errors import LearnerError
    from srsan_np.exercises import learner_kernels

    ws = workspace(tmp_path, relu=[("    return dout * (x > 0)",
                                    "    while True:\n        pass")])
    with pytest.raises(LearnerError, match="your relu raises.*did not finish within 6 s"):
        learner_kernels(ws, time_limit=6)


def test_init_refuses_a_file_it_cannot_read_as_its_stub(cli, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    mine = b"# \xff\xfe not UTF-8\n"
    (ws / "layernorm.py").write_bytes(mine)
    cli.error(cli("exercises", "init", ws), "will not overwrite layernorm.py")
    assert (ws / "layernorm.py").read_bytes() == mine
    assert sorted(p.name for p in ws.iterdir()) == ["layernorm.py"]


INTERRUPT_AT_5TH_RENAME = """
import os, sys
replace, calls = os.replace, []
def interrupted(*args):
    calls.append(args)
    if len(calls) == 5:
        raise KeyboardInterrupt
    return replace(*args)
os.replace = interrupted
from srsan_np.cli import main
sys.exit(main(["exercises", "init", sys.argv[1]]))
"""


def test_init_interrupted_or_killed_leaves_no_temporary_file(cli, tmp_path):
    import subprocess

    ws = tmp_path / "ws"
    proc = subprocess.run([sys.executable, "-c", INTERRUPT_AT_5TH_RENAME, str(ws)],
                          capture_output=True, text=True, env=cli.env(), timeout=300)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "srsan-np exercises: interrupted"
    assert "Traceback" not in proc.stderr
    written = sorted(p.name for p in ws.iterdir())
    assert len(written) == 4 and not [n for n in written if n.endswith(".tmp")], written
    # killed while a file is half written: the next init removes what was left
    killed = cli("exercises", "init", tmp_path / "ws2",
                 env={"SRSAN_NP_TEST_KILL_AT": "layernorm.py:during:1"})
    assert killed.returncode == -signal.SIGKILL
    assert [p for p in (tmp_path / "ws2").iterdir() if p.name.endswith(".tmp")]
    assert cli("exercises", "init", tmp_path / "ws2").returncode == 0
    assert not [p for p in (tmp_path / "ws2").iterdir() if p.name.endswith(".tmp")]


def test_init_writes_files_with_the_umask_s_permissions(cli, tmp_path):
    """Without DIR, init writes ./srsan-exercises, where the checker finds it."""
    proc = cli("exercises", "init", cwd=tmp_path, env={"SRSAN_EXERCISES": None},
               preexec_fn=lambda: os.umask(0o027))
    assert proc.returncode == 0, proc.stderr
    assert "next: srsan-np exercises check srsan-exercises linear" in proc.stdout
    modes = {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "srsan-exercises").iterdir()}
    assert modes == {oct(0o640)}, modes


def test_check_finds_the_workspace_from_below_it(cli, tmp_path):
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    workspace(root, "srsan-exercises")
    env = {"SRSAN_EXERCISES": None}
    found = cli("exercises", "check", "relu", cwd=root / "notebooks", env=env)
    assert found.returncode == 0, found.stdout + found.stderr
    assert f"your workspace {root / 'srsan-exercises'}: all pass" in found.stdout
    lost = cli("exercises", "check", "relu", cwd=tmp_path, env=env)
    cli.error(lost, "no workspace", "SRSAN_EXERCISES")


RUN_CELLS = """
import ast, json, sys
for source in json.loads(sys.argv[1]):  # as a notebook runs a cell: the last value shown
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<cell>", "exec"))
    if last is not None:
        print(repr(eval(compile(ast.Expression(last.value), "<cell>", "eval"))))
"""


def test_the_your_turn_cells_check_the_workspace_at_the_repository_root(tmp_path):
    """The "your turn" cells of notebooks 02-06, run from notebooks/: the learner's files
    when a workspace is at the repository's root, and otherwise, said plainly, the
    reference."""
    import subprocess

    import nbformat

    cells = [c.source for path in sorted((ROOT / "notebooks").glob("0[2-6]_*.ipynb"))
             for c in nbformat.read(path, as_version=4).cells
             if c.cell_type == "code" and "your_turn" in c.source]
    calls = sum(cell.count('your_turn("') for cell in cells)
    assert calls == 12, cells  # every exercise, attention_steps included
    root = (tmp_path / "repo").resolve()
    (root / "notebooks").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "SRSAN_EXERCISES"}
    env["PYTHONPATH"] = str(ROOT)

    def run():
        proc = subprocess.run([sys.executable, "-c", RUN_CELLS, json.dumps(cells)],
                              cwd=root / "notebooks", env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    out = run()
    assert out.count("the REFERENCE implementation (not your code): all pass") == calls, out
    assert "your workspace" not in out
    workspace(root, "srsan-exercises")
    out = run()
    assert out.count(f"your workspace {root / 'srsan-exercises'}: all pass") == calls, out
    assert "REFERENCE" not in out
