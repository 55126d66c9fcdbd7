"""The ``srsan-np`` command line: one module per command (or group), each of which parses,
calls the library and prints.

Every command module has ``add(subparsers)``, which declares its arguments and sets
``func`` to the function that runs it. Every failure a user can cause -- a malformed file, a
bad flag, a directory srsan-np will not replace -- reaches them through :func:`main` as one
line on stderr naming the file, line, flag or directory, and exit status 2; Ctrl-C is 130
with how to resume; anything else is a bug and keeps its traceback, labelled so
(docs/cli.md, "Exit codes"). Nothing compiled is imported before :func:`main` has set the
process up (:mod:`srsan_np.runtime`).
"""

from __future__ import annotations

import argparse
import difflib
import sys
import traceback

from srsan_np import files, runtime
from srsan_np.errors import DataError, TrainingDiverged

__all__ = ["main", "build_parser", "EXIT_BAD_INPUT", "EXIT_BUG", "EXIT_INTERRUPTED"]

EXIT_BAD_INPUT = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from srsan_np import __version__

    from . import data, exercises, plot, results, train

    parser = argparse.ArgumentParser(prog="srsan-np", description="SR-SAN from scratch in NumPy and Numba.")
    parser.add_argument("--version", action="version", version=f"srsan-np {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (data.add_generate, data.add_preprocess, data.add_stats, train.add,
                results.add_evaluate, results.add_recommend, plot.add, data.add_baselines,
                exercises.add):
        add(sub)
    return parser


def _parse(argv):
    """The arguments; an unknown flag is refused with the command's closest one named."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = parser._subparsers._group_actions[0].choices[args.command]  # argparse has no public way
        options = list(command._option_string_actions)
        said = []
        for arg in unknown:
            close = difflib.get_close_matches(arg.split("=")[0], options, n=1) if arg.startswith("-") else []
            said.append(f"{arg} (did you mean {close[0]}?)" if close else arg)
        command.error(f"unrecognized arguments: {' '.join(said)}")
    return args


def main(argv=None) -> int:
    """Run the command line; return the exit status (0, 2 bad input or refused, 130 interrupted)."""
    runtime.configure_threads()
    runtime.numba_cache_fallback()
    files.set_kill_point(runtime.test_kill_point())
    args = _parse(argv)
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
