"""A deterministic generator of Diginetica-like click logs (the built-in sample dataset).

The generated log has the shape of a real one and structure a session model can learn:

* Items belong to topics; topic popularity and item popularity within a topic are both
  Zipf-like, so overall popularity is heavy-tailed and the rare tail is removed by the
  ``count >= 5`` filter, as in real logs.
* Each session has a hidden *intent* (a topic) that persists for its whole length.
  Every click after the first is one of

  - a **repeat** of an earlier click of the session (``p_repeat``),
  - a **transition** to one of the previous item's few favourite successors (``p_transition``),
  - **noise**: a globally popular item unrelated to the intent (``p_noise``),
  - otherwise a fresh item of the session's intent.

  A last-item Markov model sees only transitions; popularity sees only the noise; a model
  that reads the whole session can also use the intent and the repeats.
* Session lengths are 1 + geometric, so many sessions have one click (removed by the
  preprocessing) and the mean length after filtering is about 5, like Diginetica.
* Sessions are dated uniformly over ``n_days`` days; the last 7 become the test set.

The ``cue`` preset plants, on top of all that, a **long-range dependency** (``p_cue > 0``):

* ``n_cues`` *cue* items and as many *answer* items are added to the catalogue, outside
  every topic. Cue ``k`` has the raw id ``10 * n_items + 1 + k`` and its answer the raw id
  ``10 * n_items + 1 + n_cues + k`` (:func:`cue_pairs`); neither is ever clicked otherwise.
* A share ``p_cue`` of the sessions is *cued*: a cue ``k`` (uniform) and a distance ``d``
  (uniform in ``cue_distance``, both ends included) are drawn; the session is walked as
  above with at least ``d - 1`` clicks, then cue ``k`` is inserted before one of them and
  its answer exactly ``d`` clicks after the cue: ``..., cue, x_1, ..., x_{d-1}, answer, ...``.
  The ``d - 1`` clicks between (the *distractors*) and the clicks around are ordinary
  ones, drawn without regard to the cue.

So the answer is determined by the item ``d`` clicks back, and not by the last click. What
each model can see of it (the preprocessing can drop a rare distractor, shortening ``d``):

- **Markov** (last click -> next): the click before the answer is a distractor, unrelated
  to the cue, so its counts rank the answer no better than any item that once followed
  it: it sees nothing of the plant.
- **SKNN** (item sets of whole training sessions): a neighbour holding the same cue also
  holds its answer, so it sees the cue and the answer co-occur, but a shared cue counts
  no more than a shared distractor (order, distance and which item matters are all
  invisible to it), and neighbours that share only distractors dilute the vote.
- **SR-SAN, sequence mode**: every click, in order; the read-out query (the last click)
  can learn to put its attention on the one key that is a cue, whatever the distance, and
  map it to its answer. Without position embeddings it does not know ``d``: more
  distractors only mean more keys competing with the cue.
- **SR-SAN, faithful mode**: the same items as a set sorted by id (each cue occurs once
  per session, so deduplication keeps it), padded with 0 and not masked: the cue is still
  a key, but click order, and so ``d``, is gone from the input, and the padding competes
  with it for attention.

Everything is drawn from one ``np.random.Generator(PCG64(seed))`` in a fixed order, block
by block, so a preset and a seed always give the same file.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
from numba import njit

from srsan_np.data.readers import Clicks
from srsan_np.files import atomic_write_stream

START = calendar.timegm((2016, 1, 1, 0, 0, 0))
DAY = 86400
SESSIONS_PER_BLOCK = 200_000


@dataclass(frozen=True)
class GeneratorConfig:
    """Sizes and probabilities of a generated log (see the module docstring)."""

    n_sessions: int
    n_items: int            # raw items before the count >= 5 filter
    n_topics: int
    n_days: int
    mean_extra_clicks: float = 3.4   # session length = 1 + geometric(mean this)
    topic_zipf: float = 0.8
    item_zipf: float = 1.0
    n_successors: int = 4
    p_repeat: float = 0.2
    p_transition: float = 0.3
    p_noise: float = 0.1
    n_cues: int = 0          # cue -> answer pairs planted (the cue preset)
    p_cue: float = 0.0       # share of sessions with a planted cue
    cue_distance: tuple = (2, 6)  # the cue's distance before its answer, both ends included

    def __post_init__(self):
        low, high = self.cue_distance
        if self.p_cue > 0 and not (self.n_cues >= 1 and 1 <= low <= high):
            raise ValueError(f"GeneratorConfig: a planted cue needs n_cues >= 1 and "
                             f"1 <= cue_distance[0] <= cue_distance[1], got n_cues={self.n_cues}, "
                             f"cue_distance={self.cue_distance}")


PRESETS = {
    # ~3,600 training sessions (~15,000 examples), ~1,000 items: trains in about a minute.
    "sample": GeneratorConfig(n_sessions=6_000, n_items=2_000, n_topics=60, n_days=42),
    # The sample's log plus a planted long-range dependency (see the module docstring).
    "cue": GeneratorConfig(n_sessions=8_000, n_items=2_000, n_topics=60, n_days=42,
                           n_cues=100, p_cue=0.3),
    # Diginetica's scale: ~43,000 items and ~700,000 training examples after preprocessing.
    "diginetica": GeneratorConfig(n_sessions=258_000, n_items=150_000, n_topics=2_000, n_days=150,
                                  item_zipf=0.8),
}


def preset_config(preset: str) -> GeneratorConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset]


def cue_pairs(config: GeneratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """The raw ids of the planted cues and of their answers: ``(cues, answers)``, each
    ``(n_cues,)``; cue ``cues[k]`` is answered by ``answers[k]``."""
    first = 10 * config.n_items + 1
    return (first + np.arange(config.n_cues, dtype=np.int64),
            first + config.n_cues + np.arange(config.n_cues, dtype=np.int64))


@njit(cache=True)
def _plant(starts, walked, cued, before, distance, cue, answer):
    """Session k's walked clicks with, if ``cued[k]``, ``cue[k]`` inserted after its first
    ``before[k]`` clicks and ``answer[k]`` ``distance[k]`` clicks after the cue.

    Returns the new clicks and the new ``starts``.
    """
    S = len(starts) - 1
    new_starts = np.empty(S + 1, dtype=np.int64)
    new_starts[0] = 0
    for k in range(S):
        new_starts[k + 1] = new_starts[k] + starts[k + 1] - starts[k] + 2 * cued[k]
    out = np.empty(new_starts[-1], dtype=np.int64)
    for k in range(S):
        a, o = starts[k], new_starts[k]
        n = starts[k + 1] - a
        for c in range(n + 1):  # before walked click c (c = n: at the end)
            if cued[k] and c == before[k]:
                out[o] = cue[k]
                o += 1
            if cued[k] and c == before[k] + distance[k] - 1:
                out[o] = answer[k]
                o += 1
            if c < n:
                out[o] = walked[a + c]
                o += 1
    return out, new_starts


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return np.cumsum(weights) / weights.sum()


def _draw(cdf: np.ndarray, rng: np.random.Generator, size) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size)), len(cdf) - 1)


@njit(cache=True)
def _walk(starts, topic_item, noise_item, successor_pick, mechanism, earlier, successors,
          p_repeat, p_transition, p_noise):
    """Fill the clicks of each session; session k is out[starts[k]:starts[k + 1]].

    Every random draw is made beforehand (one per click and purpose), so this loop is a
    pure function of its arrays.
    """
    out = np.empty(starts[-1], dtype=np.int64)
    for k in range(len(starts) - 1):
        a = starts[k]
        out[a] = topic_item[a]
        for c in range(a + 1, starts[k + 1]):
            u = mechanism[c]
            if u < p_repeat:
                out[c] = out[a + int(earlier[c] * (c - a))]
            elif u < p_repeat + p_transition:
                out[c] = successors[out[c - 1], successor_pick[c]]
            elif u < p_repeat + p_transition + p_noise:
                out[c] = noise_item[c]
            else:
                out[c] = topic_item[c]
    return out


class _Catalogue(NamedTuple):
    """The items of a generated log: topics, popularity, raw ids, favourite successors."""

    topic_sizes: np.ndarray  # (K,) items per topic
    topic_start: np.ndarray  # (K + 1,) the first item of each topic
    raw_id: np.ndarray  # (V,) the id written to the file
    topic_cdf: np.ndarray  # (K,) the topics' popularity
    within_cdf: list  # per topic size m: the popularity of its m items
    global_cdf: np.ndarray  # (V,) every item's popularity, for noise clicks
    successors: np.ndarray  # (V, n_successors)


def _topic_items(catalogue, topics, rng):
    """An item of each of ``topics``, drawn by popularity within its topic."""
    sizes = catalogue.topic_sizes[topics]
    ranks = np.empty(len(topics), dtype=np.int64)
    for m in np.unique(sizes):
        hit = sizes == m
        ranks[hit] = _draw(catalogue.within_cdf[m], rng, hit.sum())
    return catalogue.topic_start[topics] + ranks


def _catalogue(config, rng):
    """Items 0..V-1 in topic-major order: topic t owns a contiguous run of items, its
    popular ones first. Raw ids are a random injection into a wide id range."""
    V, K = config.n_items, config.n_topics
    topic_sizes = np.full(K, V // K)
    topic_sizes[: V % K] += 1
    topic_start = np.concatenate([[0], np.cumsum(topic_sizes)])
    raw_id = rng.choice(10 * V, size=V, replace=False) + 1
    topic_cdf = _zipf_cdf(K, config.topic_zipf)
    within_cdf = [_zipf_cdf(m, config.item_zipf) for m in range(max(topic_sizes) + 1)]
    # Global popularity for noise clicks: topic weight x within-topic weight.
    topic_weight = np.diff(np.concatenate([[0.0], topic_cdf]))
    item_weight = np.concatenate([np.diff(np.concatenate([[0.0], within_cdf[m]])) * topic_weight[t]
                                  for t, m in enumerate(topic_sizes)])
    global_cdf = np.cumsum(item_weight) / item_weight.sum()
    catalogue = _Catalogue(topic_sizes, topic_start, raw_id, topic_cdf, within_cdf, global_cdf,
                           None)
    # Each item's favourite successors: mostly its own topic, sometimes anywhere.
    item_topic = np.repeat(np.arange(K), topic_sizes)
    successors = _topic_items(catalogue, np.repeat(item_topic, config.n_successors),
                              rng).reshape(V, config.n_successors)
    elsewhere = rng.random(successors.shape) < 0.2
    successors[elsewhere] = _draw(global_cdf, rng, elsewhere.sum())
    return catalogue._replace(successors=successors)


def _session_items(config, catalogue, rng, S, lengths):
    """The clicks of ``S`` sessions of ``lengths`` clicks, then the cues planted in some
    of them: ``(raw ids, session starts)``."""
    if config.p_cue > 0:  # drawn only then, so that a log without cues is unchanged
        cued = rng.random(S) < config.p_cue
        distance = rng.integers(config.cue_distance[0], config.cue_distance[1] + 1, size=S)
        pair = rng.integers(0, config.n_cues, size=S)
        lengths = np.where(cued, np.maximum(lengths, distance - 1), lengths)  # room for d - 1 distractors
        before = rng.integers(0, np.maximum(lengths - distance + 2, 1))  # clicks before the cue
    starts = np.concatenate([[0], np.cumsum(lengths)])
    N = int(starts[-1])
    intent = _draw(catalogue.topic_cdf, rng, S)
    items = _walk(starts, _topic_items(catalogue, np.repeat(intent, lengths), rng),
                  _draw(catalogue.global_cdf, rng, N),
                  rng.integers(0, config.n_successors, size=N), rng.random(N), rng.random(N),
                  catalogue.successors, config.p_repeat, config.p_transition, config.p_noise)
    items = catalogue.raw_id[items]
    if config.p_cue > 0:
        cues, answers = cue_pairs(config)
        items, starts = _plant(starts, items, cued, before, distance, cues[pair], answers[pair])
    return items, starts


def generate_blocks(config: GeneratorConfig, seed: int = 0) -> Iterator[Clicks]:
    """Yield the log block by block (``SESSIONS_PER_BLOCK`` sessions each), in file order.

    Item ids in the yielded clicks are the raw ids written to the file; ``date`` is the
    session's day (UTC seconds) and ``timeframe`` milliseconds since the session started.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    catalogue = _catalogue(config, rng)
    first_session = 1
    for block_start in range(0, config.n_sessions, SESSIONS_PER_BLOCK):
        S = min(SESSIONS_PER_BLOCK, config.n_sessions - block_start)
        lengths = rng.geometric(1.0 / (1.0 + config.mean_extra_clicks), size=S)  # >= 1, mean 1 + extra
        items, starts = _session_items(config, catalogue, rng, S, lengths)
        lengths = np.diff(starts)
        N = int(starts[-1])
        day = rng.integers(0, config.n_days, size=S)
        gaps = rng.integers(1_000, 120_000, size=N)
        session_of_click = np.repeat(np.arange(S), lengths)
        timeframe = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[starts[:-1]], lengths)
        yield Clicks(session=first_session + session_of_click,
                     item=items,
                     date=START + DAY * day[session_of_click],
                     timeframe=timeframe,
                     source=f"generated:{seed}")
        first_session += S


def generate_clicks(preset: str = "sample", seed: int = 0) -> Clicks:
    """The whole generated log of a preset, in memory."""
    blocks = list(generate_blocks(preset_config(preset), seed))
    return Clicks(*(np.concatenate(col) for col in zip(*(b[:4] for b in blocks))),
                  source=f"generated:{preset}:{seed}")


def _write_atomic_lines(path, header: str, lines_of_blocks) -> None:
    with atomic_write_stream(path) as f:
        if header:
            f.write(header.encode() + b"\n")
        for text in lines_of_blocks:
            f.write(text.encode())


def write_diginetica_csv(config: GeneratorConfig, path, seed: int = 0) -> None:
    """Write the generated log as Diginetica's ``;``-separated CSV, atomically."""
    def lines():
        for b in generate_blocks(config, seed):
            dates = np.datetime_as_string(b.date.astype("datetime64[s]"), unit="D")
            yield "".join(f"{s};NA;{i};{t};{d}\n" for s, i, t, d in
                          zip(b.session.tolist(), b.item.tolist(), b.timeframe.tolist(), dates.tolist()))
    _write_atomic_lines(path, "session_id;user_id;item_id;timeframe;eventdate", lines())


def write_yoochoose_dat(config: GeneratorConfig, path, seed: int = 0) -> None:
    """Write the generated log in Yoochoose's clicks format (no header), atomically.

    A click's timestamp is its session's day plus a random start time plus its timeframe.
    """
    rng = np.random.Generator(np.random.PCG64(seed + 1))

    def lines():
        for b in generate_blocks(config, seed):
            first = np.concatenate([[True], b.session[1:] != b.session[:-1]])
            start = np.repeat(rng.integers(0, DAY - 7_200, size=first.sum()),
                              np.diff(np.append(np.flatnonzero(first), len(first))))
            ms = (b.date + start) * 1000 + b.timeframe
            stamps = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
            yield "".join(f"{s},{t}Z,{i},0\n" for s, t, i in
                          zip(b.session.tolist(), stamps.tolist(), b.item.tolist()))
    _write_atomic_lines(path, "", lines())


def write_preset(preset: str, path, seed: int = 0) -> None:
    """``srsan-np generate``: the preset's log as a Diginetica CSV."""
    write_diginetica_csv(preset_config(preset), Path(path), seed)


def scaled(config: GeneratorConfig, n_sessions: int, **changes) -> GeneratorConfig:
    """A copy of ``config`` with another session count (and any other field changed)."""
    return replace(config, n_sessions=n_sessions, **changes)
