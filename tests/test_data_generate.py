"""The sample generator: deterministic, realistic shape, same data through the CSV, and the CLI."""

import numpy as np

from srsan_np.cli import main
from srsan_np.data import load_dataset, sample_dataset
from srsan_np.data.generate import PRESETS, generate_clicks, write_diginetica_csv
from srsan_np.data.readers import read_diginetica


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
