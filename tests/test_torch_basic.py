"""Parity with PyTorch autograd in float64: layer norm and the tied softmax cross-entropy.

Skipped when torch is not installed. Outputs and every gradient must agree to 1e-10.
"""

import numpy as np
import pytest

from srsan_np.fast import scoring as fast_scoring
from srsan_np.ops import scoring
from srsan_np.ops.layernorm import layernorm_backward, layernorm_forward

torch = pytest.importorskip("torch")

TOL = dict(rtol=1e-10, atol=1e-10)


def _t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def test_layernorm_matches_torch():
    rng = np.random.default_rng(0)
    x = 3.0 * rng.standard_normal((2, 5, 8)) + 2.0
    gamma = 1.0 + 0.5 * rng.standard_normal(8)
    beta = rng.standard_normal(8)
    dout = rng.standard_normal((2, 5, 8))

    out, cache = layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = layernorm_backward(dout, cache)

    xt, gt, bt = _t(x), _t(gamma), _t(beta)
    out_t = torch.nn.functional.layer_norm(xt, (8,), gt, bt, eps=1e-5)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    np.testing.assert_allclose(dgamma, gt.grad.numpy(), **TOL)
    np.testing.assert_allclose(dbeta, bt.grad.numpy(), **TOL)


@pytest.mark.parametrize("op", [scoring, fast_scoring], ids=["reference", "fast"])
def test_softmax_cross_entropy_matches_torch(op):
    rng = np.random.default_rng(1)
    B, D, V = 3, 8, 11
    h = rng.standard_normal((B, D))
    E = rng.standard_normal((V + 1, D))
    targets = np.array([4, 11, 1], dtype=np.int64)

    loss, cache = op.softmax_cross_entropy(h, E, targets)
    dh, dE = op.softmax_cross_entropy_backward(1.0, cache)

    ht, Et = _t(h), _t(E)
    loss_t = torch.nn.CrossEntropyLoss()(ht @ Et[1:].T, torch.tensor(targets - 1))
    loss_t.backward()
    np.testing.assert_allclose(loss, loss_t.item(), **TOL)
    np.testing.assert_allclose(dh, ht.grad.numpy(), **TOL)
    np.testing.assert_allclose(dE, Et.grad.numpy(), **TOL)
