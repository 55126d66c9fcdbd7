"""The ``srsan-np`` command line.

Each subcommand is an ``_add_<name>(subparsers)`` function that declares its arguments and
sets ``func`` to the function that runs it, so a new subcommand is one more such pair.

Every failure a user can cause -- a malformed file, a bad flag, a directory srsan-np will
not replace -- reaches them through :func:`main` as one line on stderr naming the file,
line, flag or directory, and exit status 2; Ctrl-C is 130 with how to resume; anything
else is a bug and keeps its traceback, labelled so (docs/cli.md, "Exit codes"). Nothing
here imports a Numba-compiled module before :func:`main` has found Numba a cache it can
write.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from srsan_np.errors import DataError, TrainingDiverged

EXIT_BAD_INPUT = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130
INT64_MAX = 2 ** 63 - 1


def _integer(low, high=INT64_MAX):
    """An argparse type: an integer in ``low..high``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not >= {low}" if value < low else
                                             f"{value} is beyond {high}")
        return value
    parse.__name__ = "integer"
    return parse


# --------------------------------------------------------------------------- generate

def _run_generate(args) -> int:
    from srsan_np.data.generate import write_preset
    from srsan_np.runs import check_file_target, remove_leftovers
    check_file_target(args.out, overwrite=args.overwrite)
    remove_leftovers(args.out.resolve().parent)
    write_preset(args.preset, args.out, args.seed)
    print(f"wrote {args.out} (preset {args.preset}, seed {args.seed})")
    return 0


def _add_generate(sub) -> None:
    from srsan_np.data.generate import PRESETS
    p = sub.add_parser("generate", help="write a generated Diginetica-format click log",
                       description="Write a deterministic, generated click log in Diginetica's CSV format.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="sample")
    p.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--seed", type=_integer(0), default=0)
    p.set_defaults(func=_run_generate)


# --------------------------------------------------------------------------- preprocess

def _run_preprocess(args) -> int:
    from srsan_np.data.pickles import write_pickle_files
    from srsan_np.data.preprocess import preprocess
    from srsan_np.data.readers import READERS
    from srsan_np.data.store import write_dataset_files
    from srsan_np.runs import atomic_directory, check_target, remove_leftovers

    if args.fraction is not None and args.dataset != "yoochoose":
        raise DataError("--fraction applies to --dataset yoochoose only")
    check_target(args.out, "dataset", [args.input], overwrite=args.overwrite)
    remove_leftovers(args.out.resolve().parent)
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
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it holds a dataset srsan-np prepared")
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
    p = sub.add_parser("stats", help="print the statistics of a prepared dataset directory "
                                     "(or of an SR-GNN folder of pickles)")
    p.add_argument("directory", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run_stats)


# --------------------------------------------------------------------------- data for training

def _add_data_args(p) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, metavar="DIR",
                     help="a prepared dataset directory (see: srsan-np preprocess), or an SR-GNN "
                          "folder: train.txt or all_train_seq.txt, and test.txt")
    src.add_argument("--input", type=Path, metavar="RAW_FILE",
                     help="a raw click log, prepared on the fly (default: the built-in generated sample)")
    p.add_argument("--dataset", choices=["diginetica", "yoochoose"], default="diginetica",
                   help="the format of --input (default: diginetica)")
    p.add_argument("--sample-seed", type=_integer(0),
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


def _run_data(run_dir):
    """The dataset a run was trained on, as its ``data.json`` says, checked against the
    fingerprint recorded there."""
    path = run_dir / "data.json"
    source = _read_json(path, f"is {run_dir} a training run directory?")
    types = {"data": str, "input": str, "dataset": str, "sample_seed": int, "fingerprint": str}
    if (not isinstance(source, dict) or not set(source) <= set(types)
            or not all(isinstance(v, types[k]) for k, v in source.items())
            or source.get("dataset", "diginetica") not in ("diginetica", "yoochoose")):
        raise DataError(f"{path}: not the description of a run's data (keys: {', '.join(types)})")
    dataset = _load_data(argparse.Namespace(
        data=Path(source["data"]) if "data" in source else None,
        input=Path(source["input"]) if "input" in source else None,
        dataset=source.get("dataset", "diginetica"), sample_seed=source.get("sample_seed", 0)))[0]
    _check_fingerprint(dataset, source, f"{path}: the data it names")
    return dataset


def _read_json(path, hint):
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing ({hint})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None


def _check_fingerprint(dataset, source, what):
    from srsan_np.data.store import fingerprint
    if "fingerprint" in source and fingerprint(dataset) != source["fingerprint"]:
        raise DataError(f"{what} is not the data the run was trained on (its fingerprint "
                        f"differs): the run's checkpoints do not apply to it")


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
    """``(kernels, origin)``: the kernel set of a learner's workspace and which op comes
    from where (also printed)."""
    from srsan_np.exercises import learner_kernels
    if not directory.is_dir():
        raise DataError(f"--ops {directory}: no such workspace (start one: srsan-np exercises init {directory})")
    kernels, origin = learner_kernels(directory)
    print(f"ops: the exercises that pass their check in {directory} are yours, the reference serves the rest")
    for name, where in origin.items():
        print(f"  {name:<10} {where}")
    return kernels, origin


def _read_config(config_path):
    """``{"model": {...}, "train": {...}}`` from ``config_path`` (None: both empty)."""
    if config_path is None:
        return {"model": {}, "train": {}}
    config = _read_json(config_path, "no such config file")
    if not isinstance(config, dict):
        raise DataError(f"{config_path}: expected a JSON object {{\"model\": {{...}}, \"train\": {{...}}}}")
    unknown = sorted(set(config) - {"model", "train"})
    if unknown:
        raise DataError(f"{config_path}: unknown sections {unknown} (expected 'model', 'train')")
    for section in ("model", "train"):
        if not isinstance(config.setdefault(section, {}), dict):
            raise DataError(f"{config_path}: section {section!r} must be a JSON object")
    return config


def _train_configs(args, config_path, dataset):
    """``(model.Config, TrainConfig)``: the file's values, then the flags on top.

    A bad value is blamed on what set it: the file, else the first flag whose value makes
    the configuration impossible.
    """
    import dataclasses
    from srsan_np.model import Config
    from srsan_np.train import TrainConfig

    file_config = _read_config(config_path)
    n_items = file_config["model"].get("n_items", 0)
    if isinstance(n_items, bool) or not isinstance(n_items, int):
        raise DataError(f"{config_path}: model.n_items must be an integer, got {n_items!r}")
    flags = vars(args)
    model_fields = {f.name for f in dataclasses.fields(Config)} - {"n_items"}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = [k for k in sorted(model_fields | train_fields) if flags.get(k) is not None]
    lengths = np.concatenate([dataset.train.lengths(), dataset.test.lengths()])

    def build(keys):
        model_kw = {**file_config["model"], **{k: flags[k] for k in keys if k in model_fields}}
        train_kw = {**file_config["train"], **{k: flags[k] for k in keys if k in train_fields}}
        model_kw["n_items"] = max(dataset.n_items, n_items, args.n_items or 0)
        model_config, train_config = Config(**model_kw), TrainConfig(**train_kw)
        if model_config.positions and lengths.max() > model_config.max_len:
            raise ValueError(f"max_len {model_config.max_len} is shorter than the longest "
                             f"session prefix in the data ({lengths.max()} clicks)")
        return model_config, train_config

    try:
        configs = build([])
    except (TypeError, ValueError) as err:
        raise DataError(f"{config_path or 'the default configuration'}: {err}") from None
    for n, key in enumerate(given):
        try:
            configs = build(given[:n + 1])
        except (TypeError, ValueError) as err:
            raise DataError(f"argument --{key.replace('_', '-')}: {err}") from None
    return configs


def _record_ops(out, args, origin):
    """``ops.json`` in the run: which op came from the learner's workspace (``--ops``) and
    which from the reference. A resume must train with ops as the run started: with or
    without ``--ops``."""
    from srsan_np.checkpoint import write_json
    path = out / "ops.json"
    if args.resume and path.exists() != (origin is not None):
        started = "with --ops" if path.exists() else "without --ops"
        raise DataError(f"--resume {out}: the run was started {started}; resume it the same way")
    if origin is not None:
        write_json(path, {"workspace": str(args.ops.resolve()), "ops": origin})


@contextmanager
def _open_run(out, args, inputs, model_config, train_config, dataset, source):
    """Check, lock and prepare the run directory ``out``, and hold its lock for the block.

    Everything that can refuse is checked before anything is written: that ``out`` is
    srsan-np's (or new), holds no input, is not in use, and -- to resume -- that the run
    was started with the same configuration on the same data.
    """
    from srsan_np.checkpoint import write_json
    from srsan_np.data.store import fingerprint
    from srsan_np.runs import (MARKER, atomic_write_stream, check_target, clear_run,
                               remove_leftovers, run_lock, write_marker)
    from srsan_np.train import check_resume, run_configs

    check_target(out, "run", inputs, overwrite=True)  # only what is never replaced, before the lock
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        state = check_target(out, "run", inputs, overwrite=args.overwrite, resume=args.resume)
        if state == "own" and args.resume:
            check_resume(out, model_config, train_config)
            if (out / "data.json").exists():
                _check_fingerprint(dataset, _read_json(out / "data.json", ""),
                                   f"--resume {out}: this data")
        remove_leftovers(out)
        for sub in out.glob("lr-*"):
            remove_leftovers(sub)
        if state == "own" and args.overwrite:
            clear_run(out)
        if state == "new" and args.resume:
            print(f"nothing to resume in {out}: starting a new run")
        if not (out / MARKER).is_file():  # new, cleared, or a run from before markers
            write_marker(out, "run")
        write_json(out / "config.json", run_configs(model_config, train_config))
        write_json(out / "data.json", {**source, "fingerprint": fingerprint(dataset)})
        if dataset.raw_ids is not None:  # so that `recommend --raw` can speak the log's ids
            with atomic_write_stream(out / "raw_ids.npy") as f:
                np.save(f, dataset.raw_ids)
        yield


def _run_train(args) -> int:
    from srsan_np.evaluate import format_table
    from srsan_np.train import PRESETS_DIR, fit

    config_path = _config_path(args)
    dataset, source = _load_data(args)
    model_config, train_config = _train_configs(args, config_path, dataset)
    out = args.out or Path("runs") / f"{'sample' if 'sample_seed' in source else 'run'}-{model_config.mode}"
    args.out = out  # for the interrupt message
    print(f"data: {source}  items {dataset.n_items}  train {len(dataset.train)}  test {len(dataset.test)}")
    print(f"config: {config_path or 'the original defaults'}, flags on top")
    print(f"run directory: {out}", flush=True)
    kernels, origin = _learner_kernels(args.ops) if args.ops else (None, None)
    user_config = config_path if config_path and config_path.resolve().parent != PRESETS_DIR else None
    with _open_run(out, args, [args.data, args.input, user_config, args.ops], model_config,
                   train_config, dataset, source):
        _record_ops(out, args, origin)
        summary = fit(dataset, model_config, train_config, out, resume=args.resume,
                      kernels=kernels)

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
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run in --out (only a run srsan-np wrote)")
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
    p.add_argument("--bootstrap", type=_integer(0), default=1000, metavar="N",
                   help="bootstrap resamples for the test uncertainty (0: none; default 1000)")
    p.set_defaults(func=_run_train)


# --------------------------------------------------------------------------- evaluate

def _run_evaluate(args) -> int:
    from srsan_np.evaluate import format_table
    from srsan_np.train import load_run

    params, config, meta = load_run(args.run_dir, args.which)
    own_data = args.data or args.input or args.sample_seed is not None
    dataset = _load_data(args)[0] if own_data else _run_data(args.run_dir)
    if dataset.n_items > config.n_items:
        raise DataError(f"{args.run_dir}: the model scores {config.n_items} items, the data has "
                        f"{dataset.n_items}: not the data it was trained on")
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
    p.add_argument("--bootstrap", type=_integer(0), default=1000, metavar="N",
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
    p.add_argument("items", type=_integer(-INT64_MAX - 1), nargs="+", metavar="ITEM")
    p.add_argument("-k", type=_integer(1), default=20)
    p.add_argument("--which", choices=["best", "last"], default="best")
    p.add_argument("--drop-unknown", action="store_true", help="ignore item ids the model does not know")
    p.add_argument("--raw", action="store_true",
                   help="the ITEMs, and the recommendations, are the raw log's item ids")
    p.set_defaults(func=_run_recommend)


# --------------------------------------------------------------------------- plot

PLOTS_MANIFEST = ".srsan-np-plots"  # in --out: the files plot wrote there, one a line
N_ATTENTION_MAPS = 3


def _json_file(path):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err


def _plotted_run(run_dir):
    """The run directory whose files to draw; with several learning rates, one of its runs."""
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run directory")
    runs = sorted(run_dir.glob("lr-*/config.json"))
    if (run_dir / "last.npz").exists() or (run_dir / "diagnostics.json").exists() or not runs:
        return run_dir
    summary = run_dir / "summary.json"
    if summary.exists() and "selected_lr" in _json_file(summary):  # finished: the chosen rate
        return run_dir / f"lr-{_json_file(summary)['selected_lr']:g}"
    return max(runs, key=lambda p: p.stat().st_mtime).parent  # in progress: the latest


def _run_history(run):
    """``(history, selected epoch)`` of a finished run or of one still training (or Nones)."""
    from srsan_np.checkpoint import load_checkpoint
    if (run / "summary.json").exists():
        summary = _json_file(run / "summary.json")
        return summary["history"], summary["selected_epoch"]
    if (run / "last.npz").exists():
        try:
            meta = load_checkpoint(run / "last.npz")[1]
        except ValueError as err:
            raise DataError(str(err)) from err
        return meta["history"], meta["best"]["epoch"]
    return None, None


def _plot_targets(out, names):
    """Create ``out`` if needed; refuse to replace a file in it that plot did not write."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / PLOTS_MANIFEST
    ours = set(manifest.read_text().split()) if manifest.exists() else set()
    foreign = [n for n in names if (out / n).exists() and n not in ours]
    if foreign:
        raise DataError(f"--out {out}: {foreign[0]} exists and was not written by srsan-np "
                        "plot; choose another --out")
    from srsan_np.runs import atomic_write_bytes
    atomic_write_bytes(manifest, "".join(f"{n}\n" for n in sorted(ours | set(names))).encode())


def _run_plot(args) -> int:
    from srsan_np import plots
    from srsan_np.diagnostics import load_diagnostics

    run = _plotted_run(args.run_dir)
    if run != args.run_dir:
        print(f"{args.run_dir} holds one run per learning rate; plotting {run}")
    history, selected = _run_history(run)
    try:
        diagnostics = load_diagnostics(run)
    except ValueError as err:
        raise DataError(str(err)) from err
    config = _json_file(run / "config.json") if (run / "config.json").exists() else None
    k = config["train"]["select"].partition("@")[2] if config else "20"
    figures = {}  # file name -> a function drawing it there
    if history:
        figures["curves.png"] = lambda path: plots.training_curves(
            history, (f"HR@{k}", f"MRR@{k}"), selected, path)
    if diagnostics is not None and diagnostics["steps"]["loss"]:
        figures["loss_per_step.png"] = lambda path: plots.step_loss(diagnostics, path)
        figures["gradients.png"] = lambda path: plots.gradient_diagnostics(diagnostics, path)
    if diagnostics is not None and any(r["attention_entropy"] for r in diagnostics["epochs"]):
        figures["attention_statistics.png"] = lambda path: plots.attention_diagnostics(
            diagnostics, path)
    if history:
        figures.update(_attention_figures(run))
    if not figures:
        raise DataError(f"{run}: nothing to plot yet (no epoch finished, no diagnostics)")
    out = args.out or args.run_dir / "plots"
    _plot_targets(out, list(figures))
    for name, draw in figures.items():
        draw(out / name)
        print(out / name)
    return 0


def _attention_figures(run):
    """Attention maps, in the run's mode, of a few test examples of the run's data."""
    import numpy as np
    from srsan_np import model, plots
    from srsan_np.data import make_batch
    from srsan_np.train import load_run

    # one run per learning rate: the data is described beside them
    source = next((d / "data.json" for d in (run, run.parent) if (d / "data.json").exists()),
                  run / "data.json")
    try:
        params, config, _ = load_run(run, "best")
        dataset = _run_data(source.parent)
    except (DataError, OSError, ValueError) as err:
        print(f"no attention maps: {err}", file=sys.stderr)
        return {}
    test = dataset.test
    lengths = test.lengths()
    # readable maps: prefixes of a few clicks, the first ones of the test set
    chosen = np.flatnonzero((lengths >= 4) & (lengths <= 8))[:N_ATTENTION_MAPS]
    if len(chosen) == 0:
        chosen = np.argsort(-lengths, kind="stable")[:N_ATTENTION_MAPS]
    len_max = int(lengths.max())  # faithful: as evaluation pads the test prefixes

    def draw(index):
        def to(path):
            batch = make_batch(test, [index], config.mode, len_max)
            maps = model.attention_maps(params, batch, config)
            return plots.attention_layers(
                [m[0] for m in maps], batch.inputs[0], readout=int(batch.last[0]), path=path,
                title=f"test example {index} ({config.mode} mode), next click {batch.targets[0]}")
        return to

    return {f"attention_test_{j}.png": draw(int(i)) for j, i in enumerate(chosen)}


def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="draw a run: curves, diagnostics, attention maps (PNG)",
                       description="Write PNG files of a training run, finished or still "
                                   "training: the training curves (loss, validation and test "
                                   "metrics, learning rate, the selected epoch dashed), the "
                                   "training diagnostics (loss per step, gradient norms and "
                                   "update ratios, attention entropy and padding mass) and the "
                                   "attention maps of a few test examples. Prints the paths.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, help="the directory for the PNG files (default: "
                   "RUN_DIR/plots); a file in it that plot did not write is never replaced")
    p.set_defaults(func=_run_plot)


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
               _add_recommend, _add_plot, _add_baselines, _add_exercises]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srsan-np", description="SR-SAN from scratch in NumPy and Numba.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def _numba_cache_fallback() -> None:
    """Give Numba a cache directory it can write, before any cached function is defined.

    Numba caches beside the sources, else in the user's cache folder, and raises at import
    when it can write neither (a read-only install, no writable HOME). Then the cache goes
    to a folder of the temporary directory, or, if that cannot be written either, compiled
    code is not cached at all; one warning either way. ``NUMBA_CACHE_DIR``, when set, is
    the user's choice and is kept. Set through ``numba.config``: no environment variable
    changes.
    """
    import numba
    if numba.config.CACHE_DIR:
        return
    from numba.misc.appdirs import AppDirs

    def writable(folder):
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                return True
        except OSError:
            return False

    package = Path(__file__).resolve().parent
    beside = all(writable(d / "__pycache__") for d in {p.parent for p in package.rglob("*.py")})
    if beside or writable(AppDirs(appname="numba", appauthor=False).user_cache_dir):
        return
    try:
        fallback = Path(tempfile.gettempdir()) / f"srsan-np-numba-cache-{os.getuid()}"
    except OSError:  # no usable temporary folder at all
        fallback = None
    if fallback is not None and writable(fallback):
        numba.config.CACHE_DIR = str(fallback)
        where = f"compiled code is cached in {fallback}"
    else:
        from numba.core.dispatcher import Dispatcher
        Dispatcher.enable_caching = lambda self: None  # keeps Numba's NullCache: compile every run
        where = "compiled code is not cached (each command compiles what it uses)"
    print(f"srsan-np: warning: cannot write Numba's cache beside the package or in the user "
          f"cache folder; {where}", file=sys.stderr)


def main(argv=None) -> int:
    """Run the command line; return the exit status (0, 2 bad input or refused, 130 interrupted)."""
    _numba_cache_fallback()
    args = build_parser().parse_args(argv)
    name = f"srsan-np {args.command}"
    try:
        return args.func(args)
    except (DataError, OSError, TrainingDiverged) as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print(f"{name}: error: out of memory: the data or the model is too large for this "
              f"machine", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        hint = (f"; the run keeps its last finished epoch: resume with --resume --out {args.out} "
                f"(and the same flags)" if args.command == "train" else "")
        print(f"\n{name}: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        traceback.print_exc()
        print(f"{name}: internal error: this is a bug in srsan-np, not in your input; please "
              f"report it with the traceback above", file=sys.stderr)
        return EXIT_BUG
