"""SR-SAN (validation-selected) against the baselines, on the built-in and the real sample.

Trains with a preset (default: ``sample``, the configuration of ``srsan-np train``) over
several seeds, reports the test metrics at the validation-selected epoch as mean +- sd
over seeds, next to every baseline on the same test set, with the 95% bootstrap interval
of the baselines' HR@20 (how much a test set of this size can tell apart).

    python benchmarks/compare_baselines.py [--preset sample] [--seeds 3] [--real-seeds 10]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from srsan_np import model
from srsan_np.baselines import fit_baselines
from srsan_np.data import sample_dataset
from srsan_np.data.preprocess import preprocess
from srsan_np.data.readers import read_diginetica
from srsan_np.evaluate import bootstrap_ci, evaluate_ranks, format_table, metrics_from_ranks
from srsan_np.settings import load_preset
from srsan_np.train import TrainConfig, fit

SHARED_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "sample_train-item-views.csv"
SHOWN = ("HR@20", "MRR@20", "NDCG@20")


def compare(dataset, preset, seeds):
    """Rows for format_table: SR-SAN as 'mean +- sd' strings, baselines with intervals."""
    runs = []
    for seed in range(seeds):
        config = model.Config(n_items=dataset.n_items, **preset.get("model", {}))
        train = TrainConfig(**{**preset.get("train", {}), "seed": seed})
        summary = fit(dataset, config, train, log=lambda line: None)
        runs.append(summary["test_at_selected"])
        lr = (f", lr {summary['selected_lr']:g} (validation HR@20 by rate "
              f"{ {k: round(v, 2) for k, v in summary['valid_by_lr'].items()} })"
              if "selected_lr" in summary else "")
        print(f"  seed {seed}: epoch {summary['selected_epoch']}{lr}, "
              + ", ".join(f"{m} {summary['test_at_selected'][m]:.2f}" for m in SHOWN), flush=True)
    table = {f"SR-SAN ({seeds} seeds, mean)": {m: float(np.mean([r[m] for r in runs])) for m in SHOWN},
             "SR-SAN (sd over seeds)": {m: float(np.std([r[m] for r in runs], ddof=1))
                                        if seeds > 1 else 0.0 for m in SHOWN}}
    intervals = {}
    for name, base in fit_baselines(dataset.train, dataset.n_items).items():
        ranks = evaluate_ranks(base.score_fn(dataset.test), dataset.test)
        metrics = metrics_from_ranks(ranks)
        table[name] = {m: metrics[m] for m in SHOWN}
        intervals[name] = bootstrap_ci(ranks)["HR@20"]
    return table, intervals


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sample")
    parser.add_argument("--seeds", type=int, default=3, help="seeds on the built-in sample")
    parser.add_argument("--real-seeds", type=int, default=10, help="seeds on the real sample file")
    parser.add_argument("--csv", type=Path, default=SHARED_CSV)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    preset = load_preset(args.preset)

    datasets = {"built-in sample": lambda: sample_dataset(0)}
    if args.csv.exists():
        datasets["real SR-GNN sample"] = lambda: preprocess(read_diginetica(args.csv),
                                                            "diginetica").dataset
    results = {}
    for name, load in datasets.items():
        dataset = load()
        seeds = args.seeds if name == "built-in sample" else args.real_seeds
        print(f"{name}: {dataset.n_items} items, {len(dataset.train)} train, "
              f"{len(dataset.test)} test examples; preset {args.preset!r}", flush=True)
        table, intervals = compare(dataset, preset, seeds)
        print(format_table(table))
        print("95% bootstrap interval of HR@20: " + ", ".join(
            f"{b} {lo:.1f}..{hi:.1f}" for b, (lo, hi) in intervals.items()) + "\n", flush=True)
        results[name] = {"table": table, "hr20_intervals": intervals}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
