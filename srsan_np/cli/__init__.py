"""The ``srsan-np`` command line: one module per command (or group), each of which parses,
calls the library and prints.

Every command module has ``add(subparsers)``, which declares its arguments and sets
``func`` to the function that runs it. Every failure a user can cause -- a malformed file, a
bad flag, a directory srsan-np will not replace -- reaches them through :func:`main` as one
line on stderr naming the file, line, flag or directory, and exit status 2; Ctrl-C is 130
and SIGTERM 143, each with how to resume; anything else is a bug and keeps its traceback,
labelled so
(docs/cli.md, "Exit codes"). Nothing compiled is imported before :func:`main` has set the
process up (:mod:`srsan_np.runtime`).
"""

from __future__ import annotations

import argparse
import difflib
import signal
import sys
import threading
import traceback

from srsan_np import files, runtime
from srsan_np.errors import DataError, TrainingDiverged

__all__ = ["main", "build_parser", "EXIT_BAD_INPUT", "EXIT_BUG", "EXIT_INTERRUPTED",
           "EXIT_TERMINATED"]

EXIT_BAD_INPUT = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, as a shell reports a process SIGTERM ended


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that it ends as Ctrl-C does: the files
    being written are left whole, and the user is told how to resume."""


def _terminate(signum, frame):
    raise Terminated


def _message(err) -> str:
    """An error as the one line says it: an OSError names its file first, as the others."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return str(err)


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
    """Run the command line; return the exit status (0, 2 bad input or refused, 130
    interrupted, 143 terminated)."""
    runtime.configure_threads()
    runtime.numba_cache_fallback()
    files.set_kill_point(runtime.test_kill_point())
    args = _parse(argv)
    name = f"srsan-np {args.command}"
    main_thread = threading.current_thread() is threading.main_thread()  # signals go there
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return args.func(args)
    except (DataError, OSError, TrainingDiverged) as e:
        print(f"{name}: error: {_message(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print(f"{name}: error: out of memory: the data or the model is too large for what "
              f"this process can allocate", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as stop:
        hint = (f"; the run keeps its last finished epoch: resume with --resume --out {args.out} "
                f"(and the same flags)" if args.command == "train" else "")
        said = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
        print(f"\n{name}: {said}{hint}", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
    except Exception:
        traceback.print_exc()
        print(f"{name}: internal error: this is a bug in srsan-np, not in your input; please "
              f"report it with the traceback above", file=sys.stderr)
        return EXIT_BUG
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
