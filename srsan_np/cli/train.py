"""``train``: the configuration from presets, a file and flags; a run directory; the results."""

from __future__ import annotations

from pathlib import Path

from srsan_np.errors import DataError

from .common import add_data_args, data_source, integer

# the flags that set a field of model.Config or TrainConfig (their dest is the field's name)
MODEL_FLAGS = ("mode", "hidden", "heads", "layers", "dropout", "positions", "n_items")
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "l2", "lr_dc", "lr_dc_step", "patience",
               "valid_fraction", "select", "seed", "kernels")


def _config_file(args):
    """``--config`` as a file or a preset name; with no data and no config: the sample preset.

    A file named like a preset wins over the preset; a directory does not."""
    from srsan_np.settings import preset_path

    if args.config is None:
        return preset_path("sample") if args.data is None and args.input is None else None
    if args.config.exists() and not args.config.is_dir():
        return args.config
    try:
        return preset_path(str(args.config))
    except ValueError as err:
        found = "a directory, not a config file" if args.config.is_dir() else "no such config file"
        raise DataError(f"{args.config}: {found}, and {err}") from err


def _layers(args, config_file):
    """The configuration's layers for :func:`srsan_np.settings.merge`: the file, then each flag."""
    from srsan_np.kernels import WORKSPACE
    from srsan_np.settings import read_config

    layers = [(str(config_file) if config_file else "the default configuration",
               read_config(config_file) if config_file else {})]
    for section, flags in (("model", MODEL_FLAGS), ("train", TRAIN_FLAGS)):
        layers += [(f"argument --{flag.replace('_', '-')}", {section: {flag: getattr(args, flag)}})
                   for flag in flags if getattr(args, flag) is not None]
    if args.ops is not None:
        if not args.ops.is_dir():
            raise DataError(f"--ops {args.ops}: no such workspace (start one: srsan-np "
                            f"exercises init {args.ops})")
        layers.append(("argument --ops", {"train": {"kernels": f"{WORKSPACE}{args.ops.resolve()}"}}))
    return layers


def _run(args) -> int:
    from srsan_np import runtime
    from srsan_np.report import results_table
    from srsan_np.run import Run
    from srsan_np.settings import PRESETS_DIR, merge
    from srsan_np.train import fit, kernel_set

    config_file = _config_file(args)
    layers = _layers(args, config_file)
    model_config, _ = merge(layers, n_items=1)  # what can be refused before the data loads
    source = data_source(args)
    named = "sample" if args.data is None and args.input is None else "run"
    out = args.out = args.out or Path("runs") / f"{named}-{model_config.mode}"
    user_config = config_file if config_file and config_file.resolve().parent != PRESETS_DIR else None
    inputs = [source.data, source.input, user_config, args.ops]
    Run.check(out, inputs, resume=args.resume, overwrite=args.overwrite)
    dataset = source.load()
    lengths = [len(split) and int(split.lengths().max()) for split in (dataset.train, dataset.test)]
    model_config, train_config = merge(layers, dataset.n_items, max(lengths), len(dataset.train))
    kernel_set(train_config, model_config)  # a learner's op that fails is refused here
    header = [f"data: {source.describe()}; {dataset.n_items} items, {len(dataset.train)} "
              f"training and {len(dataset.test)} test examples",
              f"config: {config_file or 'the original defaults'}, flags on top",
              f"run directory: {out}"]
    print("\n".join(header), flush=True)
    with Run.open(out, model_config, train_config, dataset, source, resume=args.resume,
                  overwrite=args.overwrite, inputs=inputs) as run:
        run.keep_log(*header)
        if args.resume and not run.resumed:
            run.log(f"nothing to resume in {out}: starting a new run")
        summary = fit(dataset, model_config, train_config, run, log=run.log,
                      progress=runtime.progress_bars())
        chosen_lr = f", lr {summary['selected_lr']:g}" if "selected_lr" in summary else ""
        run.log(f"\ntest metrics (SR-SAN at epoch {summary['selected_epoch']}{chosen_lr}, "
                f"selected by {summary['selected_by']}):")
        run.log(results_table(summary["params"], model_config, dataset, train_config.ks,
                              args.bootstrap, summary["kernels"], summary["best_on_test"],
                              baselines=not args.no_baselines))
    return 0


def add(sub) -> None:
    p = sub.add_parser("train", help="train SR-SAN (default: on the built-in sample)",
                       description="Train SR-SAN. With no arguments: the built-in generated sample "
                                   "with the 'sample' preset, then the test metrics next to the "
                                   "baselines. Presets: 'sample' (sequence mode, tuned on the "
                                   "sample's validation split), 'original' (faithful mode, the "
                                   "original's protocol: no validation split). Other data "
                                   "without --config: the original's defaults with a validation "
                                   "split. Flags override --config.")
    add_data_args(p)
    p.add_argument("--config", type=Path,
                   help='a JSON file {"model": {...}, "train": {...}} or a preset name: '
                        "sample (the default on the built-in sample) or original (the original's "
                        "protocol); default on other data: none, the defaults below")
    p.add_argument("--out", type=Path, help="the run directory (default: runs/<data>-<mode>)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last finished epoch (default: off)")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run in --out, only a run srsan-np wrote (default: off)")
    _add_model_flags(p)
    _add_training_flags(p)
    p.add_argument("--no-baselines", action="store_true",
                   help="do not fit and print the baselines (default: printed)")
    p.add_argument("--bootstrap", type=integer(0), default=1000, metavar="N",
                   help="bootstrap resamples for the test uncertainty (0: none; default 1000)")
    p.set_defaults(func=_run)


def _default(config, field):
    value = config.__dataclass_fields__[field].default
    return f"default: {value:g}" if isinstance(value, float) else f"default: {value}"


def _add_model_flags(p) -> None:
    from srsan_np.model import Config

    m = p.add_argument_group("model", "defaults: the original's (srsan_np.model.Config); a "
                             "preset or --config replaces them, a flag replaces both")
    m.add_argument("--mode", choices=["faithful", "sequence"],
                   help="faithful: the original's input (each session's distinct items by id, "
                        "padding attended); sequence: the clicks in order, padding masked "
                        f"({_default(Config, 'mode')})")
    m.add_argument("--hidden", type=int, metavar="D",
                   help=f"width of the embeddings and the encoder ({_default(Config, 'hidden')})")
    m.add_argument("--heads", type=int, metavar="H",
                   help=f"attention heads, a divisor of --hidden ({_default(Config, 'heads')})")
    m.add_argument("--layers", type=int, metavar="L",
                   help=f"encoder layers ({_default(Config, 'layers')})")
    m.add_argument("--dropout", type=float, metavar="P",
                   help=f"every dropout in the encoder ({_default(Config, 'dropout')})")
    m.add_argument("--positions", action="store_true", default=None,
                   help="learned position embeddings (sequence mode; default: off)")
    m.add_argument("--n-items", type=int, metavar="N",
                   help="score against this many items, at least the data's (the original's "
                        "hard-coded n_node 37,484 means --n-items 37483; default: the data's)")


def _add_training_flags(p) -> None:
    from srsan_np.train import TrainConfig

    t = p.add_argument_group("training", "defaults: the original's (srsan_np.train.TrainConfig), "
                             "with a validation split; a preset or --config replaces them, a "
                             "flag replaces both")
    t.add_argument("--epochs", type=int, metavar="N",
                   help=f"most epochs ({_default(TrainConfig, 'epochs')})")
    t.add_argument("--batch-size", type=int, metavar="B",
                   help=f"examples per Adam step ({_default(TrainConfig, 'batch_size')})")
    t.add_argument("--lr", type=float, nargs="+", metavar="LR",
                   help="Adam's learning rate; several: one run each, the best on validation "
                        f"is kept ({_default(TrainConfig, 'lr')})")
    t.add_argument("--l2", type=float, metavar="W",
                   help=f"Adam's coupled L2 weight decay ({_default(TrainConfig, 'l2')})")
    t.add_argument("--lr-dc", type=float, metavar="G",
                   help=f"the learning rate's factor every --lr-dc-step epochs "
                        f"({_default(TrainConfig, 'lr_dc')})")
    t.add_argument("--lr-dc-step", type=int, metavar="S",
                   help=f"epochs between the factors ({_default(TrainConfig, 'lr_dc_step')})")
    t.add_argument("--patience", type=int, metavar="P",
                   help="stop after this many epochs without a better validation metric "
                        f"({_default(TrainConfig, 'patience')})")
    t.add_argument("--valid-fraction", type=float, metavar="F",
                   help="training examples held out to select the epoch; 0: none, the last "
                        f"epoch is kept, as the original ({_default(TrainConfig, 'valid_fraction')})")
    t.add_argument("--select", metavar="METRIC",
                   help="the validation metric that selects the epoch: HR@K, MRR@K or NDCG@K "
                        f"({_default(TrainConfig, 'select')})")
    t.add_argument("--seed", type=int, metavar="N",
                   help="seeds the weights, the validation split, every shuffle and dropout "
                        f"mask ({_default(TrainConfig, 'seed')})")
    ops = t.add_mutually_exclusive_group()
    ops.add_argument("--kernels", choices=["fast", "reference"],
                     help="the kernel set: fast, or the textbook ops (slower, the same gradients) "
                          f"({_default(TrainConfig, 'kernels')})")
    ops.add_argument("--ops", type=Path, metavar="DIR",
                     help="train with your own ops: every exercise of the workspace DIR that passes "
                          "its check (srsan-np exercises), the textbook ops for the rest (default: "
                          "none, --kernels)")
