"""The diagnosis: bugs planted in the reference ops, each diagnosed as the mistake it is.

Each case copies one reference op into a workspace, changes one line the way a learner
might get it wrong, and checks that the output the mistake touches fails with the right
diagnosis. Every class of srsan_np.exercises.diagnosis is planted at least once, in
several ops; the unchanged reference passes (tests/test_exercises.py).
"""

import pytest

from srsan_np.exercises.checks import check_exercise
from srsan_np.exercises.workspace import EXERCISES

# (class, exercise, reference line, planted line, failing output, words of its diagnosis)
PLANTED = [
    ("transposed", "linear",
     "dW = dout2.T @ x2  # (Dout, Din)", "dW = x2.T @ dout2",
     "dW", ["dW is transposed", "shape (7, 6), expected (6, 7)"]),
    ("factor", "layernorm",
     "return dx.reshape(shape), dgamma, dbeta", "return dx.reshape(shape), 2 * dgamma, dbeta",
     "dgamma", ["dgamma is 2.00x the true gradient"]),
    ("factor, named", "scoring",
     "dscores *= probs.dtype.type(dloss / B)", "dscores *= probs.dtype.type(dloss)",
     "dh", ["dh is 3.00x the true gradient", "missing the 1/B of the mean"]),
    ("factor, named", "dropout",
     "dx = _apply_keep_kernel(dout.reshape(-1), keep.reshape(-1), dout.dtype.type(scale))",
     "dx = _apply_keep_kernel(dout.reshape(-1), keep.reshape(-1), dout.dtype.type(1.0))",
     "dx", ["0.75x the true gradient", "missing the 1/(1-p) scale"]),
    ("sign", "scoring",
     "dscores *= probs.dtype.type(dloss / B)", "dscores *= probs.dtype.type(-dloss / B)",
     "dE", ["dE has the sign flipped"]),
    ("sign", "linear",
     "dx = (dout2 @ W).reshape(x.shape)  # (..., Din)", "dx = -(dout2 @ W).reshape(x.shape)",
     "dx", ["dx has the sign flipped"]),
    ("repeated ids", "embedding",
     "_embedding_backward_kernel(dout2, ids.reshape(-1), dW)", "dW[ids.reshape(-1)] += dout2",
     "dW", ["right except at the rows of repeated ids", "np.add.at"]),
    ("padded positions", "embedding",
     "_embedding_backward_kernel(dout2, ids.reshape(-1), dW)",
     "_embedding_backward_kernel(dout2, ids.reshape(-1), dW); dW[0] = 0.0",
     "dW", ["right except at the padding row 0"]),
    ("masked positions", "attention",
     "return dx, d_in_w, d_in_b, d_out_w, d_out_b",
     "return dx * (att.sum(axis=(1, 2)) > 0)[:, :, None], d_in_w, d_in_b, d_out_w, d_out_b",
     "dx", ["right except at the padded positions"]),
    ("one head", "attention",
     "dq = dscores @ k  # (B, H, T, dh)", "dq = dscores @ k; dq[:, 1] = 0.0",
     "d_in_w", ["right except at head 1"]),
    ("shape", "linear",
     "db = dout2.sum(axis=0)  # (Dout,)", "db = dout2.sum(axis=0, keepdims=True)",
     "db", ["wrong shape (1, 6), expected (6,)", "keepdims"]),
    ("dtype", "relu",
     "return _relu_backward_kernel(dout.reshape(-1), x.reshape(-1)).reshape(x.shape)",
     "return _relu_backward_kernel(dout.reshape(-1), x.reshape(-1)).reshape(x.shape)"
     ".astype(np.float32)",
     "dx", ["dtype float32, expected float64"]),
    ("NaN", "relu",
     "return _relu_backward_kernel(dout.reshape(-1), x.reshape(-1)).reshape(x.shape)",
     "return dout * np.sqrt(x) / np.sqrt(x)",
     "dx", ["has NaN in"]),
    ("inf", "layernorm",
     "dx = _layernorm_backward_kernel(dout2, xhat, rstd, np.ascontiguousarray(gamma))",
     "dx = _layernorm_backward_kernel(dout2, xhat, rstd, np.ascontiguousarray(gamma)) / 0.0",
     "dx", ["dx has inf in", "division by zero"]),
]


@pytest.mark.parametrize("kind, name, line, planted, output, words", PLANTED,
                         ids=[f"{p[0]}-{p[1]}-{p[4]}" for p in PLANTED])
def test_planted_bug_is_diagnosed(tmp_path, kind, name, line, planted, output, words):
    source = EXERCISES[name].read_text()
    assert source.count(line) == 1, f"the reference {name} no longer has the line {line!r}"
    (tmp_path / f"{name}.py").write_text(source.replace(line, planted))
    rows = {row.output: row for row in check_exercise(name, tmp_path)}
    assert rows[output].status == "fail", rows[output]
    for word in words:
        assert word in rows[output].message, rows[output].message


def test_every_class_is_planted():
    kinds = {p[0].split(",")[0] for p in PLANTED}
    assert kinds >= {"transposed", "factor", "sign", "repeated ids", "padded positions",
                     "masked positions", "one head", "shape", "dtype", "NaN", "inf"}
    assert len({p[1] for p in PLANTED}) >= 5
