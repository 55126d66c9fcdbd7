"""The learner track: the workspace, the checker's verdicts, your ops training the model."""

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from srsan_np import exercises, model
from srsan_np.cli import main
from srsan_np.data import iterate_batches, sample_dataset
from srsan_np.exercises import checks, workspace

SOLUTIONS = Path(__file__).resolve().parent / "learner_solutions"
# A layer norm written without the reference: plain NumPy, its own cache as a tuple.
MY_LAYERNORM = (SOLUTIONS / "layernorm.py").read_text()


def reference_workspace(directory):
    """The reference ops copied in as a learner's work."""
    directory.mkdir(exist_ok=True)
    for name, path in workspace.EXERCISES.items():
        shutil.copy(path, directory / f"{name}.py")
    return directory


def test_init_then_check_says_not_done(tmp_path, capsys):
    ws = tmp_path / "ws"
    assert main(["exercises", "init", str(ws)]) == 0
    assert sorted(p.stem for p in ws.glob("*.py")) == sorted([*workspace.EXERCISES,
                                                              "test_exercises"])
    assert main(["exercises", "check", str(ws), "layernorm"]) == 1
    out = capsys.readouterr()
    assert "not done" in out.out and "Traceback" not in out.out + out.err
    # every stub is not done, and none leaks a solution
    result = exercises.check(ws)
    assert {result.status(name) for name in workspace.EXERCISES} == {"not done"}
    for name in workspace.EXERCISES:
        stub = (ws / f"{name}.py").read_text()
        assert "# >>> solution" not in stub and "YOUR CODE" in stub


def test_stubs_keep_the_textbook_signatures_and_docstrings(tmp_path):
    exercises.init(tmp_path)
    for name in ("linear", "layernorm", "scoring", "dropout", "encoder"):
        stub = (tmp_path / f"{name}.py").read_text()
        reference = workspace.EXERCISES[name].read_text()
        for line in reference.splitlines():
            if line.startswith("def ") and not line.startswith("def _"):
                assert line in stub, (name, line)
        assert "docs/derivations.md" in stub and "You write:" in stub
    assert "def attention_backward(dout, cache):" in (tmp_path / "attention.py").read_text()
    assert "dx = rstd * (dxhat" not in (tmp_path / "layernorm.py").read_text()


def test_init_never_overwrites_your_work(tmp_path, capsys):
    exercises.init(tmp_path)
    mine = tmp_path / "layernorm.py"
    mine.write_text(MY_LAYERNORM)
    assert main(["exercises", "init", str(tmp_path)]) == 2
    assert "layernorm.py" in capsys.readouterr().err
    assert mine.read_text() == MY_LAYERNORM
    with pytest.raises(workspace.WorkspaceExists):
        exercises.init(tmp_path, ["layernorm"])
    exercises.init(tmp_path, ["linear"])  # an untouched stub is rewritten without fuss
    assert not list(tmp_path.glob("*.tmp"))


def test_your_layernorm_passes_and_doubled_dgamma_is_diagnosed(tmp_path, capsys):
    (tmp_path / "layernorm.py").write_text(MY_LAYERNORM)
    assert main(["exercises", "check", str(tmp_path), "layernorm"]) == 0
    assert "all pass" in capsys.readouterr().out
    (tmp_path / "layernorm.py").write_text(
        MY_LAYERNORM.replace("return dx, dgamma, dbeta", "return dx, 2 * dgamma, dbeta"))
    assert main(["exercises", "check", str(tmp_path), "layernorm"]) == 1
    out = capsys.readouterr().out
    assert "dgamma is 2.00x the true gradient" in out
    rows = {r.output: r for r in exercises.check(tmp_path, ["layernorm"]).rows}
    assert [rows[k].status for k in ("out", "dx", "dgamma", "dbeta")] == \
        ["pass", "pass", "fail", "pass"]


def test_your_exception_is_shown_as_your_file_and_line(tmp_path, capsys):
    broken = MY_LAYERNORM.replace("    g = dout * gamma\n",
                                  "    g = dout * gamma\n    g = g[None] @ g\n")
    (tmp_path / "layernorm.py").write_text(broken)
    line = broken.splitlines().index("    g = g[None] @ g") + 1
    assert main(["exercises", "check", str(tmp_path), "layernorm"]) == 1
    out = capsys.readouterr()
    assert f"layernorm.py:{line}: in layernorm_backward: ValueError" in out.out
    assert "Traceback" not in out.out + out.err and "srsan_np" not in out.out
    (tmp_path / "layernorm.py").write_text("def layernorm_forward(x:\n")
    row = exercises.check(tmp_path, ["layernorm"]).rows[0]
    assert row.status == "error" and "layernorm.py:1" in row.message


def test_the_reference_as_a_workspace_passes_every_exercise(tmp_path):
    result = exercises.check(reference_workspace(tmp_path))
    assert result.passed, result
    assert {row.exercise for row in result.rows} == set(workspace.EXERCISES)
    assert "<table>" in result._repr_html_() and "all pass" in repr(result)


def test_the_plain_numpy_solutions_pass_every_exercise(tmp_path):
    """The learner's solutions the planted-bug suite starts from are right, in every setting."""
    ws = shutil.copytree(SOLUTIONS, tmp_path / "ws")
    for name in workspace.EXERCISES:
        rows = checks.check_exercise(name, ws)
        assert rows and all(r.passed for r in rows), [r for r in rows if not r.passed]
        assert any("float32" in r.output for r in rows) or name.endswith("_steps")


def test_the_reference_passes_its_own_checker():
    assert exercises.check().passed


def test_a_module_importing_yours_is_the_reference_source_run_on_yours(tmp_path):
    (tmp_path / "layernorm.py").write_text(MY_LAYERNORM)
    package = workspace.load(tmp_path, ["layernorm"])
    assert package.encoder.layernorm_forward is package.layernorm.layernorm_forward
    assert package.encoder is not sys.modules["srsan_np.ops.encoder"]
    assert package.attention is sys.modules["srsan_np.ops.attention"]  # imports nothing of yours
    assert set(workspace._imports("encoder")) == {"attention", "dropout", "layernorm", "linear",
                                                  "relu"}


def train_losses(kernels, config, steps, dropout=None):
    """The loss of each of ``steps`` Adam steps from the same float32 start on the sample."""
    params = model.init_params(config, 0)
    opt = model.kernel_sets.get(kernels).Adam(params, lr=1e-2, weight_decay=1e-5)
    out = []
    batches = iterate_batches(sample_dataset(0).train, 50, config.mode, np.random.default_rng(0))
    for batch in itertools.islice(batches, steps):
        loss, grads = model.loss_and_grads(params, batch, config, dropout, kernels)
        assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
        opt.step(grads)
        out.append(loss)
    return np.array(out)


def test_your_ops_train_exactly_as_the_reference(tmp_path):
    """Reference copied in as the learner's work: every op is "yours", and 30 steps of
    training (dropout off) give the reference run's losses to 1e-6."""
    kernels, origin = exercises.learner_kernels(reference_workspace(tmp_path))
    assert set(origin.values()) == {"yours"}
    config = model.Config(n_items=sample_dataset(0).n_items, hidden=8, dropout=0.0,
                          mode="sequence", positions=True, layers=2)
    mine, reference = train_losses(kernels, config, 30), train_losses("reference", config, 30)
    assert len(mine) == 30 and reference[-1] < reference[0]
    np.testing.assert_allclose(mine, reference, rtol=1e-6, atol=0)


@pytest.mark.parametrize("mode", ["sequence", "faithful"])
def test_plain_numpy_solutions_train_as_the_reference_kernels(tmp_path, mode):
    """Every op solved in plain NumPy (tests/learner_solutions, not the reference files),
    dropout on, float32: 20 steps give the reference kernels' losses to float32 rounding."""
    ws = shutil.copytree(SOLUTIONS, tmp_path / "ws")
    config = model.Config(n_items=sample_dataset(0).n_items, hidden=12, heads=3, dropout=0.1,
                          mode=mode, positions=mode == "sequence", layers=2)
    kernels, origin = exercises.learner_kernels(ws, config.heads, config.dropout,
                                                mode == "sequence")
    assert set(origin.values()) == {"yours"}
    mine = train_losses(kernels, config, 20, np.random.default_rng(7))
    reference = train_losses("reference", config, 20, np.random.default_rng(7))
    assert len(mine) == 20 and reference[-1] < reference[0]
    np.testing.assert_allclose(mine, reference, rtol=2e-6, atol=0)


def test_train_with_your_layernorm(tmp_path, capsys):
    ws = tmp_path / "ws"
    exercises.init(ws)
    (ws / "layernorm.py").write_text(MY_LAYERNORM)
    argv = ["train", "--ops", str(ws), "--epochs", "1", "--hidden", "8", "--lr", "0.01",
            "--batch-size", "500", "--no-baselines", "--bootstrap", "0",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.split() == ["layernorm", "yours"] for line in lines), out
    assert any(line.split() == ["linear", "reference", "(not", "done)"] for line in lines)
    assert out.index("layernorm  yours") < out.index("epoch  0")
    assert "SR-SAN" in out
    recorded = json.loads((tmp_path / "run" / "ops.json").read_text())
    assert recorded["workspace"] == str(ws.resolve()) and recorded["ops"]["layernorm"] == "yours"
    # a run trained with your ops resumes with them, not without
    resume = [arg for arg in argv if arg not in ("--ops", str(ws))] + ["--resume"]
    assert main(resume) == 2
    assert "started with --ops" in capsys.readouterr().err
    assert main(["train", "--ops", str(tmp_path / "nowhere"), "--epochs", "1"]) == 2


def test_your_turn_checks_the_workspace_or_says_it_checks_the_reference(tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.delenv(workspace.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    result = exercises.your_turn("layernorm")
    said = capsys.readouterr().out
    assert "No workspace found" in said and "checks the REFERENCE implementation" in said
    assert result.passed and result.workspace is None
    assert repr(result).endswith("the REFERENCE implementation (not your code): all pass")
    assert "REFERENCE implementation (not your code)" in result._repr_html_()
    monkeypatch.setenv(workspace.ENV_VAR, str(tmp_path))
    (tmp_path / "layernorm.py").write_text(MY_LAYERNORM.replace("g - g.mean", "g + g.mean"))
    result = exercises.your_turn("layernorm")
    assert not result.passed and result.status("layernorm") == "fail"
    assert result.workspace == str(tmp_path)
    assert repr(result).endswith(f"your workspace {tmp_path}: not all pass")
    result = exercises.your_turn("relu")  # a workspace without relu.py: the reference, said
    assert result.workspace is None and "has no relu.py" in capsys.readouterr().out


def test_the_workspace_is_found_from_below_it(tmp_path, monkeypatch):
    monkeypatch.delenv(workspace.ENV_VAR, raising=False)
    (tmp_path / "srsan-exercises").mkdir()
    (tmp_path / "notebooks" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "notebooks" / "deeper")
    assert workspace.find_workspace() == tmp_path / "srsan-exercises"
    monkeypatch.setenv(workspace.ENV_VAR, str(tmp_path / "elsewhere"))
    assert workspace.find_workspace() == tmp_path / "elsewhere"


def test_pytest_runs_one_test_per_output(tmp_path):
    exercises.init(tmp_path, ["layernorm"])
    (tmp_path / "layernorm.py").write_text(
        MY_LAYERNORM.replace("return dx, dgamma, dbeta", "return dx, 2 * dgamma, dbeta"))
    env = dict(os.environ, PYTHONPATH=os.getcwd(), SRSAN_EXERCISES=str(tmp_path))
    # the workspace named, and found by the rule ($SRSAN_EXERCISES)
    for argv in ([str(tmp_path)], ["-p", "srsan_np.exercises.pytest_plugin", "--workspace"]):
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "--rootdir", str(tmp_path), *argv],
                             capture_output=True, text=True, env=env, cwd=tmp_path)
        assert run.returncode == 1, run.stdout + run.stderr
        assert "dgamma is 2.00x the true gradient" in run.stdout
        assert "1 failed, 3 passed" in run.stdout, run.stdout  # out, dx, dbeta pass


def test_diagnosis_without_a_region_gives_the_largest_error():
    from srsan_np.exercises.diagnosis import diagnose
    true = np.arange(1.0, 7.0).reshape(2, 3)
    got = true.copy()
    got[1, 2] += 1.0
    assert "largest error is at (1, 2)" in diagnose("dW", got, true)
    assert "is a list" in diagnose("dW", [1, 2], true)
    assert checks._error(true * (1 + 1e-9), true) < checks.GRAD_TOL


def test_parts_and_invariants_are_said_when_no_known_mistake_fits(tmp_path):
    """Mistakes outside the library: the checker says which parts are right and which
    invariant of a right answer fails."""
    attention = (SOLUTIONS / "attention.py").read_text().replace(
        "dv = att_drop.transpose(0, 1, 3, 2) @ dy", "dv = -att_drop.transpose(0, 1, 3, 2) @ dy")
    layernorm = MY_LAYERNORM.replace("g - g.mean(axis=-1, keepdims=True)",
                                     "g - 0.5 * g.mean(axis=-1, keepdims=True)")
    (tmp_path / "attention.py").write_text(attention)
    (tmp_path / "layernorm.py").write_text(layernorm)
    rows = {r.output: r.message for r in checks.check_exercise("attention", tmp_path)}
    assert "part by part: the q third right, the k third right, the v third negated" \
        in rows["d_in_w"], rows["d_in_w"]
    assert "write attention_steps.py" in rows["d_in_w"]
    rows = {r.output: r.message for r in checks.check_exercise("layernorm", tmp_path)}
    assert "no known mistake fits" in rows["dx"] and "its rows do not sum to 0" in rows["dx"]
    assert "orthogonal to xhat" not in rows["dx"], rows["dx"]
