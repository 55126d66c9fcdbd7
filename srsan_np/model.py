"""SR-SAN, the whole model: embedding, ``L`` encoder layers, read-out, tied scoring.

Fang, "Session-based Recommendation with Self-Attention Networks" (arXiv 2102.01922)::

    ids (B, T) --embedding E--> x (B, T, D) [+ positions, sequence mode only]
      --> L post-LN Transformer encoder layers (multi-head self-attention + feed-forward)
      --> h = x[b, last[b]]   (B, D)   the read-out: the hidden vector of the last click
      --> scores = h E[1:]^T  (B, V)   tied: the same table E scores every item 1..V
      --> loss = mean cross-entropy with the next click

Parameters are a flat ``dict`` keyed with PyTorch's names minus the ``transformerEncoder.``
prefix (``"embedding.weight"``, ``"layers.0.self_attn.in_proj_weight"``, ...), so the
original code's state dict maps onto them one to one (:func:`from_state_dict`,
:func:`to_state_dict`).

Two input modes (see ``srsan_np.data.batching``):

``faithful``
    The original's input: each session's *distinct* items sorted by id, padding zeros
    included and attended to, no padding mask, no positions; initialisation as the
    original (every parameter uniform in ``±1/sqrt(D)``).
``sequence``
    The clicks in order, padding masked out of the attention, optional learned positions,
    and a standard initialisation (see :func:`init_params`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import kernels as kernel_sets
from .errors import ConfigError
from .files import atomic_write_stream
from .ops.encoder import layer_shapes

__all__ = [
    "Config",
    "param_count",
    "param_shapes",
    "init_params",
    "loss_and_grads",
    "score",
    "attention_maps",
    "to_state_dict",
    "from_state_dict",
    "save_state_npz",
    "load_state_npz",
]

MODES = ("faithful", "sequence")
STATE_PREFIX = "transformerEncoder."  # the original nests the layers under this name
TEMPLATE_PREFIX = "transformerEncoderLayer."  # the original's unused template layer


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of the model (defaults: the original's).

    Attributes
    ----------
    n_items : int
        ``V``, from the data: items are ``1..V``, the embedding has ``V + 1`` rows (row 0
        is padding). To mimic the original's hard-coded table size ``n_node``, set
        ``n_items = n_node - 1``.
    hidden : int
        ``D``, the embedding and model width.
    heads : int
        ``H``; must divide ``hidden``.
    layers : int
        ``L``, the number of encoder layers.
    ff_mult : int
        Feed-forward width as a multiple of ``hidden``.
    dropout : float
        Probability of every dropout in the encoder (attention weights, both residual
        branches, the feed-forward hidden layer), in ``[0, 1)``.
    mode : {"faithful", "sequence"}
    positions : bool
        Learned position embeddings added to the input (``sequence`` mode only: faithful
        input is sorted by item id, so a position there means nothing).
    max_len : int
        Rows of the position table: the longest input accepted when ``positions``.
    """

    n_items: int
    hidden: int = 96
    heads: int = 2
    layers: int = 1
    ff_mult: int = 4
    dropout: float = 0.1
    mode: str = "faithful"
    positions: bool = False
    max_len: int = 200

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~srsan_np.errors.ConfigError` naming the first field (or pair of
        fields) that makes no sense."""
        for name in ("n_items", "hidden", "heads", "layers", "ff_mult", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"Config.{name} must be a positive integer, got {value!r}",
                                  [name])
        if self.hidden % self.heads:
            raise ConfigError(f"Config.hidden={self.hidden} must be divisible by "
                              f"Config.heads={self.heads}", ["hidden", "heads"])
        if (isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float, np.number))
                or not 0.0 <= self.dropout < 1.0):
            raise ConfigError(f"Config.dropout must lie in [0, 1), got {self.dropout!r}",
                              ["dropout"])
        if self.mode not in MODES:
            raise ConfigError(f"Config.mode must be one of {MODES}, got {self.mode!r}", ["mode"])
        if not isinstance(self.positions, (bool, np.bool_)):
            raise ConfigError(f"Config.positions must be True or False, got {self.positions!r}",
                              ["positions"])
        if self.positions and self.mode != "sequence":
            raise ConfigError("Config.positions=True needs mode='sequence': faithful input is "
                              "sorted by item id, not by time", ["positions", "mode"])

    def check_length(self, T, what="the batch") -> None:
        """Raise :class:`~srsan_np.errors.ConfigError` if ``what``, of ``T`` clicks, is longer
        than the position table (``positions`` only)."""
        if self.positions and T > self.max_len:
            raise ConfigError(f"max_len {self.max_len} is shorter than {what} ({T} clicks); "
                              f"raise max_len or truncate the sessions", ["max_len"])


def param_count(config: Config) -> int:
    """How many parameter arrays :func:`param_shapes` lists (without listing them)."""
    return 1 + bool(config.positions) + config.layers * len(layer_shapes(1, 1))


def param_shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """Name and shape of every parameter, in a fixed order (the order of initialisation)."""
    D = config.hidden
    shapes = {"embedding.weight": (config.n_items + 1, D)}
    if config.positions:
        shapes["position.weight"] = (config.max_len, D)
    for i in range(config.layers):
        for key, shape in layer_shapes(D, config.ff_mult * D).items():
            shapes[f"layers.{i}.{key}"] = shape
    return shapes


def _xavier_uniform(rng, fan_out, fan_in):
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=(fan_out, fan_in))


def init_params(config: Config, seed, dtype=np.float32) -> dict[str, np.ndarray]:
    """Fresh parameters, reproducible from ``seed`` (the same values in any ``dtype``).

    Parameters
    ----------
    config : Config
    seed : int or numpy.random.Generator
    dtype : float32 (training) or float64 (checking)

    Returns
    -------
    params : dict[str, np.ndarray], keyed and shaped as :func:`param_shapes`.

    Notes
    -----
    ``faithful``: every parameter, LayerNorm gains and biases included, uniform in
    ``±1/sqrt(D)``, as the original resets them.

    ``sequence``: a standard Transformer initialisation, for these reasons:

    - projection and feed-forward weights Xavier-uniform (the in-projection as three
      ``D x D`` maps, q, k and v), so activations keep their scale through each map;
      biases 0;
    - LayerNorm gain 1 and bias 0, so each post-LN output starts unit-scaled. The
      original's gains ``U(±1/sqrt(D))`` shrink every normalised feature to about 6% of
      its scale and flip half of their signs at random, which shrinks the session vector
      and so every score;
    - embeddings (items and positions) ``N(0, 1/D)``: the session vector leaves a
      LayerNorm with norm about ``sqrt(D)``, so the first scores ``h . e`` have standard
      deviation about 1 -- neither all equal nor a saturated softmax -- and an item vector
      and a position vector start at the same scale.
    """
    rng = np.random.default_rng(seed)
    D = config.hidden
    params = {}
    for name, shape in param_shapes(config).items():
        if config.mode == "faithful":
            bound = 1.0 / math.sqrt(D)
            value = rng.uniform(-bound, bound, size=shape)
        elif name in ("embedding.weight", "position.weight"):
            value = rng.normal(0.0, 1.0 / math.sqrt(D), size=shape)
        elif name.endswith("in_proj_weight"):
            value = np.concatenate([_xavier_uniform(rng, D, D) for _ in "qkv"])
        elif name.endswith("weight") and len(shape) == 2:
            value = _xavier_uniform(rng, *shape)
        elif name.endswith(("norm1.weight", "norm2.weight")):
            value = np.ones(shape)
        else:  # every bias, LayerNorm's included
            value = np.zeros(shape)
        params[name] = value.astype(dtype)
    return params


def _check_params(params, config):
    shapes = param_shapes(config)
    missing = [name for name in shapes if name not in params]
    if missing:
        raise KeyError(f"params is missing {missing} (config: {config})")
    wrong = {n: params[n].shape for n in shapes if params[n].shape != shapes[n]}
    if wrong:
        raise ValueError(
            f"params have wrong shapes {wrong}; expected {[shapes[n] for n in wrong]} "
            f"(config: {config})"
        )
    dtypes = {params[n].dtype for n in shapes}
    if len(dtypes) != 1 or next(iter(dtypes)).kind != "f":
        raise TypeError(f"params must share one float dtype, got {sorted(map(str, dtypes))}")


def _layer(params, i):
    """The parameters of layer ``i``, keyed as inside the layer (``"linear1.weight"``, ...)."""
    prefix = f"layers.{i}."
    return {key[len(prefix):]: value for key, value in params.items() if key.startswith(prefix)}


def _embed(params, batch, config, K):
    """The encoder's input ``x`` (B, T, D): item embeddings, plus positions if any."""
    _check_params(params, config)
    x, emb_cache = K.embedding_forward(batch.inputs, params["embedding.weight"])  # (B, T, D)
    T = x.shape[1]
    if config.positions:
        config.check_length(T)
        x = x + params["position.weight"][:T]  # the same (T, D) rows for every session
    return x, emb_cache


def _layers(params, batch, config, rng):
    """Per encoder layer: its parameters, and its arguments besides ``x`` by name (the
    kernel contract's, :mod:`srsan_np.kernels`)."""
    # faithful: the original has no padding mask, its zeros attend and are attended to
    key_mask = batch.key_mask if config.mode == "sequence" else None
    p = config.dropout if rng is not None else 0.0
    # the ids hint: the first layer's input is the lookup itself unless positions were added
    ids = None if config.positions else batch.inputs
    return [(_layer(params, i), dict(n_heads=config.heads, key_mask=key_mask, p=p, rng=rng,
                                     ids=ids if i == 0 else None))
            for i in range(config.layers)]


def _encode(params, batch, config, rng, K):
    """Embedding, the encoder and the read-out: ``h`` (B, D) and the caches to go back."""
    x, emb_cache = _embed(params, batch, config, K)
    *before, (last_layer, last_args) = _layers(params, batch, config, rng)
    layer_caches = []
    for layer, args in before:
        x, cache = K.encoder_layer_forward(x, layer, **args)
        layer_caches.append(cache)
    # the last layer and the read-out: the hidden vector at each session's last click
    h, cache = K.readout_layer_forward(x, last_layer, **last_args, last=batch.last)  # (B, D)
    layer_caches.append(cache)
    return h, emb_cache, layer_caches


def loss_and_grads(params, batch, config, rng, kernels="fast"):
    """Mean cross-entropy of the next click and the gradient of every parameter.

    Parameters
    ----------
    params : dict[str, np.ndarray]
        As :func:`init_params` returns (one float dtype).
    batch : srsan_np.data.Batch
        ``inputs`` (B, T) ids, ``key_mask`` (B, T), ``last`` (B,), ``targets`` (B,) in 1..V.
    config : Config
    rng : numpy.random.Generator or None
        Dropout masks (training); None: no dropout (the loss of the evaluation model).
    kernels : "fast", "reference" or srsan_np.kernels.Kernels
        The kernel set (see :mod:`srsan_np.kernels`). Without dropout every set gives the
        same loss and gradients up to rounding; with dropout each is exact for its own
        masks, which the fast set draws for fewer positions.

    Returns
    -------
    loss : float
    grads : dict[str, np.ndarray]
        The same keys, shapes and dtype as ``params``, each in the form the kernel set
        makes it for its ``Adam``: an array, or an object of the set's own that
        ``np.asarray`` makes the array (the fast set's embedding-table gradient, made block
        by block inside its Adam's update).

    Notes
    -----
    The embedding table ``E`` is used twice, to encode the input and to score the items,
    so its gradient is the sum of both paths (``dE = dE_scores + dE_lookup``).
    """
    K = kernel_sets.get(kernels)
    h, emb_cache, layer_caches = _encode(params, batch, config, rng, K)
    E = params["embedding.weight"]
    loss, loss_cache = K.softmax_cross_entropy(h, E, batch.targets)

    grads = {}
    # forward: loss = CE(h E[1:]^T, targets); the scoring path's share of dE
    dh, dE_scores = K.softmax_cross_entropy_backward(1.0, loss_cache)
    # forward: h = last_layer(x)[b, last[b]]
    last = config.layers - 1
    dx, dlayer = K.readout_layer_backward(dh, layer_caches[last])  # (B, T, D)
    grads.update((f"layers.{last}.{key}", value) for key, value in dlayer.items())
    # forward: x = layer_i(x), i = L-2 .. 0
    for i in reversed(range(last)):
        dx, dlayer = K.encoder_layer_backward(dx, layer_caches[i])
        grads.update((f"layers.{i}.{key}", value) for key, value in dlayer.items())
    # forward: x = E[ids] + P[:T]; every session adds the same position rows
    if config.positions:
        dP = np.zeros_like(params["position.weight"])  # (max_len, D)
        dP[: dx.shape[1]] = dx.sum(axis=0)
        grads["position.weight"] = dP
    # forward: x = E[ids]; the lookup path's share of the tied table, added in place
    grads["embedding.weight"] = K.embedding_backward(dx, emb_cache, dE_scores)
    return loss, {name: grads[name] for name in params}


def score(params, batch, config, kernels="fast") -> np.ndarray:
    """Evaluation-mode scores (no dropout): ``(B, V)``, column ``j`` is item ``j + 1``."""
    K = kernel_sets.get(kernels)
    h, _, _ = _encode(params, batch, config, None, K)
    return K.scores_forward(h, params["embedding.weight"])


def attention_maps(params, batch, config, kernels="fast") -> list[np.ndarray]:
    """Evaluation-mode attention weights, one ``(B, H, T, T)`` array per layer.

    ``maps[l][b, h, t, s]`` is how much position ``t`` reads from position ``s`` in head
    ``h`` of layer ``l``; each row sums to 1 over the real keys. Every layer is computed at
    every position, with ``kernels``' encoder layer.
    """
    K = kernel_sets.get(kernels)
    x, _ = _embed(params, batch, config, K)
    maps = []
    for layer, args in _layers(params, batch, config, None):
        x, cache = K.encoder_layer_forward(x, layer, **args)
        maps.append(cache.attn.att)
    return maps


# ---------------------------------------------------------------------------------------
# Interop with the original PyTorch code's state dict.
# ---------------------------------------------------------------------------------------


def _state_key(name):
    return STATE_PREFIX + name if name.startswith("layers.") else name


def to_state_dict(params, config) -> dict[str, np.ndarray]:
    """Our parameters under the original code's state-dict keys (copies).

    ``layers.*`` become ``transformerEncoder.layers.*``; ``embedding.weight`` keeps its
    name. ``position.weight`` (sequence mode only) has no counterpart in the original and
    keeps its own name.
    """
    _check_params(params, config)
    return {_state_key(name): np.array(params[name]) for name in param_shapes(config)}


def from_state_dict(state, config, dtype=None) -> dict[str, np.ndarray]:
    """Parameters from a state dict of the original code (or of :func:`to_state_dict`).

    Parameters
    ----------
    state : mapping str -> array
        E.g. ``{k: v.numpy() for k, v in torch_model.state_dict().items()}``, or an opened
        ``.npz``. The original's unused template layer (``transformerEncoderLayer.*``) is
        ignored.
    config : Config
        Must describe the saved model: its ``n_items + 1`` is the table's row count
        (``n_node`` in the original, 37,484 unless Diginetica: ``n_items=37483``).
    dtype : numpy dtype or None
        None: the stored arrays' common float dtype.

    Returns
    -------
    params : dict[str, np.ndarray]

    Raises
    ------
    ValueError
        Naming every missing key, unexpected key and wrong shape.
    """
    expected = {_state_key(name): shape for name, shape in param_shapes(config).items()}
    keys = [key for key in state.keys() if not key.startswith(TEMPLATE_PREFIX)]
    problems = []
    missing = [key for key in expected if key not in keys]
    if missing:
        problems.append(f"missing keys {missing}")
    unexpected = [key for key in keys if key not in expected]
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    arrays = {key: np.asarray(state[key]) for key in expected if key in keys}
    for key, array in arrays.items():
        if array.shape != expected[key]:
            problems.append(f"{key} has shape {array.shape}, expected {expected[key]}")
    rows = arrays.get("embedding.weight", np.empty((0, 0))).shape[0]
    if rows and rows != config.n_items + 1:
        problems.append(
            f"the embedding has {rows} rows, so it was saved with n_items={rows - 1}; "
            f"config.n_items={config.n_items} (set n_items={rows - 1} to load it)"
        )
    if problems:
        raise ValueError(
            f"from_state_dict: state does not match {config}:\n  " + "\n  ".join(problems)
        )
    if dtype is None:
        dtype = np.result_type(*arrays.values())
    if np.dtype(dtype).kind != "f":
        raise TypeError(f"from_state_dict: parameters must be floating point, got {dtype}")
    return {name: np.array(arrays[_state_key(name)], dtype=dtype) for name in param_shapes(config)}


def save_state_npz(path, params, config) -> None:
    """Write :func:`to_state_dict` to an ``.npz``, atomically."""
    with atomic_write_stream(path) as f:
        np.savez(f, **to_state_dict(params, config))


def load_state_npz(path, config, dtype=None) -> dict[str, np.ndarray]:
    """:func:`from_state_dict` of an ``.npz`` (ours, or one exported from PyTorch)."""
    with np.load(path, allow_pickle=False) as state:
        return from_state_dict(state, config, dtype)
