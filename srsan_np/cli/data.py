"""``generate``, ``preprocess``, ``stats``, ``baselines``: the commands on data."""

from __future__ import annotations

import json
from pathlib import Path

from srsan_np.errors import DataError

from .common import add_data_args, data_source, integer, print_stats


def _generate(args) -> int:
    from srsan_np.data.generate import write_preset
    from srsan_np.files import check_file_target, remove_leftovers

    check_file_target(args.out, overwrite=args.overwrite)
    remove_leftovers(args.out.resolve().parent)
    write_preset(args.preset, args.out, args.seed)
    print(f"wrote {args.out} (preset {args.preset}, seed {args.seed})")
    return 0


def add_generate(sub) -> None:
    from srsan_np.data.generate import PRESETS
    p = sub.add_parser("generate", help="write a generated Diginetica-format click log",
                       description="Write a deterministic, generated click log in Diginetica's CSV format.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="sample",
                   help="what to generate (default: sample)")
    p.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file (default: refused)")
    p.add_argument("--seed", type=integer(0), default=0,
                   help="the same preset and seed give the same file (default: 0)")
    p.set_defaults(func=_generate)


def _preprocess(args) -> int:
    from srsan_np.data.pickles import write_pickle_files
    from srsan_np.data.preprocess import preprocess
    from srsan_np.data.readers import READERS
    from srsan_np.data.store import LAYOUT, write_dataset_files
    from srsan_np.files import atomic_directory, check_target, remove_leftovers

    if args.fraction is not None and args.dataset != "yoochoose":
        raise DataError("--fraction applies to --dataset yoochoose only")
    check_target(args.out, "dataset", [args.input], overwrite=args.overwrite, layout=LAYOUT)
    remove_leftovers(args.out.resolve().parent)
    prepared = preprocess(READERS[args.dataset](args.input), args.dataset, args.fraction)
    with atomic_directory(args.out, "dataset", LAYOUT) as tmp:
        write_dataset_files(prepared.dataset, tmp)
        if args.export_pickles:
            (tmp / "pickles").mkdir()
            write_pickle_files(prepared.dataset, tmp / "pickles", prepared.train_sessions)
    print_stats(prepared.dataset.stats)
    print(f"wrote {args.out}")
    return 0


def add_preprocess(sub) -> None:
    from srsan_np.data.source import FORMATS
    p = sub.add_parser("preprocess", help="prepare a raw click log exactly as SR-GNN did",
                       description="Read a raw click log, apply SR-GNN's preprocessing, and write "
                                   "train.npz, test.npz and stats.json into a new directory.")
    p.add_argument("--dataset", choices=FORMATS, required=True,
                   help="the log's format (the SR-GNN sample file is diginetica)")
    p.add_argument("--input", type=Path, required=True, help="the raw click log")
    p.add_argument("--out", type=Path, required=True, help="the dataset directory to write")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it holds a dataset srsan-np prepared (default: refused)")
    p.add_argument("--fraction", type=int, choices=[4, 64],
                   help="yoochoose: keep the most recent 1/4 or 1/64 of the training examples "
                        "(default: all of them)")
    p.add_argument("--export-pickles", action="store_true",
                   help="also write the original code's train.txt, test.txt, all_train_seq.txt into "
                        "OUT/pickles (default: off)")
    p.set_defaults(func=_preprocess)


def _stats(args) -> int:
    from srsan_np.data import load_dataset
    dataset = load_dataset(args.directory)
    stats = dict(dataset.stats, n_items=dataset.n_items, n_train=len(dataset.train), n_test=len(dataset.test),
                 mean_prefix_length_train=float(dataset.train.lengths().mean()) if len(dataset.train) else 0.0)
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
    else:
        print_stats(stats)
    return 0


def add_stats(sub) -> None:
    p = sub.add_parser("stats", help="print the statistics of a prepared dataset directory "
                                     "(or of an SR-GNN folder of pickles)")
    p.add_argument("directory", type=Path, help="a prepared dataset directory, or an SR-GNN "
                   "folder: train.txt or all_train_seq.txt, and test.txt")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table (default: a table)")
    p.set_defaults(func=_stats)


def _baselines(args) -> int:
    from srsan_np.evaluate import format_table
    from srsan_np.report import baseline_rows

    source = data_source(args)
    dataset = source.load()
    print(f"data: {source.describe()}; {dataset.n_items} items, {len(dataset.train)} training "
          f"and {len(dataset.test)} test examples")
    print(format_table(baseline_rows(dataset, (5, 10, 20))))
    return 0


def add_baselines(sub) -> None:
    p = sub.add_parser("baselines", help="evaluate the classic baselines",
                       description="Popularity, session popularity, first-order Markov and "
                                   "session-kNN, on the same evaluation code as the model.")
    add_data_args(p)
    p.set_defaults(func=_baselines)
