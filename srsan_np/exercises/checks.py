"""The checker: every exercise of a workspace, checked as the textbook ops are.

For each exercise, in float64 with small, mutually distinct dimensions (B=3 sessions, T=5
positions, D=8 features, H=2 heads, a feed-forward width of 12, V=11 items), with padding,
masked keys and repeated ids where the op has them:

- each forward output is compared with the reference op's (the learner's forward may be
  the given one, or their own);
- each gradient is compared with centred finite differences of the learner's own forward
  for a random upstream gradient, through :func:`srsan_np.gradcheck.rel_error`;
- a wrong output gets a diagnosis (:mod:`srsan_np.exercises.diagnosis`).

The learner's forward returns any cache it likes; the checker hands it back to their
backward unopened. An untouched stub is "not done"; any other exception in the learner's
code is reported as their file and line.
"""

from __future__ import annotations

import html
import math
import traceback
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from ..gradcheck import numerical_gradient, richardson_gradient
from . import workspace
from .diagnosis import Hints, Region, diagnose

__all__ = ["Row", "CheckResult", "check", "GRAD_TOL", "VALUE_TOL"]

GRAD_TOL = 1e-6  # a correct backward gives 1e-12 .. 1e-8 against finite differences
VALUE_TOL = 1e-8  # a forward against the reference: rounding only
FLOOR = 1e-3  # of the largest true entry: see _error

B, T, D, H, F, V = 3, 5, 8, 2, 12, 11
KEY_MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=bool)  # (B, T)


@dataclass(frozen=True)
class Row:
    """One output of one exercise."""

    exercise: str
    output: str
    status: str  # "pass", "fail", "not done" or "error"
    error: float | None = None  # relative error, where one was measured
    message: str = ""  # the diagnosis, or where the learner's code raised

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def __str__(self):
        return f"{self.exercise}: {self.output}"


@dataclass(frozen=True)
class CheckResult:
    """The rows of a check; ``passed`` if every row passed. Prints (and shows in a
    notebook) as a table."""

    rows: tuple
    workspace: str | None = None

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row.passed for row in self.rows)

    def status(self, exercise) -> str:
        """"pass" if every output of ``exercise`` passed, else the first other status."""
        statuses = [row.status for row in self.rows if row.exercise == exercise]
        return next((s for s in statuses if s != "pass"), "pass" if statuses else "absent")

    def _table(self):
        return [(r.exercise, r.output, "" if r.error is None else f"{r.error:.1e}", r.status,
                 r.message) for r in self.rows]

    def __repr__(self):
        rows = self._table()
        head = ("exercise", "output", "rel. error", "status")
        widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(4)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)).rstrip())
            if r[4]:
                lines.append(f"    {r[4]}")
        where = self.workspace or "the reference ops"
        verdict = "all pass" if self.passed else "not all pass"
        lines.append(f"{where}: {verdict}")
        return "\n".join(lines)

    def _repr_html_(self):
        colour = {"pass": "#1a7f37", "fail": "#cf222e", "error": "#cf222e",
                  "not done": "#9a6700"}
        cells = "".join(
            f"<tr><td>{html.escape(e)}</td><td>{html.escape(o)}</td><td>{err}</td>"
            f"<td style='color:{colour[s]}'><b>{s}</b></td>"
            f"<td style='text-align:left'>{html.escape(m)}</td></tr>"
            for e, o, err, s, m in self._table())
        where = html.escape(self.workspace or "the reference ops")
        return (f"<table><caption>{where}</caption><tr><th>exercise</th><th>output</th>"
                f"<th>rel. error</th><th>status</th><th>diagnosis</th></tr>{cells}</table>")


class _NotDone(Exception):
    pass


class _Exercise:
    """Collects the rows of one exercise as its outputs are checked."""

    def __init__(self, name):
        self.name = name
        self.rows = []

    def _add(self, output, error, got, true, hints, tol):
        right_dtype = getattr(got, "dtype", np.float64) == np.float64  # inputs are float64
        if error is not None and error < tol and right_dtype:
            self.rows.append(Row(self.name, output, "pass", error))
        else:
            self.rows.append(Row(self.name, output, "fail", error,
                                 diagnose(output, got, true, hints)))

    def value(self, output, got, expected, hints=Hints(), tol=VALUE_TOL):
        """A forward output against the reference's."""
        self._add(output, _error(got, expected), got, expected, hints, tol)

    def gradient(self, output, got, f, x, dout, hints=Hints(), richardson=False):
        """A gradient against centred differences of ``f`` (which reads ``x``)."""
        numeric = (richardson_gradient if richardson else numerical_gradient)(f, x, dout)
        self._add(output, _error(got, numeric), got, numeric, hints, GRAD_TOL)

    def fail(self, output, message):
        self.rows.append(Row(self.name, output, "fail", None, message))


def _error(got, true):
    """The relative error ``max |a - b| / max(floor, |a| + |b|)``, or None where it cannot
    be measured (wrong shape, not an array, NaN).

    As :func:`srsan_np.gradcheck.rel_error`, except that the floor is :data:`FLOOR` of the
    largest true entry: the rounding noise of a finite difference scales with the output,
    not with the entry, so a true gradient that is exactly zero (the key bias of attention,
    which shifts every score of a row alike) would otherwise fail on noise alone. A wrong
    entry of any size above that floor still counts in full.
    """
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if got.shape != np.shape(true):
        return None
    if got.size == 0:
        return 0.0
    floor = max(1e-8, FLOOR * float(np.max(np.abs(true))))
    error = float(np.max(np.abs(got - true) / np.maximum(floor, np.abs(got) + np.abs(true))))
    return None if math.isnan(error) else error


def _returns(name, result, n):
    """``result`` as a tuple of ``n`` values, or a clear failure."""
    if n == 1:
        return result
    if not isinstance(result, tuple) or len(result) != n:
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
        raise _Returned(f"{name} must return {n} values, returned {got}")
    return result


class _Returned(Exception):
    pass


def _rng():
    return np.random.default_rng(14)


# --------------------------------------------------------------------------- the ops

def _embedding(mod, ref, ex):
    rng = _rng()
    ids = np.array([[3, 7, 3, 0, 0], [1, 2, 9, 9, 9], [5, 3, 11, 4, 0]])  # (B, T)
    W = rng.standard_normal((V + 1, D))
    out, cache_ = _returns("embedding_forward", mod.embedding_forward(ids, W), 2)
    ex.value("out", out, ref.embedding_forward(ids, W)[0])
    dout = rng.standard_normal((B, T, D))
    counts = np.bincount(ids.ravel(), minlength=V + 1)
    rows = lambda keep: np.repeat(keep[:, None], D, axis=1)  # noqa: E731
    hints = Hints(regions=(
        Region("the rows of repeated ids", rows(counts > 1),
               "a fancy-index dW[ids] += dout keeps one of each; use np.add.at or a loop"),
        Region("the padding row 0", rows(np.arange(V + 1) == 0),
               "padding is looked up like any id, so row 0 receives its gradient"),
    ))
    dW = mod.embedding_backward(dout, cache_)
    ex.gradient("dW", dW, lambda: mod.embedding_forward(ids, W)[0], W, dout, hints)
    # the model adds the lookup's gradient into the scoring layer's share of the table
    base = rng.standard_normal(W.shape)
    given = base.copy()
    returned = mod.embedding_backward(dout, cache_, given)
    expected = base + ref.embedding_backward(dout, ref.embedding_forward(ids, W)[1])
    if returned is not given:
        ex.fail("dW added into a given dW", "embedding_backward(dout, cache, dW) must add "
                "into the dW it is given, in place, and return that same array")
    else:
        ex.value("dW added into a given dW", given, expected, hints)


def _linear(mod, ref, ex):
    rng = _rng()
    x = rng.standard_normal((B, T, 7))
    W = rng.standard_normal((6, 7))
    b = rng.standard_normal(6)
    out, cache_ = _returns("linear_forward", mod.linear_forward(x, W, b), 2)
    ex.value("out", out, ref.linear_forward(x, W, b)[0])
    dout = rng.standard_normal((B, T, 6))
    dx, dW, db = _returns("linear_backward", mod.linear_backward(dout, cache_), 3)
    f = lambda: mod.linear_forward(x, W, b)[0]  # noqa: E731
    ex.gradient("dx", dx, f, x, dout)
    ex.gradient("dW", dW, f, W, dout)
    ex.gradient("db", db, f, b, dout)


def _layernorm_hints():
    return Hints(factors={D: f"missing the 1/D of a mean over the D = {D} features",
                          1 / D: "divided by D once too often"})


def _layernorm(mod, ref, ex):
    rng = _rng()
    x = 2.0 * rng.standard_normal((B, T, D)) + 3.0  # off-centre rows: the mean matters
    gamma = 1.0 + 0.5 * rng.standard_normal(D)
    beta = rng.standard_normal(D)
    out, cache_ = _returns("layernorm_forward", mod.layernorm_forward(x, gamma, beta), 2)
    ex.value("out", out, ref.layernorm_forward(x, gamma, beta)[0])
    dout = rng.standard_normal((B, T, D))
    dx, dgamma, dbeta = _returns("layernorm_backward", mod.layernorm_backward(dout, cache_), 3)
    f = lambda: mod.layernorm_forward(x, gamma, beta)[0]  # noqa: E731
    hints = _layernorm_hints()
    ex.gradient("dx", dx, f, x, dout, hints)
    ex.gradient("dgamma", dgamma, f, gamma, dout, hints)
    ex.gradient("dbeta", dbeta, f, beta, dout, hints)


def _relu(mod, ref, ex):
    rng = _rng()
    x = rng.standard_normal((B, T, D))
    x += 0.2 * np.sign(x)  # away from the kink at 0, where differences mean nothing
    out, cache_ = _returns("relu_forward", mod.relu_forward(x), 2)
    ex.value("out", out, ref.relu_forward(x)[0])
    dout = rng.standard_normal(x.shape)
    dx = mod.relu_backward(dout, cache_)
    ex.gradient("dx", dx, lambda: mod.relu_forward(x)[0], x, dout)


def _dropout(mod, ref, ex):
    rng = _rng()
    p = 0.25
    x = rng.standard_normal((B, T, D))
    out, cache_ = _returns("dropout_forward",
                           mod.dropout_forward(x, p, np.random.default_rng(5)), 2)
    hints = Hints(factors={1 - p: "missing the 1/(1-p) scale of the kept values",
                           1 / (1 - p): "the 1/(1-p) scale applied twice"})
    kept = np.asarray(out) != 0
    if not 0.5 < kept.mean() < 0.95:
        ex.fail("out", f"dropout_forward kept {kept.mean():.0%} of the values with p={p}; "
                f"it should keep about {1 - p:.0%}")
    else:  # the learner's mask is their own: each kept value must be x / (1 - p)
        ex.value("out", out, np.where(kept, x / (1 - p), 0.0), hints)
    ex.value("out in evaluation (rng None)", mod.dropout_forward(x, p, None)[0], x)
    dout = rng.standard_normal(x.shape)
    dx = mod.dropout_backward(dout, cache_)
    ex.gradient("dx", dx, lambda: mod.dropout_forward(x, p, np.random.default_rng(5))[0],
                x, dout, hints)


def _scoring(mod, ref, ex):
    rng = _rng()
    x = rng.standard_normal((B, T, D))
    last = np.array([4, 2, 3])
    h, cache_ = _returns("readout_forward", mod.readout_forward(x, last), 2)
    ex.value("readout h", h, ref.readout_forward(x, last)[0])
    dh = rng.standard_normal((B, D))
    ex.gradient("readout dx", mod.readout_backward(dh, cache_),
                lambda: mod.readout_forward(x, last)[0], x, dh)

    h = rng.standard_normal((B, D))
    E = rng.standard_normal((V + 1, D))
    targets = np.array([3, 11, 1])
    loss, cache_ = _returns("softmax_cross_entropy", mod.softmax_cross_entropy(h, E, targets), 2)
    ex.value("loss", np.float64(loss), np.float64(ref.softmax_cross_entropy(h, E, targets)[0]))
    dloss = 0.7
    dh, dE = _returns("softmax_cross_entropy_backward",
                      mod.softmax_cross_entropy_backward(dloss, cache_), 2)
    f = lambda: mod.softmax_cross_entropy(h, E, targets)[0]  # noqa: E731
    hints = Hints(factors={B: f"missing the 1/B of the mean over the B = {B} sessions",
                           1 / B: "divided by B twice", 1 / dloss: "dloss left out"})
    ex.gradient("dh", dh, f, h, dloss, hints)
    ex.gradient("dE", dE, f, E, dloss, hints)


def _attention_inputs(rng):
    x = rng.standard_normal((B, T, D))
    weights = [0.5 * rng.standard_normal(s) for s in ((3 * D, D), (3 * D,), (D, D), (D,))]
    return x, weights


def _head_regions(shape, axis):
    """One Region per head: the rows (axis 0) or columns (axis 1) that head owns, in each
    third of the input projection (q, k, v) or in the output projection."""
    dh = D // H
    regions = []
    for head in range(H):
        mask = np.zeros(shape, dtype=bool)
        for start in range(0, shape[axis], D):
            index = [slice(None)] * len(shape)
            index[axis] = slice(start + head * dh, start + (head + 1) * dh)
            mask[tuple(index)] = True
        regions.append(Region(f"head {head} (its rows and columns only)", mask,
                              "a loop or slice over the heads that misses or mixes one"))
    return Hints(regions=tuple(regions))


def _attention(mod, ref, ex):
    rng = _rng()
    x, weights = _attention_inputs(rng)
    out, cache_ = _returns("attention_forward",
                           mod.attention_forward(x, *weights, H, KEY_MASK), 2)
    ex.value("out", out, ref.attention_forward(x, *weights, H, KEY_MASK)[0])
    dout = rng.standard_normal((B, T, D))
    grads = _returns("attention_backward", mod.attention_backward(dout, cache_), 5)
    f = lambda: mod.attention_forward(x, *weights, H, KEY_MASK)[0]  # noqa: E731
    padded = np.repeat(~KEY_MASK[:, :, None], D, axis=2)
    ex.gradient("dx", grads[0], f, x, dout, Hints(regions=(Region(
        "the padded positions", padded,
        "a padded position is still a query: its output, and so its gradient, is real"),)))
    for name, got, param, axis in zip(("d_in_w", "d_in_b", "d_out_w", "d_out_b"), grads[1:],
                                      weights, (0, 0, 1, 0)):
        hints = _head_regions(param.shape, axis) if name != "d_out_b" else Hints()
        ex.gradient(name, got, f, param, dout, hints)


def _encoder(mod, ref, ex):
    from ..ops.encoder import LAYER_KEYS, layer_shapes

    rng = _rng()
    x = rng.standard_normal((B, T, D))
    layer = {k: 0.5 * rng.standard_normal(s) for k, s in layer_shapes(D, F).items()}
    for k in ("norm1.weight", "norm2.weight"):
        layer[k] += 1.0
    p = 0.1  # the dropouts on, each forward with the same seeded masks

    def forward(module):
        return module.encoder_layer_forward(x, layer, H, KEY_MASK, p, np.random.default_rng(3))

    out, cache_ = _returns("encoder_layer_forward", forward(mod), 2)
    ex.value("out", out, forward(ref)[0])
    dout = rng.standard_normal((B, T, D))
    dx, dlayer = _returns("encoder_layer_backward", mod.encoder_layer_backward(dout, cache_), 2)
    f = lambda: forward(mod)[0]  # noqa: E731
    # richardson: a few true gradients are tiny beside the output (a ReLU unit active at
    # one position), below the rounding noise of the plain step
    ex.gradient("dx", dx, f, x, dout, richardson=True)
    missing = [k for k in LAYER_KEYS if k not in dlayer]
    if missing:
        ex.fail("dlayer", f"encoder_layer_backward's dict misses {missing}")
        return
    for key in LAYER_KEYS:
        ex.gradient(f"d[{key}]", dlayer[key], f, layer[key], dout, richardson=True)


def _adam(mod, ref, ex):
    rng = _rng()
    start = {"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in start.items()} for _ in range(3)]

    def run(module, steps):
        params = {k: v.copy() for k, v in start.items()}
        opt = module.Adam(params, lr=1e-2, weight_decay=0.1)
        for g in grads[:steps]:
            opt.step(g)
        return params, opt

    for steps in (1, 3):
        mine, opt = run(mod, steps)
        theirs, ref_opt = run(ref, steps)
        for k in start:
            ex.value(f"update of {k} after {steps} step{'s' * (steps > 1)}",
                     mine[k] - start[k], theirs[k] - start[k])
    state, ref_state = opt.state_dict(), ref_opt.state_dict()
    ex.value("state_dict (t, m, v) after 3 steps",
             np.concatenate([np.ravel(state[k]) for k in ref_state]),
             np.concatenate([np.ravel(ref_state[k]).astype(np.float64) for k in ref_state]))


# --------------------------------------------------------------------------- step by step

def _steps(mod, ex, steps, chain):
    """Each ``(name, inputs, float_args)``: ``name_backward(dout, *inputs)`` returns the
    gradients of ``inputs[i]`` for ``i in float_args``; then the chain."""
    rng = _rng()
    for name, inputs, float_args in steps:
        forward, backward = getattr(mod, f"{name}_forward"), getattr(mod, f"{name}_backward")
        out = forward(*inputs)
        dout = rng.standard_normal(np.shape(out)) if np.ndim(out) else 0.7
        grads = backward(dout, *inputs)
        if len(float_args) > 1:
            grads = _returns(f"{name}_backward", grads, len(float_args))
        else:
            grads = (grads,)
        for i, got in zip(float_args, grads):
            ex.gradient(f"{name}: d{_ARG_NAMES[name][i]}", got,
                        lambda: forward(*inputs), inputs[i], dout)
    chain(rng)


_ARG_NAMES = {
    "mean": ("x",), "centred": ("x", "mean"), "variance": ("centred",), "rstd": ("var",),
    "xhat": ("centred", "rstd"), "affine": ("xhat", "gamma", "beta"),
    "scores": ("h", "E"), "shifted": ("scores",), "exp": ("shifted",), "sum": ("exp",),
    "log_probs": ("shifted", "total"), "loss": ("logp", "targets"),
}


def _layernorm_steps(mod, ref, ex):
    rng = _rng()
    x = 2.0 * rng.standard_normal((4, D)) + 3.0  # (N, D)
    mean = x.mean(axis=1, keepdims=True)
    centred = x - mean
    var = (centred ** 2).mean(axis=1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + 1e-5)
    xhat, gamma, beta = centred * rstd, rng.standard_normal(D), rng.standard_normal(D)
    steps = [("mean", (x,), (0,)), ("centred", (x, mean), (0, 1)), ("variance", (centred,), (0,)),
             ("rstd", (var,), (0,)), ("xhat", (centred, rstd), (0, 1)),
             ("affine", (xhat, gamma, beta), (0, 1, 2))]

    def chain(rng):
        dout = rng.standard_normal(x.shape)
        grads = _returns("layernorm_backward",
                         mod.layernorm_backward(dout, mod.layernorm_forward(x, gamma, beta)[1]), 3)
        f = lambda: mod.layernorm_forward(x, gamma, beta)[0]  # noqa: E731
        for name, got, arg in zip(("dx", "dgamma", "dbeta"), grads, (x, gamma, beta)):
            ex.gradient(f"chain: {name}", got, f, arg, dout, _layernorm_hints())

    _steps(mod, ex, steps, chain)


def _softmax_ce_steps(mod, ref, ex):
    rng = _rng()
    h, E = rng.standard_normal((B, D)), rng.standard_normal((V + 1, D))
    targets = np.array([3, 11, 1])
    scores = h @ E[1:].T
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    logp = shifted - np.log(total)
    steps = [("scores", (h, E), (0, 1)), ("shifted", (scores,), (0,)), ("exp", (shifted,), (0,)),
             ("sum", (exp,), (0,)), ("log_probs", (shifted, total), (0, 1)),
             ("loss", (logp, targets), (0,))]

    def chain(rng):
        loss, steps_ = _returns("softmax_cross_entropy", mod.softmax_cross_entropy(h, E, targets), 2)
        ex.value("chain: loss", np.float64(loss),
                 np.float64(ref.softmax_cross_entropy(h, E, targets)[0]))
        grads = _returns("softmax_cross_entropy_backward",
                         mod.softmax_cross_entropy_backward(0.7, steps_), 2)
        f = lambda: mod.softmax_cross_entropy(h, E, targets)[0]  # noqa: E731
        for name, got, arg in zip(("dh", "dE"), grads, (h, E)):
            ex.gradient(f"chain: {name}", got, f, arg, 0.7)

    _steps(mod, ex, steps, chain)


CHECKS = {
    "embedding": _embedding, "linear": _linear, "layernorm": _layernorm, "relu": _relu,
    "dropout": _dropout, "scoring": _scoring, "adam": _adam, "attention": _attention,
    "encoder": _encoder, "layernorm_steps": _layernorm_steps,
    "softmax_ce_steps": _softmax_ce_steps,
}
# the reference op each exercise's forward is compared with
_REFERENCE_OF = {"layernorm_steps": "layernorm", "softmax_ce_steps": "scoring"}


# --------------------------------------------------------------------------- running

def learner_location(error, directory) -> str:
    """``file:line: in function: Error: message`` at the deepest frame in ``directory``."""
    root = Path(directory).resolve()
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if Path(f.filename).resolve().is_relative_to(root)]
    where = ""
    if frames:
        f = frames[-1]
        where = f"{f.filename}:{f.lineno}: in {f.name}: "
    elif isinstance(error, SyntaxError) and error.filename:
        where = f"{error.filename}:{error.lineno}: "
    return f"{where}{type(error).__name__}: {error}".strip()


def check_exercise(name, directory=None) -> list[Row]:
    """The rows of exercise ``name``: the learner's module in ``directory`` (None: the
    reference), every other module the reference."""
    ex = _Exercise(name)
    try:
        if directory is not None and not (Path(directory) / f"{name}.py").is_file():
            return [Row(name, "-", "not done",
                        message=f"no {name}.py in {directory} (srsan-np exercises init)")]
        package = workspace.load(directory, [name] if directory is not None else [], [name])
        reference = workspace.load(None, (), [_REFERENCE_OF.get(name, name)])
        reference = getattr(reference, _REFERENCE_OF.get(name, name))
        # one Numba thread while checking: the arrays are tiny, and each of the many
        # finite-difference calls would pay for waking the others (prange results do not
        # depend on the thread count); the caller's setting is restored after
        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            with np.errstate(all="ignore"):
                CHECKS[name](getattr(package, name), reference, ex)
        finally:
            numba.set_num_threads(threads)
    except NotImplementedError as err:
        if workspace._NOT_DONE in str(err):
            return ex.rows + [Row(name, "-", "not done", message=f"{err} (still a stub)")]
        return ex.rows + [Row(name, "-", "error", message=learner_location(err, directory))]
    except _Returned as err:
        return ex.rows + [Row(name, "-", "fail", message=str(err))]
    except Exception as err:  # the learner's code raised: say where, in their file
        if directory is None:
            raise
        return ex.rows + [Row(name, "-", "error", message=learner_location(err, directory))]
    return ex.rows


def check(directory=None, names=None) -> CheckResult:
    """Check the exercises ``names`` of the workspace ``directory`` (None: the reference ops,
    which must pass). By default: every exercise with a file in ``directory``, or all."""
    if not names and directory is not None:
        names = [n for n in workspace.EXERCISES if (Path(directory) / f"{n}.py").is_file()]
    names = list(workspace.EXERCISES) if not names else list(names)
    unknown = [n for n in names if n not in workspace.EXERCISES]
    if unknown:
        raise KeyError(f"no exercise {unknown}; the exercises are {list(workspace.EXERCISES)}")
    rows = [row for name in names for row in check_exercise(name, directory)]
    return CheckResult(tuple(rows), None if directory is None else str(directory))
