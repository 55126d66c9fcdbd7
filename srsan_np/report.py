"""The results a person reads: a model's test metrics with their uncertainty, and the
classic baselines' on the same test set, as rows of one table."""

from __future__ import annotations

from srsan_np.evaluate import bootstrap_ci, evaluate, evaluate_ranks, metrics_from_ranks

__all__ = ["model_row", "baseline_rows"]


def model_row(params, config, sessions, ks, n_boot, kernels="fast"):
    """``(metrics, note)``: the model's metrics on ``sessions`` and a line on their bootstrap
    uncertainty at the largest cut-off (empty with ``n_boot`` 0)."""
    from srsan_np.train import model_scorer

    ranks = evaluate_ranks(model_scorer(params, config, sessions, kernels), sessions)
    metrics = metrics_from_ranks(ranks, ks)
    if not n_boot:
        return metrics, ""
    k = max(ks)
    ci = bootstrap_ci(ranks, ks, n_boot=n_boot)
    return metrics, (f"{len(ranks)} test examples; 95% bootstrap interval of HR@{k}: "
                     f"{ci[f'HR@{k}'][0]:.2f} .. {ci[f'HR@{k}'][1]:.2f}, of MRR@{k}: "
                     f"{ci[f'MRR@{k}'][0]:.2f} .. {ci[f'MRR@{k}'][1]:.2f}")


def baseline_rows(dataset, ks):
    """``{name: metrics}`` of POP, S-POP, Markov and SKNN fitted on the training examples."""
    from srsan_np.baselines import fit_baselines

    return {name: evaluate(base.score_fn(dataset.test), dataset.test, ks=ks)
            for name, base in fit_baselines(dataset.train, dataset.n_items).items()}
