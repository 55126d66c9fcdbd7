"""The ``srsan-np`` command line.

Each subcommand is an ``_add_<name>(subparsers)`` function that declares its arguments and
sets ``func`` to the function that runs it, so a new subcommand is one more such pair.
Bad input (a malformed file, a missing dataset) ends with one line on stderr naming the
file and line, and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from srsan_np.data.store import DataError

EXIT_BAD_INPUT = 2


# --------------------------------------------------------------------------- generate

def _run_generate(args) -> int:
    from srsan_np.data.generate import write_preset
    write_preset(args.preset, args.out, args.seed)
    print(f"wrote {args.out} (preset {args.preset}, seed {args.seed})")
    return 0


def _add_generate(sub) -> None:
    from srsan_np.data.generate import PRESETS
    p = sub.add_parser("generate", help="write a generated Diginetica-format click log",
                       description="Write a deterministic, generated click log in Diginetica's CSV format.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="sample")
    p.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_generate)


# --------------------------------------------------------------------------- preprocess

def _run_preprocess(args) -> int:
    from srsan_np.data.pickles import write_pickle_files
    from srsan_np.data.preprocess import preprocess
    from srsan_np.data.readers import READERS
    from srsan_np.data.store import atomic_directory, write_dataset_files

    if args.fraction is not None and args.dataset != "yoochoose":
        raise DataError("--fraction applies to --dataset yoochoose only")
    prepared = preprocess(READERS[args.dataset](args.input), args.dataset, args.fraction)
    with atomic_directory(args.out) as tmp:
        write_dataset_files(prepared.dataset, tmp)
        if args.export_pickles:
            (tmp / "pickles").mkdir()
            write_pickle_files(prepared.dataset, tmp / "pickles", prepared.train_sessions)
    _print_stats(prepared.dataset.stats)
    print(f"wrote {args.out}")
    return 0


def _add_preprocess(sub) -> None:
    p = sub.add_parser("preprocess", help="prepare a raw click log exactly as SR-GNN did",
                       description="Read a raw click log, apply SR-GNN's preprocessing, and write "
                                   "train.npz, test.npz and stats.json into a new directory.")
    p.add_argument("--dataset", choices=["diginetica", "yoochoose"], required=True,
                   help="the log's format (the SR-GNN sample file is diginetica)")
    p.add_argument("--input", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="the dataset directory to write")
    p.add_argument("--fraction", type=int, choices=[4, 64],
                   help="yoochoose: keep the most recent 1/4 or 1/64 of the training examples")
    p.add_argument("--export-pickles", action="store_true",
                   help="also write the original code's train.txt, test.txt, all_train_seq.txt into OUT/pickles")
    p.set_defaults(func=_run_preprocess)


# --------------------------------------------------------------------------- stats

def _print_stats(stats: dict) -> None:
    width = max(map(len, stats))
    for key in sorted(stats):
        value = stats[key]
        print(f"{key:<{width}}  {value:.3f}" if isinstance(value, float) else f"{key:<{width}}  {value}")


def _run_stats(args) -> int:
    from srsan_np.data.store import load_dataset
    dataset = load_dataset(args.directory)
    stats = dict(dataset.stats, n_items=dataset.n_items, n_train=len(dataset.train), n_test=len(dataset.test),
                 mean_prefix_length_train=float(dataset.train.lengths().mean()) if len(dataset.train) else 0.0)
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
    else:
        _print_stats(stats)
    return 0


def _add_stats(sub) -> None:
    p = sub.add_parser("stats", help="print the statistics of a prepared dataset directory")
    p.add_argument("directory", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run_stats)


# --------------------------------------------------------------------------- data for training

def _add_data_args(p) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, metavar="DIR",
                     help="a prepared dataset directory (see: srsan-np preprocess)")
    src.add_argument("--input", type=Path, metavar="RAW_FILE",
                     help="a raw click log, prepared on the fly (default: the built-in generated sample)")
    p.add_argument("--dataset", choices=["diginetica", "yoochoose"], default="diginetica",
                   help="the format of --input (default: diginetica)")
    p.add_argument("--sample-seed", type=int,
                   help="seed of the built-in generated sample (default: 0)")


def _load_data(args):
    """The dataset the arguments name, and a JSON description of where it came from."""
    from srsan_np.data import load_dataset, sample_dataset
    from srsan_np.data.readers import READERS

    if args.data is not None:
        return load_dataset(args.data), {"data": str(args.data.resolve())}
    if args.input is not None:
        from srsan_np.data.preprocess import preprocess
        dataset = preprocess(READERS[args.dataset](args.input), args.dataset).dataset
        return dataset, {"input": str(args.input.resolve()), "dataset": args.dataset}
    seed = args.sample_seed or 0
    return sample_dataset(seed), {"sample_seed": seed}


def _reload_data(source):
    """The dataset a run was trained on, from the description :func:`_load_data` gave."""
    return _load_data(argparse.Namespace(
        data=Path(source["data"]) if "data" in source else None,
        input=Path(source["input"]) if "input" in source else None,
        dataset=source.get("dataset", "diginetica"), sample_seed=source.get("sample_seed", 0)))[0]


def _baseline_rows(dataset, ks):
    from srsan_np.baselines import fit_baselines
    from srsan_np.evaluate import evaluate
    return {name: evaluate(base.score_fn(dataset.test), dataset.test, ks=ks)
            for name, base in fit_baselines(dataset.train, dataset.n_items).items()}


def _model_rows(params, config, dataset, ks, n_boot, kernels="fast"):
    """The model's test metrics, and a line on their bootstrap uncertainty."""
    from srsan_np.evaluate import bootstrap_ci, evaluate_ranks, metrics_from_ranks
    from srsan_np.train import model_scorer
    ranks = evaluate_ranks(model_scorer(params, config, dataset.test, kernels), dataset.test)
    metrics = metrics_from_ranks(ranks, ks)
    if not n_boot:
        return metrics, ""
    k = max(ks)
    ci = bootstrap_ci(ranks, ks, n_boot=n_boot)
    note = (f"{len(ranks)} test examples; 95% bootstrap interval of HR@{k}: "
            f"{ci[f'HR@{k}'][0]:.2f} .. {ci[f'HR@{k}'][1]:.2f}, of MRR@{k}: "
            f"{ci[f'MRR@{k}'][0]:.2f} .. {ci[f'MRR@{k}'][1]:.2f}")
    return metrics, note


# --------------------------------------------------------------------------- train

def _config_path(args):
    """``--config`` as a file or a preset name; with no data and no config: the sample preset.

    The preset ``sample`` (``srsan_np/configs/sample.json``) is the documented configuration
    for the built-in sample; any other data starts from the original's defaults. A file
    named like a preset wins over the preset.
    """
    from srsan_np.train import preset_path

    if args.config is None:
        return preset_path("sample") if args.data is None and args.input is None else None
    if args.config.exists():
        return args.config
    try:
        return preset_path(str(args.config))
    except ValueError as err:
        raise DataError(f"{args.config}: no such config file, and {err}") from err


def _learner_kernels(directory):
    """The kernel set of a learner's workspace, after saying which op comes from where."""
    from srsan_np.exercises import learner_kernels
    if not directory.is_dir():
        raise DataError(f"--ops {directory}: no such workspace (start one: srsan-np exercises init {directory})")
    kernels, origin = learner_kernels(directory)
    print(f"ops: the exercises that pass their check in {directory} are yours, the reference serves the rest")
    for name, where in origin.items():
        print(f"  {name:<10} {where}")
    return kernels


def _run_train(args) -> int:
    import dataclasses
    from srsan_np.checkpoint import write_json
    from srsan_np.evaluate import format_table
    from srsan_np.model import Config
    from srsan_np.train import TrainConfig, fit

    config_path = _config_path(args)
    try:
        file_config = json.loads(config_path.read_text()) if config_path else {}
    except json.JSONDecodeError as err:
        raise DataError(f"{config_path}: not valid JSON ({err})") from err
    unknown = sorted(set(file_config) - {"model", "train"})
    if unknown:
        raise DataError(f"{config_path}: unknown sections {unknown} (expected 'model', 'train')")
    flags = vars(args)
    model_fields = {f.name for f in dataclasses.fields(Config)} - {"n_items"}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model_kw = {**file_config.get("model", {}),
                **{k: flags[k] for k in model_fields if flags.get(k) is not None}}
    train_kw = {**file_config.get("train", {}),
                **{k: flags[k] for k in train_fields if flags.get(k) is not None}}

    dataset, source = _load_data(args)
    model_kw["n_items"] = max(dataset.n_items, model_kw.get("n_items", 0), args.n_items or 0)
    try:
        model_config, train_config = Config(**model_kw), TrainConfig(**train_kw)
    except (TypeError, ValueError) as err:
        raise DataError(f"{config_path or 'flags'}: {err}") from err
    out = args.out or Path("runs") / f"{'sample' if 'sample_seed' in source else 'run'}-{model_config.mode}"
    print(f"data: {source}  items {dataset.n_items}  train {len(dataset.train)}  test {len(dataset.test)}")
    print(f"config: {config_path or 'the original defaults'}, flags on top")
    print(f"run directory: {out}")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "data.json", source)
    if dataset.raw_ids is not None:  # so that `recommend --raw` can speak the log's ids
        import numpy as np
        from srsan_np.data.store import atomic_write_stream
        with atomic_write_stream(out / "raw_ids.npy") as f:
            np.save(f, dataset.raw_ids)
    kernels = _learner_kernels(args.ops) if args.ops else None
    summary = fit(dataset, model_config, train_config, out, resume=args.resume, kernels=kernels)

    ks = train_config.ks
    rows = {}
    rows["SR-SAN"], note = _model_rows(summary["params"], model_config, dataset, ks, args.bootstrap,
                                       kernels or train_config.kernels)
    rows["SR-SAN, best epoch on test*"] = summary["best_on_test"]
    if not args.no_baselines:
        rows.update(_baseline_rows(dataset, ks))
    chosen_lr = f", lr {summary['selected_lr']:g}" if "selected_lr" in summary else ""
    print(f"\ntest metrics (SR-SAN at epoch {summary['selected_epoch']}{chosen_lr}, selected by "
          f"{summary['selected_by']}):")
    print(format_table(rows))
    print("* the original code's figure: each metric's best epoch, chosen on the test set itself")
    if note:
        print(note)
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train SR-SAN (default: on the built-in sample)",
                       description="Train SR-SAN. With no arguments: the built-in generated sample "
                                   "with the 'sample' preset, then the test metrics next to the "
                                   "baselines. Presets: 'sample' (sequence mode, tuned on the "
                                   "sample's validation split), 'original' (faithful mode, the "
                                   "original's protocol: no validation split). Other data "
                                   "without --config: the original's defaults with a validation "
                                   "split. Flags override --config.")
    _add_data_args(p)
    p.add_argument("--config", type=Path,
                   help='a JSON file {"model": {...}, "train": {...}} or a preset name '
                        '(sample: the default on the built-in sample)')
    p.add_argument("--out", type=Path, help="the run directory (default: runs/<data>-<mode>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    m = p.add_argument_group("model")
    m.add_argument("--mode", choices=["faithful", "sequence"])
    m.add_argument("--hidden", type=int)
    m.add_argument("--heads", type=int)
    m.add_argument("--layers", type=int)
    m.add_argument("--dropout", type=float)
    m.add_argument("--positions", action="store_true", default=None,
                   help="learned position embeddings (sequence mode)")
    m.add_argument("--n-items", type=int,
                   help="score against this many items, at least the data's (the original's "
                        "hard-coded n_node 37,484 means --n-items 37483)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float, nargs="+",
                   help="learning rate; several: one run each, the best on validation is kept")
    t.add_argument("--l2", type=float)
    t.add_argument("--lr-dc", type=float)
    t.add_argument("--lr-dc-step", type=int)
    t.add_argument("--patience", type=int)
    t.add_argument("--valid-fraction", type=float)
    t.add_argument("--select", help="the validation metric that selects the epoch, e.g. HR@20")
    t.add_argument("--seed", type=int)
    t.add_argument("--kernels", choices=["fast", "reference"],
                   help="the kernel set: fast (default) or the textbook ops (slower, same gradients)")
    t.add_argument("--ops", type=Path, metavar="DIR",
                   help="train with your own ops: every exercise of the workspace DIR that passes "
                        "its check (srsan-np exercises), the textbook ops for the rest")
    p.add_argument("--no-baselines", action="store_true", help="do not print the baselines")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the test uncertainty (0: none; default 1000)")
    p.set_defaults(func=_run_train)


# --------------------------------------------------------------------------- evaluate

def _run_evaluate(args) -> int:
    from srsan_np.evaluate import format_table
    from srsan_np.train import load_run

    params, config, meta = load_run(args.run_dir, args.which)
    own_data = args.data or args.input or args.sample_seed is not None
    dataset = _load_data(args)[0] if own_data else \
        _reload_data(json.loads((args.run_dir / "data.json").read_text()))
    ks = tuple(meta["config"]["train"]["ks"])
    rows = {}
    rows["SR-SAN"], note = _model_rows(params, config, dataset, ks, args.bootstrap, args.kernels)
    if args.baselines:
        rows.update(_baseline_rows(dataset, ks))
    epoch = meta["best"]["epoch"] if args.which == "best" else meta["epoch"]
    print(f"{args.run_dir} ({args.which} checkpoint, epoch {epoch}):")
    print(format_table(rows))
    if note:
        print(note)
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="test metrics of a trained run",
                       description="HR@K, MRR@K, NDCG@K over the full catalogue (ties ranked "
                                   "pessimistically), with bootstrap intervals.")
    p.add_argument("run_dir", type=Path)
    _add_data_args(p)
    p.add_argument("--which", choices=["best", "last"], default="best")
    p.add_argument("--baselines", action="store_true", help="also evaluate the baselines")
    p.add_argument("--kernels", choices=["fast", "reference"], default="fast",
                   help="the kernel set that scores: fast (default) or the textbook ops")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the uncertainty (0: none; default 1000)")
    p.set_defaults(func=_run_evaluate)


# --------------------------------------------------------------------------- recommend

def _run_recommend(args) -> int:
    from srsan_np.recommend import Recommender
    rec = Recommender.from_run(args.run_dir, args.which)
    try:
        items, scores = rec.recommend(args.items, args.k, drop_unknown=args.drop_unknown,
                                      raw=args.raw)
    except ValueError as err:
        raise DataError(str(err)) from err
    for rank, (item, score) in enumerate(zip(items, scores), 1):
        print(f"{rank:3d}  item {item:>7d}  score {score: .4f}")
    return 0


def _add_recommend(sub) -> None:
    p = sub.add_parser("recommend", help="the top K next items of a session",
                       description="Recommend the next items after the session ITEM ITEM ... "
                                   "(item ids as numbered by the preprocessing, oldest first).")
    p.add_argument("run_dir", type=Path)
    p.add_argument("items", type=int, nargs="+", metavar="ITEM")
    p.add_argument("-k", type=int, default=20)
    p.add_argument("--which", choices=["best", "last"], default="best")
    p.add_argument("--drop-unknown", action="store_true", help="ignore item ids the model does not know")
    p.add_argument("--raw", action="store_true",
                   help="the ITEMs, and the recommendations, are the raw log's item ids")
    p.set_defaults(func=_run_recommend)


# --------------------------------------------------------------------------- baselines

def _run_baselines(args) -> int:
    from srsan_np.evaluate import format_table
    dataset, source = _load_data(args)
    print(f"data: {source}  items {dataset.n_items}  train {len(dataset.train)}  test {len(dataset.test)}")
    print(format_table(_baseline_rows(dataset, (5, 10, 20))))
    return 0


def _add_baselines(sub) -> None:
    p = sub.add_parser("baselines", help="evaluate the classic baselines",
                       description="Popularity, session popularity, first-order Markov and "
                                   "session-kNN, on the same evaluation code as the model.")
    _add_data_args(p)
    p.set_defaults(func=_run_baselines)


# --------------------------------------------------------------------------- exercises

def _run_exercises(args) -> int:
    from srsan_np import exercises
    from srsan_np.exercises.workspace import EXERCISES

    unknown = [n for n in args.names if n not in EXERCISES]
    if unknown:
        raise DataError(f"no exercise {', '.join(unknown)}; the exercises are {', '.join(EXERCISES)}")
    if args.action == "init":
        written = exercises.init(args.directory, args.names or None)
        print(f"wrote {len(written)} files into {args.directory}; next: srsan-np exercises "
              f"check {args.directory} layernorm")
        return 0
    if not args.directory.is_dir():
        raise DataError(f"{args.directory}: no such workspace (start one: srsan-np exercises "
                        f"init {args.directory})")
    result = exercises.check(args.directory, args.names)
    print(result)
    return 0 if result.passed else 1


def _add_exercises(sub) -> None:
    from srsan_np.exercises.workspace import EXERCISES
    p = sub.add_parser("exercises", help="write the ops yourself: a workspace of stubs, and their checker",
                       description="init DIR writes one stub per textbook op into DIR (never over "
                                   "your work); check DIR [NAME ...] checks them (finite differences "
                                   "and the reference op) and says how a wrong output is wrong. "
                                   "Exit status of check: 0 if every named exercise passes, else 1. "
                                   f"Exercises: {', '.join(EXERCISES)}.")
    p.add_argument("action", choices=["init", "check"])
    p.add_argument("directory", type=Path, metavar="DIR")
    p.add_argument("names", nargs="*", metavar="NAME", help="exercises (default: all)")
    p.set_defaults(func=_run_exercises)


# --------------------------------------------------------------------------- main

SUBCOMMANDS = [_add_generate, _add_preprocess, _add_stats, _add_train, _add_evaluate,
               _add_recommend, _add_baselines, _add_exercises]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srsan-np", description="SR-SAN from scratch in NumPy and Numba.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, OSError) as e:
        print(f"srsan-np {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
