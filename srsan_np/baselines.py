"""Non-neural baselines, scored by the same evaluation code as the model.

A baseline tells a learner whether the model learned anything: SR-SAN is only worth its
gradients if it beats these. Each one is fitted on the training examples and then scores
prefixes over the full catalogue::

    base = Markov().fit(dataset.train, dataset.n_items)
    metrics = evaluate(base.score_fn(dataset.test), dataset.test)

``score(prefixes) -> (B, V)`` float64, column ``j`` = item ``j + 1``; ``score_fn(sessions)``
adapts it to evaluation's ``score_fn(index)`` contract.

What the training data is. The training set holds every prefix of every training session
with its next click (SR-GNN's expansion): session ``[a, b, c]`` gives ``([a, b], c)`` and
``([a], b)``. So, from the examples alone:

- *popularity* is how often an item occurs in the training examples, prefixes and targets
  together (``a`` above counts 2, ``b`` 2, ``c`` 1). This weighs a click by the number of
  clicks after it in its session, rather than counting each click once; it is what the
  reference figures in the shared data README were measured with: on the real sample
  file S-POP reproduces their HR@20 57.6 and MRR@20 48.6 exactly with it, and gets
  58.6 / 48.8 with clicks counted once;
- a *transition* ``x -> y`` is one example's ``(last item of the prefix, target)``:
  every consecutive pair of every session appears exactly once;
- the *sessions* are recovered by counting: a sequence ``s`` is the ``prefix + [target]``
  of one example per training session that starts with ``s``, and the prefix of one
  example per session that continues past it, so the number of sessions equal to ``s``
  is the difference of the two counts.

Ties. Evaluation counts ties against the target, so a baseline must order items by what it
knows and leave tied only what it cannot tell apart (never break a tie by item id: that
would be luck, not knowledge). All four use popularity as the last tie-breaker, scaled
into ``[0, 1)`` (``count / (max count + 1)``), below every item with evidence from the
session: an item the method has evidence for always outranks one it has none for, and
items absent from training tie at 0, last.
"""

from __future__ import annotations

from collections import Counter

import numba
import numpy as np
from numba import njit, prange

from srsan_np.data.store import Sessions

__all__ = ["Popularity", "SessionPopularity", "Markov", "SessionKNN", "BASELINES",
           "fit_baselines", "popularity_counts"]


def _as_sessions(prefixes):
    """A Sessions (kept) or a sequence of item-id sequences (targets set to 1, unused)."""
    if isinstance(prefixes, Sessions):
        return prefixes
    if isinstance(prefixes, np.ndarray) and prefixes.ndim == 1:
        raise ValueError("baselines: score() takes a list of prefixes; for one session "
                         "pass [session], not the bare 1-D array")
    prefixes = [np.asarray(p, dtype=np.int64).reshape(-1) for p in prefixes]
    return Sessions.from_lists(prefixes, [1] * len(prefixes))


def _check_ids(sessions, n_items, where):
    lengths = sessions.lengths()
    if len(lengths) and lengths.min() < 1:
        raise ValueError(f"{where}: prefix {int(np.argmin(lengths))} is empty; every prefix "
                         "needs at least one click")
    if sessions.items.size and (sessions.items.min() < 1 or sessions.items.max() > n_items):
        raise ValueError(f"{where}: item ids must be in 1..{n_items} (the fitted catalogue), "
                         f"got range {sessions.items.min()}..{sessions.items.max()}")


def popularity_counts(train, n_items):
    """Occurrences of each item in the training prefixes and targets: (V + 1,), [0] = 0."""
    counts = np.bincount(train.items, minlength=n_items + 1)
    counts += np.bincount(train.targets, minlength=n_items + 1)
    counts[0] = 0
    return counts


class Baseline:
    """Shared plumbing: fit the popularity tie-breaker, validate, adapt to ``evaluate``.

    Subclasses implement ``_fit(train)`` (optional) and ``_score(sessions, out)``, which
    fills ``out`` (B, V) float64 in place.
    """

    name = "baseline"

    def fit(self, train, n_items):
        """Fit on the training examples (a Sessions); items are ``1..n_items``. Returns self."""
        if n_items < 1:
            raise ValueError(f"{type(self).__name__}.fit: n_items must be >= 1, got {n_items}")
        self.n_items = int(n_items)
        _check_ids(train, self.n_items, f"{type(self).__name__}.fit(train)")
        if train.targets.size and (train.targets.min() < 1 or train.targets.max() > n_items):
            raise ValueError(f"{type(self).__name__}.fit: targets must be in 1..{n_items}")
        self.counts = popularity_counts(train, self.n_items)
        # The tie-breaker: popularity scaled into [0, 1), unseen items exactly 0.
        self.tie_breaker = self.counts[1:] / (self.counts.max() + 1.0)  # (V,)
        self._fit(train)
        return self

    def _fit(self, train):
        pass

    def score(self, prefixes):
        """Scores of every item after each prefix.

        Parameters
        ----------
        prefixes : Sessions or sequence of sequences of int
            B prefixes of item ids in ``1..V``, oldest click first, each non-empty.

        Returns
        -------
        np.ndarray, shape (B, V), float64
            Column ``j`` is item ``j + 1``; higher is better; equal means tied.
        """
        if not hasattr(self, "counts"):
            raise RuntimeError(f"{type(self).__name__}: call fit(train, n_items) before score")
        sessions = _as_sessions(prefixes)
        _check_ids(sessions, self.n_items, f"{type(self).__name__}.score")
        out = np.empty((len(sessions), self.n_items), dtype=np.float64)  # (B, V)
        self._score(sessions, out)
        return out

    def score_fn(self, sessions):
        """``index -> scores`` over ``sessions``, the contract of :func:`evaluate.evaluate`."""
        return lambda index: self.score(sessions.subset(index))


class Popularity(Baseline):
    """POP: every prefix gets the same ranking, by training popularity.

    Items with equal counts stay tied, and the pessimistic rank puts a tied target below
    them all. On the real sample file this gives HR@20 5.1, MRR@20 0.4; the shared README's
    6.1 / 0.5 is what the same counts give with ties broken by lower item id (6.06 / 0.45).
    """

    name = "POP"

    def _score(self, sessions, out):
        out[:] = self.counts[1:]


@njit(cache=True, parallel=True)
def _session_pop_kernel(items, offsets, tie_breaker, out):
    """Session items by recency (all >= 1), then the rest by popularity (< 1). Rows owned."""
    for b in prange(out.shape[0]):
        out[b, :] = tie_breaker
        start, stop = offsets[b], offsets[b + 1]
        value = stop - start  # the most recent distinct item gets the largest value
        for pos in range(stop - 1, start - 1, -1):
            col = items[pos] - 1
            if out[b, col] < 1.0:  # not yet seen walking back: its most recent click
                out[b, col] = 1.0 + value
                value -= 1


class SessionPopularity(Baseline):
    """S-POP as the data README describes it: the session's items, most recent first, then
    every other item by training popularity.

    Score: the items of the prefix get ``1 + (distinct items) - r`` where ``r`` = 0 for the
    last click, 1 for the previous distinct item, ...; all other items get the popularity
    tie-breaker in ``[0, 1)``. (Hidasi et al.'s S-POP ranks session items by their count in
    the session instead; recency is what the reference figure was measured with.)
    """

    name = "S-POP"

    def _score(self, sessions, out):
        _session_pop_kernel(sessions.items, sessions.offsets, self.tie_breaker, out)


@njit(cache=True, parallel=True)
def _markov_kernel(items, offsets, indptr, next_item, n_next, tie_breaker, out):
    """Transition counts out of each row's last item, plus the tie-breaker. Rows owned."""
    for b in prange(out.shape[0]):
        out[b, :] = tie_breaker
        last = items[offsets[b + 1] - 1]
        for e in range(indptr[last], indptr[last + 1]):
            out[b, next_item[e] - 1] += n_next[e]


class Markov(Baseline):
    """First-order Markov chain on the last item: ``score(y) = #(x -> y)`` in training.

    ``x`` is the prefix's last click. The counts are integers and the tie-breaker is below
    1, so the score orders by count, then popularity; an item never seen after ``x`` ranks
    below every item that was. Stored sparse (CSR by ``x``): a dense (V, V) table would
    not fit for Diginetica.
    """

    name = "Markov"

    def _fit(self, train):
        v1 = self.n_items + 1
        last = train.items[train.offsets[1:] - 1].astype(np.int64)
        pairs, n_next = np.unique(last * v1 + train.targets, return_counts=True)
        self.next_item = (pairs % v1).astype(np.int64)
        self.n_next = n_next.astype(np.float64)
        self.indptr = np.zeros(v1 + 1, dtype=np.int64)  # row x = pairs from item x
        np.cumsum(np.bincount(pairs // v1, minlength=v1), out=self.indptr[1:])

    def _score(self, sessions, out):
        _markov_kernel(sessions.items, sessions.offsets, self.indptr, self.next_item,
                       self.n_next, self.tie_breaker, out)


@njit(cache=True)
def _dense_order_values(keys1, keys2):
    """Values ``1 + m - r`` where ``r`` is the dense rank by (keys1, keys2) descending.

    Equal key pairs get equal values (ties stay ties); the best pair gets ``1 + m``.
    """
    m = keys1.size
    order = np.argsort(-keys2, kind="mergesort")
    order = order[np.argsort(-keys1[order], kind="mergesort")]  # stable: keys2 breaks ties
    values = np.empty(m, dtype=np.float64)
    r = 0
    for i in range(m):
        if i > 0 and (keys1[order[i]] != keys1[order[i - 1]]
                      or keys2[order[i]] != keys2[order[i - 1]]):
            r += 1
        values[order[i]] = 1.0 + m - r
    return values


@njit(cache=True, parallel=True)
def _knn_kernel(items, offsets, post_ptr, post_session, sess_ptr, sess_item, sess_size, k,
                tie_breaker, n_chunks, out):
    """Session-kNN scores; chunk ``c`` owns rows ``c, c + n_chunks, ...`` and its scratch."""
    n_rows, n_items = out.shape
    n_sessions = sess_size.size
    for c in prange(n_chunks):
        overlap = np.zeros(n_sessions, dtype=np.int64)
        candidates = np.empty(n_sessions, dtype=np.int64)
        acc = np.zeros(n_items, dtype=np.float64)
        scored = np.empty(n_items, dtype=np.int64)
        for b in range(c, n_rows, n_chunks):
            query = np.unique(items[offsets[b]:offsets[b + 1]])
            # Overlap |query & session| of every session sharing an item with the query.
            m = 0
            for item in query:
                for e in range(post_ptr[item], post_ptr[item + 1]):
                    s = post_session[e]
                    if overlap[s] == 0:
                        candidates[m] = s
                        m += 1
                    overlap[s] += 1
            cand = np.sort(candidates[:m])[::-1]  # later (more recent) sessions first
            sim = np.empty(m, dtype=np.float64)
            for i in range(m):
                s = cand[i]
                sim[i] = overlap[s] / np.sqrt(query.size * sess_size[s])
                overlap[s] = 0
            best = np.argsort(-sim, kind="mergesort")[:k]  # ties: the more recent session
            # Item score: summed similarity of the neighbours that contain it.
            n_scored = 0
            for i in best:
                s = cand[i]
                for e in range(sess_ptr[s], sess_ptr[s + 1]):
                    col = sess_item[e] - 1
                    if acc[col] == 0.0:
                        scored[n_scored] = col
                        n_scored += 1
                    acc[col] += sim[i]
            out[b, :] = tie_breaker
            cols = scored[:n_scored]
            values = _dense_order_values(acc[cols], tie_breaker[cols])
            for i in range(n_scored):
                out[b, cols[i]] = values[i]
                acc[cols[i]] = 0.0


class SessionKNN(Baseline):
    """Session-kNN (Jannach & Ludewig 2017), kept simple.

    Each training session (see the module docstring) is a set of items. For a prefix with
    item set ``Q``, every training session ``N`` sharing an item is a candidate, with cosine
    similarity of the binary item vectors, ``|Q & N| / sqrt(|Q| |N|)``; the ``k`` most
    similar are the neighbours (ties: the later session, as SR-GNN's training sessions are
    in date order). No sampling: all candidates are compared. An item's score is the sum
    of the similarities of the neighbours that contain it, so its order is that sum, then
    popularity; items in no neighbour get the popularity tie-breaker alone, below all of
    them. The returned scores are these orders as values (``>= 1`` for neighbour items),
    not the sums.

    Parameters
    ----------
    k : int
        Number of neighbours (100, as in Jannach & Ludewig).
    """

    name = "SKNN"

    def __init__(self, k=100):
        if k < 1:
            raise ValueError(f"SessionKNN: k must be >= 1, got {k!r}")
        self.k = int(k)

    def _fit(self, train):
        # A session seq gives one example whose prefix + [target] is seq, and every longer
        # session that starts with seq gives one whose prefix is seq: the number of sessions
        # equal to seq is the difference (exact even when one session begins another).
        as_prefix = Counter(train.prefix(i).tobytes() for i in range(len(train)))
        as_sequence = Counter(np.append(train.prefix(i), np.int32(train.targets[i])).tobytes()
                              for i in range(len(train)))  # insertion order = example order
        sessions = []
        for seq, n in as_sequence.items():
            items = np.unique(np.frombuffer(seq, dtype=np.int32))
            sessions.extend([items] * (n - as_prefix[seq]))
        sizes = np.array([len(s) for s in sessions], dtype=np.int64)
        self.sess_size = sizes
        self.sess_ptr = np.zeros(len(sessions) + 1, dtype=np.int64)
        np.cumsum(sizes, out=self.sess_ptr[1:])
        self.sess_item = (np.concatenate(sessions) if sessions
                          else np.zeros(0, np.int32)).astype(np.int64)
        # Inverted index item -> sessions containing it, session ids ascending.
        owner = np.repeat(np.arange(len(sessions), dtype=np.int64), sizes)
        order = np.argsort(self.sess_item, kind="stable")
        self.post_session = owner[order]
        self.post_ptr = np.zeros(self.n_items + 2, dtype=np.int64)
        np.cumsum(np.bincount(self.sess_item, minlength=self.n_items + 1),
                  out=self.post_ptr[1:])

    def _score(self, sessions, out):
        n_chunks = max(1, min(len(sessions), numba.get_num_threads()))
        _knn_kernel(sessions.items, sessions.offsets, self.post_ptr, self.post_session,
                    self.sess_ptr, self.sess_item, self.sess_size, self.k, self.tie_breaker,
                    n_chunks, out)


BASELINES = {cls.name: cls for cls in (Popularity, SessionPopularity, Markov, SessionKNN)}


def fit_baselines(train, n_items):
    """Every baseline, default settings, fitted: ``{name: fitted baseline}``."""
    return {name: cls().fit(train, n_items) for name, cls in BASELINES.items()}
