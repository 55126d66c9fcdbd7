"""Full-catalogue ranking metrics: HR@K, MRR@K, NDCG@K with pessimistic ties.

Every method -- the model and each baseline -- is evaluated by the same code through one
contract: ``score_fn(index) -> scores``, where ``index`` is a (B,) int64 array of example
indices (in order, ``batch_size`` at a time) and ``scores`` is (B, V) with column ``j``
holding the score of item ``j + 1``. Only the order of the scores matters.

Ties are counted against the target (the *pessimistic* rank)::

    rank = 1 + #{ j != target : s_j >= s_target }

so a scorer that gives every item the same score ranks every target last (rank V) and
gets MRR ~ 1/V, not 1. Any other convention rewards constant or saturated scores: a
model whose scores collapsed to one value would look perfect under an optimistic rank.

NaN scores are treated as ``-inf``: a NaN target score ranks last (rank V), a NaN competitor
never beats anything. A model that emits NaN therefore scores ~0, visibly, instead of being
rewarded by comparisons that are always false.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from srsan_np.fast.threads import split_among_threads

__all__ = ["ranks_pessimistic", "metrics_from_ranks", "evaluate_ranks", "evaluate",
           "bootstrap_ci", "format_table", "top_k"]

METRICS = ("HR", "MRR", "NDCG")


@njit(cache=True, nogil=True)
def _ranks_kernel(scores, target_cols, out, lo, hi):
    """Pessimistic rank of the target of each row ``lo..hi-1``.

    Counting ``s_j >= s_t`` over all j includes the target itself, so the count *is*
    ``1 + #{j != t : s_j >= s_t}``. A NaN ``s_j`` compares false (it counts as -inf); a
    NaN or -inf target is beaten or tied by everything, so it gets rank V directly.

    Each row is read as eight interleaved streams, its eighths side by side, then the
    remainder. The scores come straight from their product, too many to stay in cache;
    eight streams keep more memory requests in flight than one read front to back, so the
    pass reads at the speed of a BLAS read of the same array (docs/performance.md).
    """
    n_items = scores.shape[1]
    q = n_items // 8  # the length of each eighth
    for b in range(lo, hi):
        s_t = scores[b, target_cols[b]]
        if np.isnan(s_t) or s_t == -np.inf:
            out[b] = n_items
            continue
        row = scores[b]
        c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = 0
        for j in range(q):
            c0 += row[j] >= s_t
            c1 += row[j + q] >= s_t
            c2 += row[j + 2 * q] >= s_t
            c3 += row[j + 3 * q] >= s_t
            c4 += row[j + 4 * q] >= s_t
            c5 += row[j + 5 * q] >= s_t
            c6 += row[j + 6 * q] >= s_t
            c7 += row[j + 7 * q] >= s_t
        for j in range(8 * q, n_items):
            c0 += row[j] >= s_t
        out[b] = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7


def ranks_pessimistic(scores, targets):
    """Rank of each target among all V items, ties counted against the target.

    Parameters
    ----------
    scores : np.ndarray, shape (B, V), float
        Column ``j`` is the score of item ``j + 1``. NaN counts as ``-inf``.
    targets : np.ndarray, shape (B,), int
        Target item ids in ``1..V``.

    Returns
    -------
    np.ndarray, shape (B,), int64
        ``rank = 1 + #{j != target : s_j >= s_target}``, in ``1..V``.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    if scores.ndim != 2 or scores.dtype.kind != "f":
        raise ValueError(f"ranks_pessimistic: scores must be a 2-D float array (B, V), "
                         f"got {scores.dtype}{scores.shape}")
    if targets.shape != (scores.shape[0],) or targets.dtype.kind not in "iu":
        raise ValueError(f"ranks_pessimistic: targets must be ({scores.shape[0]},) integers, "
                         f"got {targets.dtype}{targets.shape}")
    n_items = scores.shape[1]
    if targets.size and (targets.min() < 1 or targets.max() > n_items):
        raise ValueError(f"ranks_pessimistic: targets must be item ids in 1..{n_items}, "
                         f"got range {targets.min()}..{targets.max()}")
    out = np.empty(scores.shape[0], dtype=np.int64)
    # rows shared among threads that wait, not spin, when idle: the scores' next product
    # has the cores to itself
    scores, target_cols = np.ascontiguousarray(scores), targets.astype(np.int64) - 1
    split_among_threads(lambda lo, hi: _ranks_kernel(scores, target_cols, out, lo, hi), len(out))
    return out


def _per_example(ranks, ks):
    """Per-example metric values (not yet x100), keyed like :func:`metrics_from_ranks`."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0 or ranks.dtype.kind not in "iu" or ranks.min() < 1:
        raise ValueError("ranks must be a non-empty 1-D integer array of ranks >= 1, "
                         f"got {ranks.dtype}{ranks.shape}")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be cut-offs >= 1, got {ks!r}")
    values = {}
    for name in METRICS:
        for k in ks:
            hit = ranks <= k
            if name == "HR":
                v = hit.astype(np.float64)
            elif name == "MRR":
                v = np.where(hit, 1.0 / ranks, 0.0)
            else:  # one relevant item: DCG = 1/log2(1 + rank), ideal DCG = 1
                v = np.where(hit, 1.0 / np.log2(1.0 + ranks), 0.0)
            values[f"{name}@{k}"] = v
    return values


def metrics_from_ranks(ranks, ks=(5, 10, 20)):
    """HR@K, MRR@K and NDCG@K (x100) from pessimistic ranks.

    Parameters
    ----------
    ranks : np.ndarray, shape (n,), int
        Ranks >= 1, as from :func:`ranks_pessimistic`.
    ks : tuple of int
        Cut-offs.

    Returns
    -------
    dict[str, float]
        ``{"HR@5": ..., "HR@10": ..., ..., "NDCG@20": ...}`` in percent, grouped by metric.

    Notes
    -----
    With one relevant item per example and rank :math:`r`:
    :math:`HR@K = 1[r \\le K]`, :math:`MRR@K = 1[r \\le K] / r`,
    :math:`NDCG@K = 1[r \\le K] / \\log_2(1 + r)`, each averaged over examples and x100.
    The original code's "Recall@20" and "MMR@20" are HR@20 and MRR@20.
    """
    return {key: 100.0 * float(v.mean()) for key, v in _per_example(ranks, ks).items()}


def evaluate_ranks(score_fn, sessions, batch_size=100):
    """Pessimistic rank of every example of ``sessions``, scored ``batch_size`` at a time.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(index) -> (len(index), V)`` scores; ``index`` is int64, in order.
    sessions : Sessions
        Anything with ``len()`` and ``targets`` (n,) item ids.
    batch_size : int

    Returns
    -------
    np.ndarray, shape (n,), int64
    """
    if batch_size < 1:
        raise ValueError(f"evaluate_ranks: batch_size must be >= 1, got {batch_size!r}")
    n = len(sessions)
    targets = np.asarray(sessions.targets)
    ranks = np.empty(n, dtype=np.int64)
    for start in range(0, n, batch_size):
        index = np.arange(start, min(n, start + batch_size), dtype=np.int64)
        scores = score_fn(index)
        if np.ndim(scores) != 2 or len(scores) != len(index):
            raise ValueError(f"evaluate_ranks: score_fn returned shape {np.shape(scores)} for "
                             f"{len(index)} examples; expected ({len(index)}, V)")
        ranks[index] = ranks_pessimistic(scores, targets[index])
    return ranks


def evaluate(score_fn, sessions, batch_size=100, ks=(5, 10, 20)):
    """Metrics dict (see :func:`metrics_from_ranks`) of ``score_fn`` on ``sessions``."""
    return metrics_from_ranks(evaluate_ranks(score_fn, sessions, batch_size), ks)


def bootstrap_ci(ranks, ks=(5, 10, 20), n_boot=1000, seed=0, level=0.95):
    """Percentile bootstrap confidence intervals of every metric.

    Resamples the examples with replacement ``n_boot`` times (a seeded
    ``np.random.default_rng(seed)``) and takes the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` percentiles of each metric over the resamples. It measures the
    uncertainty due to the finite test set only (not seed-to-seed training variance): on the
    sample's 99 test examples an HR@20 near 50 has an interval about +-10 points wide.

    Returns
    -------
    dict[str, tuple[float, float]]
        ``metric -> (low, high)``, in percent, same keys as :func:`metrics_from_ranks`.
    """
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_ci: need n_boot >= 1 and 0 < level < 1, "
                         f"got {n_boot!r}, {level!r}")
    values = _per_example(ranks, ks)
    table = np.stack(list(values.values()))  # (n_metrics, n)
    n = table.shape[1]
    rng = np.random.default_rng(seed)
    boot = np.empty((len(values), n_boot))
    for i in range(n_boot):  # one resample at a time: memory O(n), not O(n_boot * n)
        boot[:, i] = table[:, rng.integers(0, n, size=n)].mean(axis=1)
    low, high = np.percentile(100.0 * boot, [50 * (1 - level), 50 * (1 + level)], axis=1)
    return {key: (float(lo), float(hi)) for key, lo, hi in zip(values, low, high)}


def format_table(rows, digits=2, name="method"):
    """A fixed-width text table: one row per method, one column per metric.

    Parameters
    ----------
    rows : dict[str, dict[str, float | str]]
        ``method -> {metric: value}``; columns in order of first appearance; a missing
        value prints as ``-``; strings and integers (counts) are printed as given.
    digits : int
        Decimals for numbers.
    name : str
        The heading of the first column (what a row is).
    """
    columns = list(dict.fromkeys(key for metrics in rows.values() for key in metrics))

    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, (str, int, np.integer)):
            return str(value)
        return f"{value:.{digits}f}"

    body = [[name] + [cell(metrics.get(c)) for c in columns] for name, metrics in rows.items()]
    header = [name] + columns
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]

    def line(cells):
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first] + rest)

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule] + [line(r) for r in body])


@njit(cache=True, parallel=True)
def _top_k_kernel(scores, k, ids, top):
    """Per row, the k best columns by (score descending, column ascending).

    Keeps a sorted buffer of k entries and scans the row once (O(V k) worst case, O(V) in
    practice: after the first few hundred items almost nothing enters the buffer). Columns
    arrive in increasing order, so a new entry goes *after* every equal score already held:
    ties keep the lower item id first. NaN is read as -inf. Each thread owns whole rows.
    """
    n_rows, n_items = scores.shape
    for b in prange(n_rows):
        filled = 0
        for j in range(n_items):
            s = scores[b, j]
            if np.isnan(s):
                s = -np.inf
            if filled == k and not s > top[b, k - 1]:
                continue
            pos = min(filled, k - 1)  # a full buffer drops its last entry
            while pos > 0 and top[b, pos - 1] < s:  # shift strictly smaller scores down
                top[b, pos] = top[b, pos - 1]
                ids[b, pos] = ids[b, pos - 1]
                pos -= 1
            top[b, pos] = s
            ids[b, pos] = j + 1
            if filled < k:
                filled += 1


def top_k(scores, k):
    """The ``k`` best items of each row: ids (1-based) and scores, best first.

    Parameters
    ----------
    scores : np.ndarray, shape (V,) or (B, V), float
        Column ``j`` is item ``j + 1``.
    k : int
        ``1 <= k <= V``.

    Returns
    -------
    ids : np.ndarray, shape (k,) or (B, k), int64
        Item ids by score descending; equal scores in increasing id order (deterministic).
    top : np.ndarray, same shape, scores.dtype
        Their scores (NaN reported as -inf, where it sorts).
    """
    scores = np.asarray(scores)
    if scores.ndim not in (1, 2) or scores.dtype.kind != "f":
        raise ValueError(f"top_k: scores must be a 1-D or 2-D float array, "
                         f"got {scores.dtype}{scores.shape}")
    if not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"top_k: k must be in 1..{scores.shape[-1]}, got {k!r}")
    rows = np.ascontiguousarray(scores.reshape(-1, scores.shape[-1]))
    ids = np.empty((rows.shape[0], k), dtype=np.int64)
    top = np.empty((rows.shape[0], k), dtype=rows.dtype)
    _top_k_kernel(rows, k, ids, top)
    if scores.ndim == 1:
        return ids[0], top[0]
    return ids, top
