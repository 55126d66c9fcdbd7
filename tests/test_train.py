"""Training loop: determinism, resume, divergence, checkpoints, and the command line."""

import json

import numpy as np
import pytest

from srsan_np import model
from srsan_np.checkpoint import load_checkpoint, save_checkpoint
from srsan_np.cli import main
from srsan_np.data import Dataset, Sessions
from srsan_np.recommend import Recommender
from srsan_np.run import Run
from srsan_np.train import TrainConfig, TrainingDiverged, fit


def tiny_dataset(seed=0, n_items=13, n_train=120, n_test=30):
    """Random prefixes with a learnable rule: the target follows the last click."""
    rng = np.random.default_rng(seed)

    def sessions(n):
        prefixes = [rng.integers(1, n_items + 1, rng.integers(1, 6)) for _ in range(n)]
        targets = [p[-1] % n_items + 1 for p in prefixes]
        return Sessions.from_lists(prefixes, targets)

    return Dataset(sessions(n_train), sessions(n_test), n_items, {})


CONFIG = dict(hidden=8, heads=2, layers=1)
TRAIN = dict(epochs=4, batch_size=16, valid_fraction=0.2, lr=1e-2, seed=3)


@pytest.mark.parametrize("mode", ["faithful", "sequence"])
def test_resume_reaches_the_same_weights(tmp_path, mode):
    data = tiny_dataset()
    cfg = model.Config(n_items=data.n_items, mode=mode, **CONFIG)
    tc = TrainConfig(**TRAIN)
    straight = fit(data, cfg, tc, tmp_path / "straight", log=lambda line: None)

    class Interrupt(Exception):
        pass

    def stop_after_epoch_1(line):
        if line.startswith("epoch  1"):
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(data, cfg, tc, tmp_path / "resumed", log=stop_after_epoch_1)
    assert load_checkpoint(tmp_path / "resumed" / "last.npz")[1]["epoch"] == 1
    resumed = fit(data, cfg, tc, tmp_path / "resumed", resume=True, log=lambda line: None)

    last_a, _, _ = Run(tmp_path / "straight").load_model("last")
    last_b, _, _ = Run(tmp_path / "resumed").load_model("last")
    for name in last_a:
        np.testing.assert_array_equal(last_a[name], last_b[name], err_msg=name)
    def timeless(history):
        return [{k: v for k, v in record.items() if k != "seconds"} for record in history]

    assert timeless(straight["history"]) == timeless(resumed["history"])
    assert straight["selected_epoch"] == resumed["selected_epoch"]


def test_same_seed_same_run_and_learning_happens():
    data = tiny_dataset()
    cfg = model.Config(n_items=data.n_items, mode="sequence", **CONFIG)
    tc = TrainConfig(**{**TRAIN, "epochs": 6})
    a = fit(data, cfg, tc, log=lambda line: None)
    b = fit(data, cfg, tc, log=lambda line: None)
    for name in a["params"]:
        np.testing.assert_array_equal(a["params"][name], b["params"][name])
    losses = [h["train_loss"] for h in a["history"]]
    assert losses[-1] < losses[0] - 0.1, losses


def test_resume_refuses_another_config(tmp_path):
    data = tiny_dataset()
    cfg = model.Config(n_items=data.n_items, **CONFIG)
    fit(data, cfg, TrainConfig(**{**TRAIN, "epochs": 1}), tmp_path, log=lambda line: None)
    with pytest.raises(ValueError, match="another config"):
        fit(data, cfg, TrainConfig(**{**TRAIN, "epochs": 1, "lr": 0.5}), tmp_path, resume=True,
            log=lambda line: None)


def _tamper_after(monkeypatch, n_calls, change):
    """``model.loss_and_grads`` returns ``change(loss, grads)`` after its first ``n_calls``."""
    real = model.loss_and_grads
    calls = {"n": 0}

    def tampered(params, batch, config, rng, kernels="fast"):
        calls["n"] += 1
        loss, grads = real(params, batch, config, rng, kernels)
        return change(loss, grads) if calls["n"] > n_calls else (loss, grads)

    monkeypatch.setattr(model, "loss_and_grads", tampered)


def _batches_per_epoch():
    return int(np.ceil(len(tiny_dataset().train) * (1 - TRAIN["valid_fraction"]) / TRAIN["batch_size"]))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    data = tiny_dataset()
    cfg = model.Config(n_items=data.n_items, **CONFIG)
    _tamper_after(monkeypatch, _batches_per_epoch() + 1, lambda loss, grads: (float("nan"), grads))
    with pytest.raises(TrainingDiverged, match="batch 1 .*at epoch 1; the last good state"):
        fit(data, cfg, TrainConfig(**TRAIN), tmp_path, log=lambda line: None)
    arrays, meta = load_checkpoint(tmp_path / "last.npz")
    assert meta["epoch"] == 0
    assert all(np.isfinite(a).all() for a in arrays.values())


def test_no_validation_split_selects_the_last_epoch():
    data = tiny_dataset()
    cfg = model.Config(n_items=data.n_items, **CONFIG)
    out = fit(data, cfg, TrainConfig(**{**TRAIN, "valid_fraction": 0.0, "epochs": 2}),
              log=lambda line: None)
    assert out["selected_epoch"] == 1 and out["selected_by"].startswith("last epoch")
    for metric, value in out["best_on_test"].items():
        assert value == max(h["test"][metric] for h in out["history"])


def test_a_list_of_learning_rates_keeps_the_best_on_validation(tmp_path):
    data = tiny_dataset()
    cfg = model.Config(n_items=data.n_items, mode="sequence", **CONFIG)
    train = {**TRAIN, "select": "MRR@5"}  # 13 items: HR@20 would be 100 for every rate
    rates = (1e-3, 3e-2)
    out = fit(data, cfg, TrainConfig(**{**train, "lr": list(rates)}), tmp_path,
              log=lambda line: None)
    single = {lr: fit(data, cfg, TrainConfig(**{**train, "lr": lr}), log=lambda line: None)
              for lr in rates}
    valid = {lr: single[lr]["valid_at_selected"]["MRR@5"] for lr in rates}
    assert valid[rates[0]] != valid[rates[1]]  # a real choice, not a tie
    chosen = max(rates, key=valid.get)
    assert out["selected_lr"] == chosen
    assert out["valid_by_lr"] == {f"{lr:g}": valid[lr] for lr in rates}
    assert out["test_at_selected"] == single[chosen]["test_at_selected"]
    kept, _, _ = Run(tmp_path).load_model()  # the run directory holds the chosen run's weights
    for name, value in kept.items():
        np.testing.assert_array_equal(value, single[chosen]["params"][name], err_msg=name)
    assert json.loads((tmp_path / "summary.json").read_text())["selected_lr"] == chosen
    assert json.loads((tmp_path / "config.json").read_text())["train"]["lr"] == list(rates)
    assert sorted(p.name for p in tmp_path.glob("lr-*")) == ["lr-0.001", "lr-0.03"]


def test_a_list_of_learning_rates_resumes(tmp_path):
    data = tiny_dataset()
    cfg = model.Config(n_items=data.n_items, mode="sequence", **CONFIG)
    tc = TrainConfig(**{**TRAIN, "select": "MRR@5", "lr": [1e-3, 3e-2]})
    straight = fit(data, cfg, tc, tmp_path / "straight", log=lambda line: None)

    class Interrupt(Exception):
        pass

    second_rate = []

    def stop_in_the_second_rate(line):
        second_rate.append(line.startswith("learning rate 0.03"))
        if any(second_rate) and line.startswith("epoch  1"):
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(data, cfg, tc, tmp_path / "resumed", log=stop_in_the_second_rate)
    assert load_checkpoint(tmp_path / "resumed" / "lr-0.03" / "last.npz")[1]["epoch"] == 1
    assert not (tmp_path / "resumed" / "best.npz").exists()  # no choice made yet
    resumed = fit(data, cfg, tc, tmp_path / "resumed", resume=True, log=lambda line: None)
    assert resumed["selected_lr"] == straight["selected_lr"]
    assert resumed["valid_by_lr"] == straight["valid_by_lr"]
    for name, value in Run(tmp_path / "straight").load_model()[0].items():
        np.testing.assert_array_equal(Run(tmp_path / "resumed").load_model()[0][name], value)


def test_train_config_is_validated():
    assert TrainConfig(lr=[0.01]).lr == 0.01 and TrainConfig(lr=(1e-3, 1e-2)).lrs == (1e-3, 1e-2)
    with pytest.raises(ValueError, match="valid_fraction"):
        TrainConfig(lr=[1e-3, 1e-2], valid_fraction=0.0)
    with pytest.raises(ValueError, match="repeat"):
        TrainConfig(lr=[1e-3, 1e-3])
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=[])
    with pytest.raises(ValueError, match="select"):
        TrainConfig(select="HR@7")
    with pytest.raises(ValueError, match="valid_fraction"):
        TrainConfig(valid_fraction=1.0)


def test_checkpoint_round_trip_and_bad_file(tmp_path):
    arrays = {"param/w": np.arange(6, dtype=np.float32).reshape(2, 3), "adam/t": np.array(4)}
    save_checkpoint(tmp_path / "c.npz", arrays, {"epoch": 2, "nested": {"a": [1, 2]}})
    back, meta = load_checkpoint(tmp_path / "c.npz")
    assert meta == {"epoch": 2, "nested": {"a": [1, 2]}}
    for name in arrays:
        np.testing.assert_array_equal(back[name], arrays[name])
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_checkpoint(tmp_path / "bad.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "c.npz"]  # no temp files


def test_cli_train_evaluate_recommend(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--epochs", "1", "--hidden", "8", "--out", str(run), "--bootstrap", "50",
            "--mode", "sequence"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in ("SR-SAN", "best epoch on test", "POP", "S-POP", "Markov", "SKNN"):
        assert name in out
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["hidden"] == 8 and config["train"]["epochs"] == 1

    assert main(["evaluate", str(run), "--bootstrap", "20"]) == 0
    assert "HR@20" in capsys.readouterr().out

    assert main(["recommend", str(run), "1", "2", "3", "-k", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and lines[0].split()[0] == "1"

    assert main(["recommend", str(run), "1", "999999"]) == 2
    assert "999999" in capsys.readouterr().err
    # the built-in sample is a generated log: its raw ids come along with the run
    raw_ids = np.load(run / "raw_ids.npy")
    assert main(["recommend", str(run), "--raw", str(raw_ids[1]), str(raw_ids[2]), "-k", "3"]) == 0
    raw_lines = capsys.readouterr().out.strip().splitlines()
    recommended = [int(line.split()[2]) for line in raw_lines]
    assert set(recommended) <= set(raw_ids[1:].tolist())
    assert main(["recommend", str(run), "1", "2", "-k", "3"]) == 0
    plain = [int(line.split()[2]) for line in capsys.readouterr().out.strip().splitlines()]
    assert recommended == raw_ids[plain].tolist()
    assert main(["recommend", str(run), "--raw", "-5"]) == 2
    assert "-5" in capsys.readouterr().err
    rec = Recommender.from_run(run)
    items, _ = rec.recommend([1, 999999, 2], k=3, drop_unknown=True)
    assert len(items) == 3
    maps, tokens = rec.attention([1, 2, 3])
    assert maps[0].shape == (2, 3, 3) and list(tokens) == [1, 2, 3]
    np.testing.assert_allclose(maps[0].sum(-1), 1.0, rtol=1e-5)


def test_cli_train_rejects_a_bad_config(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model": {"hidden": 10, "heads": 3}}))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    assert "c.json" in capsys.readouterr().err


def test_cli_presets(tmp_path, capsys):
    assert main(["train", "--config", "nonexistent", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "nonexistent" in err and "original" in err and "sample" in err
    assert main(["train", "--config", "original", "--epochs", "1", "--hidden", "8",
                 "--out", str(tmp_path / "o"), "--bootstrap", "0", "--no-baselines"]) == 0
    config = json.loads((tmp_path / "o" / "config.json").read_text())
    assert config["model"]["mode"] == "faithful" and config["train"]["valid_fraction"] == 0.0
    assert config["train"]["epochs"] == 1  # the flag overrides the preset


@pytest.mark.parametrize("mode", ["faithful", "sequence"])
def test_both_kernel_sets_train_alike(mode):
    """Dropout off, float32: the textbook and the fast kernels follow one trajectory, up to
    the rounding that their different orders of summation give. (Not the weights
    themselves: a gradient that is exactly 0 in exact arithmetic, such as the key bias's, is
    rounding noise in float32, which Adam turns into steps of size lr.)"""
    data = tiny_dataset()
    cfg = model.Config(n_items=data.n_items, mode=mode, dropout=0.0, **CONFIG)
    runs = [fit(data, cfg, TrainConfig(**TRAIN, kernels=name), log=lambda line: None)
            for name in ("reference", "fast")]
    losses = [[record["train_loss"] for record in run["history"]] for run in runs]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    with pytest.raises(ValueError, match="kernels must be one of"):
        TrainConfig(kernels="quick")


def test_overflowing_adam_moments_stop_and_keep_a_finite_state(tmp_path, monkeypatch):
    """A finite loss whose gradients overflow Adam's second moment (float32 g**2 = inf):
    the epoch is not saved, and the kept state resumes without inf in Adam's ``v``."""
    data = tiny_dataset()
    cfg = model.Config(n_items=data.n_items, **CONFIG)
    _tamper_after(monkeypatch, _batches_per_epoch(), lambda loss, grads: (
        loss, {name: g * np.float32(1e30) for name, g in grads.items()}))
    with pytest.raises(TrainingDiverged, match="overflowed at epoch 1; the last good state"):
        fit(data, cfg, TrainConfig(**TRAIN), tmp_path, log=lambda line: None)
    arrays, meta = load_checkpoint(tmp_path / "last.npz")
    assert meta["epoch"] == 0
    assert all(np.isfinite(a).all() for a in arrays.values())
