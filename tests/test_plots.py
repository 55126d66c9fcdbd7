"""The plotting functions, headless: each returns a Figure, saves a PNG, refuses bad shapes."""

import matplotlib

matplotlib.use("Agg")  # before anything draws; MPLBACKEND=Agg does the same in CI

import numpy as np
import pytest
from matplotlib.figure import Figure

from srsan_np import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _maps(rng, H, T):
    scores = rng.standard_normal((H, T, T))
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)  # (H, T, T), rows sum to 1


def _assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    # atomic save: no temporary file left beside it
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def _heatmap_axes(fig):
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def test_attention_heatmap_one_panel_per_head(tmp_path):
    rng = np.random.default_rng(0)
    tokens = np.array([0, 12, 7, 31, 5], dtype=np.int32)
    path = tmp_path / "att.png"
    fig = plots.attention_heatmap(_maps(rng, 3, 5), tokens, title="session 0", readout=2,
                                  path=path)
    assert isinstance(fig, Figure)
    panels = _heatmap_axes(fig)
    assert len(panels) == 3 and len(fig.axes) == 4  # three heads and a colour bar
    for ax in panels:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["pad", "12", "7", "31", "5"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["pad", "12", "7", "31", "5"]
        assert len(ax.patches) == 1  # the read-out row outline
    assert panels[0].get_ylabel().startswith("query") and panels[0].get_xlabel().startswith("key")
    # the outline is explained in the figure
    (legend,) = fig.legends
    assert "read-out query" in legend.get_texts()[0].get_text()
    _assert_png(path)
    assert not plots.attention_heatmap(_maps(rng, 3, 5), tokens).legends  # no read-out: no note


def test_attention_layers_grid(tmp_path):
    rng = np.random.default_rng(1)
    maps = [_maps(rng, 2, 4), _maps(rng, 2, 4)]
    path = tmp_path / "layers.png"
    fig = plots.attention_layers(maps, ["a", "b", "c", "d"], path=path)
    panels = _heatmap_axes(fig)
    assert len(panels) == 4
    assert {ax.get_title() for ax in panels} == {
        "layer 0, head 0", "layer 0, head 1", "layer 1, head 0", "layer 1, head 1"}
    _assert_png(path)


def test_attention_bad_shapes():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match=r"\(H, T, T\)"):
        plots.attention_heatmap(np.ones((4, 4)), range(4))
    with pytest.raises(ValueError, match=r"\(H, T, T\)"):
        plots.attention_heatmap(np.ones((2, 4, 5)), range(4))
    with pytest.raises(ValueError, match="tokens has 3 labels"):
        plots.attention_heatmap(_maps(rng, 2, 4), [1, 2, 3])
    with pytest.raises(ValueError, match="readout"):
        plots.attention_heatmap(_maps(rng, 2, 4), [1, 2, 3, 4], readout=4)
    with pytest.raises(ValueError, match="same shape"):
        plots.attention_layers([_maps(rng, 2, 4), _maps(rng, 2, 3)], range(4))
    with pytest.raises(ValueError, match="L >= 1"):
        plots.attention_layers([], [])


def _history(with_valid=True):
    metrics = lambda e: {"HR@20": 10.0 + e, "MRR@20": 3.0 + e, "NDCG@20": 5.0}  # noqa: E731
    return [{"epoch": e, "lr": 1e-3, "train_loss": 6.0 - e, "seconds": 1.0,
             "valid": metrics(e) if with_valid else None, "test": metrics(e)} for e in range(3)]


def test_training_curves(tmp_path):
    path = tmp_path / "curves.png"
    fig = plots.training_curves(_history(), selected_epoch=1, path=path)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == ["training loss", "HR@20", "MRR@20",
                                                   "learning rate"]
    assert len(fig.axes[1].get_lines()) == 3  # validation, test, selected epoch
    assert fig.axes[3].get_yscale() == "log"
    _assert_png(path)
    # without a validation split: test only; without learning rates: no such panel
    history = [{k: v for k, v in r.items() if k != "lr"} for r in _history(with_valid=False)]
    fig = plots.training_curves(history, metrics=("NDCG@20",))
    assert len(fig.axes) == 2 and len(fig.axes[1].get_lines()) == 1


def test_training_curves_of_several_runs(tmp_path):
    """One run per learning rate: every run drawn, the selected one thick and named so, the
    selected epoch's line labelled."""
    other = [dict(r, train_loss=r["train_loss"] + 1) for r in _history()]
    fig = plots.training_curves({"lr 0.01": _history(), "lr 0.003": other}, selected_epoch=2,
                                selected="lr 0.003", path=tmp_path / "c.png")
    hr = fig.axes[1]
    lines = {line.get_label(): line for line in hr.get_lines()}
    assert set(lines) == {"lr 0.01, validation", "lr 0.01, test", "lr 0.003 (selected), validation",
                          "lr 0.003 (selected), test", "selected epoch (2)"}
    assert lines["lr 0.003 (selected), test"].get_linewidth() > lines["lr 0.01, test"].get_linewidth()
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "lr 0.01", "lr 0.003 (selected)", "selected epoch (2)"]
    _assert_png(tmp_path / "c.png")
    with pytest.raises(ValueError, match="selected='lr 1'"):
        plots.training_curves({"lr 0.01": _history()}, selected="lr 1")


def test_training_curves_bad_input():
    with pytest.raises(ValueError, match="empty"):
        plots.training_curves([])
    with pytest.raises(ValueError, match="'HR@50' not in the history"):
        plots.training_curves(_history(), metrics=("HR@50",))
    with pytest.raises(ValueError, match="'train_loss'"):
        plots.training_curves([{"epoch": 0, "test": {}}])


def _diagnostics(mode="faithful"):
    """A diagnostics.json's contents: 2 epochs of 5 steps, sampled every 2, L=1, H=2."""
    names = ["embedding.weight", "layers.0.linear1.weight"]
    epoch = [0] * 5 + [1] * 5
    sampled = [0, 2, 4, 5, 7, 9]
    attention = lambda e: {"attention_entropy": [[1.0 - 0.1 * e, 0.8]],  # noqa: E731
                           "padding_mass": [[0.3, 0.2 + 0.1 * e]] if mode == "faithful" else None}
    return {"version": 1, "every": 2, "mode": mode, "params": names, "uniform_entropy": 1.2,
            "steps": {"epoch": epoch, "loss": [6.0 - 0.1 * i for i in range(10)],
                      "loss_smoothed": [6.0 - 0.05 * i for i in range(10)], "lr": [1e-3] * 10},
            "sampled": {"step": sampled, "epoch": [epoch[i] for i in sampled],
                        "grad_norm": {n: [1.0] * 6 for n in names},
                        "update_ratio": {n: [1e-3] * 6 for n in names}},
            "epochs": [{"epoch": e, "lr": 1e-3, **attention(e)} for e in range(2)]}


def test_diagnostics_plots(tmp_path):
    d = _diagnostics()
    fig = plots.step_loss(d, path=tmp_path / "loss.png")
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 3  # raw, smoothed, one epoch start
    _assert_png(tmp_path / "loss.png")
    fig = plots.gradient_diagnostics(d, path=tmp_path / "grads.png")
    # one column per group (norms above, ratios below), one labelled line per tensor
    assert [ax.get_title() for ax in fig.axes] == ["embeddings", "feed-forward", "", ""]
    assert {ax.get_yscale() for ax in fig.axes} == {"log"}
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["linear1 weight"]
    # one tensor and one epoch start per panel, and the 1e-3 reference on the ratios
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2, 3, 3]
    (notes,) = fig.legends
    assert "1e-3" in notes.get_texts()[0].get_text()
    assert not any("start at 0" in t.get_text() for t in notes.get_texts())  # faithful: random init
    _assert_png(tmp_path / "grads.png")
    seq = plots.gradient_diagnostics(_diagnostics("sequence"))
    assert any("start at 0" in t.get_text() for t in seq.legends[0].get_texts())
    fig = plots.attention_diagnostics(d, path=tmp_path / "att.png")
    assert [ax.get_title() for ax in fig.axes] == ["read-out attention entropy",
                                                   "read-out attention on padding"]
    # one line per head, and the entropy's ceiling (uniform attention) as a reference
    assert [len(ax.get_lines()) for ax in fig.axes] == [3, 2]
    assert fig.axes[0].get_lines()[-1].get_ydata()[0] == 1.2
    assert "log T" in fig.axes[0].get_legend().get_texts()[-1].get_text()
    assert [ax.get_ylim()[0] for ax in fig.axes] == [0.0, 0.0]
    _assert_png(tmp_path / "att.png")
    assert len(plots.attention_diagnostics(_diagnostics("sequence")).axes) == 1
    old = {k: v for k, v in d.items() if k != "uniform_entropy"}  # a file from before it
    assert len(plots.attention_diagnostics(old).axes[0].get_lines()) == 2


def test_diagnostics_plots_bad_input():
    for plot in (plots.step_loss, plots.gradient_diagnostics, plots.attention_diagnostics):
        with pytest.raises(ValueError, match="load_diagnostics"):
            plot({"steps": {}})
    empty = _diagnostics()
    empty["steps"] = {k: [] for k in empty["steps"]}
    empty["sampled"]["step"], empty["epochs"] = [], []
    with pytest.raises(ValueError, match="no step recorded yet"):
        plots.step_loss(empty)
    with pytest.raises(ValueError, match="no sampled step recorded yet"):
        plots.gradient_diagnostics(empty)
    with pytest.raises(ValueError, match="no epoch with attention statistics yet"):
        plots.attention_diagnostics(empty)


def test_metric_bars_with_intervals(tmp_path):
    rows = {"POP": {"HR@20": 5.1, "MRR@20": 0.4},
            "S-POP": {"HR@20": 57.6, "MRR@20": 48.6},
            "SR-SAN": {"HR@20": 60.0, "MRR@20": 40.0}}
    errors = {"SR-SAN": {"HR@20": (55.0, 65.0), "MRR@20": (36.0, 44.0)}}
    path = tmp_path / "bars.pdf"  # the suffix picks the format
    fig = plots.metric_bars(rows, errors=errors, title="sample", path=path)
    (ax,) = fig.axes
    assert len(ax.patches) == 6
    assert [t.get_text() for t in ax.get_xticklabels()] == ["HR@20", "MRR@20"]
    assert path.read_bytes().startswith(b"%PDF")
    with pytest.raises(ValueError, match="empty"):
        plots.metric_bars({})
    with pytest.raises(ValueError, match="'POP' has no"):
        plots.metric_bars({"POP": {"HR@20": 1.0}})
    with pytest.raises(ValueError, match=r"\(low, high\)"):
        plots.metric_bars(rows, errors={"POP": {"HR@20": (1.0,), "MRR@20": (0.0,)}})


def test_data_plots(tmp_path):
    rng = np.random.default_rng(3)
    lengths = {"train": rng.integers(1, 20, 200), "test": rng.integers(1, 10, 50)}
    path = tmp_path / "lengths.png"
    fig = plots.session_length_histogram(lengths, title="prefix lengths", path=path)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and len(ax.patches) == 2
    _assert_png(path)

    items = rng.zipf(1.5, 2000) % 300
    path = tmp_path / "pop.png"
    fig = plots.popularity_rank_frequency(items, path=path)
    (ax,) = fig.axes
    assert ax.get_xscale() == ax.get_yscale() == "log" and len(ax.get_lines()) == 1
    _assert_png(path)

    with pytest.raises(ValueError, match="1-D integer"):
        plots.session_length_histogram(np.ones((2, 3), dtype=int))
    with pytest.raises(ValueError, match="1-D integer"):
        plots.popularity_rank_frequency({"train": np.array([1.5, 2.0])})


def test_failed_save_leaves_nothing(tmp_path):
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError):
        plots.attention_heatmap(_maps(rng, 1, 3), [1, 2, 3], path=tmp_path / "x.nosuchformat")
    assert list(tmp_path.iterdir()) == []
