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


# --------------------------------------------------------------------------- main

SUBCOMMANDS = [_add_generate, _add_preprocess, _add_stats]


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
