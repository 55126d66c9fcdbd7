"""What several commands share: argument types, the data flags, printing a statistics table."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["integer", "INT64_MAX", "add_data_args", "data_source", "gives_data", "print_stats"]

INT64_MAX = 2 ** 63 - 1


def integer(low, high=INT64_MAX):
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


def add_data_args(p) -> None:
    """``--data``, ``--input`` (exclusive), ``--dataset``, ``--sample-seed``."""
    from srsan_np.data.source import FORMATS

    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, metavar="DIR",
                     help="a prepared dataset directory (see: srsan-np preprocess), or an "
                          "SR-GNN folder: train.txt or all_train_seq.txt, and test.txt (default: "
                          "the built-in generated sample)")
    src.add_argument("--input", type=Path, metavar="RAW_FILE",
                     help="a raw click log, prepared on the fly (default: the built-in generated sample)")
    p.add_argument("--dataset", choices=FORMATS, default="diginetica",
                   help="the format of --input (default: diginetica)")
    p.add_argument("--sample-seed", type=integer(0),
                   help="seed of the built-in generated sample (default: 0)")


def data_source(args):
    """The :class:`~srsan_np.data.source.DataSource` the data flags name."""
    from srsan_np.data.source import DataSource

    return DataSource(data=args.data, input=args.input, dataset=args.dataset,
                      sample_seed=args.sample_seed or 0)


def gives_data(args) -> bool:
    """Whether the data flags name data (rather than leave it to a default)."""
    return args.data is not None or args.input is not None or args.sample_seed is not None


def print_stats(stats: dict) -> None:
    width = max(map(len, stats))
    for key in sorted(stats):
        value = stats[key]
        print(f"{key:<{width}}  {value:.3f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
