"""The checker: every exercise of a workspace, checked in every configuration training
runs it in, and every wrong output diagnosed.

Each exercise is checked in a few :class:`Setting` s, in order (:func:`settings`):

- float64 with small, mutually distinct dimensions (B=3 sessions, T=5 positions, D=8
  features, H=2 heads, a feed-forward width of 12, V=11 items), padding, masked keys and
  repeated ids where the op has them, dropout off. Each forward output is compared with the
  reference op's (the learner's forward may be the given one, or their own); each gradient
  with centred finite differences of the learner's own forward for a random upstream
  gradient, as :func:`srsan_np.gradcheck.rel_error` measures, less than :data:`GRAD_TOL`;
- dropout on (the ops that have it), the masks drawn from a generator seeded alike for every
  forward, so each op is exact for its own masks;
- odd sizes, three heads of three features, no key mask (the faithful mode's attention);
- float32, as training runs: every output and every gradient must have the dtype and the
  shape of what it differentiates, and agree with the reference's float64 values to
  float32's precision (:data:`F32_TOL`). ``train --ops`` runs this one with its own
  dropout, heads and mask (:func:`run_setting`).

A setting runs only if the ones before it passed, so the first failure is the one shown. A
wrong output gets a diagnosis (:mod:`srsan_np.exercises.diagnosis`) which first tries the
exercise's known mistakes (:mod:`srsan_np.exercises.mistakes`). The learner's forward may
return any cache it likes; the checker hands it back to their backward unopened. An
untouched stub is "not done"; any other exception in the learner's code is reported at
their file and line.

:func:`check` runs the learner's code in a child process (:mod:`srsan_np.exercises.sandbox`)
with a time limit per exercise; :func:`check_exercise` runs one exercise in this process.
"""

from __future__ import annotations

import html
import math
import re
import traceback
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np

from ..gradcheck import numerical_gradient, richardson_gradient
from . import attention_steps as attn_steps
from . import layernorm_steps as ln_steps
from . import mistakes as known
from . import softmax_ce_steps as ce_steps
from . import workspace
from .sandbox import run_checks
from .diagnosis import RTOL, Hints, Invariant, Region, diagnose

__all__ = ["Row", "CheckResult", "Setting", "settings", "run_setting", "check",
           "check_exercise", "learner_location", "GRAD_TOL", "VALUE_TOL", "F32_TOL",
           "TIME_LIMIT"]

GRAD_TOL = 1e-6  # a correct backward gives 1e-12 .. 1e-8 against finite differences
VALUE_TOL = 1e-8  # a float64 forward against the reference: rounding only
F32_TOL = 1e-3  # float32 against the reference's float64: float32 rounding only (see _error)
FLOOR, F32_FLOOR = 1e-3, 1e-2  # of the largest true entry: see _error
# "fits": a pattern or a known mistake, within this much of the largest true entry; for a
# gradient against finite differences (good to about 1e-8), a forward output against the
# reference, a known mistake (computed as exactly as the learner's result), and in float32
RTOL_VALUE, RTOL_EXACT, F32_RTOL = 1e-10, 1e-7, 1e-4
SEED = 5  # every forward of one check draws its dropout masks from default_rng(SEED)
TIME_LIMIT = workspace.TIME_LIMIT


# --------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Setting:
    """One configuration an exercise is checked in."""

    dtype: str = "float64"
    p: float = 0.0  # dropout
    heads: int = 2
    head_width: int = 4  # dh; D = heads * head_width
    masked: bool = True  # a key mask with padded positions (sequence mode); False: none
    batch: tuple = (3, 5)  # (B, T)

    @property
    def D(self) -> int:
        return self.heads * self.head_width

    def label(self, name) -> str:
        """What differs from the first setting that matters to exercise ``name``, e.g.
        "float32, dropout 0.1, 3 heads, B=2 T=7 D=9"."""
        attention = name in ("attention", "attention_steps", "encoder")
        words = [self.dtype] if self.dtype != "float64" else []
        words += [f"dropout {self.p:g}"] if self.p and (attention or name == "dropout") else []
        words += [f"{self.heads} heads"] if attention and self.heads != 2 else []
        words += ["no key mask"] if attention and not self.masked else []
        if (*self.batch, self.D) != (3, 5, 8) and name != "adam":
            words.append(f"B={self.batch[0]} T={self.batch[1]} D={self.D}")
        return ", ".join(words)


BASE = Setting()
DROPOUT = Setting(p=0.25)
FAITHFUL = Setting(p=0.1, heads=3, head_width=3, masked=False, batch=(2, 7))
FLOAT32 = Setting(dtype="float32", p=0.1, heads=3, head_width=3, batch=(2, 7))


def run_setting(heads, dropout, masked) -> Setting:
    """The float32 setting of a training run: its heads, its dropout, its key mask."""
    return replace(FLOAT32, p=float(dropout), heads=int(heads), masked=bool(masked))


def settings(name, run=None) -> list[Setting]:
    """The settings exercise ``name`` is checked in; ``run`` replaces the float32 one."""
    f32 = FLOAT32 if run is None else run
    if name == "attention":
        return [BASE, DROPOUT, FAITHFUL, f32]
    if name == "encoder":
        return [BASE, replace(BASE, p=0.1), f32]
    if name == "dropout":
        return [DROPOUT, replace(f32, p=f32.p or 0.1)]
    if name == "attention_steps":
        return [BASE, DROPOUT]
    if name.endswith("_steps"):
        return [BASE]
    return [BASE, f32]


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class Row:
    """One output of one exercise in one setting."""

    exercise: str
    output: str  # "dx", or "dx [float32, dropout 0.1]" in a setting other than the first
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
    notebook) as a table, captioned with whose code it checked."""

    rows: tuple
    workspace: str | None = None  # None: the reference implementation, not the learner's

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row.passed for row in self.rows)

    def status(self, exercise) -> str:
        """"pass" if every output of ``exercise`` passed, else the first other status."""
        statuses = [row.status for row in self.rows if row.exercise == exercise]
        return next((s for s in statuses if s != "pass"), "pass" if statuses else "absent")

    @property
    def whose(self) -> str:
        return (f"your workspace {self.workspace}" if self.workspace is not None
                else "the REFERENCE implementation (not your code)")

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
        lines.append(f"{self.whose}: {'all pass' if self.passed else 'not all pass'}")
        return "\n".join(lines)

    def _repr_html_(self):
        colour = {"pass": "#1a7f37", "fail": "#cf222e", "error": "#cf222e",
                  "not done": "#9a6700"}
        cells = "".join(
            f"<tr><td>{html.escape(e)}</td><td>{html.escape(o)}</td><td>{err}</td>"
            f"<td style='color:{colour[s]}'><b>{s}</b></td>"
            f"<td style='text-align:left'>{html.escape(m)}</td></tr>"
            for e, o, err, s, m in self._table())
        verdict = "all pass" if self.passed else "not all pass"
        return (f"<table><caption>{html.escape(self.whose)}: {verdict}</caption><tr>"
                f"<th>exercise</th><th>output</th><th>rel. error</th><th>status</th>"
                f"<th>diagnosis</th></tr>{cells}</table>")


# --------------------------------------------------------------------------- measuring

def _error(got, true, floor=FLOOR):
    """The relative error ``max |a - b| / max(floor, |a| + |b|)``, or None where it cannot
    be measured (wrong shape, not an array, NaN).

    As :func:`srsan_np.gradcheck.rel_error`, except that the floor is ``floor`` times the
    largest true entry: the rounding noise of a finite difference (or of float32) scales
    with the output, not with the entry, so a true gradient that is exactly zero (the key
    bias of attention, which shifts every score of a row alike) would otherwise fail on
    noise alone. A wrong entry of any size above that floor still counts in full.
    """
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if got.shape != np.shape(true):
        return None
    if got.size == 0:
        return 0.0
    floor = max(1e-8, floor * float(np.max(np.abs(true))))
    error = float(np.max(np.abs(got - true) / np.maximum(floor, np.abs(got) + np.abs(true))))
    return None if math.isnan(error) else error


class _Returned(Exception):
    """A learner's function returned the wrong number of values."""


def _returns(name, result, n):
    """``result`` as a tuple of ``n`` values, or a clear failure."""
    if n == 1:
        return result
    if not isinstance(result, tuple) or len(result) != n:
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
        raise _Returned(f"{name} must return {n} values, returned {got}")
    return result


class _Exercise:
    """Collects the rows of one exercise in one setting as its outputs are checked."""

    def __init__(self, name, module, reference, setting):
        self.name, self.mod, self.ref, self.s = name, module, reference, setting
        self.prefix = ""  # "chain: " for the whole chain of a steps exercise
        self.rows = []
        self.mistakes = lambda: []  # the known mistakes of this setting, built on demand
        self.steps_exercise = ""  # where a fused op's mistakes live, step by step
        self.f32 = setting.dtype == "float32"
        self.dtype = np.dtype(setting.dtype)

    def cast(self, value):
        """An input as this setting runs it: a float array in its dtype (a float64 array
        is passed as itself, so finite differences can nudge it)."""
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.dtype != self.dtype:
            return value.astype(self.dtype)
        return value

    def _named(self, output):
        """``(says, array)`` of each known mistake that changes ``output``."""
        found = []
        numbers = re.findall(r"(\d+)\. ", workspace.SECTIONS[self.name])
        section = ", ".join(f"§{n}" for n in numbers)
        for m in self.mistakes():
            if output in m.grads:
                where = (f"; the step: {self.steps_exercise}.{m.step}" if m.step and
                         self.steps_exercise else f"; the step: {m.step}" if m.step else "")
                found.append((f"{m.says} (see docs/derivations.md {section}{where})",
                              m.grads[output]))
        return tuple(found)

    def _label(self, output):
        """``output`` as the table shows it: "dx", or "dx [float32, ...]" in a later setting."""
        label, setting = f"{self.prefix}{output}", self.s.label(self.name)
        return f"{label} [{setting}]" if setting else label

    def _add(self, output, got, true, hints, tol, dtype=True, value=False):
        label = self._label(output)
        error = _error(got, true, F32_FLOOR if self.f32 else FLOOR)
        right_dtype = not dtype or getattr(got, "dtype", None) == self.dtype
        if error is not None and error < tol and right_dtype:
            self.rows.append(Row(self.name, label, "pass", error))
            return
        hints = replace(hints, mistakes=hints.mistakes + self._named(output))
        if self.steps_exercise:
            hints = replace(hints, pointer=(
                f"; to find the step, write {self.steps_exercise}.py (srsan-np exercises "
                f"check DIR {self.steps_exercise})"))
        message = diagnose(f"{self.prefix}{output}", got, true, hints,
                           dtype=self.dtype if dtype else np.asarray(got).dtype,
                           rtol=F32_RTOL if self.f32 else RTOL_VALUE if value else RTOL,
                           exact=F32_RTOL if self.f32 else RTOL_VALUE if value else RTOL_EXACT,
                           noun="value" if value else "gradient")
        self.rows.append(Row(self.name, label, "fail", error, message))

    def value(self, output, got, expected, hints=Hints(), dtype=True):
        """A forward output against the reference's (float64)."""
        self._add(output, got, np.asarray(expected, dtype=np.float64), hints,
                  F32_TOL if self.f32 else VALUE_TOL, dtype, value=True)

    def gradient(self, output, got, f, x, dout, hints=Hints(), richardson=False):
        """A gradient against centred differences of ``f`` (which reads ``x``; float64)."""
        numeric = (richardson_gradient if richardson else numerical_gradient)(f, x, dout)
        self._add(output, got, numeric, hints, GRAD_TOL)

    def against(self, output, got, true, hints=Hints()):
        """A gradient against a true value (float32: the reference's float64 gradient)."""
        self._add(output, got, np.asarray(true, dtype=np.float64), hints,
                  F32_TOL if self.f32 else GRAD_TOL)

    def fail(self, output, message):
        self.rows.append(Row(self.name, self._label(output), "fail", None, message))


def _op(ex, forward, backward, inputs, wrt, dout, hints=None, richardson=False, out="out"):
    """Check one op's output and gradients in ``ex``'s setting.

    ``forward = (name, f(module, args) -> (out, cache))`` reads the dict ``args``;
    ``backward = (name, g(module, dout, cache) -> grads)`` returns the gradients in the
    order of ``wrt``, pairs ``(output name, key of inputs)``; ``out`` names the forward's
    output ("loss": a number, of any dtype). float64: each gradient against finite
    differences of the learner's forward; float32: against the reference's float64
    gradient on the same values.
    """
    (fname, f), (bname, g) = forward, backward
    hints = hints or {}
    args = {k: ex.cast(v) for k, v in inputs.items()}
    got, cache_ = _returns(fname, f(ex.mod, args), 2)
    expected, ref_cache = f(ex.ref, inputs)
    ex.value(out, got, expected, hints.get(out, Hints()), dtype=out != "loss")
    grads = _returns(bname, g(ex.mod, ex.cast(dout), cache_), len(wrt))
    grads = grads if len(wrt) > 1 else (grads,)
    if ex.f32:
        true = g(ex.ref, dout, ref_cache)
        true = true if len(wrt) > 1 else (true,)
        for (output, _), got, t in zip(wrt, grads, true):
            ex.against(output, got, t, hints.get(output, Hints()))
        return
    for (output, key), got in zip(wrt, grads):
        ex.gradient(output, got, lambda: f(ex.mod, args)[0], args[key], dout,
                    hints.get(output, Hints()), richardson)


def _rng():
    return np.random.default_rng(14)


def _values(rng, shape, scale=1.0, shift=0.0):
    """Normal values exactly representable in float32, so a float32 setting and a float64
    one see the same numbers."""
    return (scale * rng.standard_normal(shape) + shift).astype(np.float32).astype(np.float64)


def _key_mask(B, T):
    """(B, T) bool: the first session full, the others padded at the end."""
    lengths = [T] + [max(1, T - 2 - (b % 2)) for b in range(1, B)]
    return np.arange(T)[None, :] < np.array(lengths)[:, None]


def _dropout_rng(ex):
    """A generator for one forward: seeded alike every time (None when dropout is off)."""
    return np.random.default_rng(SEED) if ex.s.p > 0 else None


# --------------------------------------------------------------------------- the ops

def _linear(ex):
    rng, (B, T), D = _rng(), ex.s.batch, ex.s.D
    inputs = dict(x=_values(rng, (B, T, D - 1)), W=_values(rng, (D - 2, D - 1)),
                  b=_values(rng, (D - 2,)))
    dout = _values(rng, (B, T, D - 2))
    mean = {1 / (B * T): f"divided by the {B * T} rows: W and b are shared by every row, so "
                         f"their gradient is the sum over the rows, not the mean"}
    ex.mistakes = lambda: known.linear(inputs, dout)
    _op(ex, ("linear_forward", lambda m, a: m.linear_forward(a["x"], a["W"], a["b"])),
        ("linear_backward", lambda m, d, c: m.linear_backward(d, c)),
        inputs, (("dx", "x"), ("dW", "W"), ("db", "b")), dout,
        {"dW": Hints(factors=mean), "db": Hints(factors=mean)})


def _relu(ex):
    rng, (B, T), D = _rng(), ex.s.batch, ex.s.D
    x = _values(rng, (B, T, D))
    x += 0.25 * np.sign(x)  # away from the kink at 0, where differences mean nothing
    inputs, dout = dict(x=x), _values(rng, x.shape)
    ex.mistakes = lambda: known.relu(inputs, dout)
    gate = Invariant("dx is not 0 where x < 0: ReLU passes no gradient where it output 0",
                     lambda got: bool(np.all(got[x < 0] == 0)))
    _op(ex, ("relu_forward", lambda m, a: m.relu_forward(a["x"])),
        ("relu_backward", lambda m, d, c: m.relu_backward(d, c)), inputs, (("dx", "x"),),
        dout, {"dx": Hints(invariants=(gate,))})


def _embedding(ex):
    rng, D = _rng(), ex.s.D
    V = 11
    ids = (np.array([[3, 7, 3, 0, 0], [1, 2, 9, 9, 9], [5, 3, 11, 4, 0]]) if ex.s.batch == (3, 5)
           else np.array([[4, 4, 9, 1, 6, 0, 0], [2, 11, 2, 5, 7, 3, 0]]))  # (B, T)
    inputs = dict(ids=ids, W=_values(rng, (V + 1, D)))
    dout = _values(rng, (*ids.shape, D))
    counts = np.bincount(ids.ravel(), minlength=V + 1)
    rows = lambda keep: np.repeat(keep[:, None], D, axis=1)  # noqa: E731
    hints = Hints(regions=(
        Region("the rows of repeated ids", rows(counts > 1),
               "a fancy-index dW[ids] += dout keeps one of each; use np.add.at or a loop"),
        Region("the padding row 0", rows(np.arange(V + 1) == 0),
               "padding is looked up like any id, so row 0 receives its gradient"),
    ), invariants=(Invariant("dW is not 0 in rows no id looked up",
                             lambda got: bool(np.all(got[counts == 0] == 0))),))
    ex.mistakes = lambda: known.embedding(inputs, dout)
    forward = ("embedding_forward", lambda m, a: m.embedding_forward(a["ids"], a["W"]))
    _op(ex, forward, ("embedding_backward", lambda m, d, c: m.embedding_backward(d, c)),
        inputs, (("dW", "W"),), dout, {"dW": hints})
    # the model adds the lookup's gradient into the scoring layer's share of the table
    _, cache_ = ex.mod.embedding_forward(ids, ex.cast(inputs["W"]))
    base = _values(rng, inputs["W"].shape)
    given = ex.cast(base.copy())
    returned = ex.mod.embedding_backward(ex.cast(dout), cache_, given)
    expected = base + ex.ref.embedding_backward(dout, ex.ref.embedding_forward(ids, inputs["W"])[1])
    if returned is not given:
        ex.fail("dW added into a given dW", "embedding_backward(dout, cache, dW) must add "
                "into the dW it is given, in place, and return that same array")
    else:
        ex.value("dW added into a given dW", given, expected, hints)


def _dropout(ex):
    rng, (B, T), D, p = _rng(), ex.s.batch, ex.s.D, ex.s.p
    x = _values(rng, (B, T, D))
    forward = lambda a: ex.mod.dropout_forward(a, p, np.random.default_rng(SEED))  # noqa: E731
    out, cache_ = _returns("dropout_forward", forward(ex.cast(x)), 2)
    hints = Hints(factors={1 - p: "missing the 1/(1-p) scale of the kept values",
                           1 / (1 - p): "the 1/(1-p) scale applied twice",
                           (1 - p) ** 2: "scaled by (1-p) instead of 1/(1-p)"})
    kept = np.asarray(out) != 0
    if not 0.5 < kept.mean() < 0.97:
        ex.fail("out", f"dropout_forward kept {kept.mean():.0%} of the values with p={p}; "
                f"it should keep about {1 - p:.0%}")
        return
    # the learner's mask is their own: each kept value must be x / (1 - p)
    ex.value("out", out, np.where(kept, x / (1 - p), 0.0), hints)
    ex.value("out in evaluation (rng None)", ex.mod.dropout_forward(ex.cast(x), p, None)[0], x)
    dout = _values(rng, x.shape)
    inputs = dict(keep=kept, p=p)
    ex.mistakes = lambda: known.dropout(inputs, dout)
    hints = replace(hints, invariants=(Invariant(
        "dx is not 0 exactly where your forward dropped a value: reuse the forward's mask, "
        "from the cache (a mask drawn again is another mask)",
        lambda got: bool(np.all((got == 0) == ~kept))),))
    dx = ex.mod.dropout_backward(ex.cast(dout), cache_)
    if ex.f32:
        ex.against("dx", dx, np.where(kept, dout / (1 - p), 0.0), hints)
    else:
        ex.gradient("dx", dx, lambda: forward(x)[0], x, dout, hints)


def _layernorm(ex):
    rng, D = _rng(), ex.s.D
    # the fused op takes (B, T, D); the steps, rows (N, D)
    shape = (*ex.s.batch, D) if ex.name == "layernorm" else (4, D)
    inputs = dict(x=_values(rng, shape, 2.0, 3.0),  # off-centre rows: the mean matters
                  gamma=_values(rng, (D,), 0.5, 1.0), beta=_values(rng, (D,)))
    dout = _values(rng, shape)
    ex.mistakes = lambda: known.layernorm(inputs, dout)
    ex.steps_exercise = "layernorm_steps" if ex.name == "layernorm" else ""
    _, steps = ln_steps.layernorm_forward(inputs["x"].reshape(-1, D), inputs["gamma"],
                                          inputs["beta"])
    dx_true = ln_steps.layernorm_backward(dout.reshape(-1, D), steps)[0]
    tol = (F32_RTOL if ex.f32 else RTOL) * float(np.max(np.abs(dx_true))) * D
    factors = {D: f"missing the 1/D of a mean over the D = {D} features",
               1 / D: "divided by D once too often"}
    dx_hints = Hints(factors=factors, invariants=(
        Invariant("its rows do not sum to 0, as a right dx's do (a shift of a row's x "
                  "leaves its output alone): the mean's path?",
                  lambda got: bool(np.all(np.abs(got.sum(axis=-1)) <= tol))),
        Invariant("its rows are not orthogonal to xhat, as a right dx's are (a row's x "
                  "scaled leaves its output alone): rstd's path?",
                  lambda got: bool(np.all(np.abs((got.reshape(-1, D) * steps["xhat"])
                                                 .sum(axis=-1)) <= tol))),
    ))
    _op(ex, ("layernorm_forward",
             lambda m, a: m.layernorm_forward(a["x"], a["gamma"], a["beta"])),
        ("layernorm_backward", lambda m, d, c: m.layernorm_backward(d, c)),
        inputs, (("dx", "x"), ("dgamma", "gamma"), ("dbeta", "beta")), dout,
        {"dx": dx_hints, "dgamma": Hints(factors=factors), "dbeta": Hints(factors=factors)})


def _softmax_ce(ex, dloss):
    rng, B, D = _rng(), ex.s.batch[0], ex.s.D
    V = 11
    targets = np.array([3, 10, 1]) if B == 3 else np.array([11, 4])  # items 1..V
    inputs = dict(h=_values(rng, (B, D)), E=_values(rng, (V + 1, D)), targets=targets)
    ex.mistakes = lambda: known.scoring(inputs, dloss)
    ex.steps_exercise = "softmax_ce_steps" if ex.name == "scoring" else ""
    factors = {B: f"missing the 1/B of the mean over the B = {B} sessions",
               1 / B: "divided by B twice", 1 / dloss: "dloss left out"}
    padding = np.zeros((V + 1, D), dtype=bool)
    padding[0] = True
    dE = Hints(factors=factors, regions=(Region(
        "the padding row 0", padding, "row 0 is never a candidate: dE[0] = 0"),),
        invariants=(Invariant("dE[0] is not 0: the padding row is never scored, so it gets "
                              "no gradient", lambda got: bool(np.all(got[0] == 0))),))
    _op(ex, ("softmax_cross_entropy",
             lambda m, a: m.softmax_cross_entropy(a["h"], a["E"], a["targets"])),
        ("softmax_cross_entropy_backward",
         lambda m, d, c: m.softmax_cross_entropy_backward(float(d), c)),
        inputs, (("dh", "h"), ("dE", "E")), np.float64(dloss),
        {"dh": Hints(factors=factors), "dE": dE}, out="loss")


def _scoring(ex):
    rng, (B, T), D = _rng(), ex.s.batch, ex.s.D
    inputs = dict(x=_values(rng, (B, T, D)), last=np.array([4, 2, 3][:B] if B == 3 else [6, 3]))
    dh = _values(rng, (B, D))
    ex.mistakes = lambda: known.readout(inputs, dh)
    ex.prefix = "readout "
    _op(ex, ("readout_forward", lambda m, a: m.readout_forward(a["x"], a["last"])),
        ("readout_backward", lambda m, d, c: m.readout_backward(d, c)),
        inputs, (("dx", "x"),), dh, out="h")
    ex.prefix = ""
    # training calls the loss's backward with dloss = 1.0; here also another value
    _softmax_ce(ex, 0.7 if not ex.f32 else 1.0)


def _attention_inputs(ex):
    rng, (B, T), D = _rng(), ex.s.batch, ex.s.D
    key_mask = _key_mask(B, T) if ex.s.masked else None
    inputs = dict(x=_values(rng, (B, T, D)), in_w=_values(rng, (3 * D, D), 0.5),
                  in_b=_values(rng, (3 * D,), 0.5), out_w=_values(rng, (D, D), 0.5),
                  out_b=_values(rng, (D,), 0.5))
    return inputs, key_mask, _values(rng, (B, T, D))


def _head_regions(shape, axis, D, H):
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
    return tuple(regions)


def _thirds(shape, D):
    parts = []
    for i, which in enumerate("qkv"):
        mask = np.zeros(shape, dtype=bool)
        mask[i * D:(i + 1) * D] = True
        parts.append((f"the {which} third", mask))
    return tuple(parts)


def _attention(ex):
    s = ex.s
    inputs, key_mask, dout = _attention_inputs(ex)
    D, H = s.D, s.heads
    mask = key_mask if key_mask is not None else np.ones(s.batch, dtype=bool)
    ex.mistakes = lambda: known.attention({**inputs, "key_mask": mask}, dout, s,
                                          _dropout_rng(ex))
    ex.steps_exercise = "attention_steps" if ex.name == "attention" else ""
    padded = np.repeat(~mask[:, :, None], D, axis=2)
    positions = (("the real positions", ~padded), ("the padded positions", padded)) \
        if padded.any() else ()
    _, steps = attn_steps.attention_forward(inputs["x"], *(inputs[k] for k in (
        "in_w", "in_b", "out_w", "out_b")), H, mask, s.p, _dropout_rng(ex))
    d_in_b = attn_steps.attention_backward(dout, steps)[2]
    tol = (F32_RTOL if ex.f32 else RTOL) * float(np.max(np.abs(d_in_b)))

    def key_bias_zero(got):
        return bool(np.all(np.abs(got[D:2 * D]) <= tol))

    hints = {
        "dx": Hints(regions=(Region(
            "the padded positions", padded,
            "a padded position is still a query: its output, and so its gradient, is real"),)
            if padded.any() else (), parts=positions),
        "d_in_w": Hints(regions=_head_regions((3 * D, D), 0, D, H), parts=_thirds((3 * D, D), D)),
        "d_in_b": Hints(regions=_head_regions((3 * D,), 0, D, H), parts=_thirds((3 * D,), D),
                        invariants=(Invariant(
                            "its key third is not 0, as a right one is: the rows of your "
                            "softmax backward do not sum to 0 (a softmax ignores a shift of "
                            "its row, and the key bias shifts a whole row)", key_bias_zero),)),
        "d_out_w": Hints(regions=_head_regions((D, D), 1, D, H)),
    }
    _op(ex, ("attention_forward", lambda m, a: m.attention_forward(
            a["x"], a["in_w"], a["in_b"], a["out_w"], a["out_b"], H, key_mask, s.p,
            _dropout_rng(ex))),
        ("attention_backward", lambda m, d, c: m.attention_backward(d, c)),
        inputs, (("dx", "x"), ("d_in_w", "in_w"), ("d_in_b", "in_b"), ("d_out_w", "out_w"),
                 ("d_out_b", "out_b")), dout, hints)


def _encoder(ex):
    from ..ops.encoder import LAYER_KEYS, layer_shapes

    s, rng = ex.s, _rng()
    (B, T), D, H = s.batch, s.D, s.heads
    key_mask = _key_mask(B, T) if s.masked else None
    x = _values(rng, (B, T, D))
    layer = {k: _values(rng, shape, 0.5) for k, shape in layer_shapes(D, D + 4).items()}
    for k in ("norm1.weight", "norm2.weight"):
        layer[k] += 1.0
    inputs = {"x": x, **layer}
    dout = _values(rng, (B, T, D))

    def forward(m, a):
        return m.encoder_layer_forward(a["x"], {k: a[k] for k in LAYER_KEYS}, H, key_mask, s.p,
                                       _dropout_rng(ex))

    def backward(m, d, c):
        dx, dlayer = _returns("encoder_layer_backward", m.encoder_layer_backward(d, c), 2)
        missing = [k for k in LAYER_KEYS if k not in dlayer]
        if missing:
            raise _Returned(f"encoder_layer_backward's dict misses {missing}")
        return (dx, *(dlayer[k] for k in LAYER_KEYS))

    ex.mistakes = lambda: known.encoder(ex.ref, forward(ex.ref, inputs)[1], dout, s)
    # richardson: a few true gradients are tiny beside the output (a ReLU unit active at
    # one position), below the rounding noise of the plain step
    _op(ex, ("encoder_layer_forward", forward), ("encoder_layer_backward", backward), inputs,
        (("dx", "x"), *((f"d[{k}]", k) for k in LAYER_KEYS)), dout, richardson=True)


def _adam(ex):
    rng = _rng()
    start = {"w": _values(rng, (4, 3)), "b": _values(rng, (3,))}
    grads = [{k: _values(rng, v.shape) for k, v in start.items()} for _ in range(4)]
    # eps far above its default, so that where it enters shows in a few steps
    options = dict(lr=1e-2, weight_decay=0.1, eps=1e-3)
    ex.mistakes = lambda: known.adam(start, grads[:3], **options)

    def run(module, steps):
        params = {k: ex.cast(v.copy()) for k, v in start.items()}
        arrays = dict(params)
        opt = module.Adam(params, **options)
        for g in grads[:steps]:
            opt.step({k: ex.cast(v) for k, v in g.items()})
        moved = [k for k in params if params[k] is not arrays[k]]
        if moved:
            raise _Returned(f"Adam.step replaced the arrays of {moved} in the dict: it must "
                            f"update each parameter array in place (p -= ..., or p[...] = "
                            f"...), as the model holds those arrays")
        return params, opt

    for steps in (1, 3):
        mine, opt = run(ex.mod, steps)
        theirs, ref_opt = run(ex.ref, steps)
        for k in start:
            ex.value(f"update of {k} after {steps} step{'s' * (steps > 1)}",
                     mine[k] - ex.cast(start[k]), theirs[k] - ex.cast(start[k]))
    state, ref_state = opt.state_dict(), ref_opt.state_dict()
    if set(state) == set(ref_state):  # other names are the learner's choice
        ex.value("state_dict (t, m, v) after 3 steps",
                 np.concatenate([np.ravel(np.asarray(state[k], np.float64)) for k in ref_state]),
                 np.concatenate([np.ravel(ref_state[k]).astype(np.float64) for k in ref_state]),
                 dtype=False)
    # a resumed run: a fresh Adam given the state, at the next epoch's learning rate (set as
    # training sets it, opt.lr = ...), takes the reference's 4th step
    params = {k: v.copy() for k, v in mine.items()}
    resumed = ex.mod.Adam(params, **options)
    resumed.load_state_dict(state)
    resumed.lr = ref_opt.lr = options["lr"] / 10
    resumed.step({k: ex.cast(v) for k, v in grads[3].items()})
    ref_opt.step({k: ex.cast(v) for k, v in grads[3].items()})
    lr_unused = Hints(factors={10.0: "the learning rate that training sets (opt.lr = ...) "
                                     "left unused"})
    for k in start:
        ex.value(f"4th update of {k}, resumed from state_dict at lr / 10", params[k] - mine[k],
                 theirs[k] - mine[k], lr_unused)


# --------------------------------------------------------------------------- step by step

def _steps(ex, module, steps, inputs_of, factors=None):
    """Each step alone: ``(name, argument names, indices of the float arguments)``;
    ``inputs_of`` maps an argument name to its value (the reference chain's)."""
    rng = _rng()
    factors = factors or {}
    for name, arg_names, float_args in steps:
        forward = getattr(ex.mod, f"{name}_forward")
        backward = getattr(ex.mod, f"{name}_backward")
        inputs = tuple(np.ascontiguousarray(inputs_of[a]) if isinstance(inputs_of[a], np.ndarray)
                       and inputs_of[a].dtype.kind == "f" else inputs_of[a] for a in arg_names)
        out = forward(*inputs)
        dout = _values(rng, np.shape(out)) if np.ndim(out) else np.float64(0.7)
        grads = backward(dout, *inputs)
        grads = _returns(f"{name}_backward", grads, len(float_args)) if len(float_args) > 1 \
            else (grads,)
        wrong = known.step_mistakes(module, f"{name}_backward", inputs_of, dout, inputs)
        for j, (i, got) in enumerate(zip(float_args, grads)):
            hints = Hints(factors=factors.get(name, {}),
                          mistakes=tuple((says, g[j]) for says, g in wrong if len(g) > j))
            ex.gradient(f"{name}: d{arg_names[i]}", got, lambda: forward(*inputs), inputs[i],
                        dout, hints)


def _layernorm_steps(ex):
    if ex.s == BASE:
        rng = _rng()
        x = _values(rng, (4, ex.s.D), 2.0, 3.0)  # (N, D)
        _, s = ln_steps.layernorm_forward(x, _values(rng, (ex.s.D,)), _values(rng, (ex.s.D,)))
        D = ex.s.D
        _steps(ex, ln_steps, [
            ("mean", ("x",), (0,)), ("centred", ("x", "mean"), (0, 1)),
            ("variance", ("centred",), (0,)), ("rstd", ("var",), (0,)),
            ("xhat", ("centred", "rstd"), (0, 1)),
            ("affine", ("xhat", "gamma", "beta"), (0, 1, 2))],
            s, {"mean": {D: f"missing the 1/D of the mean over D = {D} features"},
                "variance": {D: f"missing the 1/D of the mean over D = {D} features",
                             0.5: "missing the 2 of d(c^2) = 2c dc"}})
    ex.prefix = "chain: "
    _layernorm(ex)


def _softmax_ce_steps(ex):
    rng = _rng()
    h, E = _values(rng, (3, ex.s.D)), _values(rng, (12, ex.s.D))
    _, s = ce_steps.softmax_cross_entropy(h, E, np.array([3, 11, 1]))
    _steps(ex, ce_steps, [
        ("scores", ("h", "E"), (0, 1)), ("shifted", ("scores",), (0,)), ("exp", ("shifted",), (0,)),
        ("sum", ("exp",), (0,)), ("log_probs", ("shifted", "total"), (0, 1)),
        ("loss", ("logp", "targets"), (0,))], s, {"loss": {3: "missing the 1/B of the mean"}})
    ex.prefix = "chain: "
    _softmax_ce(ex, 0.7)


def _attention_steps(ex):
    if ex.s == BASE:
        inputs, key_mask, _ = _attention_inputs(ex)
        _, s = attn_steps.attention_forward(inputs["x"], *(inputs[k] for k in (
            "in_w", "in_b", "out_w", "out_b")), ex.s.heads, key_mask, 0.25,
            np.random.default_rng(SEED))  # dropout on: a mask with zeros, a scale not 1
        s = {**s, "W": inputs["in_w"], "b": inputs["in_b"], "a": s["qkv"][..., :ex.s.D]}
        scale = s["scale"]
        _steps(ex, attn_steps, [
            ("projection", ("x", "W", "b"), (0, 1, 2)),
            ("split_heads", ("a", "n_heads"), (0,)), ("scores", ("q", "k"), (0, 1)),
            ("scale", ("S", "scale"), (0,)), ("softmax", ("Ss", "key_mask"), (0,)),
            ("dropout", ("A", "keep", "keep_scale"), (0,)),
            ("weighted_sum", ("Ad", "v"), (0, 1)), ("merge_heads", ("Y",), (0,))], s,
            {"scale": {1 / scale: "the scale forgotten: dS = dSs * scale",
                       scale: "the scale applied twice"}})
    ex.prefix = "chain: "
    _attention(ex)


CHECKS = {
    "linear": _linear, "relu": _relu, "embedding": _embedding,
    "softmax_ce_steps": _softmax_ce_steps, "scoring": _scoring,
    "layernorm_steps": _layernorm_steps, "layernorm": _layernorm, "dropout": _dropout,
    "attention_steps": _attention_steps, "attention": _attention, "encoder": _encoder,
    "adam": _adam,
}
# the reference op each exercise's forward is compared with
_REFERENCE_OF = {"layernorm_steps": "layernorm", "softmax_ce_steps": "scoring",
                 "attention_steps": "attention"}
# what an exception in the learner's code usually means, by exercise and type
_RAISE_HINTS = {
    ("scoring", IndexError): "an index one past the end? Column j of the scores is item j + "
                             "1 (row 0 of E is padding): index them with targets - 1",
    ("softmax_ce_steps", IndexError): "an index one past the end? Column j of the scores is "
                                      "item j + 1: index them with targets - 1",
}


# --------------------------------------------------------------------------- running

def learner_location(error, directory) -> str | None:
    """``file:line: in function: Error: message`` at the deepest frame of ``error``'s
    traceback in ``directory``, or None if no frame is there."""
    root = Path(directory).resolve()
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if Path(f.filename).resolve().is_relative_to(root)]
    what = f"{type(error).__name__}: {error}".strip().rstrip(":")
    if frames:
        f = frames[-1]
        return f"{f.filename}:{f.lineno}: in {f.name}: {what}"
    if isinstance(error, SyntaxError) and error.filename \
            and Path(error.filename).resolve().is_relative_to(root):
        return f"{error.filename}:{error.lineno}: {what}"
    return None


@cache
def _reference_package(name):
    return getattr(workspace.load(None, (), [name]), name)


def check_exercise(name, directory=None, run=None) -> list[Row]:
    """The rows of exercise ``name`` in every setting (``run``: the float32 one of a
    training run, see :func:`run_setting`): the learner's module in ``directory`` (None:
    the reference), every other module the reference. Runs the learner's code in this
    process (:func:`check` runs it in a child)."""
    if directory is not None and not (Path(directory) / f"{name}.py").is_file():
        return [Row(name, "-", "not done",
                    message=f"no {name}.py in {directory} (srsan-np exercises init "
                            f"{directory} {name} writes its stub)")]
    rows, setting = [], None
    try:
        module = getattr(workspace.load(directory, [name] if directory is not None else [],
                                        [name]), name)
        reference = _reference_package(_REFERENCE_OF.get(name, name))
        for setting in settings(name, run):
            ex = _Exercise(name, module, reference, setting)
            try:
                with np.errstate(all="ignore"):
                    CHECKS[name](ex)
            finally:
                rows += ex.rows
            if not all(row.passed for row in ex.rows):
                break  # the first failure is the one to fix; the next settings wait
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 -- the learner's code may raise anything
        if directory is None:
            raise
        label = f" [{setting.label(name)}]" if setting is not None and setting.label(name) else ""
        if workspace.is_not_done(err):
            return rows + [Row(name, "-", "not done", message=f"{err} (still a stub)")]
        if isinstance(err, _Returned):
            return rows + [Row(name, f"-{label}", "fail", message=str(err))]
        return rows + [Row(name, f"-{label}", "error",
                           message=_raised(name, err, directory, setting))]
    return rows


def _raised(name, err, directory, setting):
    """Where the learner's code raised ``err``, and what it usually means."""
    where = learner_location(err, directory) or f"{type(err).__name__}: {err}"
    hints = [h for (n, kind), h in _RAISE_HINTS.items() if n == name and isinstance(err, kind)]
    if isinstance(err, SystemExit):
        hints.append("your code called sys.exit (or os._exit): an op must return its result")
    if isinstance(err, ValueError) and any(w in str(err) for w in ("shape", "mismatch",
                                                                   "broadcast")):
        hints.append("the shapes do not fit: each gradient has the shape of what it "
                     "differentiates; write each array's shape beside the line")
    if setting is not None and setting.dtype == "float32" and "float64" in str(err):
        hints.append("in the float32 check: a float64 array, or a NumPy float64 number "
                     "(np.sqrt(d), np.float64(...)), turns float32 arithmetic into float64; "
                     "keep every array in x.dtype (a Python float keeps it)")
    return " -- ".join([where, *hints])


def check(directory=None, names=None, run=None, time_limit=TIME_LIMIT) -> CheckResult:
    """Check the exercises ``names`` of the workspace ``directory`` (None: the reference
    ops, which must pass). By default: every exercise with a file in ``directory``, or all.

    The learner's code runs in a child process (:mod:`srsan_np.exercises.sandbox`), each
    exercise for at most ``time_limit`` seconds: an endless loop, a ``sys.exit`` or a crash
    in it is a row of its exercise, never the end of this process. ``run``: the float32
    setting of a training run (:func:`run_setting`).
    """
    if not names and directory is not None:
        names = [n for n in workspace.EXERCISES if (Path(directory) / f"{n}.py").is_file()]
    names = list(workspace.EXERCISES) if not names else list(names)
    unknown = [n for n in names if n not in workspace.EXERCISES]
    if unknown:
        raise KeyError(f"no exercise {unknown}; the exercises are {list(workspace.EXERCISES)}")
    if directory is None:
        rows = [row for name in names for row in check_exercise(name, None, run)]
    else:
        rows = [Row(**row) for row in run_checks(Path(directory), names, run, time_limit)]
    return CheckResult(tuple(rows), None if directory is None else str(directory))
