"""The figures of a training run, finished or still training: what ``srsan-np plot`` draws.

:func:`run_figures` reads a :class:`srsan_np.run.Run` and returns, per file name, the
function that draws that figure (:mod:`srsan_np.plots`, :mod:`srsan_np.readout`) into a
path; what the run has not written yet is left out.
"""

from __future__ import annotations

import sys

from srsan_np import plots
from srsan_np.errors import DataError

__all__ = ["run_figures"]


def run_figures(top):
    """``{file name: draw(path)}`` for the run ``top``; with one run per learning rate, the
    curves of every rate (from its metrics, :meth:`srsan_np.run.Run.metrics`) and the rest of the chosen rate's run
    (:meth:`srsan_np.run.Run.plotted`)."""
    run = top.plotted()
    history, selected = run.history()
    diagnostics = run.diagnostics()
    configs = run.configs()
    k = configs["train"]["select"].partition("@")[2] if configs else "20"
    figures = {}
    if history:
        metrics = [m for m in (f"HR@{k}", f"MRR@{k}") if m in history[0]["test"]]
        metrics = metrics or list(history[0]["test"])[:2]  # a select the metrics do not have
        runs = {f"lr {rate}": records for rate, records in (top.metrics() or {}).items()}
        chosen = f"lr {configs['train']['lr']:g}" if configs and len(runs) > 1 else None
        if chosen not in runs:  # one rate, or no metrics (a run from before them)
            runs, chosen = {"": history}, None
        figures["curves.png"] = lambda path: plots.training_curves(
            runs, metrics, selected, path, selected=chosen)
    if diagnostics is not None and diagnostics["steps"]["loss"]:
        figures["loss_per_step.png"] = lambda path: plots.step_loss(diagnostics, path)
        figures["gradients.png"] = lambda path: plots.gradient_diagnostics(diagnostics, path)
    if diagnostics is not None and any(r["attention_entropy"] for r in diagnostics["epochs"]):
        figures["attention_statistics.png"] = lambda path: plots.attention_diagnostics(
            diagnostics, path)
    if history:
        from srsan_np.readout import example_figures
        try:
            params, config, _ = run.load_model("best")
            dataset = run.load_data()
        except (DataError, OSError) as err:
            print(f"no attention maps: {err}", file=sys.stderr)
        else:
            figures.update(example_figures(params, config, dataset.test))
    return figures
