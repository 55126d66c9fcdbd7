"""Kernel sets: the functions the model composes, one set per path.

:mod:`srsan_np.model` is written once, against :class:`Kernels`. A kernel set supplies the
embedding, an encoder layer, the model's last layer with its read-out, the loss, the
scores and the optimiser:

``"reference"``
    The textbook ops of :mod:`srsan_np.ops` and :class:`srsan_np.optim.Adam`, exactly as
    docs/derivations.md derives them.
``"fast"``
    :mod:`srsan_np.fast`: the same losses and gradients, with shortcuts and fused work.
a :class:`Kernels` of your own
    For instance a learner's ops, made with :func:`from_modules` from modules that follow
    the textbook ops' contracts.

The contract, for ``B`` sessions of ``T`` positions, width ``D`` (every ``*_backward``
takes the upstream gradient and the cache of its forward; the model passes the arguments
after ``layer`` by these names):

- ``embedding_forward(ids, W) -> (x, cache)``; ``embedding_backward(dx, cache, dW) -> dW``,
  adding into ``dW`` in place.
- ``encoder_layer_forward(x, layer, n_heads, key_mask, p, rng, ids) -> (out, cache)``,
  ``out`` (B, T, D), and ``cache.attn.att`` (B, H, T, T) the attention weights;
  ``encoder_layer_backward(dout, cache) -> (dx, dlayer)``.
- ``readout_layer_forward(x, layer, n_heads, key_mask, p, rng, ids, last) -> (h, cache)``:
  the model's last layer, then the read-out ``h[b] = out[b, last[b]]`` (B, D);
  ``readout_layer_backward(dh, cache) -> (dx, dlayer)``.
- ``softmax_cross_entropy(h, E, targets) -> (loss, cache)``;
  ``softmax_cross_entropy_backward(dloss, cache) -> (dh, dE)``. ``dE`` may be an object
  of the set's own that its ``embedding_backward`` adds into and its ``Adam`` updates from
  (the fast set's :class:`srsan_np.fast.table.TableGradient`), as long as ``np.asarray``
  makes it the array.
- ``scores_forward(h, E) -> scores`` (B, V).
- ``Adam``: a class with :class:`srsan_np.optim.Adam`'s constructor and methods.

``ids`` is a hint the model gives: the item ids when ``x`` is exactly their embedding
lookup (the first layer, no positions added), else None. A kernel set may use it (the fast
attention projects each distinct id's key and value once) or ignore it (the textbook).
"""

from __future__ import annotations

from functools import cache
from typing import Callable, NamedTuple

__all__ = ["Kernels", "from_modules", "get", "NAMES", "WORKSPACE"]

NAMES = ("reference", "fast")
WORKSPACE = "workspace:"  # a learner's ops, named "workspace:DIR" (TrainConfig.kernels)


class Kernels(NamedTuple):
    """One kernel set (see the module notes for each function's contract)."""

    name: str
    embedding_forward: Callable
    embedding_backward: Callable
    encoder_layer_forward: Callable
    encoder_layer_backward: Callable
    readout_layer_forward: Callable
    readout_layer_backward: Callable
    softmax_cross_entropy: Callable
    softmax_cross_entropy_backward: Callable
    scores_forward: Callable
    Adam: type


def from_modules(name, embedding, encoder, scoring, optim) -> Kernels:
    """A kernel set from modules that follow the textbook ops' contracts.

    Parameters
    ----------
    name : str
        Shown where the model says which kernels it runs.
    embedding, encoder, scoring, optim
        Modules (or any objects) with the functions of :mod:`srsan_np.ops.embedding`,
        :mod:`srsan_np.ops.encoder`, :mod:`srsan_np.ops.scoring` and the ``Adam`` class of
        :mod:`srsan_np.optim`, under the same names and signatures.

    Notes
    -----
    The textbook contract has no hints: the encoder layer ignores ``ids``, and the last
    layer with its read-out is the layer at every position followed by the read-out op.
    """

    def encoder_layer_forward(x, layer, n_heads, key_mask, p, rng, ids):
        return encoder.encoder_layer_forward(x, layer, n_heads, key_mask, p, rng)

    def readout_layer_forward(x, layer, n_heads, key_mask, p, rng, ids, last):
        out, layer_cache = encoder.encoder_layer_forward(x, layer, n_heads, key_mask, p, rng)
        h, readout_cache = scoring.readout_forward(out, last)  # (B, D)
        return h, (layer_cache, readout_cache)

    def readout_layer_backward(dh, cache):
        layer_cache, readout_cache = cache
        # forward: h = out[b, last[b]]; out = layer(x)
        return encoder.encoder_layer_backward(scoring.readout_backward(dh, readout_cache),
                                              layer_cache)

    return Kernels(
        name=name,
        embedding_forward=embedding.embedding_forward,
        embedding_backward=embedding.embedding_backward,
        encoder_layer_forward=encoder_layer_forward,
        encoder_layer_backward=encoder.encoder_layer_backward,
        readout_layer_forward=readout_layer_forward,
        readout_layer_backward=readout_layer_backward,
        softmax_cross_entropy=scoring.softmax_cross_entropy,
        softmax_cross_entropy_backward=scoring.softmax_cross_entropy_backward,
        scores_forward=scoring.scores_forward,
        Adam=optim.Adam,
    )


@cache
def _reference() -> Kernels:
    from . import optim
    from .ops import embedding, encoder, scoring

    return from_modules("reference", embedding, encoder, scoring, optim)


@cache
def _fast() -> Kernels:
    from .fast import encoder, optim, scoring, table
    from .ops import embedding
    from .ops.scoring import scores_forward

    return Kernels(
        name="fast",
        embedding_forward=embedding.embedding_forward,
        embedding_backward=table.embedding_backward,
        encoder_layer_forward=encoder.encoder_layer_forward,
        encoder_layer_backward=encoder.encoder_layer_backward,
        readout_layer_forward=encoder.readout_layer_forward,
        readout_layer_backward=encoder.readout_layer_backward,
        softmax_cross_entropy=scoring.softmax_cross_entropy,
        softmax_cross_entropy_backward=scoring.softmax_cross_entropy_backward,
        scores_forward=scores_forward,
        Adam=optim.Adam,
    )


_BUILDERS = {"reference": _reference, "fast": _fast}


def get(kernels) -> Kernels:
    """The kernel set ``kernels`` names: ``"reference"``, ``"fast"``, or a :class:`Kernels`
    (returned as it is)."""
    if isinstance(kernels, Kernels):
        return kernels
    if not isinstance(kernels, str) or kernels not in _BUILDERS:
        raise ValueError(
            f"kernels must be one of {NAMES} or a srsan_np.kernels.Kernels, got {kernels!r}"
        )
    return _BUILDERS[kernels]()
