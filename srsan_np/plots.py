"""Pictures: attention maps, training curves, metric bars and the shape of a dataset.

Every function builds a :class:`matplotlib.figure.Figure` directly (no ``pyplot``, so no
global figure state and no display needed: it works headless, in tests and on servers),
returns it, and, given ``path``, also saves it there atomically (a temporary file in the
same directory, then ``os.replace``). The file format follows the suffix (``.png``,
``.pdf``, ``.svg``; PNG when there is none). In a notebook, leave the returned figure as a
cell's last expression to show it (with ``%matplotlib inline``).

Item ids label the attention axes; id 0 is shown as ``pad``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from srsan_np.files import atomic_write_stream

__all__ = [
    "attention_heatmap",
    "attention_layers",
    "training_curves",
    "step_loss",
    "gradient_diagnostics",
    "attention_diagnostics",
    "metric_bars",
    "session_length_histogram",
    "popularity_rank_frequency",
]


def _save(fig: Figure, path) -> Figure:
    """Save ``fig`` to ``path`` atomically (if given) and return it."""
    if path is not None:
        path = Path(path)
        fmt = path.suffix[1:].lower() or "png"
        with atomic_write_stream(path) as f:
            fig.savefig(f, format=fmt, dpi=120)
    return fig


def _token_labels(tokens, T: int, where: str) -> list[str]:
    tokens = np.asarray(tokens).reshape(-1).tolist()  # numpy ints become Python ints
    if len(tokens) != T:
        raise ValueError(f"{where}: tokens has {len(tokens)} labels but the maps are {T} x {T}")
    return ["pad" if isinstance(t, int) and t == 0 else str(t) for t in tokens]


READOUT_NOTE = ("red outline: the read-out query (the last click), the only row that reaches\n"
                "the scores: its weights say how the session vector is mixed from the keys")


def _attention_grid(maps, tokens, row_names, title, readout, path, where):
    """The shared body of the two attention plots: ``maps`` (L, H, T, T), one row per layer."""
    L, H, T, _ = maps.shape
    labels = _token_labels(tokens, T, where)
    if readout is not None and not 0 <= int(readout) < T:
        raise ValueError(f"{where}: readout={readout} must be a position in 0..{T - 1}")
    # Square panels of about 0.28 in per key; wide enough for the read-out note.
    width = max((1.0 + 0.28 * T) * H + 1.2, 5.5 if readout is not None else 0.0)
    side = (width - 1.2) / H
    height = (side * L + 0.35 * (title or "").count("\n") + 0.6 * (title is not None)
              + 0.5 * (readout is not None))
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(L, H, squeeze=False)
    # One colour scale for every panel, so heads and layers compare at a glance.
    vmax = float(np.nanmax(maps)) if maps.size else 1.0
    for l in range(L):
        for h in range(H):
            ax = axes[l, h]
            image = ax.imshow(maps[l, h], vmin=0.0, vmax=vmax or 1.0, cmap="viridis")
            ax.set_xticks(range(T), labels, rotation=90, fontsize=8)
            ax.set_yticks(range(T), labels, fontsize=8)
            ax.set_title(f"{row_names[l]}head {h}" if row_names[l] else f"head {h}", fontsize=10)
            if readout is not None:
                # The read-out query: the only row whose output reaches the scores.
                ax.add_patch(Rectangle((-0.5, int(readout) - 0.5), T, 1.0, fill=False,
                                       edgecolor="red", linewidth=1.5))
            if l == L - 1:
                ax.set_xlabel("key (item id)")
            if h == 0:
                ax.set_ylabel("query (item id)")
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    if readout is not None:
        outline = Rectangle((0, 0), 1, 1, fill=False, edgecolor="red", linewidth=1.5)
        fig.legend([outline], [READOUT_NOTE], loc="outside lower center", fontsize=8,
                   frameon=False)
    if title is not None:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def attention_heatmap(maps, tokens, title=None, readout=None, path=None) -> Figure:
    """Attention weights of one layer, one panel per head.

    Parameters
    ----------
    maps : array_like, (H, T, T)
        ``maps[h, t, s]``: how much query position ``t`` reads key position ``s`` in head
        ``h`` (rows sum to 1 over the real keys), e.g. ``cache.att[b]`` of
        :func:`srsan_np.ops.attention.attention_forward`.
    tokens : sequence of length T
        The item id (or any label) at each position; id 0 is labelled ``pad``.
    title : str or None
        Figure title.
    readout : int or None
        Position of the read-out query, outlined in red (the row that becomes the
        session vector).
    path : str or Path or None
        Where to save the figure (atomically); None: do not save.

    Returns
    -------
    matplotlib.figure.Figure
        ``H`` heatmap axes (queries as rows, keys as columns) and one colour bar.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[1] != maps.shape[2]:
        raise ValueError(f"attention_heatmap: maps must be (H, T, T), got shape {maps.shape}")
    return _attention_grid(maps[None], tokens, [""], title, readout, path, "attention_heatmap")


def attention_layers(maps_per_layer, tokens, title=None, readout=None, path=None) -> Figure:
    """Attention weights of every layer: a grid of layers (rows) by heads (columns).

    Parameters
    ----------
    maps_per_layer : sequence of L arrays (H, T, T), or an array (L, H, T, T)
        Layer ``l``'s weights for one session.
    tokens, title, readout, path
        As in :func:`attention_heatmap`.

    Returns
    -------
    matplotlib.figure.Figure
        ``L * H`` heatmap axes and one colour bar.
    """
    try:
        maps = np.asarray([np.asarray(m, dtype=np.float64) for m in maps_per_layer])
    except ValueError:
        raise ValueError("attention_layers: every layer's maps must have the same shape "
                         "(H, T, T)") from None
    if maps.ndim != 4 or maps.shape[2] != maps.shape[3] or len(maps) == 0:
        raise ValueError("attention_layers: need a list of L >= 1 arrays (H, T, T), "
                         f"got shape {maps.shape}")
    names = [f"layer {l}, " for l in range(len(maps))]
    return _attention_grid(maps, tokens, names, title, readout, path, "attention_layers")


def _checked_runs(history, metrics, selected):
    """``{label: history}`` of ``history``, ValueError naming what it lacks."""
    runs = dict(history) if isinstance(history, Mapping) else {"": list(history)}
    if not runs or not all(runs.values()):
        raise ValueError("training_curves: history is empty (no epoch was run)")
    if selected is not None and selected not in runs:
        raise ValueError(f"training_curves: selected={selected!r} is not one of {list(runs)}")
    first = next(iter(runs.values()))[0]
    for key in ("epoch", "train_loss", "test"):
        if key not in first:
            raise ValueError(f"training_curves: history records need {key!r}; "
                             f"got keys {sorted(first)}")
    for m in metrics:
        if m not in first["test"]:
            raise ValueError(f"training_curves: metric {m!r} not in the history; "
                             f"available: {list(first['test'])}")
    return runs


def _draw_run(axes, records, metrics, with_lr, name, style):
    """One run's loss, metrics (validation solid, test dashed) and learning rate."""
    epochs = [r["epoch"] for r in records]
    axes[0].plot(epochs, [r["train_loss"] for r in records], marker="o", label=name or "train",
                 **style)
    for ax, m in zip(axes[1:], metrics):
        if all(r.get("valid") is not None for r in records):
            ax.plot(epochs, [r["valid"][m] for r in records], marker="o",
                    label=f"{name}, validation" if name else "validation", **style)
        ax.plot(epochs, [r["test"][m] for r in records], marker="s", linestyle="--",
                label=f"{name}, test" if name else "test", **style)
    if with_lr:
        axes[-1].semilogy(epochs, [r["lr"] for r in records], marker="o",
                          drawstyle="steps-post", label=name or None, **style)


def training_curves(history, metrics=("HR@20", "MRR@20"), selected_epoch=None, path=None,
                    selected=None) -> Figure:
    """Training loss and validation/test metrics per epoch, of one run or of several.

    Parameters
    ----------
    history : list of dict, or dict[str, list of dict]
        ``summary["history"]`` from :func:`srsan_np.train.fit`: each record has ``epoch``,
        ``train_loss``, ``valid`` (metrics dict, or None without a validation split) and
        ``test`` (metrics dict). Several runs (e.g. one per learning rate) as a dict
        ``label -> history``: each is drawn in its own colour.
    metrics : sequence of str
        Metric names to plot, one panel each (keys of the metric dicts).
    selected_epoch : int or None
        The epoch the run was selected at (e.g. ``summary["selected_epoch"]``), drawn as
        a labelled dashed vertical line.
    path : str or Path or None
        Where to save the figure.
    selected : str or None
        With several runs: the label of the selected one, drawn thick and named so in the
        legends (the others thin and faded).

    Returns
    -------
    matplotlib.figure.Figure
        ``1 + len(metrics)`` axes: the loss, then one per metric, then the learning rate
        (log scale) if every record has an ``lr``.
    """
    runs = _checked_runs(history, metrics, selected)
    with_lr = all("lr" in r for h in runs.values() for r in h)
    n_axes = 1 + len(metrics) + with_lr
    fig = Figure(figsize=(4.0 * n_axes, 3.4 + 0.3 * (len(runs) > 1)), layout="constrained")
    axes = fig.subplots(1, n_axes, squeeze=False)[0]
    colours = colormaps["tab10"](np.arange(10))
    for n, (label, records) in enumerate(runs.items()):
        chosen = len(runs) == 1 or label == selected
        name = f"{label} (selected)" if len(runs) > 1 and label == selected else label
        style = dict(color=colours[n % 10], linewidth=2.0 if chosen else 1.0,
                     alpha=1.0 if chosen else 0.5)
        _draw_run(axes, records, metrics, with_lr, name, style)
    axes[0].set_ylabel("cross-entropy")
    axes[0].set_title("training loss")
    for ax, m in zip(axes[1:], metrics):
        ax.set_ylabel(f"{m} (%)")
        ax.set_title(m)
    if with_lr:
        axes[-1].set_ylabel("learning rate")
        axes[-1].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if selected_epoch is not None:
            ax.axvline(selected_epoch, color="grey", linestyle="--", linewidth=1,
                       label=f"selected epoch ({selected_epoch})")
    for ax in axes[1:1 + len(metrics)] if len(runs) == 1 else axes:
        ax.legend(fontsize=7)
    return _save(fig, path)


def _check_diagnostics(diagnostics, where):
    """The diagnostics dict of :func:`srsan_np.diagnostics.load_diagnostics`, checked."""
    if not isinstance(diagnostics, Mapping) or not all(
            k in diagnostics for k in ("steps", "sampled", "epochs", "params")):
        raise ValueError(f"{where}: need the dict of srsan_np.diagnostics.load_diagnostics")
    return diagnostics


def _epoch_starts(ax, epochs):
    """Dotted vertical lines where a new epoch begins along a step axis."""
    epochs = np.asarray(epochs)
    for step in np.flatnonzero(epochs[1:] != epochs[:-1]) + 1:
        ax.axvline(step, color="grey", linestyle=":", linewidth=1)


def step_loss(diagnostics, path=None) -> Figure:
    """The training loss at every step, raw and smoothed, with the epochs' starts.

    Parameters
    ----------
    diagnostics : dict
        :func:`srsan_np.diagnostics.load_diagnostics` of a run.
    path : str or Path or None
        Where to save the figure.

    Returns
    -------
    matplotlib.figure.Figure
        One axes: the raw loss (faint), its moving average and the epoch boundaries.
    """
    steps = _check_diagnostics(diagnostics, "step_loss")["steps"]
    if not steps["loss"]:
        raise ValueError("step_loss: no step recorded yet")
    fig = Figure(figsize=(7.0, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.plot(steps["loss"], color="tab:blue", alpha=0.25, linewidth=0.8, label="per step")
    ax.plot(steps["loss_smoothed"], color="tab:blue", label="moving average")
    _epoch_starts(ax, steps["epoch"])
    ax.set_xlabel("step (dotted: a new epoch)")
    ax.set_ylabel("cross-entropy")
    ax.set_title("training loss per step")
    ax.legend()
    return _save(fig, path)


GRADIENT_GROUPS = (("embeddings", ("embedding.", "position.")),
                   ("attention", ("self_attn.",)),
                   ("feed-forward", ("linear1.", "linear2.")),
                   ("layer norms", ("norm1.", "norm2.")))


def _group_tensors(names):
    """``{group: [(name, short label)]}`` for the parameter names, in the order of
    :data:`GRADIENT_GROUPS` (a name of none of them goes to "other")."""
    layers = {n.split(".")[1] for n in names if n.startswith("layers.")}
    groups = {}
    for name in names:
        key = name.split(".", 2)[2] if name.startswith("layers.") else name
        group = next((g for g, parts in GRADIENT_GROUPS if any(p in key for p in parts)), "other")
        label = key.replace("self_attn.", "").replace("_", " ").replace(".", " ")
        if name.startswith("layers.") and len(layers) > 1:
            label = f"layer {name.split('.')[1]}: {label}"
        groups.setdefault(group, []).append((name, label))
    order = [g for g, _ in GRADIENT_GROUPS] + ["other"]
    return {g: groups[g] for g in order if g in groups}


def gradient_diagnostics(diagnostics, path=None) -> Figure:
    """Per parameter tensor: gradient norm and update-to-weight ratio at the sampled steps.

    One column per group of tensors (embeddings, attention, feed-forward, layer norms), the
    norms above, the ratios below, each tensor a labelled line (biases dashed). A healthy
    run keeps most update ratios within a decade of ``1e-3`` (the dashed black line): far
    above, the learning rate is too high and the weights are thrown around; far below, that
    tensor barely learns. In sequence mode biases and LayerNorm shifts start at 0, so their
    first ratios are about 1: the first update is all of their weight.

    Parameters
    ----------
    diagnostics, path
        As in :func:`step_loss`.

    Returns
    -------
    matplotlib.figure.Figure
        ``2 x G`` axes (log scale) for ``G`` groups, one line per tensor in each.
    """
    sampled = _check_diagnostics(diagnostics, "gradient_diagnostics")["sampled"]
    if not sampled["step"]:
        raise ValueError("gradient_diagnostics: no sampled step recorded yet")
    groups = _group_tensors(list(diagnostics["params"]))
    fig = Figure(figsize=(3.6 * len(groups) + 0.4, 6.4), layout="constrained")
    axes = fig.subplots(2, len(groups), squeeze=False, sharex=True, sharey="row")
    colours = colormaps["tab10"](np.arange(10))
    for column, (group, tensors) in enumerate(groups.items()):
        for row, key in enumerate(("grad_norm", "update_ratio")):
            ax = axes[row, column]
            for (name, label), colour in zip(tensors, colours[np.arange(len(tensors)) % 10]):
                ax.semilogy(sampled["step"], sampled[key][name], marker=".", color=colour,
                            linestyle="--" if name.endswith("bias") else "-", label=label)
            _epoch_starts(ax, diagnostics["steps"]["epoch"])
            if row == 1:
                ax.axhline(1e-3, color="black", linestyle="--", linewidth=1)
                ax.set_xlabel("step")
        axes[0, column].set_title(group)
        axes[0, column].legend(fontsize=7, loc="best")
    axes[0, 0].set_ylabel("gradient norm ||g||")
    axes[1, 0].set_ylabel("update / weight ||dW|| / ||W||")
    handles = [Line2D([], [], color="black", linestyle="--", linewidth=1),
               Line2D([], [], color="grey", linestyle=":", linewidth=1)]
    labels = ["update ratio 1e-3: the rule of thumb (within a decade of it: healthy)",
              "a new epoch begins"]
    if diagnostics.get("mode") == "sequence":
        handles.append(Line2D([], [], linestyle="none"))
        labels.append("biases and LayerNorm shifts start at 0: their first updates are all of "
                      "their weight (ratio ~1)")
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, frameon=False,
               ncols=2 if len(groups) > 2 else 1)
    return _save(fig, path)


def attention_diagnostics(diagnostics, path=None) -> Figure:
    """Per layer and head, per epoch: the read-out query's attention entropy and, in
    faithful mode, its attention mass on padding, on a fixed batch of validation examples.

    Both axes start at 0. The entropy is drawn under its ceiling, the entropy of a read-out
    that spreads evenly over its keys (``log T`` for ``T`` keys, averaged over the batch:
    the file's ``uniform_entropy``, when it has one), so a drop reads as a share of it.

    Parameters
    ----------
    diagnostics, path
        As in :func:`step_loss`.

    Returns
    -------
    matplotlib.figure.Figure
        One axes (entropy, nats), two in faithful mode (and the mass on padding).
    """
    records = [r for r in _check_diagnostics(diagnostics, "attention_diagnostics")["epochs"]
               if r.get("attention_entropy") is not None]
    if not records:
        raise ValueError("attention_diagnostics: no epoch with attention statistics yet")
    padding = all(r.get("padding_mass") is not None for r in records)
    fig = Figure(figsize=(5.0 * (1 + padding), 3.4), layout="constrained")
    axes = fig.subplots(1, 1 + padding, squeeze=False)[0]
    epochs = [r["epoch"] for r in records]
    panels = [("attention_entropy", "read-out attention entropy", "entropy (nats)")]
    if padding:
        panels.append(("padding_mass", "read-out attention on padding", "weight on id 0"))
    for ax, (key, title, ylabel) in zip(axes, panels):
        values = np.array([r[key] for r in records], dtype=np.float64)  # (epochs, L, H)
        for l in range(values.shape[1]):
            for h in range(values.shape[2]):
                ax.plot(epochs, values[:, l, h], marker="o", label=f"layer {l}, head {h}")
        top = float(np.nanmax(values))
        uniform = diagnostics.get("uniform_entropy")
        if key == "attention_entropy" and uniform is not None:
            ax.axhline(uniform, color="black", linestyle="--", linewidth=1,
                       label=f"uniform over the keys: mean log T = {uniform:.2f}")
            top = max(top, uniform)
        ax.set_ylim(0.0, 1.0 if key == "padding_mass" else 1.1 * top or 1.0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def metric_bars(rows, metrics=("HR@20", "MRR@20"), errors=None, title=None, path=None) -> Figure:
    """Grouped bars comparing methods, with optional confidence intervals.

    Parameters
    ----------
    rows : dict[str, dict[str, float]]
        ``method -> {metric: value}`` in percent (e.g. :func:`srsan_np.evaluate.evaluate`
        results).
    metrics : sequence of str
        One group of bars per metric, one bar per method within it.
    errors : dict[str, dict[str, (float, float)]] or None
        ``method -> {metric: (low, high)}``, e.g. :func:`srsan_np.evaluate.bootstrap_ci`;
        drawn as error bars. Methods missing from ``errors`` get none.
    title : str or None
    path : str or Path or None
        Where to save the figure.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with ``len(rows) * len(metrics)`` bars.
    """
    if not rows:
        raise ValueError("metric_bars: rows is empty (no method to plot)")
    methods = list(rows)
    for method in methods:
        missing = [m for m in metrics if m not in rows[method]]
        if missing:
            raise ValueError(f"metric_bars: method {method!r} has no {missing}; "
                             f"available: {list(rows[method])}")
    errors = errors or {}
    width = 0.8 / len(methods)
    centres = np.arange(len(metrics))
    fig = Figure(figsize=(max(4.0, 0.5 * len(metrics) * len(methods)) + 2.0, 3.6),
                 layout="constrained")
    ax = fig.subplots()
    for i, method in enumerate(methods):
        values = np.array([rows[method][m] for m in metrics], dtype=np.float64)
        yerr = None
        if method in errors:
            bounds = np.array([errors[method][m] for m in metrics], dtype=np.float64)  # (M, 2)
            if bounds.shape != (len(metrics), 2):
                raise ValueError(f"metric_bars: errors[{method!r}] must map each metric to "
                                 f"(low, high), got {bounds.tolist()}")
            # A percentile interval need not contain the point estimate; clip at 0 so
            # matplotlib gets non-negative lengths.
            yerr = np.maximum(0.0, np.stack([values - bounds[:, 0], bounds[:, 1] - values]))
        bars = ax.bar(centres + (i - (len(methods) - 1) / 2) * width, values, width,
                      yerr=yerr, capsize=3, label=method)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(centres, list(metrics))
    ax.set_ylabel("percent")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if title is not None:
        ax.set_title(title)
    return _save(fig, path)


def _named_series(data, where: str) -> dict:
    """A mapping ``label -> 1-D int array``; a bare array becomes one unlabelled series."""
    if not isinstance(data, Mapping):
        data = {"": data}
    out = {}
    for label, values in data.items():
        values = np.asarray(values)
        if values.ndim != 1 or values.size == 0 or values.dtype.kind not in "iu":
            raise ValueError(f"{where}: {label or 'the data'} must be a non-empty 1-D integer "
                             f"array, got {values.dtype} {values.shape}")
        out[label] = values
    return out


def _finish_series_plot(fig, ax, series, title, path) -> Figure:
    """Legend (unless there is one unlabelled series), title, save: the data plots' ending."""
    if len(series) > 1 or next(iter(series)):
        ax.legend()
    if title is not None:
        ax.set_title(title)
    return _save(fig, path)


def session_length_histogram(lengths, title=None, path=None) -> Figure:
    """Histogram of lengths (sessions or prefixes), one bar per integer, log count axis.

    Parameters
    ----------
    lengths : 1-D int array, or dict[str, 1-D int array]
        E.g. ``{"train": dataset.train.lengths(), "test": dataset.test.lengths()}``.
        Several series are drawn as overlaid step outlines.
    title : str or None
    path : str or Path or None

    Returns
    -------
    matplotlib.figure.Figure
        One axes.
    """
    series = _named_series(lengths, "session_length_histogram")
    top = max(int(v.max()) for v in series.values())
    bins = np.arange(0.5, top + 1.5)  # one bin per integer length
    fig = Figure(figsize=(5.5, 3.4), layout="constrained")
    ax = fig.subplots()
    for label, values in series.items():
        ax.hist(values, bins=bins, histtype="step", linewidth=1.5, label=label or None)
    ax.set_yscale("log")
    ax.set_xlabel("length (clicks)")
    ax.set_ylabel("count")
    return _finish_series_plot(fig, ax, series, title, path)


def popularity_rank_frequency(items, title=None, path=None) -> Figure:
    """Item popularity: click count against popularity rank, log-log.

    A straight line on these axes is a power law (Zipf); click logs are close to one,
    which is why popularity alone is a strong baseline for the head and useless for the
    tail.

    Parameters
    ----------
    items : 1-D int array of item ids (every click), or dict[str, 1-D int array]
        E.g. ``{"train": dataset.train.items, "test": dataset.test.items}``.
    title : str or None
    path : str or Path or None

    Returns
    -------
    matplotlib.figure.Figure
        One axes.
    """
    series = _named_series(items, "popularity_rank_frequency")
    fig = Figure(figsize=(5.5, 3.4), layout="constrained")
    ax = fig.subplots()
    for label, values in series.items():
        if values.min() < 0:
            raise ValueError(f"popularity_rank_frequency: {label or 'items'} has negative ids")
        counts = np.bincount(values)
        counts = np.sort(counts[counts > 0])[::-1]  # most popular first
        ax.loglog(np.arange(1, len(counts) + 1), counts, marker=".", linestyle="none",
                  markersize=3, label=label or None)
    ax.set_xlabel("popularity rank")
    ax.set_ylabel("clicks")
    return _finish_series_plot(fig, ax, series, title, path)
