"""Training diagnostics: what fit records into the run directory, and that it changes nothing."""

import json

import numpy as np
import pytest

from srsan_np import model
from srsan_np.data import Batch, make_batch
from srsan_np.diagnostics import Diagnostics, attention_statistics, load_diagnostics
from srsan_np.optim import Adam
from srsan_np.run import Run
from srsan_np.train import TrainConfig, fit
from test_train import CONFIG, TRAIN, tiny_dataset


def quiet(line):
    pass


def test_attention_statistics_by_hand():
    # B=2, H=2, T=3; the read-out rows are row 2 of example 0 and row 1 of example 1
    maps = np.zeros((2, 2, 3, 3))
    maps[0, 0, 2] = [1 / 3, 1 / 3, 1 / 3]  # uniform: entropy log 3
    maps[0, 1, 2] = [0.0, 0.0, 1.0]        # one key: entropy 0
    maps[1, 0, 1] = [0.5, 0.5, 0.0]        # a masked key adds nothing: log 2
    maps[1, 1, 1] = [0.2, 0.8, 0.0]
    inputs = np.array([[0, 4, 9], [0, 7, 0]])
    batch = Batch(inputs, np.ones((2, 3), bool), np.array([2, 1]), np.array([1, 1]), np.arange(2))
    entropy, padding = attention_statistics([maps], batch, "faithful")
    h11 = -(0.2 * np.log(0.2) + 0.8 * np.log(0.8))
    np.testing.assert_allclose(entropy, [[(np.log(3) + np.log(2)) / 2, h11 / 2]], rtol=1e-4)
    # padding = keys with id 0: example 0 key 0, example 1 keys 0 and 2
    np.testing.assert_allclose(padding, [[(1 / 3 + 0.5) / 2, (0.0 + 0.2) / 2]], rtol=1e-4)
    assert attention_statistics([maps], batch, "sequence")[1] is None


@pytest.mark.parametrize("mode", ["faithful", "sequence"])
def test_fit_records_diagnostics_and_trains_the_same(tmp_path, mode):
    data = tiny_dataset()
    cfg = model.Config(n_items=data.n_items, mode=mode, **CONFIG)
    tc = TrainConfig(**TRAIN)
    with_file = fit(data, cfg, tc, tmp_path / "run", log=quiet)
    in_memory = fit(data, cfg, tc, None, log=quiet)  # no run directory: no diagnostics
    for name in with_file["params"]:
        np.testing.assert_array_equal(with_file["params"][name], in_memory["params"][name])

    d = Run(tmp_path / "run").diagnostics()
    steps_per_epoch = -(-96 // TRAIN["batch_size"])  # 120 examples, 20% held out
    n = TRAIN["epochs"] * steps_per_epoch
    assert {len(v) for v in d["steps"].values()} == {n}
    assert d["steps"]["epoch"] == [e for e in range(TRAIN["epochs"]) for _ in range(steps_per_epoch)]
    # the smoothed loss is the bias-corrected moving average of the raw one
    ema, smoothed = 0.0, []
    for i, loss in enumerate(d["steps"]["loss"], 1):
        ema = 0.98 * ema + 0.02 * loss
        smoothed.append(ema / (1 - 0.98 ** i))
    np.testing.assert_allclose(d["steps"]["loss_smoothed"], smoothed, rtol=1e-3)
    assert d["steps"]["lr"] == [r["lr"] for r in with_file["history"] for _ in range(steps_per_epoch)]
    # sampled: step 0 of each epoch (every is larger than an epoch here)
    assert d["sampled"]["step"] == [e * steps_per_epoch for e in range(TRAIN["epochs"])]
    assert set(d["sampled"]["grad_norm"]) == set(d["params"]) == set(with_file["params"])
    for column in (*d["sampled"]["grad_norm"].values(), *d["sampled"]["update_ratio"].values()):
        assert len(column) == TRAIN["epochs"] and all(np.isfinite(column))
    assert [r["epoch"] for r in d["epochs"]] == list(range(TRAIN["epochs"]))
    for record in d["epochs"]:
        entropy = np.array(record["attention_entropy"])
        assert entropy.shape == (CONFIG["layers"], CONFIG["heads"])
        assert np.all(entropy >= 0)
        assert (record["padding_mass"] is None) == (mode == "sequence")
    # in faithful mode short prefixes are padded: the original attends to those zeros
    if mode == "faithful":
        assert 0 < np.mean(d["epochs"][0]["padding_mass"]) < 1


def test_the_hooks_measure_the_step(tmp_path):
    data = tiny_dataset()
    cfg = model.Config(n_items=data.n_items, mode="sequence", **CONFIG)
    params = model.init_params(cfg, 0)
    optimizer = Adam(params, lr=1e-2)
    batch = make_batch(data.train, np.arange(16), "sequence")
    diagnostics = Diagnostics(tmp_path / "diagnostics.json", params, cfg, data.train, every=2)
    before = {k: v.copy() for k, v in params.items()}
    loss, grads = model.loss_and_grads(params, batch, cfg, None)
    diagnostics.before_step(0, 0, loss, grads)
    optimizer.step(grads)
    diagnostics.after_step(optimizer.lr)
    diagnostics.before_step(0, 1, loss, grads)  # not sampled: every=2
    optimizer.step(grads)
    diagnostics.after_step(optimizer.lr)
    diagnostics.end_epoch(0)
    d = json.loads((tmp_path / "diagnostics.json").read_text())
    assert d["sampled"]["step"] == [0] and len(d["steps"]["loss"]) == 2
    name = "layers.0.linear1.weight"
    assert d["sampled"]["grad_norm"][name][0] == pytest.approx(np.linalg.norm(grads[name]), rel=1e-4)
    # the ratio is taken after the first step: recompute it from a replayed optimiser
    replay = {k: v.copy() for k, v in before.items()}
    Adam(replay, lr=1e-2).step(grads)
    expected = np.linalg.norm(replay[name] - before[name]) / np.linalg.norm(replay[name])
    assert d["sampled"]["update_ratio"][name][0] == pytest.approx(expected, rel=1e-3)
    assert d["epochs"][0]["grad_norm"][name] == d["sampled"]["grad_norm"][name][0]


def test_resume_keeps_the_diagnostics_of_the_epochs_before(tmp_path):
    data = tiny_dataset()
    cfg = model.Config(n_items=data.n_items, mode="faithful", **CONFIG)
    fit(data, cfg, TrainConfig(**TRAIN), tmp_path / "straight", log=quiet)
    full = Run(tmp_path / "straight").diagnostics()
    # resuming at epoch 2 over a file that reached further: epochs 2 and 3 are dropped
    run = tmp_path / "resumed"
    run.mkdir()
    (run / "diagnostics.json").write_bytes((tmp_path / "straight" / "diagnostics.json").read_bytes())
    d = Diagnostics(run / "diagnostics.json", model.init_params(cfg, 0), cfg, data.train,
                    start_epoch=2)
    n = full["steps"]["epoch"].index(2)
    assert d.data["steps"] == {k: v[:n] for k, v in full["steps"].items()}
    m = full["sampled"]["epoch"].index(2)
    assert d.data["sampled"]["step"] == full["sampled"]["step"][:m]
    assert d.data["sampled"]["update_ratio"] == {
        k: v[:m] for k, v in full["sampled"]["update_ratio"].items()}
    assert [r["epoch"] for r in d.data["epochs"]] == [0, 1]
    # the moving average goes on where it stopped: epoch 2's losses again give its values
    for step, loss in enumerate(full["steps"]["loss"][n:], 1):
        d.before_step(2, step, loss, {})  # steps 1.. of the epoch: none sampled
    np.testing.assert_allclose(d.data["steps"]["loss_smoothed"], full["steps"]["loss_smoothed"],
                               rtol=1e-4)


def test_load_diagnostics_refuses_a_foreign_file(tmp_path):
    path = tmp_path / "diagnostics.json"
    assert load_diagnostics(path) is None
    path.write_text("{\"steps\": ")
    with pytest.raises(ValueError, match="diagnostics.json: not valid JSON"):
        load_diagnostics(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not an srsan-np diagnostics file"):
        load_diagnostics(path)
