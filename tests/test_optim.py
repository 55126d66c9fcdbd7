"""Adam (coupled L2) and step decay: against a NumPy reference and against torch."""

import numba
import numpy as np
import pytest

from srsan_np.fast import optim as fast_optim
from srsan_np.optim import Adam, step_lr

SHAPES = {"embedding.weight": (7, 3), "linear1.bias": (5,), "big": (300, 257)}


def make_params(seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}


def grad_sequence(seed, n_steps, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
            for _ in range(n_steps)]


def reference_adam(params, grads_seq, lr, betas, eps, wd):
    """Adam written out in NumPy, textbook order (m = b1 m + (1 - b1) g)."""
    b1, b2 = betas
    p = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    for t, grads in enumerate(grads_seq, start=1):
        for k in p:
            g = grads[k] + wd * p[k]
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            m_hat = m[k] / (1 - b1 ** t)
            v_hat = v[k] / (1 - b2 ** t)
            p[k] = p[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def test_matches_numpy_reference():
    params = make_params(0)
    grads_seq = grad_sequence(1, 6)
    expected = reference_adam(params, grads_seq, 1e-2, (0.9, 0.999), 1e-8, 1e-2)
    opt = Adam(params, lr=1e-2, weight_decay=1e-2)
    for grads in grads_seq:
        opt.step(grads)
    for k in params:
        # Same math, different rounding order (torch's lerp form, eps outside sqrt(v)/c):
        # agreement to ~1e-15 relative per step.
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12, atol=1e-14)


def test_first_step_is_lr_times_sign():
    """At t = 1 the bias-corrected step is lr * g / (|g| + eps'): lr * sign(g) when eps ~ 0."""
    p = {"w": np.array([1.0, -2.0, 3.0])}
    g = {"w": np.array([0.5, -4.0, 1e-3])}
    Adam(p, lr=0.1, eps=0.0).step(g)
    np.testing.assert_allclose(p["w"], [0.9, -1.9, 2.9], rtol=0, atol=1e-14)


def test_weight_decay_is_coupled():
    """Zero gradient + decay: the decay alone drives the moments (coupled L2, not AdamW)."""
    p = {"w": np.array([2.0, -3.0])}
    Adam(p, lr=0.1, eps=0.0, weight_decay=0.5).step({"w": np.zeros(2)})
    # g' = 0.5 * p, so the first step is lr * sign(p); AdamW would give p - lr * wd * p.
    np.testing.assert_allclose(p["w"], [1.9, -2.9], rtol=0, atol=1e-14)


def test_in_place_and_float32_stays_float32():
    params = make_params(2, np.float32)
    before = params["big"]
    opt = Adam(params, weight_decay=1e-5)
    opt.step(grad_sequence(3, 1, np.float32)[0])
    assert params["big"] is before and params["big"].dtype == np.float32
    assert opt.m["big"].dtype == np.float32 and opt.v["big"].dtype == np.float32


def test_state_round_trip_resumes_exactly():
    grads_seq = grad_sequence(5, 6)
    straight = make_params(4)
    opt = Adam(straight, lr=1e-2, weight_decay=1e-3)
    for grads in grads_seq:
        opt.step(grads)

    resumed = make_params(4)
    first = Adam(resumed, lr=1e-2, weight_decay=1e-3)
    for grads in grads_seq[:3]:
        first.step(grads)
    state = first.state_dict()
    saved = {k: v.copy() for k, v in resumed.items()}
    second = Adam(saved, lr=1e-2, weight_decay=1e-3)
    second.load_state_dict(state)
    assert second.t == 3
    for grads in grads_seq[3:]:
        second.step(grads)
    for k in straight:
        np.testing.assert_array_equal(saved[k], straight[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_adam_equals_the_textbook_one(dtype, monkeypatch):
    """The fast Adam updates arrays below ``PARALLEL_FROM`` elements with a serial kernel:
    elementwise, so parameters and moments are bit for bit the textbook's, whichever
    arrays take which kernel, and no thread count is changed."""
    for parallel_from in (1 << 12, 1, 1 << 40):  # "big" parallel only / all / none
        monkeypatch.setattr(fast_optim, "PARALLEL_FROM", parallel_from)
        results = []
        for cls in (Adam, fast_optim.Adam):
            params = make_params(6, dtype)
            opt = cls(params, lr=1e-2, weight_decay=1e-3)
            threads = numba.get_num_threads()
            for grads in grad_sequence(7, 3, dtype):
                opt.step(grads)
            assert numba.get_num_threads() == threads
            results.append((params, opt.m, opt.v))
        for k in SHAPES:
            for got, want in zip(results[1], results[0]):
                np.testing.assert_array_equal(got[k], want[k])


def test_bad_gradient_moves_no_parameter():
    params = make_params(8)
    before = {k: v.copy() for k, v in params.items()}
    grads = grad_sequence(9, 1)[0]
    with pytest.raises(ValueError, match="linear1.bias"):  # after embedding.weight in order
        Adam(params).step({**grads, "linear1.bias": np.zeros(4)})
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_bad_inputs_are_named():
    params = make_params(0)
    opt = Adam(params)
    with pytest.raises(KeyError, match="big"):
        opt.step({k: v for k, v in params.items() if k != "big"})
    with pytest.raises(ValueError, match="linear1.bias"):
        opt.step({**params, "linear1.bias": np.zeros(4)})
    state = opt.state_dict()
    state["m.big"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="m.big"):
        opt.load_state_dict(state)
    with pytest.raises(KeyError, match="v.big"):
        opt.load_state_dict({k: v for k, v in opt.state_dict().items() if k != "v.big"})
    with pytest.raises(ValueError, match="C-contiguous"):
        Adam({"w": np.zeros((3, 4)).T})
    with pytest.raises(ValueError, match="betas"):
        Adam(params, betas=(0.9, 1.0))


def test_step_lr_schedule():
    lrs = [step_lr(1e-3, epoch, step_size=3, gamma=0.1) for epoch in range(12)]
    np.testing.assert_allclose(lrs, [1e-3] * 3 + [1e-4] * 3 + [1e-5] * 3 + [1e-6] * 3,
                               rtol=1e-12)
    with pytest.raises(ValueError, match="step_size"):
        step_lr(1e-3, 0, step_size=0)


def test_matches_torch_adam_and_steplr():
    torch = pytest.importorskip("torch")
    params = make_params(6)
    grads_seq = grad_sequence(7, 8)
    tparams = [torch.nn.Parameter(torch.tensor(params[k])) for k in SHAPES]
    topt = torch.optim.Adam(tparams, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(topt, step_size=3, gamma=0.1)
    opt = Adam(params, lr=1e-2, weight_decay=1e-2)
    # Two optimiser steps per "epoch", the schedule stepped at the end of each epoch.
    for i, grads in enumerate(grads_seq):
        epoch = i // 2
        opt.lr = step_lr(1e-2, epoch, step_size=3, gamma=0.1)
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)
        for tp, k in zip(tparams, SHAPES):
            tp.grad = torch.tensor(grads[k])
        topt.step()
        opt.step(grads)
        if i % 2 == 1:
            sched.step()
    # torch's vectorised lerp uses a fused multiply-add, so m can differ in the last bit
    # (absolute ~1e-16); everything agrees to 1e-12.
    for tp, k in zip(tparams, SHAPES):
        np.testing.assert_allclose(params[k], tp.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(opt.m[k], topt.state[tp]["exp_avg"].numpy(),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(opt.v[k], topt.state[tp]["exp_avg_sq"].numpy(),
                                   rtol=1e-12, atol=1e-12)


def test_float32_matches_torch_float32():
    """float32 arithmetic throughout, as torch does for float32 tensors."""
    torch = pytest.importorskip("torch")
    params = make_params(8, np.float32)
    grads_seq = grad_sequence(9, 5, np.float32)
    tparams = [torch.nn.Parameter(torch.tensor(params[k])) for k in SHAPES]
    topt = torch.optim.Adam(tparams, lr=1e-3, weight_decay=1e-5)
    opt = Adam(params, lr=1e-3, weight_decay=1e-5)
    for grads in grads_seq:
        for tp, k in zip(tparams, SHAPES):
            tp.grad = torch.tensor(grads[k])
        topt.step()
        opt.step(grads)
    for tp, k in zip(tparams, SHAPES):
        np.testing.assert_allclose(params[k], tp.detach().numpy(), rtol=1e-6, atol=1e-7)
