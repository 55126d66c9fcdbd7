"""The whole model: finite differences on every parameter, modes, dtypes, threads, interop."""

import dataclasses

import numba
import numpy as np
import pytest

from srsan_np import kernels, model
from srsan_np.data import Batch, Sessions, make_batch
from srsan_np.gradcheck import rel_error, richardson_gradient
from srsan_np.model import Config

V, D, H = 11, 8, 2

PREFIXES = [[3, 7, 3, 1], [5], [2, 9, 11], [4, 4, 10, 6, 8]]
TARGETS = [9, 2, 1, 11]


def sessions():
    return Sessions.from_lists(PREFIXES, TARGETS)


def batch_for(mode):
    return make_batch(sessions(), np.arange(len(PREFIXES)), mode)


CONFIGS = {
    "faithful-1": dict(mode="faithful", layers=1),
    "faithful-2": dict(mode="faithful", layers=2),
    "sequence-1": dict(mode="sequence", layers=1),
    "sequence-2-positions": dict(mode="sequence", layers=2, positions=True, max_len=7),
}


def make(name, dtype=np.float64, seed=0):
    config = Config(n_items=V, hidden=D, heads=H, ff_mult=2, dropout=0.1, **CONFIGS[name])
    return config, model.init_params(config, seed, dtype), batch_for(config.mode)


def test_batches_are_what_the_modes_say():
    faithful, sequence = batch_for("faithful"), batch_for("sequence")
    assert faithful.key_mask.all()
    # sorted distinct ids with the padding 0 among them for a short prefix
    assert list(faithful.inputs[2][:4]) == [0, 2, 9, 11]
    assert not sequence.key_mask.all()
    assert list(sequence.inputs[1]) == [5, 0, 0, 0, 0]


def lively(params, seed=1):
    """Overwrite params with O(1) random values, in place.

    The faithful init (LayerNorm gains of about +-0.35) makes every score and most
    gradients tiny (1e-8): their finite differences would be rounding noise. A gradient
    check wants a point where every path carries signal; LayerNorm gains stay near 1.
    """
    rng = np.random.default_rng(seed)
    for key, value in params.items():
        base = 1.0 if key.endswith(("norm1.weight", "norm2.weight")) else 0.0
        value[...] = base + 0.5 * rng.standard_normal(value.shape)


def relu_inputs(params, batch, config, rng, kernel_set):
    """The feed-forward ReLU's input of every layer, as the kernel set computes it."""
    _, _, caches = model._encode(params, batch, config, rng, kernels.get(kernel_set))
    # the textbook's last cache is (layer cache, read-out cache); the fast one's a layer's
    return [(cache if hasattr(cache, "ff") else cache[0]).ff.relu.x for cache in caches]


@pytest.mark.parametrize("kernel_set", kernels.NAMES)
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dropout", [False, True])
def test_gradients_finite_differences(name, dropout, kernel_set):
    """Every parameter tensor, float64, relative error < 1e-6 (big tensors sampled).

    The loss (about 4) is known to one ulp, 1e-15. The Richardson difference (see
    test_op_encoder) with h = 1e-4 divides that by the step, leaving about 1e-11 of noise
    in each estimate; a correct gradient then has a relative error below 1e-7 wherever it
    is above 3e-5. A few coordinates of the key projection's gradient are near 1e-6 (the
    softmax ignores what all keys share): there the estimate cannot resolve a relative
    1e-6, and they are held to the noise floor instead (absolute error < 3e-11).
    """
    config, params, batch = make(name)
    lively(params, seed=2)

    def loss():
        dropout_rng = np.random.default_rng(2) if dropout else None  # a fixed mask
        return model.loss_and_grads(params, batch, config, dropout_rng, kernel_set)[0]

    dropout_rng = np.random.default_rng(2) if dropout else None
    # differences are meaningless across the ReLU kink: keep every pre-activation away from 0
    assert min(np.abs(x).min() for x in relu_inputs(params, batch, config, dropout_rng,
                                                     kernel_set)) > 5e-4

    dropout_rng = np.random.default_rng(2) if dropout else None
    _, grads = model.loss_and_grads(params, batch, config, dropout_rng, kernel_set)
    assert grads.keys() == params.keys()
    for key, value in params.items():
        grad = np.asarray(grads[key])  # the fast set's table gradient as an array
        assert grad.shape == value.shape and grad.dtype == value.dtype, key
        if value.size > 60:  # sample the big tensors (the same coordinates at h and 2h)
            numeric, index = richardson_gradient(loss, value, 1.0, h=1e-4, samples=60)
            grad = grad.reshape(-1)[index]
        else:
            numeric = richardson_gradient(loss, value, 1.0, h=1e-4)
        if key.endswith("in_proj_bias"):
            # the key third shifts a whole softmax row: true gradient exactly 0, and its
            # finite difference is rounding noise; judge the query and value thirds
            assert np.abs(grad[D : 2 * D]).max() < 1e-12, key
            keep = np.r_[0:D, 2 * D : 3 * D]
            numeric, grad = numeric[keep], grad[keep]
        # the tensor as a whole: ||numeric - grad|| / (||numeric|| + ||grad||)
        norms = np.linalg.norm(numeric) + np.linalg.norm(grad)
        tensor_err = np.linalg.norm(numeric - grad) / norms
        assert tensor_err < 1e-6, f"{name} {key}: tensor relative error {tensor_err:.2e}"
        # and every coordinate: relative where the gradient is resolvable above the
        # difference's rounding noise, absolute below it
        resolved = np.abs(grad) > 3e-5
        assert np.all(np.abs(numeric - grad)[~resolved] < 3e-11), key
        err = rel_error(numeric[resolved], grad[resolved])
        assert err < 1e-6, f"{name} {key}: relative error {err:.2e}"


@pytest.mark.parametrize("mode", ["faithful", "sequence"])
def test_tied_embedding_and_padding_row(mode):
    config, params, _ = make("faithful-1" if mode == "faithful" else "sequence-1")
    batch = make_batch(Sessions.from_lists([[1, 2, 1], [3]], [4, 5]), np.arange(2), mode)
    _, grads = model.loss_and_grads(params, batch, config, None)
    dE = np.asarray(grads["embedding.weight"])
    # items never in the input still get the scoring share of the tied table's gradient
    assert np.abs(dE[4:]).min() > 0
    if mode == "sequence":
        # padding is masked out of attention and never read out: it cannot move the loss
        np.testing.assert_array_equal(dE[0], 0.0)
    else:
        # the original's padding zeros attend and are attended to
        assert np.abs(dE[0]).min() > 0


@pytest.mark.parametrize("name", ["faithful-2", "sequence-2-positions"])
def test_float32_agrees_with_float64(name):
    config, p64, batch = make(name, np.float64)
    _, p32, _ = make(name, np.float32)
    loss64, g64 = model.loss_and_grads(p64, batch, config, None)
    loss32, g32 = model.loss_and_grads(p32, batch, config, None)
    assert abs(loss32 - loss64) < 1e-5 * max(1.0, abs(loss64))
    for key in p64:
        assert g32[key].dtype == np.float32, key
        scale = np.abs(g64[key]).max()
        np.testing.assert_allclose(g32[key], g64[key], atol=1e-4 * scale + 1e-7, err_msg=key)
    np.testing.assert_allclose(model.score(p32, batch, config),
                               model.score(p64, batch, config), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", kernels.NAMES)
def test_one_and_two_threads_identical(name):
    """Repeated runs on two threads and a run on one: the same loss and gradients, and the
    same parameters after the kernel set's Adam step."""
    config = Config(n_items=V, hidden=12, heads=3, layers=2, mode="sequence", positions=True)
    rng = np.random.default_rng(4)
    prefixes = [list(rng.integers(1, V + 1, size=rng.integers(1, 9))) for _ in range(24)]
    batch = make_batch(Sessions.from_lists(prefixes, [1] * 24), np.arange(24), "sequence")

    def run():
        params = model.init_params(config, 3)
        loss, grads = model.loss_and_grads(params, batch, config, np.random.default_rng(5),
                                           name)
        kernels.get(name).Adam(params, weight_decay=1e-5).step(grads)
        return loss, grads, params

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        runs = [run()]
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        runs += [run() for _ in range(2)]
    finally:
        numba.set_num_threads(before)
    for loss, grads, params in runs[1:]:
        assert loss == runs[0][0]
        for key in grads:
            np.testing.assert_array_equal(grads[key], runs[0][1][key])
            np.testing.assert_array_equal(params[key], runs[0][2][key])


@pytest.mark.parametrize("mode", ["faithful", "sequence"])
def test_length_one_sessions_are_finite(mode):
    config = Config(n_items=V, hidden=D, heads=H, mode=mode)
    params = model.init_params(config, 6)
    batch = make_batch(Sessions.from_lists([[3], [7], [1]], [2, 3, 4]), np.arange(3), mode)
    loss, grads = model.loss_and_grads(params, batch, config, np.random.default_rng(0))
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    assert np.all(np.isfinite(model.score(params, batch, config)))


def test_score_shape_and_attention_maps():
    config, params, batch = make("sequence-2-positions", np.float32)
    scores = model.score(params, batch, config)
    B, T = batch.inputs.shape
    assert scores.shape == (B, V) and scores.dtype == np.float32
    maps = model.attention_maps(params, batch, config)
    assert len(maps) == 2 and maps[0].shape == (B, H, T, T)
    np.testing.assert_allclose(maps[1].sum(axis=-1), 1.0, rtol=1e-5)
    assert np.all(maps[0][1, :, :, 1:] == 0.0)  # session 1 has one click: one real key
    # evaluation has no dropout: scores repeat
    np.testing.assert_array_equal(scores, model.score(params, batch, config))


def test_init_faithful_is_uniform_everywhere():
    config = Config(n_items=50, hidden=16)
    params = model.init_params(config, 0)
    bound = 1 / np.sqrt(16)
    for key, value in params.items():
        assert value.dtype == np.float32
        assert np.abs(value).max() <= bound, key
        assert value.std() > bound / 4, key  # not constant: LN gains and biases included


def test_init_sequence_is_documented_standard():
    config = Config(n_items=50, hidden=16, mode="sequence", positions=True)
    params = model.init_params(config, 0)
    np.testing.assert_array_equal(params["layers.0.norm1.weight"], 1.0)
    np.testing.assert_array_equal(params["layers.0.linear1.bias"], 0.0)
    assert abs(params["embedding.weight"].std() - 1 / 4) < 0.03
    assert params["position.weight"].shape == (200, 16)


def test_init_is_seeded_and_dtype_independent():
    config = Config(n_items=V, hidden=D, heads=H)
    a, b = model.init_params(config, 7), model.init_params(config, 7, np.float64)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key].astype(np.float32))
    other = model.init_params(config, 8)
    assert not np.array_equal(a["embedding.weight"], other["embedding.weight"])


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(hidden=10, heads=3), "divisible"),
        (dict(mode="graph"), "mode"),
        (dict(positions=True), "positions"),
        (dict(dropout=1.0), "dropout"),
        (dict(n_items=0), "n_items"),
        (dict(layers=1.5), "layers"),
    ],
)
def test_config_validation(change, message):
    with pytest.raises(ValueError, match=message):
        Config(**{"n_items": V, **change})


def test_config_is_frozen_and_round_trips_as_dict():
    config = Config(n_items=V, mode="sequence", positions=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hidden = 4  # type: ignore[misc]
    assert Config(**dataclasses.asdict(config)) == config


# ---------------------------------------------------------------------------------------
# State-dict interop
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_round_trip_gives_identical_scores(name, tmp_path):
    config, params, batch = make(name, np.float32)
    state = model.to_state_dict(params, config)
    if config.layers:
        assert "transformerEncoder.layers.0.self_attn.in_proj_weight" in state
    loaded = model.from_state_dict(state, config)
    np.testing.assert_array_equal(model.score(loaded, batch, config),
                                  model.score(params, batch, config))
    model.save_state_npz(tmp_path / "weights.npz", params, config)
    from_file = model.load_state_npz(tmp_path / "weights.npz", config)
    for key in params:
        np.testing.assert_array_equal(from_file[key], params[key])
    assert [p.name for p in tmp_path.iterdir()] == ["weights.npz"]


def test_state_dict_ignores_template_layer():
    config, params, batch = make("faithful-1", np.float32)
    state = model.to_state_dict(params, config)
    state["transformerEncoderLayer.linear1.weight"] = np.zeros((3, 3), np.float32)
    loaded = model.from_state_dict(state, config)
    assert loaded.keys() == params.keys()


def test_state_dict_refusals_name_the_keys():
    config, params, _ = make("faithful-2", np.float32)
    state = model.to_state_dict(params, config)
    broken = dict(state)
    del broken["transformerEncoder.layers.1.norm2.bias"]
    broken["transformerEncoder.layers.0.linear1.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError) as info:
        model.from_state_dict(broken, config)
    text = str(info.value)
    assert "transformerEncoder.layers.1.norm2.bias" in text
    assert "transformerEncoder.layers.0.linear1.weight" in text
    # a two-layer state is not silently cut to one layer
    one_layer = dataclasses.replace(config, layers=1)
    with pytest.raises(ValueError, match="unexpected keys.*layers.1"):
        model.from_state_dict(state, one_layer)


def test_larger_original_table_needs_the_matching_n_items():
    """The original hard-codes n_node (37,484): a bigger table loads only if n_items says so."""
    config, params, batch = make("faithful-1", np.float32)
    state = model.to_state_dict(params, config)
    extra = np.random.default_rng(0).standard_normal((20, D)).astype(np.float32)
    state["embedding.weight"] = np.concatenate([state["embedding.weight"], extra])
    with pytest.raises(ValueError, match="n_items=31"):
        model.from_state_dict(state, config)
    big = dataclasses.replace(config, n_items=V + 20)
    loaded = model.from_state_dict(state, big)
    scores = model.score(loaded, batch, big)
    assert scores.shape == (len(PREFIXES), V + 20)
    # the first V columns are the same items scored as before: the table only grew
    np.testing.assert_allclose(scores[:, :V], model.score(params, batch, config), rtol=1e-6)


def test_hand_built_batch_is_accepted():
    """Anything with Batch's fields works (notebooks build them by hand)."""
    config, params, _ = make("sequence-1")
    batch = Batch(
        inputs=np.array([[1, 2, 0], [3, 0, 0]], dtype=np.int32),
        key_mask=np.array([[1, 1, 0], [1, 0, 0]], dtype=bool),
        last=np.array([1, 0], dtype=np.int64),
        targets=np.array([5, 6], dtype=np.int32),
        index=np.arange(2, dtype=np.int64),
    )
    loss, _ = model.loss_and_grads(params, batch, config, None)
    assert np.isfinite(loss)
