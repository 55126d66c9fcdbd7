"""The checker against the mistakes students make: every one caught, and named.

``tests/learner_solutions/`` is a learner's workspace solved in plain NumPy, never copied
from the reference ops. Each planted bug below changes a line or two of one of those files
the way a student gets it wrong; the checker must fail that exercise without a traceback,
and its diagnosis must name the mistake's class in its own words (``words``). The
untouched solutions pass (tests/test_exercises.py).

The count caught and named, per exercise::

    python -m pytest -q tests/test_exercises_planted.py -k summary -s
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from srsan_np.exercises.checks import check_exercise

SOLUTIONS = Path(__file__).resolve().parent / "learner_solutions"


@dataclass(frozen=True)
class Bug:
    exercise: str
    kind: str  # the class of mistake
    edits: tuple  # ((a line of the solution, what the student wrote instead), ...)
    words: str  # what the checker's diagnosis must say

    @property
    def id(self):
        return f"{self.exercise}-{re.sub(r'[^a-z0-9]+', '_', self.kind.lower())}"


def bug(exercise, kind, words, *edits):
    return Bug(exercise, kind, tuple(edits), words)


# the learner's layer norm backward, the line most of its bugs change
LN_DX = ("dx = inv * (g - g.mean(axis=-1, keepdims=True) - xh * (g * xh).mean(axis=-1, "
         "keepdims=True))")

PLANTED = [
    # ---------------------------------------------------------------- layer norm
    bug("layernorm", "mean path dropped", "without the path through the mean",
        (LN_DX,
         "dx = inv * (g - xh * (g * xh).mean(axis=-1, keepdims=True))")),
    bug("layernorm", "rstd path dropped", "without the path through rstd",
        (LN_DX,
         "dx = inv * (g - g.mean(axis=-1, keepdims=True))")),
    bug("layernorm", "gamma dropped", "without gamma",
        ("g = dout * gamma", "g = dout")),
    bug("layernorm", "dgamma from x", "dgamma taken from x instead of xhat",
        ("return xh * gamma + beta, (xh, inv, gamma)",
         "return xh * gamma + beta, (xh, inv, gamma, x)"),
        ("xh, inv, gamma = cache", "xh, inv, gamma, x = cache"),
        ("dgamma = (dout * xh).sum(axis=rows)", "dgamma = (dout * x).sum(axis=rows)")),
    bug("layernorm", "1/D lost", "1/D of the mean and of the variance lost",
        (LN_DX,
         "dx = inv * (g - g.sum(axis=-1, keepdims=True)"
         " - xh * (g * xh).sum(axis=-1, keepdims=True))")),
    bug("layernorm", "rstd factor dropped", "without the factor rstd",
        (LN_DX,
         "dx = g - g.mean(axis=-1, keepdims=True) - xh * (g * xh).mean(axis=-1, keepdims=True)")),
    bug("layernorm", "unbiased variance", "unbiased variance",
        ("var = (xc * xc).mean(axis=-1, keepdims=True)",
         "var = x.var(axis=-1, ddof=1, keepdims=True)")),
    bug("layernorm", "eps outside the sqrt", "eps added to the standard deviation",
        ("inv = 1.0 / np.sqrt(var + eps)", "inv = 1.0 / (np.sqrt(var) + eps)")),
    bug("layernorm", "dgamma summed over one axis", "wrong shape",
        ("rows = tuple(range(dout.ndim - 1))", "rows = 0")),
    bug("layernorm", "float64 accumulator", "dtype float64, expected float32",
        ("dgamma = (dout * xh).sum(axis=rows)",
         "dgamma = np.zeros(xh.shape[-1])\n    dgamma += (dout * xh).sum(axis=rows)")),
    # ---------------------------------------------------------------- layer norm, step by step
    bug("layernorm_steps", "mean's 1/D lost", "missing the 1/D",
        ("return np.ones_like(x) * dmean / x.shape[-1]", "return np.ones_like(x) * dmean")),
    bug("layernorm_steps", "variance's 2 lost", "2 of d(c^2) = 2c dc lost",
        ("return 2 * centred * dvar / centred.shape[-1]",
         "return centred * dvar / centred.shape[-1]")),
    bug("layernorm_steps", "rstd exponent", "exponent of d(var + eps)^(-1/2) wrong",
        ("return -0.5 * (var + EPS) ** -1.5 * drstd", "return -0.5 * (var + EPS) ** -0.5 * drstd")),
    bug("layernorm_steps", "sign of the mean's share", "sign flipped",
        ("return dcentred, -dcentred.sum(axis=-1, keepdims=True)",
         "return dcentred, dcentred.sum(axis=-1, keepdims=True)")),
    # ---------------------------------------------------------------- softmax CE, step by step
    bug("softmax_ce_steps", "max path dropped", "the max's path left out",
        ("dscores[b, winner[b]] -= dshifted[b].sum()", "pass")),
    bug("softmax_ce_steps", "1/total dropped", "1/total left out",
        ("return dlogp, -dlogp.sum(axis=1, keepdims=True) / total",
         "return dlogp, -dlogp.sum(axis=1, keepdims=True)")),
    bug("softmax_ce_steps", "target off by one", "index them with targets - 1",
        ("dlogp[np.arange(B), targets - 1] = -dloss / B",
         "dlogp[np.arange(B), targets] = -dloss / B")),
    bug("softmax_ce_steps", "1/B lost", "missing the 1/B",
        ("dlogp[np.arange(B), targets - 1] = -dloss / B",
         "dlogp[np.arange(B), targets - 1] = -dloss")),
    # ---------------------------------------------------------------- scoring
    bug("scoring", "one-hot term forgotten", "one-hot term forgotten",
        ("dscores[np.arange(B), targets - 1] -= 1", "pass")),
    bug("scoring", "target off by one (backward)", "target off by one",
        ("dscores[np.arange(B), targets - 1] -= 1", "dscores[np.arange(B), targets] -= 1")),
    bug("scoring", "target off by one (loss)", "target off by one",
        ("loss = -np.mean(np.log(probs[rows, targets - 1]))",
         "loss = -np.mean(np.log(probs[rows, targets]))")),
    bug("scoring", "padding row scored", "scoring the padding row 0",
        ("scores = h @ E[1:].T\n    scores = scores - ",
         "scores = h @ E.T\n    scores = scores - "),
        ("loss = -np.mean(np.log(probs[rows, targets - 1]))",
         "loss = -np.mean(np.log(probs[rows, targets]))"),
        ("dscores[np.arange(B), targets - 1] -= 1", "dscores[np.arange(B), targets] -= 1"),
        ("dh = dscores @ E[1:]", "dh = dscores @ E"),
        ("dE = np.zeros_like(E)\n    dE[1:] = dscores.T @ h", "dE = dscores.T @ h")),
    bug("scoring", "padding row given gradient", "rows shifted by one",
        ("dE[1:] = dscores.T @ h", "dE[:-1] = dscores.T @ h")),
    bug("scoring", "1/B lost", "missing the 1/B",
        ("dscores *= dloss / B", "dscores *= dloss")),
    bug("scoring", "dloss ignored", "dloss left out",
        ("dscores *= dloss / B", "dscores /= B")),
    bug("scoring", "read-out in float64", "dtype float64, expected float32",
        ("dx = np.zeros(shape, dtype=dh.dtype)", "dx = np.zeros(shape)")),
    bug("scoring", "read-out at the last position", "the last position T - 1",
        ("dx[np.arange(shape[0]), last] = dh", "dx[:, -1] = dh")),
    # ---------------------------------------------------------------- attention
    bug("attention", "softmax sign flipped", "softmax backward's sign flipped",
        ("dscores = att * (datt - (att * datt).sum(axis=-1, keepdims=True))",
         "dscores = att * ((att * datt).sum(axis=-1, keepdims=True) - datt)")),
    bug("attention", "diagonal Jacobian", "Jacobian's diagonal only",
        ("dscores = att * (datt - (att * datt).sum(axis=-1, keepdims=True))",
         "dscores = att * (1 - att) * datt")),
    bug("attention", "scale forgotten", "scale 1/sqrt(dh) forgotten",
        ("dscores = dscores * scale", "dscores = dscores")),
    bug("attention", "scale twice", "applied twice",
        ("dscores = dscores * scale", "dscores = dscores * scale * scale")),
    bug("attention", "scale of D", "1/sqrt(D) instead of 1/sqrt(dh)",
        ("dscores = dscores * scale", "dscores = dscores / math.sqrt(H * dh)")),
    bug("attention", "dq transpose missing", "transpose missing in dq",
        ("dq = dscores @ k", "dq = dscores.transpose(0, 1, 3, 2) @ k")),
    bug("attention", "dk transpose missing", "transpose missing in dk",
        ("dk = dscores.transpose(0, 1, 3, 2) @ q", "dk = dscores @ q")),
    bug("attention", "dv transpose missing", "transpose missing in dv",
        ("dv = att_drop.transpose(0, 1, 3, 2) @ dy", "dv = att_drop @ dy")),
    bug("attention", "heads split by a bare reshape", "split by a bare reshape",
        ("dy = split(dy, H)", "dy = dy.reshape(B, H, T, dh)")),
    bug("attention", "heads merged by a bare reshape", "merged by a bare reshape",
        ("dqkv = np.concatenate([merge(dq), merge(dk), merge(dv)], axis=-1)",
         "dqkv = np.concatenate([dq.reshape(B, T, -1), dk.reshape(B, T, -1), "
         "dv.reshape(B, T, -1)], axis=-1)")),
    bug("attention", "dropout backward skipped", "dropout's backward skipped",
        ("datt = dropout_backward(datt_drop, drop_cache)", "datt = datt_drop")),
    bug("attention", "values before dropout", "values mixed with the weights before dropout",
        ("dv = att_drop.transpose(0, 1, 3, 2) @ dy", "dv = att.transpose(0, 1, 3, 2) @ dy")),
    bug("attention", "masked keys given gradient", "masked keys given gradient",
        ("dscores = att * (datt - (att * datt).sum(axis=-1, keepdims=True))",
         "w = np.exp(q @ k.transpose(0, 1, 3, 2) * scale)\n"
         "    w = w / w.sum(axis=-1, keepdims=True)\n"
         "    dscores = w * (datt - (w * datt).sum(axis=-1, keepdims=True))")),
    bug("attention", "mask on the queries", "mask applied to the queries",
        ("return out, (in_cache, q, k, v, att, att_drop, drop_cache, out_cache, scale)",
         "return out, (in_cache, q, k, v, att, att_drop, drop_cache, out_cache, scale, key_mask)"),
        ("in_cache, q, k, v, att, att_drop, drop_cache, out_cache, scale = cache",
         "in_cache, q, k, v, att, att_drop, drop_cache, out_cache, scale, key_mask = cache"),
        ("dscores = dscores * scale", "dscores = dscores * scale * key_mask[:, None, :, None]")),
    bug("attention", "float64 scale", "turns float32 arithmetic into float64",
        ("scale = 1 / math.sqrt(D // n_heads)", "scale = 1 / np.sqrt(D // n_heads)")),
    # ---------------------------------------------------------------- attention, step by step
    bug("attention_steps", "diagonal Jacobian", "Jacobian's diagonal only",
        ("return A * (dA - inner)", "return A * (1 - A) * dA")),
    bug("attention_steps", "dk transpose missing", "transpose missing in dk",
        ("dk = dS.transpose(0, 1, 3, 2) @ q", "dk = dS @ q")),
    bug("attention_steps", "heads split by a bare reshape", "split by a bare reshape",
        ("return dy.reshape(B, T, H, dh).transpose(0, 2, 1, 3)", "return dy.reshape(B, H, T, dh)")),
    bug("attention_steps", "dropout backward skipped", "dropout's backward skipped",
        ("return dAd * keep * keep_scale", "return dAd")),
    bug("attention_steps", "scale forgotten", "scale 1/sqrt(dh) forgotten",
        ("return dSs * scale", "return dSs")),
    # ---------------------------------------------------------------- embedding
    bug("embedding", "fancy index", "fancy-index dW[ids] += dout",
        ("np.add.at(dW, ids.reshape(-1), dout.reshape(-1, dout.shape[-1]))",
         "dW[ids.reshape(-1)] += dout.reshape(-1, dout.shape[-1])")),
    bug("embedding", "padding row skipped", "right except at the padding row 0",
        ("np.add.at(dW, ids.reshape(-1), dout.reshape(-1, dout.shape[-1]))",
         "np.add.at(dW, ids.reshape(-1), dout.reshape(-1, dout.shape[-1]))\n    dW[0] = 0")),
    bug("embedding", "given dW ignored", "must add into the dW it is given",
        ("if dW is None:\n        dW = np.zeros", "if True:\n        dW = np.zeros")),
    bug("embedding", "float64 table", "dtype float64, expected float32",
        ("dW = np.zeros((rows, dout.shape[-1]), dtype=dout.dtype)",
         "dW = np.zeros((rows, dout.shape[-1]))")),
    # ---------------------------------------------------------------- linear
    bug("linear", "dW transposed", "dW is transposed",
        ("dW = d2.T @ x2", "dW = x2.T @ d2")),
    bug("linear", "db keepdims", "keepdims",
        ("db = d2.sum(axis=0)", "db = d2.sum(axis=0, keepdims=True)")),
    bug("linear", "first session only", "first session alone",
        ("dW = d2.T @ x2", "dW = dout[0].T @ x[0]"),
        ("db = d2.sum(axis=0)", "db = dout[0].sum(axis=0)")),
    bug("linear", "dx through W transposed", "the shapes do not fit",
        ("dx = dout @ W", "dx = dout @ W.T")),
    bug("linear", "mean instead of sum", "not the mean",
        ("db = d2.sum(axis=0)", "db = d2.mean(axis=0)")),
    # ---------------------------------------------------------------- relu
    bug("relu", "gate from dout", "masked by its own sign",
        ("return dout * (x > 0)", "return dout * (dout > 0)")),
    bug("relu", "times the output", "times the output",
        ("return dout * (x > 0)", "return dout * np.maximum(x, 0)")),
    bug("relu", "float64 gate", "dtype float64, expected float32",
        ("return dout * (x > 0)", "return dout * (x > 0).astype(float)")),
    # ---------------------------------------------------------------- dropout
    bug("dropout", "scale left out of the backward", "1/(1-p) scale left out",
        ("return dout * keep / (1 - p)", "return dout * keep")),
    bug("dropout", "mask drawn again", "reuse the forward's mask",
        ("return dout * keep / (1 - p)",
         "return dout * (np.random.default_rng().random(dout.shape) >= p) / (1 - p)"),
        ("def dropout_forward", "import numpy as np\n\n\ndef dropout_forward")),
    bug("dropout", "mask not applied", "but not masked",
        ("return dout * keep / (1 - p)", "return dout / (1 - p)")),
    bug("dropout", "float64 mask", "dtype float64, expected float32",
        ("return x * keep / (1 - p), (keep, p)", "return x * (keep / (1 - p)), (keep, p)")),
    # ---------------------------------------------------------------- adam
    bug("adam", "no bias correction", "without the bias corrections",
        ("m_hat = self.m[k] / (1 - b1 ** self.t)", "m_hat = self.m[k]"),
        ("v_hat = self.v[k] / (1 - b2 ** self.t)", "v_hat = self.v[k]")),
    bug("adam", "decoupled weight decay", "decoupled weight decay",
        ("g = grads[k] + self.weight_decay * p", "g = grads[k]"),
        ("p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)",
         "p -= self.lr * (m_hat / (np.sqrt(v_hat) + self.eps) + self.weight_decay * p)")),
    bug("adam", "eps inside the sqrt", "eps inside the square root",
        ("(np.sqrt(v_hat) + self.eps)", "np.sqrt(v_hat + self.eps)")),
    bug("adam", "weight decay forgotten", "without the weight decay",
        ("g = grads[k] + self.weight_decay * p", "g = grads[k]")),
    bug("adam", "not in place", "update each parameter array in place",
        ("p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)",
         "self.params[k] = p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)")),
    bug("adam", "learning rate kept aside", "opt.lr = ...) left unused",
        ("self.lr = lr", "self.lr = self.rate = lr"),
        ("p -= self.lr * m_hat", "p -= self.rate * m_hat")),
    # ---------------------------------------------------------------- encoder
    bug("encoder", "attention residual forgotten", "without the attention block's residual",
        ("return dx + dsum1, g", "return dx, g")),
    bug("encoder", "feed-forward residual forgotten", "without the feed-forward block's residual",
        ("dh = dh + dsum2", "dh = dh")),
    bug("encoder", "ReLU backward skipped", "ReLU's backward skipped",
        ("df = relu_backward(df, relu)", "df = df")),
    bug("encoder", "attention output's dropout skipped",
        "dropout on the attention's output skipped",
        ("da = dropout_backward(dsum1, drop1)", "da = dsum1")),
    bug("encoder", "hidden dropout skipped", "dropout on the feed-forward hidden layer skipped",
        ("df = dropout_backward(df, drop2)", "df = df")),
]


@cache
def failure(bug_, directory):
    """The first row of ``bug_``'s exercise that does not pass, with the bug planted in a
    workspace of its own under ``directory`` (None if every row passes)."""
    source = (SOLUTIONS / f"{bug_.exercise}.py").read_text()
    for line, planted in bug_.edits:
        assert source.count(line) == 1, f"{bug_.exercise}.py no longer has {line!r} once"
        source = source.replace(line, planted)
    workspace = directory / bug_.id
    workspace.mkdir()
    (workspace / f"{bug_.exercise}.py").write_text(source)
    return next((row for row in check_exercise(bug_.exercise, workspace) if not row.passed),
                None)


@pytest.fixture(scope="module")
def planted_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("planted")


@pytest.mark.parametrize("bug_", PLANTED, ids=[b.id for b in PLANTED])
def test_planted_bug_is_caught_and_named(bug_, planted_dir):
    row = failure(bug_, planted_dir)
    assert row is not None, f"{bug_.id}: the check passes"
    assert row.status in ("fail", "error") and "Traceback" not in row.message, row
    assert bug_.words in row.message, f"{bug_.id}: not named: {row.output}: {row.message}"


def test_planted_summary(planted_dir):
    """At least 40 bugs, 4 each in layer norm, attention and scoring; every one caught, at
    least 90% named by their class; printed per exercise (run with -s)."""
    caught, named = Counter(), Counter()
    for b in PLANTED:
        row = failure(b, planted_dir)
        caught[b.exercise] += row is not None and "Traceback" not in row.message
        named[b.exercise] += row is not None and b.words in row.message
    total = Counter(b.exercise for b in PLANTED)
    print(f"\n{'exercise':<18}{'planted':>8}{'caught':>8}{'named':>8}")
    for name in total:
        print(f"{name:<18}{total[name]:>8}{caught[name]:>8}{named[name]:>8}")
    print(f"{'all':<18}{sum(total.values()):>8}{sum(caught.values()):>8}{sum(named.values()):>8}")
    assert len({b.id for b in PLANTED}) == len(PLANTED)
    assert sum(total.values()) >= 40
    assert min(total[n] for n in ("layernorm", "attention", "scoring")) >= 4
    assert caught == total
    assert sum(named.values()) >= 0.9 * sum(total.values())
