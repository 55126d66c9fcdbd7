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
    _assert_png(path)


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
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["training loss", "HR@20", "MRR@20"]
    assert len(fig.axes[1].get_lines()) == 3  # validation, test, selected epoch
    _assert_png(path)
    # without a validation split: test only
    fig = plots.training_curves(_history(with_valid=False), metrics=("NDCG@20",))
    assert len(fig.axes) == 2 and len(fig.axes[1].get_lines()) == 1


def test_training_curves_bad_input():
    with pytest.raises(ValueError, match="empty"):
        plots.training_curves([])
    with pytest.raises(ValueError, match="'HR@50' not in the history"):
        plots.training_curves(_history(), metrics=("HR@50",))
    with pytest.raises(ValueError, match="'train_loss'"):
        plots.training_curves([{"epoch": 0, "test": {}}])


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
