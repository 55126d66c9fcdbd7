"""How a wrong output is wrong: the known mistakes and the usual patterns, each tested
against the true value.

:func:`diagnose` compares a learner's array with the true one (a finite-difference
gradient, or the reference op's output) and says, in this order:

1. not an array, or the wrong shape -- and if it is the true array with its axes swapped,
   "transposed";
2. NaN or inf;
3. the wrong dtype (every gradient has the dtype of what it differentiates);
4. a known mistake of the op (:class:`Hints.mistakes`, built by
   :mod:`srsan_np.exercises.mistakes` from the reference): "dx is the gradient without the
   path through the mean";
5. transposed (a square matrix), the sign flipped, zero, off by a constant factor (named
   when it is one the op divides by, :class:`Hints.factors`);
6. right except in one region the op knows about (:class:`Hints.regions`: the rows of
   repeated ids, the padded positions, one attention head): the smallest region that
   holds every wrong entry;
7. part by part (:class:`Hints.parts`: the q, k and v thirds of the input projection, the
   real and the padded positions): which parts are right, zero, negated or scaled;
8. the invariants a right answer satisfies (:class:`Hints.invariants`: the rows of a layer
   norm's ``dx`` sum to 0), each one that fails.

Without a known mistake, pattern or region, it gives the largest error and where it is,
with the parts and invariants that say more. The sentence is one line.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["Hints", "Region", "Invariant", "diagnose", "RTOL"]

RTOL = 1e-5  # "fits": every entry within RTOL of the largest true entry (float64)


@dataclass(frozen=True)
class Region:
    """Entries of an output that a usual mistake gets wrong, and nothing else."""

    label: str  # "the rows of repeated ids", "the padded positions", "head 1", ...
    mask: np.ndarray  # bool, the output's shape
    advice: str = ""


@dataclass(frozen=True)
class Invariant:
    """What every right answer satisfies; ``holds(got)`` says whether ``got`` does."""

    says: str  # what fails, in the learner's terms, when it does not hold
    holds: Callable


@dataclass(frozen=True)
class Hints:
    """What an op knows about one of its outputs, to name a mistake."""

    factors: dict = field(default_factory=dict)  # factor -> what it means
    regions: tuple = ()  # Region, ...
    mistakes: tuple = ()  # (what it is, the array it gives), ...
    parts: tuple = ()  # (label, bool mask), ... covering the output
    invariants: tuple = ()  # Invariant, ...
    pointer: str = ""  # where to look next when nothing else fits ("; write attention_steps")


def _fits(got, true, scale, rtol):
    return bool(np.all(np.abs(got - true) <= rtol * scale))


def _describe_factor(c, factors):
    for factor, meaning in factors.items():
        if abs(c - factor) <= 1e-4 * abs(factor):
            return f" ({meaning})"
    return ""


def _pattern(got, true, scale, rtol, factors, noun):
    """The whole-array pattern ``got`` shows against ``true``, or None."""
    if got.ndim >= 2 and got.shape[-1] == got.shape[-2] and \
            _fits(np.swapaxes(got, -1, -2), true, scale, rtol):
        return "is transposed (its last two axes swapped)"
    if _fits(got, -true, scale, rtol):
        return f"has the sign flipped: it is minus the true {noun}"
    if _fits(got, 0.0, scale, rtol):
        return "is zero everywhere; the true one is not"
    norm = float(np.sum(true * true))
    if norm > 0:
        c = float(np.sum(got * true)) / norm
        if abs(c - 1.0) > 1e-3 and _fits(got, c * true, scale, rtol):
            return f"is {c:.2f}x the true {noun}{_describe_factor(c, factors)}"
    return None


def _part_pattern(got, true, scale, rtol):
    """One word for how a part of ``got`` compares with the same part of ``true``;
    ``scale``: the whole output's largest true entry (a part that is truly zero, as the key
    bias's third, is "right" when it is zero)."""
    if _fits(got, true, scale, rtol):
        return "right"
    if _fits(got, 0.0, scale, rtol):
        return "zero"
    part = max(float(np.max(np.abs(true))) if true.size else 0.0, 1e-300)
    if _fits(got, -true, part, rtol):
        return "negated"
    norm = float(np.sum(true * true))
    if norm > 0:
        c = float(np.sum(got * true)) / norm
        if _fits(got, c * true, part, rtol):
            return f"{c:.2f}x"
    return "wrong"


def _parts(got, true, parts, rtol):
    """"the q third is right, the k third negated, ..." when that says more than "wrong"."""
    scale = max(float(np.max(np.abs(true))) if true.size else 0.0, 1e-300)
    words = [(label, _part_pattern(got[mask], true[mask], scale, rtol)) for label, mask in parts]
    if all(w == "wrong" for _, w in words) or all(w == "right" for _, w in words):
        return ""
    return "; part by part: " + ", ".join(f"{label} {w}" for label, w in words)


def _invariants(got, invariants):
    return "".join(f"; {inv.says}" for inv in invariants if not inv.holds(got))


def _wrong_shape(name, got, true, scale, rtol):
    """What a ``got`` of another shape than ``true`` is: transposed, reshaped, or wrong."""
    if got.ndim == true.ndim and got.ndim > 1:
        for axes in itertools.permutations(range(got.ndim)):
            moved = got.transpose(axes)
            if moved.shape == true.shape and np.isfinite(moved).all() \
                    and _fits(moved, true, scale, rtol):
                return (f"{name} is transposed: shape {got.shape}, expected {true.shape} "
                        f"(axes {axes} of yours give the true gradient)")
    message = f"{name} has the wrong shape {got.shape}, expected {true.shape}"
    if got.size == true.size and _fits(got.reshape(true.shape), true, scale, rtol):
        message += " (the values are right: a reshape, or a keepdims, too many)"
    return message


def _not_finite(name, got):
    """Where ``got`` holds NaN or inf, and what usually puts them there."""
    bad = ~np.isfinite(got)
    kinds = " and ".join(k for k, m in (("NaN", np.isnan(got)), ("inf", np.isinf(got)))
                         if m.any())
    where = np.unravel_index(np.argmax(bad), got.shape)
    return (f"{name} has {kinds} in {int(bad.sum())} of {got.size} entries (first at "
            f"{tuple(map(int, where))}): a division by zero, a log or sqrt of a "
            f"non-positive number, or an overflowing exp?")


def diagnose(name, got, true, hints=Hints(), dtype=None, rtol=RTOL, exact=None,
             noun="gradient") -> str:
    """One sentence on how ``got`` differs from ``true`` (assumed to differ).

    ``dtype``: the dtype ``got`` must have (None: ``true``'s); ``rtol``: how close "fits"
    ``true`` is, relative to its largest entry (a finite-difference gradient is only good
    to about 1e-8 of it, a float32 result less); ``exact``: how close "fits" a known
    mistake is, computed exactly as the learner's own result (default ``rtol``); ``noun``:
    what ``true`` is ("gradient", or "value" for a forward output).
    """
    exact = rtol if exact is None else exact
    true = np.asarray(true)
    dtype = true.dtype if dtype is None else np.dtype(dtype)
    if not isinstance(got, np.ndarray) and not np.isscalar(got):
        return f"{name} is a {type(got).__name__}, expected an array of shape {true.shape}"
    got = np.asarray(got)
    scale = max(float(np.max(np.abs(true))) if true.size else 0.0, 1e-300)
    if got.shape != true.shape:
        return _wrong_shape(name, got, true, scale, rtol)
    if got.dtype.kind not in "fiub":
        return f"{name} has dtype {got.dtype}, expected {dtype}"
    if not np.isfinite(got).all():
        return _not_finite(name, got)
    if got.dtype != dtype:
        return (f"{name} has dtype {got.dtype}, expected {dtype}: return the dtype of what it "
                f"differentiates (allocate with x.dtype, np.zeros_like(x); a bare np.zeros is "
                f"float64), as training runs in float32")
    got = got.astype(np.float64)
    for says, wrong in hints.mistakes:
        if wrong.shape == got.shape and _fits(got, wrong, scale, exact) \
                and not _fits(wrong, true, scale, rtol):
            return f"{name} is {says}"
    pattern = _pattern(got, true, scale, rtol, hints.factors, noun)
    if pattern:
        return f"{name} {pattern}"
    wrong = np.abs(got - true) > rtol * scale
    holding = [r for r in hints.regions if not np.any(wrong & ~r.mask)]
    if holding:
        region = min(holding, key=lambda r: int(r.mask.sum()))
        advice = f": {region.advice}" if region.advice else ""
        return f"{name} is right except at {region.label}{advice}"
    where = np.unravel_index(np.argmax(np.abs(got - true)), got.shape)
    return (f"{name} is wrong in {int(wrong.sum())} of {got.size} entries and no known "
            f"mistake fits{_parts(got, true, hints.parts, rtol)}"
            f"{_invariants(got, hints.invariants)}; the largest error is at "
            f"{tuple(map(int, where))}: {float(got[where]):.6g}, expected "
            f"{float(true[where]):.6g}{hints.pointer}")
