"""Ranking metrics: hand-worked ranks, ties, NaN, bootstrap, table, top-k."""

import math

import numpy as np
import pytest

from srsan_np.evaluate import (bootstrap_ci, evaluate, evaluate_ranks, format_table,
                               metrics_from_ranks, ranks_pessimistic, top_k)


class FakeSessions:
    """Only what evaluation reads: len() and targets."""

    def __init__(self, targets):
        self.targets = np.asarray(targets, dtype=np.int32)

    def __len__(self):
        return len(self.targets)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ranks_by_hand(dtype):
    scores = np.array([[0.1, 0.9, 0.5, 0.3],    # target 3 (0.5): only 0.9 above -> 2
                       [0.2, 0.2, 0.2, 0.1],    # target 1 tied with 2 others -> 3
                       [0.4, 0.3, 0.2, 0.1],    # target 1 is best -> 1
                       [0.4, 0.3, 0.2, 0.1]],   # target 4 is worst -> 4
                      dtype=dtype)
    ranks = ranks_pessimistic(scores, np.array([3, 1, 1, 4]))
    np.testing.assert_array_equal(ranks, [2, 3, 1, 4])
    assert ranks.dtype == np.int64


@pytest.mark.parametrize("n_items", [1, 7, 8, 37, 1003])  # eighths empty, exact, ragged
def test_ranks_match_numpy_formula(n_items):
    rng = np.random.default_rng(n_items)
    scores = rng.integers(0, 5, size=(50, n_items)).astype(np.float32)  # many ties
    targets = rng.integers(1, n_items + 1, size=50)
    s_t = scores[np.arange(50), targets - 1]
    expected = 1 + (scores >= s_t[:, None]).sum(1) - 1  # the target itself counted once
    np.testing.assert_array_equal(ranks_pessimistic(scores, targets), expected)


def test_all_equal_scores_rank_last_and_mrr_is_about_one_over_v():
    n_items = 50
    scores = np.zeros((7, n_items))
    targets = np.arange(1, 8)
    ranks = ranks_pessimistic(scores, targets)
    np.testing.assert_array_equal(ranks, n_items)
    # MRR over the full catalogue (K = V) is exactly 1/V; at K = 20 a tied target earns 0.
    metrics = metrics_from_ranks(ranks, ks=(20, n_items))
    assert metrics[f"MRR@{n_items}"] == pytest.approx(100.0 / n_items)
    assert metrics["MRR@20"] == 0.0 and metrics["HR@20"] == 0.0


def test_nan_counts_as_minus_infinity():
    scores = np.array([[np.nan, 0.5, 0.2],       # NaN competitor does not beat 0.5 -> 1
                       [np.nan, 0.5, 0.2],       # NaN target -> last
                       [np.nan, np.nan, np.nan],  # all NaN -> last
                       [-np.inf, 0.1, -np.inf]])  # -inf target tied with another -inf -> last
    ranks = ranks_pessimistic(scores, np.array([2, 1, 3, 1]))
    np.testing.assert_array_equal(ranks, [1, 3, 3, 3])


def test_ranks_bad_input():
    with pytest.raises(ValueError, match="1..3"):
        ranks_pessimistic(np.zeros((1, 3)), np.array([4]))
    with pytest.raises(ValueError, match="1..3"):
        ranks_pessimistic(np.zeros((1, 3)), np.array([0]))
    with pytest.raises(ValueError, match="2-D float"):
        ranks_pessimistic(np.zeros(3), np.array([1]))
    with pytest.raises(ValueError, match="targets"):
        ranks_pessimistic(np.zeros((2, 3)), np.array([1]))


def test_metrics_by_hand():
    ranks = np.array([1, 2, 6, 30])
    m = metrics_from_ranks(ranks, ks=(5, 20))
    assert list(m) == ["HR@5", "HR@20", "MRR@5", "MRR@20", "NDCG@5", "NDCG@20"]
    assert m["HR@5"] == pytest.approx(100 * 2 / 4)
    assert m["HR@20"] == pytest.approx(100 * 3 / 4)
    assert m["MRR@5"] == pytest.approx(100 * (1 + 1 / 2) / 4)
    assert m["MRR@20"] == pytest.approx(100 * (1 + 1 / 2 + 1 / 6) / 4)
    assert m["NDCG@5"] == pytest.approx(100 * (1 + 1 / math.log2(3)) / 4)
    assert m["NDCG@20"] == pytest.approx(100 * (1 + 1 / math.log2(3) + 1 / math.log2(7)) / 4)


def test_evaluate_batches_in_order():
    targets = np.array([2, 1, 3, 3, 1])
    seen = []

    def score_fn(index):
        seen.append(index.copy())
        scores = np.zeros((len(index), 3))
        scores[np.arange(len(index)), 2] = 1.0  # item 3 always best, items 1 and 2 tied
        return scores

    ranks = evaluate_ranks(score_fn, FakeSessions(targets), batch_size=2)
    np.testing.assert_array_equal(ranks, [3, 3, 1, 1, 3])
    assert [list(i) for i in seen] == [[0, 1], [2, 3], [4]]
    assert all(i.dtype == np.int64 for i in seen)
    m = evaluate(score_fn, FakeSessions(targets), batch_size=2, ks=(1,))
    assert m["HR@1"] == pytest.approx(40.0)
    with pytest.raises(ValueError, match="expected"):
        evaluate_ranks(lambda index: np.zeros((1, 3)), FakeSessions(targets), batch_size=2)


def test_bootstrap_ci_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    ranks = rng.integers(1, 60, size=99)
    ci = bootstrap_ci(ranks, ks=(20,), n_boot=500, seed=3)
    assert ci == bootstrap_ci(ranks, ks=(20,), n_boot=500, seed=3)
    point = metrics_from_ranks(ranks, ks=(20,))
    for key, (low, high) in ci.items():
        assert low <= point[key] <= high
    low, high = ci["HR@20"]
    # Binomial standard error at n = 99: about +-2 * sqrt(p (1 - p) / n) ~ +-10 points.
    p = point["HR@20"] / 100
    assert high - low == pytest.approx(2 * 1.96 * 100 * math.sqrt(p * (1 - p) / 99), rel=0.25)
    # Constant ranks: no spread.
    assert bootstrap_ci(np.ones(10, dtype=int), ks=(5,), n_boot=50)["HR@5"] == (100.0, 100.0)


def test_format_table():
    text = format_table({"POP": {"HR@20": 6.0606, "MRR@20": 0.5},
                         "SR-SAN (faithful)": {"HR@20": 48.25}})
    lines = text.splitlines()
    assert lines[0].split() == ["method", "HR@20", "MRR@20"]
    assert lines[2].split() == ["POP", "6.06", "0.50"]
    assert lines[3].split() == ["SR-SAN", "(faithful)", "48.25", "-"]
    assert len({len(line) for line in lines}) == 1  # fixed width


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_order_and_ties(dtype):
    scores = np.array([[0.5, 0.9, 0.5, np.nan, 0.7, 0.5],
                       [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]], dtype=dtype)
    ids, top = top_k(scores, 4)
    np.testing.assert_array_equal(ids, [[2, 5, 1, 3], [1, 2, 3, 4]])
    np.testing.assert_array_equal(top[0], np.array([0.9, 0.7, 0.5, 0.5], dtype=dtype))
    assert top.dtype == dtype
    ids1, top1 = top_k(scores[0], 6)  # 1-D in, 1-D out; NaN last, as -inf
    np.testing.assert_array_equal(ids1, [2, 5, 1, 3, 6, 4])
    assert top1[-1] == -np.inf
    with pytest.raises(ValueError, match="k must be"):
        top_k(scores, 7)


def test_top_k_matches_stable_sort():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 20, size=(30, 200)).astype(np.float64)
    ids, top = top_k(scores, 20)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :20] + 1
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(top, np.take_along_axis(scores, expected - 1, axis=1))
