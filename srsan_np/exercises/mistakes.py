"""The known mistakes: for each exercise, what the classic wrong answers give on the check's
own inputs, built from the reference.

The checker (:mod:`srsan_np.exercises.checks`) compares a wrong output with each of these;
when one fits, the diagnosis names it ("dx is the gradient without the path through the
mean") instead of describing a pattern. Each mistake is made from the reference, never
from a second copy of it:

- layer norm, attention and the softmax cross-entropy: the reference *chain of steps*
  (:mod:`~srsan_np.exercises.layernorm_steps`, :mod:`~srsan_np.exercises.attention_steps`,
  :mod:`~srsan_np.exercises.softmax_ce_steps`) run with one step done wrong
  (:data:`STEP_MISTAKES`), so a mistake in the fused op also names the step where it lives;
  the same wrong steps diagnose the steps exercises step by step;
- the encoder: the reference backward with one of the ops it calls done wrong;
- the rest: the few lines each mistake changes, on the reference's quantities.

Every builder takes the check's inputs (float64) and upstream gradient and returns a list of
:class:`Mistake`, each with the arrays it gives for the outputs it changes.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import numpy as np

from . import attention_steps as attn_steps
from . import layernorm_steps as ln_steps
from . import softmax_ce_steps as ce_steps

__all__ = ["Mistake", "STEP_MISTAKES", "step_mistakes", "layernorm", "attention", "scoring",
           "readout", "embedding", "linear", "relu", "dropout", "encoder", "adam"]


@dataclass(frozen=True)
class Mistake:
    """A classic wrong answer: what it is, and the arrays it gives."""

    says: str  # completes "dx is ...": "the gradient without the path through the mean"
    grads: dict  # output name -> the array this mistake gives
    step: str = ""  # the steps exercise's function where it lives, e.g. "mean_backward"


def _variant(function, **swaps):
    """``function`` with some of the names it looks up replaced: a reference chain with
    one step done wrong."""
    return types.FunctionType(function.__code__, {**function.__globals__, **swaps},
                              function.__name__, function.__defaults__, function.__closure__)


# --------------------------------------------------------------------------- wrong steps
# step module -> [(what it gives, the step, make(steps) -> the wrong step function)]; a
# mistake in two steps names both and makes a pair. ``steps`` is the chain's dict of
# intermediates, for the few mistakes that use a value the step is not given (the weights
# before dropout).

def _lost_mean(dmean, x):
    return np.zeros_like(x)


def _diagonal_softmax(dA, Ss, key_mask):
    A = attn_steps.softmax_forward(Ss, key_mask)
    return A * (1.0 - A) * dA


STEP_MISTAKES = {
    ln_steps: [
        ("the gradient without the path through the mean (x feeds the mean too: its "
         "gradient flows back to every x_j, 1/D each)", "mean_backward",
         lambda s: _lost_mean),
        ("the gradient without the path through rstd (the variance, and so rstd, depend "
         "on x too)", "rstd_backward", lambda s: lambda drstd, var: np.zeros_like(var)),
        ("the gradient without gamma (out = xhat * gamma + beta: dxhat = dout * gamma)",
         "affine_backward",
         lambda s: lambda dout, xhat, gamma, beta: (dout, (dout * xhat).sum(axis=0),
                                                    dout.sum(axis=0))),
        ("the gradient with dgamma taken from x instead of xhat (out = xhat * gamma + beta)",
         "affine_backward",
         lambda s: lambda dout, xhat, gamma, beta: (dout * gamma, (dout * s["x"]).sum(axis=0),
                                                    dout.sum(axis=0))),
        ("the gradient with the 1/D of the mean and of the variance lost (a sum where "
         "there is a mean)", ("mean_backward", "variance_backward"),
         lambda s: (lambda dmean, x: np.broadcast_to(dmean, x.shape).copy(),
                    lambda dvar, centred: dvar * 2.0 * centred)),
        ("the gradient with the 2 of d(c^2) = 2c dc lost", "variance_backward",
         lambda s: lambda dvar, centred: dvar * centred / centred.shape[-1]),
        ("the gradient with the exponent of d(var + eps)^(-1/2) wrong: it is "
         "-1/2 (var + eps)^(-3/2)", "rstd_backward",
         lambda s: lambda drstd, var: drstd * -0.5 * (var + ln_steps.EPS) ** -0.5),
        ("the gradient without the factor rstd of xhat = centred * rstd", "xhat_backward",
         lambda s: lambda dxhat, centred, rstd: (dxhat, (dxhat * centred).sum(
             axis=-1, keepdims=True))),
    ],
    attn_steps: [
        ("the gradient with the softmax backward's sign flipped (dS = A (dA - sum_r A_r "
         "dA_r), not its negative)", "softmax_backward",
         lambda s: lambda dA, Ss, m: -attn_steps.softmax_backward(dA, Ss, m)),
        ("the gradient with the softmax Jacobian's diagonal only (A (1 - A) dA): each "
         "weight depends on every score of its row", "softmax_backward",
         lambda s: _diagonal_softmax),
        ("the gradient with the masked keys given gradient (the softmax backward uses "
         "the weights of every key; a masked key's weight is 0 and its score a constant)",
         "softmax_backward",
         lambda s: lambda dA, Ss, m: attn_steps.softmax_backward(dA, Ss, np.ones_like(m))),
        ("the gradient with the mask applied to the queries (rows) instead of the keys "
         "(columns): a padded position still queries", "softmax_backward",
         lambda s: lambda dA, Ss, m: attn_steps.softmax_backward(dA, Ss, m)
         * m[:, None, :, None]),
        ("the gradient with the scale 1/sqrt(dh) forgotten in the backward (S = q k^T / "
         "sqrt(dh): dS is scaled too)", "scale_backward",
         lambda s: lambda dSs, S, scale: dSs),
        ("the gradient with the scale 1/sqrt(dh) applied twice", "scale_backward",
         lambda s: lambda dSs, S, scale: dSs * scale * scale),
        ("the gradient scaled by 1/sqrt(D) instead of 1/sqrt(dh) (each head has dh = D/H "
         "features)", "scale_backward",
         lambda s: lambda dSs, S, scale: dSs / np.sqrt(s["x"].shape[-1])),
        ("the gradient with a transpose missing in dq (S = q k^T: dq = dS k)",
         "scores_backward",
         lambda s: lambda dS, q, k: (dS.transpose(0, 1, 3, 2) @ k,
                                     dS.transpose(0, 1, 3, 2) @ q)),
        ("the gradient with a transpose missing in dk (S = q k^T: dk = dS^T q)",
         "scores_backward", lambda s: lambda dS, q, k: (dS @ k, dS @ q)),
        ("the gradient with a transpose missing in dv (Y = Ad v: dv = Ad^T dY)",
         "weighted_sum_backward",
         lambda s: lambda dY, Ad, v: (dY @ v.transpose(0, 1, 3, 2), Ad @ dY)),
        ("the gradient with the values mixed with the weights before dropout (Y = Ad v "
         "uses the weights after dropout: dv = Ad^T dY)", "weighted_sum_backward",
         lambda s: lambda dY, Ad, v: (dY @ v.transpose(0, 1, 3, 2),
                                      s["A"].transpose(0, 1, 3, 2) @ dY)),
        ("the gradient with dropout's backward skipped (the weights were dropped and "
         "rescaled: dA = dAd * keep / (1 - p))", "dropout_backward",
         lambda s: lambda dAd, A, keep, keep_scale: dAd),
        ("the gradient with dropout's mask applied but not its 1/(1-p) scale",
         "dropout_backward", lambda s: lambda dAd, A, keep, keep_scale: dAd * keep),
        ("the gradient with the heads of dy split by a bare reshape (the heads are "
         "features side by side: reshape to (B, T, H, dh), then swap T and H)",
         "merge_heads_backward", lambda s: lambda dy, Y: dy.reshape(Y.shape)),
        ("the gradient with the heads of dq, dk, dv merged by a bare reshape (swap H and T "
         "back, then reshape to (B, T, D))", "split_heads_backward",
         lambda s: lambda dheads, a, n_heads: dheads.reshape(a.shape)),
    ],
    ce_steps: [
        ("the gradient with the one-hot term forgotten (dS = (P - Y) / B: the target's "
         "-1 comes from the log-probability of the target itself)", "log_probs_backward",
         lambda s: lambda dlogp, shifted, total: (np.zeros_like(dlogp),
                                                  -dlogp.sum(axis=1, keepdims=True) / total)),
        ("the gradient with the target off by one (column j of the scores is item j + 1: "
         "index with targets - 1)", "loss_backward",
         lambda s: lambda dloss, logp, targets: _off_by_one(dloss, logp, targets)),
        ("the gradient with the max's path left out (locally, each row's max moves with "
         "its arg-max score)", "shifted_backward",
         lambda s: lambda dshifted, scores: dshifted.copy()),
        ("the gradient with 1/total left out of d log(total)", "log_probs_backward",
         lambda s: lambda dlogp, shifted, total: (dlogp.copy(),
                                                  -dlogp.sum(axis=1, keepdims=True))),
    ],
}


def _off_by_one(dloss, logp, targets):
    B, V = logp.shape
    if targets.max() >= V:  # the learner's code would raise; nothing to compare
        return np.full_like(logp, np.nan)
    dlogp = np.zeros_like(logp)
    dlogp[np.arange(B), targets] = -dloss / B
    return dlogp


def _swaps(step, make, steps):
    """``{function name: wrong function}`` of one entry of :data:`STEP_MISTAKES`."""
    if isinstance(step, tuple):
        return dict(zip(step, make(steps)))
    return {step: make(steps)}


def step_mistakes(module, name, steps, dout, inputs):
    """The known mistakes of step ``name`` of a steps module alone: ``[(says, grads)]``,
    ``grads`` the tuple the wrong step returns for ``dout`` and ``inputs``."""
    found = []
    for says, step, make in STEP_MISTAKES.get(module, ()):
        if step != name:  # a mistake in two steps is one of the whole chain
            continue
        with np.errstate(all="ignore"):
            wrong = make(steps)(dout, *inputs)
        found.append((says.replace("the gradient with", "the local gradient with", 1)
                      .replace("the gradient without", "the local gradient without", 1),
                      wrong if isinstance(wrong, tuple) else (wrong,)))
    return found


def _chain(module, backward, dout, steps, outputs):
    """The chain ``backward(dout, steps)`` once per known mistake of ``module``."""
    found = []
    for says, step, make in STEP_MISTAKES[module]:
        with np.errstate(all="ignore"):
            grads = _variant(backward, **_swaps(step, make, steps))(dout, steps)
        grads = dict(zip(outputs, grads if isinstance(grads, tuple) else (grads,)))
        if all(np.isfinite(g).all() for g in grads.values()):
            found.append(Mistake(says, grads, " and ".join(step) if isinstance(step, tuple)
                                 else step))
    return found


# --------------------------------------------------------------------------- the ops

def layernorm(inputs, dout, setting=None):
    """Layer norm's mistakes for ``dx``, ``dgamma``, ``dbeta`` and ``out``."""
    x, gamma, beta = inputs["x"], inputs["gamma"], inputs["beta"]
    D = x.shape[-1]
    out, steps = ln_steps.layernorm_forward(x.reshape(-1, D), gamma, beta)
    found = _chain(ln_steps, ln_steps.layernorm_backward, dout.reshape(-1, D), steps,
                   ("dx", "dgamma", "dbeta"))
    for m in found:
        m.grads["dx"] = m.grads["dx"].reshape(x.shape)
    dx, dgamma, dbeta = ln_steps.layernorm_backward(dout.reshape(-1, D), steps)
    found.append(Mistake("the gradient with dgamma and dbeta swapped",
                         {"dgamma": dbeta, "dbeta": dgamma}, "affine_backward"))
    found.append(Mistake("the gradient without the factor rstd that multiplies it all (dx = "
                         "rstd (g - mean(g) - xhat mean(g xhat)))",
                         {"dx": (dx / steps["rstd"]).reshape(x.shape)}, "xhat_backward"))
    centred, var = steps["centred"], steps["var"]
    for says, xhat in (
            ("the output with the unbiased variance (divide by D, not D - 1, as PyTorch)",
             centred / np.sqrt(var * D / (D - 1) + ln_steps.EPS)),
            ("the output with eps added to the standard deviation, not to the variance",
             centred / (np.sqrt(var) + ln_steps.EPS)),
            ("the output without eps in sqrt(var + eps)", centred / np.sqrt(var))):
        found.append(Mistake(says, {"out": (xhat * gamma + beta).reshape(x.shape)}))
    return found


def attention(inputs, dout, setting, rng):
    """Attention's mistakes for ``dx``, ``d_in_w``, ``d_in_b``, ``d_out_w``, ``d_out_b``;
    ``rng``: a generator in the state the check's forward draws its dropout from."""
    x = inputs["x"]
    weights = [inputs[k] for k in ("in_w", "in_b", "out_w", "out_b")]
    _, steps = attn_steps.attention_forward(x, *weights, setting.heads, inputs["key_mask"],
                                            setting.p, rng)
    outputs = ("dx", "d_in_w", "d_in_b", "d_out_w", "d_out_b")
    found = [m for m in _chain(attn_steps, attn_steps.attention_backward, dout, steps, outputs)
             if setting.p > 0 or m.step != "dropout_backward"]
    # x feeds the queries, the keys and the values: three paths, summed
    D = x.shape[-1]
    dY = attn_steps.merge_heads_backward(dout @ inputs["out_w"], steps["Y"])
    _, dv = attn_steps.weighted_sum_backward(dY, steps["Ad"], steps["v"])
    found.append(Mistake(
        "the gradient through the values alone (x feeds the queries, the keys and the "
        "values: add all three paths)",
        {"dx": attn_steps.merge_heads_forward(dv) @ inputs["in_w"][2 * D:]},
        "attention_backward (the chain)"))
    return found


def _softmax(scores):
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def scoring(inputs, dloss, setting=None):
    """The softmax cross-entropy's mistakes for ``dh``, ``dE`` and ``loss``."""
    h, E, targets = inputs["h"], inputs["E"], inputs["targets"]
    B, rows = len(targets), np.arange(len(targets))
    _, steps = ce_steps.softmax_cross_entropy(h, E, targets)
    found = _chain(ce_steps, ce_steps.softmax_cross_entropy_backward, dloss, steps,
                   ("dh", "dE"))
    P = _softmax(h @ E[1:].T)  # (B, V)
    dS = P * (dloss / B)
    found.append(Mistake("the gradient with the one-hot term forgotten (dS = (P - Y) / B: "
                         "the target's -1 comes from the log-probability of the target itself)",
                         {"dh": dS @ E[1:], "dE": np.vstack([0 * E[:1], dS.T @ h])}))
    # the padding row scored: a softmax over all V + 1 rows, targets as columns
    full = _softmax(h @ E.T)  # (B, V + 1)
    dS = full.copy()
    dS[rows, targets] -= 1.0
    dS *= dloss / B
    found.append(Mistake("what scoring the padding row 0 too gives (the candidates are "
                         "E[1:], items 1..V; row 0 is never a candidate)",
                         {"dh": dS @ E, "dE": dS.T @ h,
                          "loss": -np.mean(np.log(full[rows, targets]))}))
    dE = np.zeros_like(E)
    dE[:-1] = ce_steps.softmax_cross_entropy_backward(dloss, steps)[1][1:]
    found.append(Mistake("the gradient with its rows shifted by one (dE[0] is the padding "
                         "row, which gets no gradient; row v is item v)", {"dE": dE},
                         "scores_backward"))
    if targets.max() < P.shape[1]:
        found.append(Mistake("the loss with the target off by one (column j of the scores "
                             "is item j + 1: index with targets - 1)",
                             {"loss": -np.mean(np.log(P[rows, targets]))}))
    return found


def readout(inputs, dh, setting=None):
    """The read-out's mistake: the gradient put at the last position, not the last click."""
    x = inputs["x"]
    dx = np.zeros_like(x)
    dx[:, -1] = dh
    return [Mistake("the gradient put at the last position T - 1, not at each session's "
                    "read-out position last[b] (padding follows the last click)", {"dx": dx})]


def embedding(inputs, dout, setting=None):
    """The lookup's mistakes for ``dW``."""
    ids, W = inputs["ids"].reshape(-1), inputs["W"]
    fancy = np.zeros_like(W)
    fancy[ids] += dout.reshape(-1, W.shape[1])  # buffered: one of each repeated id survives
    return [Mistake("what a fancy-index dW[ids] += dout gives: one contribution of each "
                    "repeated id (use np.add.at, or a loop)", {"dW": fancy})]


def linear(inputs, dout, setting=None):
    """The linear layer's mistakes for ``dW`` and ``db``."""
    x = inputs["x"]
    return [Mistake("the gradient of the first session alone (W and b are shared by every "
                    "row: flatten the leading axes and sum over all of them)",
                    {"dW": dout[0].T @ x[0], "db": dout[0].sum(axis=0)})]


def relu(inputs, dout, setting=None):
    """ReLU's mistakes for ``dx``."""
    x = inputs["x"]
    return [
        Mistake("dout masked by its own sign, not by the input's (the gate is x > 0)",
                {"dx": dout * (dout > 0)}),
        Mistake("dout times the output, not times the 0/1 gate [x > 0]",
                {"dx": dout * np.maximum(x, 0.0)}),
        Mistake("the gradient with the gate inverted (it passes where x > 0)",
                {"dx": dout * (x <= 0)}),
    ]


def dropout(inputs, dout, setting=None):
    """Dropout's mistakes for ``dx``; ``inputs["keep"]`` is the learner's own mask."""
    keep, p = inputs["keep"], inputs["p"]
    return [
        Mistake("dout unchanged: the forward's mask and scale not applied (dx = dout * "
                "keep / (1 - p))", {"dx": dout.copy()}),
        Mistake("dout scaled by 1/(1-p) but not masked: the dropped values get gradient",
                {"dx": dout / (1.0 - p)}),
        Mistake("dout masked, but its 1/(1-p) scale left out", {"dx": dout * keep}),
    ]


def encoder(reference, cache, dout, setting=None):
    """The encoder layer's mistakes, from the reference ``encoder_layer_backward`` with one
    of the ops it calls done wrong; ``cache`` is the reference forward's, same masks."""
    backward, ff_backward = reference.encoder_layer_backward, reference.feed_forward_backward
    ln_backward, drop_backward = reference.layernorm_backward, reference.dropout_backward

    def grads(fn=backward):
        dx, g = fn(dout, cache)
        return {"dx": dx, **{f"d[{k}]": v for k, v in g.items()}}

    def no_ff_residual(d, c):  # dh from the feed-forward layers alone
        dh, g = ff_backward(d, c)
        return dh - ln_backward(d, c.norm2)[0], g

    def skip(d, c):
        return d

    def skip_one(which):  # the backward of one dropout skipped, by its cache
        return lambda d, c: d if c is which else drop_backward(d, c)

    # forward: h = LN1(x + a); the residual's share of dx is LN1's backward
    dsum = ln_backward(ff_backward(dout, cache.ff)[0], cache.norm1)[0]
    found = [
        Mistake("the gradient without the attention block's residual (x feeds the "
                "attention and the sum x + a: add both)", {"dx": grads()["dx"] - dsum}),
        Mistake("the gradient without the feed-forward block's residual (h feeds the "
                "feed-forward layers and the sum h + f: add both)",
                grads(_variant(backward, feed_forward_backward=no_ff_residual))),
        Mistake("the gradient with the ReLU's backward skipped",
                grads(_variant(backward, feed_forward_backward=_variant(
                    ff_backward, relu_backward=skip)))),
    ]
    if setting is not None and setting.p > 0:
        found += [
            Mistake("the gradient with the dropouts' backward skipped (each dropout rescales "
                    "and masks its gradient as it did its input)",
                    grads(_variant(backward, dropout_backward=skip, feed_forward_backward=(
                        _variant(ff_backward, dropout_backward=skip))))),
            Mistake("the gradient with the backward of the dropout on the attention's output "
                    "skipped", grads(_variant(backward,
                                              dropout_backward=skip_one(cache.drop_attn)))),
        ]
        for says, which in (("hidden layer", cache.ff.drop_ff), ("output", cache.ff.drop_out)):
            found.append(Mistake(
                f"the gradient with the backward of the dropout on the feed-forward {says} "
                f"skipped", grads(_variant(backward, feed_forward_backward=_variant(
                    ff_backward, dropout_backward=skip_one(which))))))
    return found


# --------------------------------------------------------------------------- Adam

ADAM_MISTAKES = {
    "no bias correction": "the update without the bias corrections 1/(1 - beta^t)",
    "decoupled": "the update with decoupled weight decay (AdamW: p -= lr wd p); this Adam is "
                 "coupled, as torch.optim.Adam: the decay is added to the gradient before "
                 "the moments",
    "no decay": "the update without the weight decay (g + weight_decay * p)",
    "eps inside": "the update with eps inside the square root (sqrt(v_hat) + eps, not "
                  "sqrt(v_hat + eps))",
    "m only corrected": "the update with the first moment bias-corrected but not the second",
    "betas swapped": "the update with beta1 and beta2 swapped",
}


def adam_updates(start, grads, lr, weight_decay, kind, betas=(0.9, 0.999), eps=1e-8):
    """The parameters after ``len(grads)`` steps of the Adam mistake ``kind`` (float64)."""
    b1, b2 = betas[::-1] if kind == "betas swapped" else betas
    params = {k: v.astype(np.float64) for k, v in start.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v2 = {k: np.zeros_like(v) for k, v in params.items()}
    for t, g in enumerate(grads, start=1):
        for k, p in params.items():
            decay = 0.0 if kind in ("no decay", "decoupled") else weight_decay
            gd = g[k] + decay * p
            m[k] = b1 * m[k] + (1 - b1) * gd
            v2[k] = b2 * v2[k] + (1 - b2) * gd * gd
            c1 = 1.0 if kind == "no bias correction" else 1 - b1 ** t
            c2 = 1.0 if kind in ("no bias correction", "m only corrected") else 1 - b2 ** t
            if kind == "eps inside":
                step = (m[k] / c1) / np.sqrt(v2[k] / c2 + eps)
            else:
                step = (m[k] / c1) / (np.sqrt(v2[k] / c2) + eps)
            if kind == "decoupled":
                step = step + weight_decay * p
            params[k] = p - lr * step
    return params


def adam(start, grads, lr, weight_decay, eps):
    """Adam's mistakes for the updates after 1 and 3 steps."""
    found = []
    for kind, says in ADAM_MISTAKES.items():
        updates = {}
        for steps in (1, 3):
            after = adam_updates(start, grads[:steps], lr, weight_decay, kind, eps=eps)
            for k in start:
                updates[f"update of {k} after {steps} step{'s' * (steps > 1)}"] = \
                    after[k] - start[k]
        found.append(Mistake(says, updates))
    return found
