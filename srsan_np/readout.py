"""What the read-out query attends to: measured over a whole example set, and a few
examples chosen to show it.

SR-SAN's session vector is the output at one position, the last click (the *read-out*
query); row ``last`` of each head's attention map is how that vector was mixed from the
session's items. This module measures those rows: over a test set (how much of them falls
on a planted cue, by distance, see the ``cue`` preset of :mod:`srsan_np.data.generate`)
and per example (how peaked each one is, to pick the examples worth drawing).
:mod:`srsan_np.plots` draws them (:func:`example_figures` hands it the chosen examples).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from srsan_np import model, plots
from srsan_np.data.batching import make_batch
from srsan_np.evaluate import evaluate_ranks, ranks_pessimistic
from srsan_np.train import model_scorer

__all__ = ["ReadoutRows", "readout_rows", "cued_examples", "cue_attention", "by_distance",
           "cue_table", "ExampleMaps", "example_maps", "peakedness", "Example", "choose_examples",
           "example_figures"]


class ReadoutRows(NamedTuple):
    """The read-out query's attention rows of every example of a set.

    Attributes
    ----------
    weights : (N, L, H, T) float64
        Row ``last`` of layer ``l``, head ``h``; zero beyond the example's row (keys its
        batch did not have).
    keys : (N, T) int
        The item id at each key (0: padding, attended in faithful mode).
    """

    weights: np.ndarray
    keys: np.ndarray


def readout_rows(params, config, sessions, batch_size=100, len_max=None,
                 kernels="fast") -> ReadoutRows:
    """The read-out rows of every example of ``sessions``, batched as the evaluation batches.

    Examples are taken ``batch_size`` at a time in order, as
    :func:`srsan_np.evaluate.evaluate_ranks` scores them, so in faithful mode each row
    has the padding it has when scored (its batch decides how many zeros it gets).

    Parameters
    ----------
    params, config : the trained model.
    sessions : Sessions
    batch_size : int
    len_max : int or None
        Faithful mode's padding length; default: the longest prefix of ``sessions``.
    kernels : {"fast", "reference"}

    Returns
    -------
    ReadoutRows
    """
    if len_max is None:
        len_max = int(sessions.lengths().max())
    parts = []
    for start in range(0, len(sessions), batch_size):
        batch = make_batch(sessions, np.arange(start, min(len(sessions), start + batch_size)),
                           config.mode, len_max)
        B = len(batch.last)
        maps = model.attention_maps(params, batch, config, kernels)           # L x (B, H, T, T)
        rows = np.stack([m[np.arange(B), :, batch.last] for m in maps], 1)    # (B, L, H, T)
        parts.append((rows.astype(np.float64), batch.inputs))
    T = max(keys.shape[1] for _, keys in parts)
    weights = np.concatenate([np.pad(w, ((0, 0), (0, 0), (0, 0), (0, T - w.shape[-1])))
                              for w, _ in parts])                              # (N, L, H, T)
    keys = np.concatenate([np.pad(k, ((0, 0), (0, T - k.shape[1]))) for _, k in parts])  # (N, T)
    return ReadoutRows(weights, keys)


def cued_examples(sessions, raw_ids, cues, answers):
    """The examples whose next click is a planted answer, with their cue and its distance.

    Parameters
    ----------
    sessions : Sessions
    raw_ids : (V + 1,) int, ``Dataset.raw_ids`` (the log's id of every item)
    cues, answers : (P,) int, the log's ids of the planted pairs
        (:func:`srsan_np.data.generate.cue_pairs`).

    Returns
    -------
    cue : (N,) int, the cue's item id for a cued example, else 0
    distance : (N,) int, ``len(prefix) - position of the cue``: 1 when the cue is the last
        click; 0 for an example that is not cued (or whose cue the preprocessing dropped)
    """
    answer_to_cue = dict(zip(np.asarray(answers).tolist(), np.asarray(cues).tolist()))
    item_of_raw = {raw: item for item, raw in enumerate(np.asarray(raw_ids).tolist()) if item}
    cue_of_target = np.zeros(len(raw_ids), dtype=np.int64)  # item id -> its cue's item id
    for answer_raw, cue_raw in answer_to_cue.items():
        if answer_raw in item_of_raw and cue_raw in item_of_raw:
            cue_of_target[item_of_raw[answer_raw]] = item_of_raw[cue_raw]
    cue = cue_of_target[sessions.targets]
    distance = np.zeros(len(sessions), dtype=np.int64)
    for i in np.flatnonzero(cue):
        prefix = sessions.prefix(i)
        at = np.flatnonzero(prefix == cue[i])
        if len(at):
            distance[i] = len(prefix) - at[-1]
    cue[distance == 0] = 0
    return cue, distance


def cue_attention(rows: ReadoutRows, cue, layer=-1):
    """Per cued example: the read-out attention on the cue and the mean on each other key.

    Parameters
    ----------
    rows : ReadoutRows of the examples
    cue : (N,) int, the cue's item id per example (0: not cued, skipped)
    layer : int
        Which layer's rows (default: the last, whose output is read out).

    Returns
    -------
    on_cue : (M, H) float64, weight of the cue's key, per head, for the M cued examples
    per_other : (M, H) float64, the mean weight of one other real (non-padding) key
    on_padding : (M, H) float64, the total weight on padding keys (0 in sequence mode)
    """
    cued = np.flatnonzero(cue)
    w = rows.weights[cued, layer]                                 # (M, H, T)
    keys = rows.keys[cued]                                        # (M, T)
    is_cue = (keys == cue[cued, None])[:, None, :]                # (M, 1, T)
    is_pad = (keys == 0)[:, None, :]
    on_cue = (w * is_cue).sum(-1)
    on_padding = (w * is_pad).sum(-1)
    n_other = np.maximum((~is_cue & ~is_pad).sum(-1), 1)          # (M, 1)
    per_other = (w * (~is_cue & ~is_pad)).sum(-1) / n_other
    return on_cue, per_other, on_padding


def by_distance(distance, columns, distances=None):
    """Means of ``columns`` (name -> (M,) values) grouped by ``distance`` (M,).

    Returns ``{d: {"n": count, name: mean, ...}}`` for each distance present (or listed in
    ``distances``), plus ``"all"``.
    """
    distance = np.asarray(distance)
    groups = sorted(set(distance.tolist())) if distances is None else list(distances)
    table = {}
    for d in [*groups, "all"]:
        hit = np.ones(len(distance), bool) if d == "all" else distance == d
        table[d] = {"n": int(hit.sum()),
                    **{name: float(np.mean(np.asarray(v)[hit])) if hit.any() else float("nan")
                       for name, v in columns.items()}}
    return table


def cue_table(params, config, sessions, cue, distance, baselines=(), k=20, layer=-1):
    """Where the read-out looks, and who ranks the answer, on the cued examples, by distance.

    The model scores and attends over all of ``sessions`` in evaluation batches (as
    :func:`srsan_np.evaluate.evaluate` does: in faithful mode the batch-mates matter);
    the baselines, which score each prefix on its own, score the cued examples only.

    Parameters
    ----------
    params, config : the trained model.
    sessions : Sessions, the test examples.
    cue, distance : (N,) int, from :func:`cued_examples`.
    baselines : dict[str, Baseline] or (), fitted baselines to compare.
    k : int, the cut-off of the hit rate.
    layer : int, the layer whose read-out rows are measured.

    Returns
    -------
    dict[str, dict[str, float]]
        One row per distance present (``"2"``, ``"3"``, ...) and ``"all"``: ``examples``;
        ``on the cue`` (the cue key's weight) and ``per other key`` (the mean weight of one
        other real key), both averaged over heads and examples, and their ratio
        ``cue / other``; ``on padding`` in faithful mode; ``HR@k <name>`` in percent for
        SR-SAN and each baseline.
    """
    cued = np.flatnonzero(cue)
    on_cue, per_other, on_padding = cue_attention(readout_rows(params, config, sessions), cue,
                                                  layer)
    hits = {"SR-SAN": evaluate_ranks(model_scorer(params, config, sessions), sessions)[cued] <= k}
    subset = sessions.subset(cued)
    for name, base in dict(baselines).items():
        hits[name] = evaluate_ranks(base.score_fn(subset), subset) <= k
    columns = {"on the cue": on_cue.mean(1), "per other key": per_other.mean(1)}
    if config.mode == "faithful":
        columns["on padding"] = on_padding.mean(1)
    columns.update({f"HR@{k} {name}": 100.0 * h for name, h in hits.items()})
    rows = {}
    for d, row in by_distance(distance[cued], columns).items():
        on, other = row.pop("on the cue"), row.pop("per other key")
        rows[str(d)] = {"examples": row.pop("n"), "on the cue": on, "per other key": other,
                        "cue / other": on / other if other > 0 else float("inf"), **row}
    return rows


class Example(NamedTuple):
    """A test example chosen to be drawn, and why.

    index : int, into the sessions
    kind : str, a short name, used for the figure's file name
    why : str, the reason it was chosen, in words (for the figure's title)
    rank : int, the target's rank when the example is scored alone
    peakedness : float, :func:`peakedness` of its read-out row
    """

    index: int
    kind: str
    why: str
    rank: int
    peakedness: float


class ExampleMaps(NamedTuple):
    """One example's attention maps, scored alone (a batch of one).

    maps : list of L arrays (H, T, T), every layer's weights
    tokens : (T,) int, the item id at each position (0: padding)
    readout : int, the read-out query's position
    rank : int, the target's pessimistic rank among all items
    """

    maps: list
    tokens: np.ndarray
    readout: int
    rank: int


def example_maps(params, config, sessions, index, len_max=None) -> ExampleMaps:
    """Example ``index`` of ``sessions`` scored alone: its maps and its target's rank.

    ``len_max``: faithful mode's padding length (default: the longest prefix of
    ``sessions``, as the evaluation pads them).
    """
    if len_max is None:
        len_max = int(sessions.lengths().max())
    batch = make_batch(sessions, [index], config.mode, len_max)
    rank = int(ranks_pessimistic(model.score(params, batch, config), batch.targets)[0])
    maps = [m[0] for m in model.attention_maps(params, batch, config)]
    return ExampleMaps(maps, batch.inputs[0], int(batch.last[0]), rank)


def peakedness(example: ExampleMaps) -> float:
    """``1 - entropy / log T`` of the last layer's read-out row, mean over heads: 0 reads
    its ``T`` keys alike, 1 reads one key. (Scored alone, every key of the row is real or,
    in faithful mode, attended padding.) A row of one key counts as 1."""
    row = example.maps[-1][:, example.readout]                               # (H, T)
    if row.shape[-1] < 2:
        return 1.0
    entropy = -(row * np.log(np.where(row > 0, row, 1.0))).sum(-1)          # (H,)
    return float(1.0 - entropy.mean() / np.log(row.shape[-1]))


def choose_examples(params, config, sessions, k=20, lengths=(3, 10), n_candidates=300,
                    seed=0):
    """Up to three test examples that show what a run learned, from distinct sessions.

    Among ``n_candidates`` examples drawn at random (``seed``) whose prefix has at most
    ``lengths[1]`` clicks and at least ``lengths[0]`` distinct items (a map of one item
    repeated is uniform whatever the model learned), each scored alone (as it will be
    drawn):

    - ``top{k}_peaked``: target ranked in the top ``k``, the most peaked read-out;
    - ``top{k}_spread``: target in the top ``k``, the least peaked read-out;
    - ``missed``: target not in the top ``k``, the most peaked read-out (where the model
      looked when it was wrong).

    Each pick prefers a prefix length not yet shown, and never takes an example of a
    session already shown (one whose clicks, with its target, begin with another pick's,
    or the other way round). A kind with no candidate left is left out.

    Returns
    -------
    list of Example
    """
    lengths_all = sessions.lengths()
    pool = [i for i in np.flatnonzero((lengths_all >= lengths[0]) & (lengths_all <= lengths[1]))
            if len(np.unique(sessions.prefix(i))) >= lengths[0]]
    if not pool:  # nothing readable: any prefix of two clicks or more
        pool = np.flatnonzero(lengths_all >= 2)
    rng = np.random.default_rng(seed)
    pool = np.sort(rng.permutation(pool)[:n_candidates])
    len_max = int(lengths_all.max())
    measured = [example_maps(params, config, sessions, int(i), len_max) for i in pool]
    rank = np.array([m.rank for m in measured])
    peak = np.array([peakedness(m) for m in measured])
    clicks = [np.append(sessions.prefix(int(i)), sessions.targets[i]).tolist() for i in pool]

    def same_session(a, b):
        short, long_ = sorted((clicks[a], clicks[b]), key=len)
        return long_[:len(short)] == short

    picked, chosen = [], []
    wanted = [(f"top{k}_peaked", rank <= k, -peak,
               f"target in the top {k}, the most peaked read-out"),
              (f"top{k}_spread", rank <= k, peak,
               f"target in the top {k}, the most evenly spread read-out"),
              ("missed", rank > k, -peak,
               f"target not in the top {k}, the most peaked read-out")]
    for kind, allowed, order, why in wanted:
        free = [j for j in np.flatnonzero(allowed)
                if not any(same_session(j, p) for p in picked)]
        if not free:
            continue
        shown = {lengths_all[pool[p]] for p in picked}
        best = min(free, key=lambda j: (lengths_all[pool[j]] in shown, order[j], pool[j]))
        picked.append(best)
        chosen.append(Example(int(pool[best]), kind, why, int(rank[best]), float(peak[best])))
    return chosen


def example_figures(params, config, sessions, k=20, seed=0):
    """The attention maps of :func:`choose_examples`, ready to draw.

    Returns
    -------
    dict[str, callable]
        ``"attention_<kind>.png" -> draw(path) -> Figure``: every layer and head of the
        example scored alone, the read-out row outlined, titled with why it was chosen.
    """
    def draw(example):
        def to(path):
            shown = example_maps(params, config, sessions, example.index)
            title = (f"{example.why[0].upper()}{example.why[1:]}\ntest example {example.index}: "
                     f"{len(sessions.prefix(example.index))} clicks, next click "
                     f"{sessions.targets[example.index]} ranked {shown.rank} ({config.mode} mode)")
            return plots.attention_layers(shown.maps, shown.tokens, title=title,
                                          readout=shown.readout, path=path)
        return to

    return {f"attention_{e.kind}.png": draw(e)
            for e in choose_examples(params, config, sessions, k=k, seed=seed)}
