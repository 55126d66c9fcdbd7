"""Baselines: hand-worked scores, plain-Python references, the real sample's S-POP figure."""

from pathlib import Path

import numpy as np
import pytest

from srsan_np.baselines import (BASELINES, Markov, Popularity, SessionKNN, SessionPopularity,
                                _dense_order_values, fit_baselines)
from srsan_np.data.store import Sessions
from srsan_np.evaluate import evaluate, ranks_pessimistic

SHARED = Path(__file__).resolve().parents[2] / "shared"


def expand(sessions):
    """SR-GNN's expansion: (seq[:-i], seq[-i]) for i = 1..len-1, longest prefix first."""
    prefixes, targets = [], []
    for seq in sessions:
        for i in range(1, len(seq)):
            prefixes.append(seq[:-i])
            targets.append(seq[-i])
    return Sessions.from_lists(prefixes, targets)


# Sessions A, B, C; item 5 never occurs in training.
# Examples: ([1,2],3) ([1],2) | ([2],3) | ([4,2],1) ([4],2)
# Popularity (prefix items + targets): 1:3, 2:5, 3:2, 4:2, 5:0 -> tie-breaker count / 6.
TRAIN = expand([[1, 2, 3], [2, 3], [4, 2, 1]])
V = 5
TB = np.array([3, 5, 2, 2, 0]) / 6


def test_popularity_by_hand():
    pop = Popularity().fit(TRAIN, V)
    np.testing.assert_array_equal(pop.counts, [0, 3, 5, 2, 2, 0])
    scores = pop.score([[1], [4, 4]])
    np.testing.assert_array_equal(scores, [[3, 5, 2, 2, 0]] * 2)
    # Items 3 and 4 tie: either as target ranks below both; unseen item 5 ranks last.
    np.testing.assert_array_equal(ranks_pessimistic(scores, np.array([3, 5])), [4, 5])


def test_session_popularity_by_hand():
    spop = SessionPopularity().fit(TRAIN, V)
    # Prefix [3, 1, 3]: 3 is the most recent (1 + 3), then 1 (1 + 2); the rest by popularity.
    scores = spop.score([[3, 1, 3], [5]])
    np.testing.assert_allclose(scores[0], [3, 5 / 6, 4, 1 / 3, 0])
    np.testing.assert_allclose(scores[1], [3 / 6, 5 / 6, 2 / 6, 2 / 6, 2])  # unseen 5 is in it
    np.testing.assert_array_equal(ranks_pessimistic(scores, np.array([1, 4])), [2, 5])


def test_markov_by_hand():
    markov = Markov().fit(TRAIN, V)
    # Transitions: 1->2, 2->3 (twice: A and B), 4->2, 2->1; nothing leaves 3.
    scores = markov.score([[5, 2], [3], [2, 1]])
    np.testing.assert_allclose(scores[0], TB + [1, 0, 2, 0, 0])
    np.testing.assert_allclose(scores[1], TB)
    np.testing.assert_allclose(scores[2], TB + [0, 1, 0, 0, 0])


def test_session_knn_by_hand():
    # Training sessions as sets: S0 = {1,2,3}, S1 = {2,3}, S2 = {1,2,4}. Query {2,3}:
    # cosine S0 = 2/sqrt(6), S1 = 2/sqrt(4) = 1, S2 = 1/sqrt(6).
    knn2 = SessionKNN(k=2).fit(TRAIN, V)
    np.testing.assert_array_equal(knn2.sess_size, [3, 2, 3])
    # k = 2: S1, S0 -> sums 2: 1.82, 3: 1.82, 1: 0.82; 2 before 3 by popularity.
    np.testing.assert_allclose(knn2.score([[2, 3]])[0], [2, 4, 3, 1 / 3, 0])
    # k = 3 adds S2 -> 2: 2.22, 3: 1.82, 1: 1.22, 4: 0.41.
    knn3 = SessionKNN(k=3).fit(TRAIN, V)
    np.testing.assert_allclose(knn3.score([[3, 2, 3]])[0], [3, 5, 4, 2, 0])
    # Query {1}: S0 and S2 tie at 1/sqrt(3); k = 1 keeps the later one, S2 = {1,2,4}, whose
    # items tie on similarity and are ordered by popularity: 2, 1, 4.
    knn1 = SessionKNN(k=1).fit(TRAIN, V)
    np.testing.assert_allclose(knn1.score([[1]])[0], [3, 4, 1 / 3, 2, 0])


def test_dense_order_values_keep_ties():
    values = _dense_order_values(np.array([1.0, 1.0, 2.0, 1.0]), np.array([0.5, 0.5, 0.1, 0.7]))
    np.testing.assert_array_equal(values, [3, 3, 5, 4])


def random_train(seed, n_sessions=40, n_items=12):
    rng = np.random.default_rng(seed)
    sessions = [list(rng.integers(1, n_items + 1, size=rng.integers(2, 7)))
                for _ in range(n_sessions)]
    return expand(sessions), sessions


def first_example(train, seq):
    """Index of the first example whose prefix + [target] is seq."""
    return next(i for i in range(len(train))
                if list(train.prefix(i)) + [train.targets[i]] == list(seq))


def order_signs(scores):
    """Pairwise comparison signs within each row: the order is all that matters."""
    return np.sign(scores[:, :, None] - scores[:, None, :])


def test_all_baselines_match_python_references():
    n_items = 13  # item 13 never occurs
    train, sessions = random_train(0)
    # A session that is the beginning of another, and a repeated session: both still count
    # as sessions of their own (for kNN).
    sessions += [sessions[0][:2], list(sessions[1])]
    train = expand(sessions)
    queries = [list(q) for q in np.random.default_rng(1).integers(1, n_items + 1, size=(25, 4))]
    queries += [[7], [13], [13, 13]]
    counts = np.zeros(n_items + 1)
    for i in range(len(train)):
        np.add.at(counts, train.prefix(i), 1)
        counts[train.targets[i]] += 1
    tb = counts[1:] / (counts.max() + 1)

    # S-POP: (in session, recency) then popularity.
    ref = np.tile(tb, (len(queries), 1))
    for b, q in enumerate(queries):
        for age, item in enumerate(dict.fromkeys(reversed(q))):
            ref[b, item - 1] = 100 - age
    spop = SessionPopularity().fit(train, n_items).score(queries)
    np.testing.assert_array_equal(order_signs(spop), order_signs(ref))

    # Markov: transition count from the last item, then popularity.
    trans = np.zeros((n_items + 1, n_items + 1))
    for seq in sessions:
        for x, y in zip(seq[:-1], seq[1:]):
            trans[x, y] += 1
    ref = np.array([trans[q[-1], 1:] + tb for q in queries])
    markov = Markov().fit(train, n_items).score(queries)
    np.testing.assert_allclose(markov, ref, rtol=0, atol=1e-12)

    # Session-kNN: sessions as sets, in order of their first example.
    sessions = sorted(sessions, key=lambda s: first_example(train, s))
    sets = [set(s) for s in sessions]
    for k in (1, 3, 100):
        got = SessionKNN(k=k).fit(train, n_items).score(queries)
        ref = np.zeros((len(queries), n_items, 3))  # keys: (in a neighbour, sum, popularity)
        ref[:, :, 2] = tb
        for b, q in enumerate(queries):
            qs = set(q)
            sims = [(len(qs & s) / np.sqrt(len(qs) * len(s)), i) for i, s in enumerate(sets)
                    if qs & s]
            for sim, i in sorted(sims, key=lambda t: (-t[0], -t[1]))[:k]:
                for item in sets[i]:
                    ref[b, item - 1, 0] = 1
                    ref[b, item - 1, 1] += sim
        for b in range(len(queries)):
            keys = [tuple(key) for key in ref[b]]  # sums added in the kernel's order
            for i in range(n_items):
                for j in range(n_items):
                    expected = int(keys[i] > keys[j]) - int(keys[i] < keys[j])
                    assert np.sign(got[b, i] - got[b, j]) == expected, (k, b, i, j)


def test_score_fn_contract_and_errors():
    test = expand([[2, 3, 1], [4, 2]])
    for name, base in fit_baselines(TRAIN, V).items():
        assert name in BASELINES
        direct = base.score(test)
        via_fn = base.score_fn(test)(np.array([2, 0], dtype=np.int64))
        np.testing.assert_array_equal(via_fn, direct[[2, 0]])
        assert direct.shape == (len(test), V) and direct.dtype == np.float64
        assert set(evaluate(base.score_fn(test), test, ks=(1, 5))) >= {"HR@5", "MRR@1"}
        with pytest.raises(ValueError, match="1..5"):
            base.score([[6]])
        with pytest.raises(ValueError, match="empty"):
            base.score([[1], []])
        with pytest.raises(ValueError, match="list of prefixes"):
            base.score(np.array([1, 2]))
    with pytest.raises(RuntimeError, match="fit"):
        Markov().score([[1]])
    with pytest.raises(ValueError, match="1..3"):
        Markov().fit(TRAIN, 3)


def test_real_sample_session_popularity_figure():
    """S-POP on the real SR-GNN sample reproduces the shared README: HR@20 57.6, MRR@20 48.6."""
    path = SHARED / "data" / "sample_train-item-views.csv"
    if not path.exists():
        pytest.skip("../shared/data/sample_train-item-views.csv not present")
    from srsan_np.data.preprocess import preprocess
    from srsan_np.data.readers import read_diginetica

    data = preprocess(read_diginetica(path), "diginetica").dataset
    results = {name: evaluate(base.score_fn(data.test), data.test, ks=(20,))
               for name, base in fit_baselines(data.train, data.n_items).items()}
    assert round(results["S-POP"]["HR@20"], 1) == 57.6
    assert round(results["S-POP"]["MRR@20"], 1) == 48.6
    assert round(results["POP"]["HR@20"], 1) == 5.1  # README: 6.1 with ties broken by id
    hr = {name: r["HR@20"] for name, r in results.items()}
    assert hr["POP"] < hr["Markov"] < hr["S-POP"] < hr["SKNN"]
