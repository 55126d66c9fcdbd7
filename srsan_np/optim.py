"""Adam with coupled L2 and the step-decay schedule, exactly as the original trains.

The original SR-SAN code uses ``torch.optim.Adam(lr=1e-3, weight_decay=1e-5)`` and
``StepLR(step_size=3, gamma=0.1)`` stepped once at the end of every epoch. This module
reproduces both to the last rounding step, so a run here and a run there can be compared
update by update.

The update of one parameter array is a single fused Numba pass (weight decay, both moments,
bias correction and the parameter step), parallel over the flat array.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["Adam", "step_lr"]


# >>> solution
@njit(cache=True, error_model="numpy")
def adam_element(p, g, m, v, one_minus_beta1, beta2, one_minus_beta2, weight_decay, step_size,
                 bias2_sqrt, eps):
    """One Adam step of one element: the new ``(p, m, v)``.

    In the order and rounding of ``torch.optim.Adam`` (single-tensor path)::

        g' = g + weight_decay * p                  # coupled L2: decay enters the moments
        m  = m + (1 - beta1) * (g' - m)            # torch: exp_avg.lerp_(grad, 1 - beta1)
        v  = beta2 * v + (1 - beta2) * g' * g'     # exp_avg_sq.mul_(beta2).addcmul_(...)
        p  = p - step_size * m / (sqrt(v) / bias2_sqrt + eps)

    with ``step_size = lr / (1 - beta1**t)`` and ``bias2_sqrt = sqrt(1 - beta2**t)``.
    The scalars arrive already cast to the arrays' dtype (no literals in here: an integer
    literal would promote float32 to float64), so float32 arithmetic stays float32, as in
    torch for float32 tensors, and float64 stays float64.
    """
    grad = g + weight_decay * p
    m = m + one_minus_beta1 * (grad - m)
    v = beta2 * v + one_minus_beta2 * grad * grad
    return p - step_size * (m / (np.sqrt(v) / bias2_sqrt + eps)), m, v


# error_model="numpy": a division by zero gives inf/nan instead of raising, which removes the
# per-element check that otherwise stops LLVM from vectorising the loop. prange over the flat
# index: Numba hands each thread one contiguous block, so every element has one owner.
@njit(cache=True, parallel=True, error_model="numpy")
def adam_kernel(p, g, m, v, one_minus_beta1, beta2, one_minus_beta2, weight_decay, step_size,
                bias2_sqrt, eps):
    """One Adam step on flat arrays, in place (see :func:`adam_element`); each element is
    read and written once, in one fused pass: the embedding table receives a dense gradient
    every step (the softmax gives every item some gradient), and separate NumPy passes for
    the decay, the moments and the step would each read and write it again."""
    for i in prange(p.size):
        p[i], m[i], v[i] = adam_element(p[i], g[i], m[i], v[i], one_minus_beta1, beta2,
                                        one_minus_beta2, weight_decay, step_size,
                                        bias2_sqrt, eps)
# <<< solution


class Adam:
    """Adam with coupled L2 weight decay, updating a dict of arrays in place.

    Parameters
    ----------
    params : dict[str, np.ndarray]
        The model's parameters (float32 to train, float64 to check), C-contiguous. They are
        updated in place by :meth:`step`; the optimiser keeps references, not copies.
    lr : float
        Learning rate. Mutable attribute: set ``opt.lr = step_lr(...)`` at each epoch.
    betas : tuple of float
        ``(beta1, beta2)`` decay rates of the first and second moment estimates.
    eps : float
        Added to the bias-corrected root second moment (outside the square root).
    weight_decay : float
        Coupled L2: ``weight_decay * param`` is added to the gradient *before* the moments,
        as ``torch.optim.Adam(weight_decay=...)`` does (this is not AdamW).

    Notes
    -----
    With gradient :math:`g_t`, step count :math:`t` (1 at the first step) and
    :math:`\\lambda` the weight decay (Kingma & Ba 2015, in PyTorch's arrangement):

    .. math::

        g'_t &= g_t + \\lambda \\theta_{t-1} \\\\
        m_t &= \\beta_1 m_{t-1} + (1 - \\beta_1) g'_t \\\\
        v_t &= \\beta_2 v_{t-1} + (1 - \\beta_2) g'^2_t \\\\
        \\theta_t &= \\theta_{t-1} - \\frac{\\eta}{1 - \\beta_1^t}
            \\frac{m_t}{\\sqrt{v_t} / \\sqrt{1 - \\beta_2^t} + \\epsilon}

    The state -- ``m``, ``v`` per parameter and the shared step count ``t`` -- is exported
    by :meth:`state_dict` as plain arrays (``.npz``-ready, no pickle) and restored by
    :meth:`load_state_dict`, so an interrupted run resumes bit for bit.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if not lr >= 0.0:
            raise ValueError(f"Adam: lr must be >= 0, got {lr!r}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Adam: betas must be two numbers in [0, 1), got {betas!r}")
        if not eps >= 0.0:
            raise ValueError(f"Adam: eps must be >= 0, got {eps!r}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Adam: weight_decay must be >= 0, got {weight_decay!r}")
        for name, p in params.items():
            if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
                raise TypeError(f"Adam: parameter {name!r} must be a float32/float64 ndarray")
            if not p.flags.c_contiguous or not p.flags.writeable:
                raise ValueError(f"Adam: parameter {name!r} must be C-contiguous and writeable "
                                 "(it is updated in place)")
        self.params = params
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.t = 0
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}

    def step(self, grads):
        """Apply one update to every parameter, in place.

        Parameters
        ----------
        grads : dict[str, np.ndarray]
            One gradient per parameter, same keys, shapes and dtypes as ``params``.
            Not modified (the weight-decay term is added inside the kernel).
        """
        missing = sorted(set(self.params) - set(grads))
        extra = sorted(set(grads) - set(self.params))
        if missing or extra:
            raise KeyError(f"Adam.step: gradients missing for {missing}, unknown {extra}")
        for name, p in self.params.items():
            g = grads[name]
            if g.shape != p.shape or g.dtype != p.dtype:
                raise ValueError(f"Adam.step: gradient {name!r} is {g.dtype}{g.shape}, "
                                 f"parameter is {p.dtype}{p.shape}")
        # >>> solution
        self.t += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1.0 - beta1 ** self.t)
        bias2_sqrt = (1.0 - beta2 ** self.t) ** 0.5  # as torch rounds it
        for name, p in self.params.items():
            cast = p.dtype.type
            self._update(p, grads[name], self.m[name], self.v[name], cast(1.0 - beta1),
                         cast(beta2), cast(1.0 - beta2), cast(self.weight_decay),
                         cast(step_size), cast(bias2_sqrt), cast(self.eps))
        # <<< solution

    # >>> solution
    def _update(self, p, g, m, v, *scalars):
        """One array's update, in place, by :meth:`_kernel` over the flat arrays
        (elementwise, so the result is the same on any number of threads)."""
        self._kernel(p)(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), m.reshape(-1),
                        v.reshape(-1), *scalars)

    def _kernel(self, p):
        """The kernel that updates ``p``: the parallel one for every array."""
        return adam_kernel
    # <<< solution

    def state_dict(self):
        """The optimiser state as plain arrays: ``"t"``, ``"m.<name>"``, ``"v.<name>"``.

        The arrays are copies, safe to save while training continues. Hyper-parameters are
        not included: they belong to the run's config (and ``lr`` to the schedule).
        """
        state = {"t": np.array(self.t, dtype=np.int64)}
        for name in self.params:
            state[f"m.{name}"] = self.m[name].copy()
            state[f"v.{name}"] = self.v[name].copy()
        return state

    def load_state_dict(self, state):
        """Restore a state written by :meth:`state_dict`; names every bad key or shape."""
        expected = {"t"} | {f"{k}.{name}" for name in self.params for k in "mv"}
        missing = sorted(expected - set(state))
        extra = sorted(set(state) - expected)
        if missing or extra:
            raise KeyError(f"Adam.load_state_dict: missing keys {missing}, unknown keys {extra}")
        for name, p in self.params.items():
            for k in "mv":
                arr = np.asarray(state[f"{k}.{name}"])
                if arr.shape != p.shape:
                    raise ValueError(f"Adam.load_state_dict: {k}.{name} has shape {arr.shape}, "
                                     f"parameter has {p.shape}")
        t = int(np.asarray(state["t"]))
        if t < 0:
            raise ValueError(f"Adam.load_state_dict: step count t must be >= 0, got {t}")
        self.t = t
        for name, p in self.params.items():
            self.m[name] = np.array(state[f"m.{name}"], dtype=p.dtype, order="C")
            self.v[name] = np.array(state[f"v.{name}"], dtype=p.dtype, order="C")


def step_lr(base_lr, epoch, step_size=3, gamma=0.1):
    """Learning rate of epoch ``epoch`` (0-based) under step decay.

    ``base_lr * gamma ** (epoch // step_size)``: the closed form of
    ``torch.optim.lr_scheduler.StepLR`` stepped once at the end of every epoch. With the
    original defaults (1e-3, step 3, gamma 0.1): 1e-3 for epochs 0-2, 1e-4 for 3-5, ...
    Set ``opt.lr = step_lr(base_lr, epoch)`` before each epoch; being a function of the
    epoch alone, it needs no state to resume.
    """
    if step_size < 1:
        raise ValueError(f"step_lr: step_size must be >= 1, got {step_size!r}")
    if epoch < 0:
        raise ValueError(f"step_lr: epoch must be >= 0, got {epoch!r}")
    return base_lr * gamma ** (epoch // step_size)
