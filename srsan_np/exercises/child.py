"""The checker's child process (``python -m srsan_np.exercises.child REQUEST``): it checks
the exercises of a request one after another and writes each one's rows, as JSON lines,
on its standard output; :mod:`srsan_np.exercises.sandbox` starts it and reads them."""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

from .checks import Setting, check_exercise


def _refuse_exit(status=0):
    raise SystemExit(f"os._exit({status})")


def _main(request):
    # this process is the checker's own: Ctrl-C is the caller's to handle, an os._exit
    # raises, and what the learner's code prints goes to stderr, the results to stdout
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os._exit = _refuse_exit
    results = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    run = request["run"]
    run = None if run is None else Setting(**{**run, "batch": tuple(run["batch"])})
    for name in request["names"]:
        results.write(json.dumps({"start": name}) + "\n")
        rows = check_exercise(name, Path(request["directory"]), run)
        results.write(json.dumps({"rows": [asdict(row) for row in rows]}) + "\n")
    results.close()


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
