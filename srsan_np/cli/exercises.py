"""``exercises``: the learner's workspace of stubs, and its checker."""

from __future__ import annotations

from pathlib import Path

from srsan_np.errors import DataError


def _run(args) -> int:
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


def add(sub) -> None:
    from srsan_np.exercises.workspace import EXERCISES
    p = sub.add_parser("exercises", help="write the ops yourself: a workspace of stubs, and their checker",
                       description="init DIR writes one stub per textbook op into DIR (never over "
                                   "your work); check DIR [NAME ...] checks them (finite differences "
                                   "and the reference op) and says how a wrong output is wrong. "
                                   "Exit status of check: 0 if every named exercise passes, else 1. "
                                   f"Exercises: {', '.join(EXERCISES)}.")
    p.add_argument("action", choices=["init", "check"], help="write the stubs, or check them")
    p.add_argument("directory", type=Path, metavar="DIR", help="the workspace")
    p.add_argument("names", nargs="*", metavar="NAME", help="exercises (default: all)")
    p.set_defaults(func=_run)
