"""How a wrong output is wrong: the usual mistakes, each tested against the true value.

:func:`diagnose` compares a learner's array with the true one (a finite-difference
gradient, or the reference op's output) and says which usual mistake fits, in this order:

1. not an array, or the wrong shape -- and if it is the true array with its axes swapped,
   "transposed";
2. NaN or inf;
3. the wrong dtype (a float32 result in a float64 check has lost its precision);
4. transposed (a square matrix: the same shape either way);
5. the sign flipped;
6. off by a constant factor, with the factor said, and named when it is one the op
   divides by (:class:`Hints.factors`: "missing the 1/B of the mean over the batch");
7. right except in one region the op knows about (:class:`Hints.regions`: the rows of
   repeated ids, the masked or padded positions, one attention head): the smallest region
   that holds every wrong entry.

Otherwise it gives the largest error and where it is.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Hints", "Region", "diagnose", "RTOL"]

RTOL = 1e-5  # "fits": every entry within RTOL of the largest true entry


@dataclass(frozen=True)
class Region:
    """Entries of an output that a usual mistake gets wrong, and nothing else."""

    label: str  # "repeated ids", "the padded positions", "head 1", ...
    mask: np.ndarray  # bool, the output's shape
    advice: str = ""


@dataclass(frozen=True)
class Hints:
    """What an op knows about its outputs, to name a mistake."""

    factors: dict = field(default_factory=dict)  # factor -> what it means
    regions: tuple = ()  # Region, ...


def _fits(got, true, scale):
    return bool(np.all(np.abs(got - true) <= RTOL * scale))


def _describe_factor(c, factors):
    for factor, meaning in factors.items():
        if abs(c - factor) <= 1e-6 * abs(factor):
            return f" ({meaning})"
    return ""


def diagnose(name, got, true, hints=Hints()) -> str:
    """One sentence on how ``got`` differs from ``true`` (assumed to differ)."""
    true = np.asarray(true)
    if not isinstance(got, np.ndarray) and not np.isscalar(got):
        return f"{name} is a {type(got).__name__}, expected an array of shape {true.shape}"
    got = np.asarray(got)
    scale = max(float(np.max(np.abs(true))) if true.size else 0.0, 1e-300)
    if got.shape != true.shape:
        if got.ndim == true.ndim and got.ndim > 1:
            for axes in itertools.permutations(range(got.ndim)):
                moved = got.transpose(axes)
                if moved.shape == true.shape and np.isfinite(moved).all() \
                        and _fits(moved, true, scale):
                    return (f"{name} is transposed: shape {got.shape}, expected {true.shape} "
                            f"(axes {axes} of yours give the true gradient)")
        message = f"{name} has the wrong shape {got.shape}, expected {true.shape}"
        if got.size == true.size and _fits(got.reshape(true.shape), true, scale):
            message += " (the values are right: a reshape, or a keepdims, too many)"
        return message
    bad = ~np.isfinite(got)
    if bad.any():
        kinds = " and ".join(k for k, m in (("NaN", np.isnan(got)), ("inf", np.isinf(got)))
                             if m.any())
        where = np.unravel_index(np.argmax(bad), got.shape)
        return (f"{name} has {kinds} in {int(bad.sum())} of {got.size} entries (first at "
                f"{tuple(map(int, where))}): a division by zero, a log or sqrt of a "
                f"non-positive number, or an overflowing exp?")
    if got.dtype != true.dtype:
        return (f"{name} has dtype {got.dtype}, expected {true.dtype}: keep the inputs' dtype "
                f"(allocate with x.dtype), the check runs in float64")
    if got.ndim >= 2 and got.shape[-1] == got.shape[-2] and _fits(np.swapaxes(got, -1, -2),
                                                                  true, scale):
        return f"{name} is transposed (its last two axes swapped)"
    if _fits(got, -true, scale):
        return f"{name} has the sign flipped: it is minus the true gradient"
    norm = float(np.sum(true * true))
    if norm > 0:
        c = float(np.sum(got * true)) / norm
        if abs(c - 1.0) > 1e-3 and _fits(got, c * true, scale):
            if abs(c) < RTOL:
                return f"{name} is zero everywhere; the true one is not"
            return (f"{name} is {c:.2f}x the true gradient"
                    f"{_describe_factor(c, hints.factors)}")
    wrong = np.abs(got - true) > RTOL * scale
    holding = [r for r in hints.regions if not np.any(wrong & ~r.mask)]
    if holding:
        region = min(holding, key=lambda r: int(r.mask.sum()))
        advice = f": {region.advice}" if region.advice else ""
        return f"{name} is right except at {region.label}{advice}"
    where = np.unravel_index(np.argmax(np.abs(got - true)), got.shape)
    return (f"{name} is wrong in {int(wrong.sum())} of {got.size} entries, and no usual "
            f"mistake fits; the largest error is at {tuple(map(int, where))}: "
            f"{float(got[where]):.6g}, expected {float(true[where]):.6g}")
