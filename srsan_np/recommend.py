"""Inference: the top-K next items of a session, and what attention looked at.

>>> rec = Recommender.from_run("runs/sample-sequence")
>>> items, scores = rec.recommend([12, 40, 12], k=5)
>>> maps, tokens = rec.attention([12, 40, 12])   # per layer (H, T, T), and the T tokens
"""

from __future__ import annotations

from srsan_np import model
from srsan_np.data import Sessions, make_batch
from srsan_np.evaluate import top_k

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
    """

    def __init__(self, params, config, len_max=0):
        self.params = params
        self.config = config
        self.len_max = int(len_max)

    @classmethod
    def from_run(cls, run_dir, which="best"):
        """The model of a training run directory (``best`` or ``last`` checkpoint)."""
        from srsan_np.train import load_run

        params, config, meta = load_run(run_dir, which)
        return cls(params, config, meta.get("len_max", 0))

    def _batch(self, session, drop_unknown):
        session = [int(i) for i in session]
        n_items = self.config.n_items
        unknown = [i for i in session if not 1 <= i <= n_items]
        if unknown and not drop_unknown:
            raise ValueError(f"unknown item ids {unknown}: the model knows items 1..{n_items} "
                             "(pass drop_unknown=True, or --drop-unknown, to ignore them)")
        session = [i for i in session if 1 <= i <= n_items]
        if not session:
            raise ValueError("the session has no known item to recommend from")
        # The target is not used for scoring; the last click stands in for it.
        sessions = Sessions.from_lists([session], [session[-1]])
        return make_batch(sessions, [0], self.config.mode, max(self.len_max, len(session)))

    def recommend(self, session, k=20, drop_unknown=False):
        """The ``k`` best next items: ``(item_ids (k,), scores (k,))``, best first.

        Raises ``ValueError`` naming unknown item ids unless ``drop_unknown``.
        """
        scores = model.score(self.params, self._batch(session, drop_unknown), self.config)
        ids, best = top_k(scores, min(k, self.config.n_items))
        return ids[0], best[0]

    def attention(self, session, drop_unknown=False):
        """Attention weights of one session: ``(maps, tokens)``.

        ``maps[l]`` is layer ``l``'s ``(H, T, T)`` array (row = query, column = key) and
        ``tokens`` the ``T`` item ids the positions hold (in ``faithful`` mode: the sorted
        distinct items, 0 included).
        """
        batch = self._batch(session, drop_unknown)
        maps = model.attention_maps(self.params, batch, self.config)
        return [m[0] for m in maps], batch.inputs[0]
