"""``exercises``: the learner's workspace of stubs, and its checker."""

from __future__ import annotations

from pathlib import Path


def _run(args) -> int:
    from srsan_np import exercises
    from srsan_np.exercises.workspace import resolve

    directory, names = resolve(args.directory, args.names, create=args.action == "init")
    if args.action == "init":
        written = exercises.init(directory, names or None)
        print(f"wrote {len(written)} files into {directory}; next: srsan-np exercises "
              f"check {directory} {names[0] if names else next(iter(exercises.EXERCISES))}")
        return 0
    result = exercises.check(directory, names, time_limit=args.time_limit)
    print(result)
    return 0 if result.passed else 1


def add(sub) -> None:
    from srsan_np.exercises.workspace import EXERCISES, TIME_LIMIT
    description = ("init [DIR] writes one stub per textbook op into DIR (never over your "
                   "work); check [DIR] [NAME ...] checks them in every configuration training "
                   "runs them in (finite differences and the reference op) and says how a "
                   "wrong output is wrong. DIR left out: $SRSAN_EXERCISES, else the nearest "
                   "srsan-exercises/ here or above. Exit status of check: 0 if every named "
                   "exercise passes, else 1. Exercises, in the notebooks' order: "
                   f"{', '.join(EXERCISES)}.")
    p = sub.add_parser("exercises", description=description,
                       help="write the ops yourself: a workspace of stubs, and their checker")
    p.add_argument("action", choices=["init", "check"], help="write the stubs, or check them")
    p.add_argument("directory", type=Path, metavar="DIR", nargs="?",
                   help="the workspace (default: $SRSAN_EXERCISES, else the nearest "
                        "srsan-exercises/ here or above; init: ./srsan-exercises)")
    p.add_argument("names", nargs="*", metavar="NAME", help="exercises (default: all)")
    p.add_argument("--time-limit", type=float, default=TIME_LIMIT, metavar="SECONDS",
                   help=f"stop an exercise whose check runs longer (default {TIME_LIMIT:g})")
    p.set_defaults(func=_run)
