"""Inference: the top-K next items of a session, and what attention looked at.

>>> rec = Recommender.from_run("runs/sample-sequence")
>>> items, scores = rec.recommend([12, 40, 12], k=5)
>>> maps, tokens = rec.attention([12, 40, 12])   # per layer (H, T, T), and the T tokens
"""

from __future__ import annotations

import numpy as np

from srsan_np import model
from srsan_np.data import Sessions, make_batch
from srsan_np.evaluate import top_k
from srsan_np.run import Run

__all__ = ["Recommender"]


class Recommender:
    """A trained model ready to score sessions given as lists of item ids.

    Parameters
    ----------
    params : dict
        The model's weights.
    config : srsan_np.model.Config
    len_max : int
        ``faithful`` mode only: the length every prefix is padded to before taking its
        distinct items, as during training (the longest training prefix). A longer session
        is padded to its own length.
    raw_ids : (V + 1,) int array or None
        The raw log's id of each item (``Dataset.raw_ids``), for ``raw=True``.
    """

    def __init__(self, params, config, len_max=0, raw_ids=None):
        self.params = params
        self.config = config
        self.len_max = int(len_max)
        self.raw_ids = raw_ids

    @classmethod
    def from_run(cls, run_dir, which="best"):
        """The model of a training run directory (``best`` or ``last`` checkpoint)."""
        run = Run(run_dir)
        params, config, meta = run.load_model(which)
        return cls(params, config, meta.get("len_max", 0), run.raw_ids())

    def _to_items(self, raw_session):
        """Raw log ids -> item ids; an id the log never gave a training item becomes -1."""
        if self.raw_ids is None:
            raise ValueError("this model has no raw-id table (trained on data without one)")
        if len(self.raw_ids) != self.config.n_items + 1:
            raise ValueError(f"the raw-id table covers {len(self.raw_ids) - 1} items, the model "
                             f"scores {self.config.n_items}: recommend in item ids instead")
        order = np.argsort(self.raw_ids[1:], kind="stable")
        sorted_raw = self.raw_ids[1:][order]
        raw = np.asarray(raw_session, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sorted_raw, raw), len(sorted_raw) - 1)
        return np.where(sorted_raw[pos] == raw, order[pos] + 1, -1)

    def _batch(self, session, drop_unknown, raw=False):
        items = self._to_items(session) if raw else np.asarray(session, dtype=np.int64)
        n_items = self.config.n_items
        known = (items >= 1) & (items <= n_items)
        if not known.all() and not drop_unknown:
            unknown = [int(i) for i in np.asarray(session)[~known]]
            what = "raw ids the training log never gave an item" if raw else \
                f"item ids outside the model's 1..{n_items}"
            raise ValueError(f"unknown {what}: {unknown} "
                             "(pass drop_unknown=True, or --drop-unknown, to ignore them)")
        session = [int(i) for i in items[known]]
        if not session:
            raise ValueError("the session has no known item to recommend from")
        # The target is not used for scoring; the last click stands in for it.
        sessions = Sessions.from_lists([session], [session[-1]])
        return make_batch(sessions, [0], self.config.mode, max(self.len_max, len(session)))

    def recommend(self, session, k=20, drop_unknown=False, raw=False):
        """The ``k`` best next items: ``(item_ids (k,), scores (k,))``, best first.

        ``raw=True``: the session and the returned ids are the raw log's ids. Raises
        ``ValueError`` naming unknown ids unless ``drop_unknown``.
        """
        scores = model.score(self.params, self._batch(session, drop_unknown, raw), self.config)
        ids, best = top_k(scores, min(k, self.config.n_items))
        return (self.raw_ids[ids[0]] if raw else ids[0]), best[0]

    def attention(self, session, drop_unknown=False):
        """Attention weights of one session: ``(maps, tokens)``.

        ``maps[l]`` is layer ``l``'s ``(H, T, T)`` array (row = query, column = key) and
        ``tokens`` the ``T`` item ids the positions hold (in ``faithful`` mode: the sorted
        distinct items, 0 included).
        """
        batch = self._batch(session, drop_unknown)
        maps = model.attention_maps(self.params, batch, self.config)
        return [m[0] for m in maps], batch.inputs[0]
