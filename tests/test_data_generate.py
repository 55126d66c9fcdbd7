"""The sample generator: deterministic, realistic shape, same data through the CSV, and the CLI;
the cue preset's planted dependency."""

import numpy as np

from srsan_np.baselines import Markov
from srsan_np.cli import main
from srsan_np.data import load_dataset, sample_dataset
from srsan_np.data.generate import PRESETS, cue_pairs, generate_clicks, write_diginetica_csv
from srsan_np.data.readers import read_diginetica
from srsan_np.evaluate import evaluate_ranks
from srsan_np.readout import cued_examples


def test_deterministic_per_seed():
    a, b, c = generate_clicks("sample", 0), generate_clicks("sample", 0), generate_clicks("sample", 1)
    for x, y in zip(a[:4], b[:4]):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.item[:1000], c.item[:1000])


def test_sample_preset_shape():
    d = sample_dataset()
    s = d.stats
    assert 500 <= d.n_items <= 3000
    assert 2000 <= s["n_train_sessions"] <= 6000 and len(d.train) > 5 * len(d.test) / 2
    assert 4.0 <= s["avg_length"] <= 6.0
    # Many repeat clicks: a good share of targets already occur in their prefix.
    repeats = np.mean([t in d.train.prefix(i) for i, t in enumerate(d.train.targets[:2000])])
    assert 0.15 <= repeats <= 0.6
    # Zipf-like popularity: the top 5% of items take a large share of the clicks.
    counts = np.sort(np.bincount(d.train.targets))[::-1]
    assert counts[: d.n_items // 20].sum() > 0.25 * counts.sum()


def test_csv_holds_the_same_log(tmp_path):
    path = tmp_path / "s.csv"
    write_diginetica_csv(PRESETS["sample"], path, seed=2)
    assert path.read_text().splitlines()[0] == "session_id;user_id;item_id;timeframe;eventdate"
    read, made = read_diginetica(path), generate_clicks("sample", 2)
    for x, y in zip(read[:4], made[:4]):
        np.testing.assert_array_equal(x, y)


def test_cli_generate_preprocess_stats(tmp_path, capsys):
    csv, out = tmp_path / "s.csv", tmp_path / "prepared"
    assert main(["generate", "--preset", "sample", "--out", str(csv), "--seed", "0"]) == 0
    assert main(["preprocess", "--dataset", "diginetica", "--input", str(csv), "--out", str(out),
                 "--export-pickles"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".srsan-np", "pickles", "raw_ids.npy", "stats.json", "test.npz",
                                                      "train.npz"]
    assert load_dataset(out).train.to_lists() == sample_dataset().train.to_lists()
    capsys.readouterr()
    assert main(["stats", str(out), "--json"]) == 0
    assert '"n_items": %d' % sample_dataset().n_items in capsys.readouterr().out


def test_sample_log_is_unchanged(tmp_path):
    """The cue preset's fields draw nothing when no cue is planted: the sample's file is
    byte for byte what it was before they existed (the README's and notebooks' figures)."""
    import hashlib
    path = tmp_path / "s.csv"
    write_diginetica_csv(PRESETS["sample"], path, seed=0)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == (
        "4191b0e100f1a1a58dc674a7a8f7c07c0eadf2b6dc4cbc5ac1f2f40ca2bfb996")


def _sessions(clicks):
    cut = np.flatnonzero(np.diff(clicks.session)) + 1
    return np.split(clicks.item, cut)


def test_cue_preset_plants_one_cue_and_its_answer_d_clicks_later():
    config = PRESETS["cue"]
    cues, answers = cue_pairs(config)
    answer_of = dict(zip(cues.tolist(), answers.tolist()))
    planted = set(cues.tolist()) | set(answers.tolist())
    clicks = generate_clicks("cue", 0)
    np.testing.assert_array_equal(clicks.item, generate_clicks("cue", 0).item)
    sessions = _sessions(clicks)
    distances = []
    for items in sessions:
        at_cue = np.flatnonzero(np.isin(items, cues))
        at_answer = np.flatnonzero(np.isin(items, answers))
        assert len(at_cue) == len(at_answer) <= 1  # planted once, never clicked otherwise
        if len(at_cue):
            c, a = at_cue[0], at_answer[0]
            assert items[a] == answer_of[items[c]]
            assert not planted & set(items[c + 1:a].tolist())  # between: ordinary clicks
            distances.append(a - c)
    low, high = config.cue_distance
    assert abs(len(distances) / len(sessions) - config.p_cue) < 0.03
    assert set(distances) == set(range(low, high + 1))
    counts = np.bincount(distances)[low:]
    assert counts.min() > 0.5 * counts.max()  # roughly uniform
    # no planted item among the ordinary ids
    assert np.all(np.isin(clicks.item, list(planted)) | (clicks.item <= 10 * config.n_items))


def test_cue_preset_hides_the_answer_from_the_last_click():
    """After preprocessing: every cued test example has its cue 2..6 clicks back (fewer
    when a rare distractor was dropped), and the last click alone (Markov) almost never
    ranks the answer in its top 20, while the cue alone would always name it."""
    data = sample_dataset(0, preset="cue")
    assert data.stats["source"] == "generated:cue:0"
    cue, distance = cued_examples(data.test, data.raw_ids, *cue_pairs(PRESETS["cue"]))
    cued = np.flatnonzero(cue)
    assert 0.05 * len(data.test) < len(cued) < 0.2 * len(data.test)
    assert distance[cued].min() >= 1 and distance[cued].max() <= 6
    assert np.mean(distance[cued] >= 2) > 0.95
    for i in cued[:50]:
        prefix = data.test.prefix(i)
        assert prefix[len(prefix) - distance[i]] == cue[i]
    # the same cue always precedes the same answer
    pairs = set(zip(cue[cued].tolist(), data.test.targets[cued].tolist()))
    assert len({c for c, _ in pairs}) == len(pairs)
    markov = Markov().fit(data.train, data.n_items)
    ranks = evaluate_ranks(markov.score_fn(data.test), data.test)
    assert np.mean(ranks[cued] <= 20) < 0.05 < np.mean(ranks[cue == 0] <= 20)


def test_cli_generates_the_cue_preset(tmp_path, capsys):
    csv = tmp_path / "cue.csv"
    assert main(["generate", "--preset", "cue", "--out", str(csv), "--seed", "1"]) == 0
    read, made = read_diginetica(csv), generate_clicks("cue", 1)
    for x, y in zip(read[:4], made[:4]):
        np.testing.assert_array_equal(x, y)
    assert np.isin(cue_pairs(PRESETS["cue"])[0], read.item).all()
