"""The figures of a training run, finished or still training: what ``srsan-np plot`` draws.

:func:`run_figures` reads a :class:`srsan_np.run.Run` and returns, per file name, the
function that draws that figure (:mod:`srsan_np.plots`) into a path; what the run has not
written yet is left out.
"""

from __future__ import annotations

import sys

import numpy as np

from srsan_np import plots
from srsan_np.errors import DataError

__all__ = ["run_figures", "attention_figures", "N_ATTENTION_MAPS"]

N_ATTENTION_MAPS = 3


def run_figures(run):
    """``{file name: draw(path)}`` for the run ``run`` (one learning rate's run)."""
    history, selected = run.history()
    diagnostics = run.diagnostics()
    configs = run.configs()
    k = configs["train"]["select"].partition("@")[2] if configs else "20"
    figures = {}
    if history:
        metrics = [m for m in (f"HR@{k}", f"MRR@{k}") if m in history[0]["test"]]
        metrics = metrics or list(history[0]["test"])[:2]  # a select the metrics do not have
        figures["curves.png"] = lambda path: plots.training_curves(
            history, metrics, selected, path)
    if diagnostics is not None and diagnostics["steps"]["loss"]:
        figures["loss_per_step.png"] = lambda path: plots.step_loss(diagnostics, path)
        figures["gradients.png"] = lambda path: plots.gradient_diagnostics(diagnostics, path)
    if diagnostics is not None and any(r["attention_entropy"] for r in diagnostics["epochs"]):
        figures["attention_statistics.png"] = lambda path: plots.attention_diagnostics(
            diagnostics, path)
    if history:
        try:
            params, config, _ = run.load_model("best")
            dataset = run.load_data()
        except (DataError, OSError) as err:
            print(f"no attention maps: {err}", file=sys.stderr)
        else:
            figures.update(attention_figures(params, config, dataset.test))
    return figures


def attention_figures(params, config, sessions):
    """``{file name: draw(path)}``: attention maps, in the model's mode, of a few of
    ``sessions`` (prefixes of a few clicks, the first ones)."""
    from srsan_np import model
    from srsan_np.data import make_batch

    lengths = sessions.lengths()
    chosen = np.flatnonzero((lengths >= 4) & (lengths <= 8))[:N_ATTENTION_MAPS]
    if len(chosen) == 0:
        chosen = np.argsort(-lengths, kind="stable")[:N_ATTENTION_MAPS]
    len_max = int(lengths.max())  # faithful: as evaluation pads the test prefixes

    def draw(index):
        def to(path):
            batch = make_batch(sessions, [index], config.mode, len_max)
            maps = model.attention_maps(params, batch, config)
            return plots.attention_layers(
                [m[0] for m in maps], batch.inputs[0], readout=int(batch.last[0]), path=path,
                title=f"test example {index} ({config.mode} mode), next click {batch.targets[0]}")
        return to

    return {f"attention_test_{j}.png": draw(int(i)) for j, i in enumerate(chosen)}
