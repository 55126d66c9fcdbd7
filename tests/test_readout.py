"""The read-out measurements: rows as the model computes them, cues found where they were
planted, the attention on them and the tables by distance computed by hand, and examples
chosen as documented."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from srsan_np import model, readout
from srsan_np.baselines import Markov
from srsan_np.data import Sessions, make_batch
from srsan_np.evaluate import evaluate_ranks, ranks_pessimistic
from srsan_np.train import model_scorer
from test_train import tiny_dataset


def _model(mode, n_items=13, seed=0):
    config = model.Config(n_items=n_items, hidden=8, heads=2, layers=2, mode=mode, dropout=0.0)
    return model.init_params(config, seed), config


@pytest.mark.parametrize("mode", ["sequence", "faithful"])
def test_readout_rows_are_the_models_rows_in_evaluation_batches(mode):
    sessions = tiny_dataset(n_test=7).test
    params, config = _model(mode)
    rows = readout.readout_rows(params, config, sessions, batch_size=3)
    N, L, H, T = rows.weights.shape
    assert (N, L, H) == (7, 2, 2) and rows.keys.shape == (N, T)
    len_max = int(sessions.lengths().max())
    for start in (0, 3, 6):  # each evaluation batch, computed directly
        index = np.arange(start, min(7, start + 3))
        batch = make_batch(sessions, index, mode, len_max)
        maps = model.attention_maps(params, batch, config)
        width = batch.inputs.shape[1]
        for b, i in enumerate(index):
            for l in range(L):
                np.testing.assert_allclose(rows.weights[i, l, :, :width],
                                           maps[l][b, :, batch.last[b]], rtol=1e-6)
            assert not rows.weights[i, :, :, width:].any() and not rows.keys[i, width:].any()
            np.testing.assert_array_equal(rows.keys[i, :width], batch.inputs[b])
    np.testing.assert_allclose(rows.weights.sum(-1), 1.0, rtol=1e-5)


def test_cued_examples_by_hand():
    # items 1..6; raw ids 10*item; the planted pairs (raw): cue 30 -> answer 50, 40 -> 60
    raw_ids = np.array([0, 10, 20, 30, 40, 50, 60])
    sessions = Sessions.from_lists(
        [[3, 1, 2], [4], [1, 3, 3, 2], [1, 2], [3, 5, 1]],
        [5, 6, 5, 5, 1])
    cue, distance = readout.cued_examples(sessions, raw_ids, [30, 40], [50, 60])
    # 0: cue 3 three clicks back; 1: cue 4 is the last click; 2: the cue's last copy counts;
    # 3: answer 5 without its cue in the prefix: not cued; 4: target 1 is no answer
    np.testing.assert_array_equal(cue, [3, 4, 3, 0, 0])
    np.testing.assert_array_equal(distance, [3, 1, 2, 0, 0])
    # an answer whose cue the preprocessing dropped (raw id 30 not among the items)
    cue, _ = readout.cued_examples(sessions, np.array([0, 10, 20, 35, 40, 50, 60]), [30], [50])
    assert not cue.any()


def test_cue_attention_and_table_by_hand():
    # two cued examples (cue item 7), one not; L=1, H=2, T=4; key 0 is padding
    weights = np.zeros((3, 1, 2, 4))
    weights[0, 0] = [[0.1, 0.6, 0.2, 0.1], [0.0, 0.4, 0.3, 0.3]]
    weights[1, 0] = [[0.5, 0.5, 0.0, 0.0], [0.2, 0.8, 0.0, 0.0]]
    weights[2, 0] = 0.25
    keys = np.array([[0, 7, 3, 4], [5, 7, 0, 0], [1, 2, 3, 4]])
    on_cue, per_other, on_padding = readout.cue_attention(readout.ReadoutRows(weights, keys),
                                                          np.array([7, 7, 0]))
    np.testing.assert_allclose(on_cue, [[0.6, 0.4], [0.5, 0.8]])
    np.testing.assert_allclose(per_other, [[0.15, 0.3], [0.5, 0.2]])  # keys 3, 4; key 5 alone
    np.testing.assert_allclose(on_padding, [[0.1, 0.0], [0.0, 0.0]])
    table = readout.by_distance(np.array([2, 5, 2]), {"x": np.array([1.0, 2.0, 4.0])})
    assert table == {2: {"n": 2, "x": 2.5}, 5: {"n": 1, "x": 2.0}, "all": {"n": 3, "x": 7 / 3}}
    assert np.isnan(readout.by_distance(np.array([2]), {"x": [1.0]}, distances=[3])[3]["x"])


@pytest.mark.parametrize("mode", ["sequence", "faithful"])
def test_cue_table_agrees_with_its_parts(mode):
    data = tiny_dataset(n_test=40)
    params, config = _model(mode)
    test = data.test
    # call the first click the cue of every prefix of 2 clicks or more that has it once
    cue = np.array([p[0] if len(p) >= 2 and np.sum(p == p[0]) == 1 else 0
                    for p in map(test.prefix, range(len(test)))])
    distance = np.where(cue > 0, test.lengths(), 0)
    assert (cue > 0).sum() >= 10 and len(set(distance[cue > 0])) >= 3
    markov = Markov().fit(data.train, data.n_items)
    rows = readout.cue_table(params, config, test, cue, distance, {"Markov": markov})
    cued = np.flatnonzero(cue)
    assert rows["all"]["examples"] == len(cued)
    assert sum(r["examples"] for d, r in rows.items() if d != "all") == len(cued)
    on_cue, per_other, on_padding = readout.cue_attention(
        readout.readout_rows(params, config, test), cue)
    assert rows["all"]["on the cue"] == pytest.approx(on_cue[:, 0].mean() / 2 + on_cue[:, 1].mean() / 2)
    assert rows["all"]["cue / other"] == pytest.approx(rows["all"]["on the cue"]
                                                       / rows["all"]["per other key"])
    assert ("on padding" in rows["all"]) == (mode == "faithful")
    ranks = evaluate_ranks(model_scorer(params, config, test), test)[cued]
    assert rows["all"]["HR@20 SR-SAN"] == pytest.approx(100 * np.mean(ranks <= 20))
    markov_ranks = evaluate_ranks(markov.score_fn(test), test)[cued]
    assert rows["all"]["HR@20 Markov"] == pytest.approx(100 * np.mean(markov_ranks <= 20))


@pytest.mark.parametrize("mode", ["sequence", "faithful"])
def test_choose_examples_as_documented(mode, tmp_path):
    data = tiny_dataset(n_items=40, n_test=200, seed=1)
    params, config = _model(mode, n_items=40, seed=2)
    test = data.test
    k = 8
    chosen = readout.choose_examples(params, config, test, k=k, lengths=(2, 5))
    assert [e.kind for e in chosen] == [f"top{k}_peaked", f"top{k}_spread", "missed"]
    len_max = int(test.lengths().max())
    for e in chosen:
        batch = make_batch(test, [e.index], mode, len_max)  # scored alone
        assert e.rank == ranks_pessimistic(model.score(params, batch, config), batch.targets)[0]
        assert (e.rank <= k) == (e.kind != "missed")
        assert len(np.unique(test.prefix(e.index))) >= 2 and len(test.prefix(e.index)) <= 5
        assert 0 <= e.peakedness <= 1
    assert chosen[0].peakedness >= chosen[1].peakedness
    assert len({len(test.prefix(e.index)) for e in chosen}) == 3  # lengths differ
    clicks = [np.append(test.prefix(e.index), test.targets[e.index]).tolist() for e in chosen]
    for a in clicks:  # distinct sessions: no pick's clicks begin another's
        for b in clicks:
            assert a is b or b[:len(a)] != a

    figures = readout.example_figures(params, config, test, k=k)
    assert list(figures) == [f"attention_{e.kind}.png" for e in chosen]
    fig = figures["attention_missed.png"](tmp_path / "m.png")
    assert fig._suptitle.get_text().startswith(f"Target not in the top {k}")
    assert (tmp_path / "m.png").read_bytes().startswith(b"\x89PNG")


def test_peakedness_by_hand():
    maps = np.zeros((2, 4, 4))
    maps[0, 3] = 0.25                   # head 0 reads its four keys alike: 0
    maps[1, 3] = [0.0, 0.0, 1.0, 0.0]   # head 1 reads one key: 1
    example = readout.ExampleMaps([maps], np.arange(1, 5), 3, 1)
    assert readout.peakedness(example) == pytest.approx(0.5)
    assert readout.peakedness(readout.ExampleMaps([np.ones((2, 1, 1))], np.array([3]), 0, 1)) == 1.0
