"""The results a person reads: a model's test metrics with their uncertainty, beside the
original's best-epoch-on-test figure and the classic baselines', as one table."""

from __future__ import annotations

from srsan_np.evaluate import (bootstrap_ci, evaluate, evaluate_ranks, format_table,
                               metrics_from_ranks)

__all__ = ["results_table", "baseline_rows", "LEGEND"]

LEGEND = """\
How to read it. Each figure is a percentage over the test examples; every item of the
catalogue is scored, and a next click tied with other items ranks below all of them.
  HR@K    how often the next click is among the top K
  MRR@K   the mean of 1 / (its rank), 0 beyond K: how high it ranks
  NDCG@K  the mean of 1 / log2(1 + its rank), 0 beyond K: between the two
Baselines: POP the most clicked items of training; S-POP the session's own items by how
often it clicked them, then POP; Markov the items that followed the session's last click
in training; SKNN the items of the training sessions most like this one."""


def results_table(params, config, dataset, ks, n_boot=1000, kernels="fast", best_on_test=None,
                  baselines=True):
    """The table of test metrics, as text: SR-SAN (``params``), the original's figure
    ``best_on_test`` if given, the baselines if asked; then a line on the bootstrap
    uncertainty at the largest cut-off (none with ``n_boot`` 0) and :data:`LEGEND`."""
    from srsan_np.train import model_scorer

    ranks = evaluate_ranks(model_scorer(params, config, dataset.test, kernels), dataset.test)
    rows = {"SR-SAN": metrics_from_ranks(ranks, ks)}
    lines = []
    if best_on_test is not None:
        rows["SR-SAN, best epoch on test*"] = best_on_test
        lines.append("* the original code's figure: each metric's best epoch, chosen on the "
                     "test set itself (optimistic; what published numbers compare with)")
    if baselines:
        rows.update(baseline_rows(dataset, ks))
    if n_boot:
        k = max(ks)
        ci = bootstrap_ci(ranks, ks, n_boot=n_boot)
        lines.append(f"{len(ranks)} test examples; 95% bootstrap interval of HR@{k}: "
                     f"{ci[f'HR@{k}'][0]:.2f} .. {ci[f'HR@{k}'][1]:.2f}, of MRR@{k}: "
                     f"{ci[f'MRR@{k}'][0]:.2f} .. {ci[f'MRR@{k}'][1]:.2f}")
    return "\n".join([format_table(rows), *lines, "", LEGEND])


def baseline_rows(dataset, ks):
    """``{name: metrics}`` of POP, S-POP, Markov and SKNN fitted on the training examples."""
    from srsan_np.baselines import fit_baselines

    return {name: evaluate(base.score_fn(dataset.test), dataset.test, ks=ks)
            for name, base in fit_baselines(dataset.train, dataset.n_items).items()}
