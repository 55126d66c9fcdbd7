"""The learner's code in a child process: whatever it does, the checker reports it as theirs.

:func:`run_checks` starts ``python -m srsan_np.exercises.sandbox``, which checks the
exercises one after another (:func:`srsan_np.exercises.checks.check_exercise`) and sends
each one's rows back over a pipe, one JSON line per message. So:

- an endless loop is stopped: each exercise has ``time_limit`` seconds, after which the
  child is killed, the exercise gets an error row saying so, and a new child checks the
  exercises left;
- ``sys.exit`` in the learner's code is an exception like any other (their file and
  line); ``os._exit``, which would end a process without one, raises too in the child
  (the child is ours: nothing of the caller's changes), and a child that still dies (a
  crash, a signal) gives its exercise an error row with the exit status;
- the child runs Numba on one thread (the arrays are tiny, and each of the many
  finite-difference calls would pay for waking others), set in the child's environment
  only.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

__all__ = ["run_checks"]

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds srsan_np/


def _child_env():
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT),
                                                      env.get("PYTHONPATH")]))
    return env


def _messages(fd, proc, time_limit):
    """Yield each JSON message from ``fd``; ``None`` once if ``time_limit`` seconds pass
    without one (the child is then killed), and stop at the end of the stream."""
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    buffer = b""
    deadline = time.monotonic() + time_limit
    try:
        while True:
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                deadline = time.monotonic() + time_limit
                yield json.loads(line)
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                proc.kill()
                yield None
                return
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            buffer += chunk
    finally:
        selector.close()


def _one_child(directory, names, run, time_limit):
    """Rows of the exercises ``names`` checked by one child, and the names it left."""
    from .checks import Row

    read, write = os.pipe()
    request = {"directory": str(directory), "names": names,
               "run": None if run is None else asdict(run)}
    proc = subprocess.Popen([sys.executable, "-m", "srsan_np.exercises.sandbox", str(write),
                             json.dumps(request)], pass_fds=(write,), env=_child_env(),
                            stdin=subprocess.DEVNULL)
    os.close(write)
    rows, current = [], None
    try:
        for message in _messages(read, proc, time_limit):
            if message is None:
                rows.append(Row(current or names[0], "-", "error", message=(
                    f"did not finish within {time_limit:g} s, and was stopped: an endless "
                    f"loop in your code? (a check takes a few seconds)")))
                break
            if "start" in message:
                current = message["start"]
            elif "rows" in message:
                rows += [Row(**row) for row in message["rows"]]
                current = None
        else:  # the stream ended
            status = proc.wait()
            if current is not None or (status != 0 and not rows):
                rows.append(Row(current or names[0], "-", "error", message=(
                    f"the checker's process ended (exit status {status}) while running your "
                    f"{current or names[0]}: your code ended it (os._exit, a signal) or "
                    f"crashed it; an op must return its result")))
    except BaseException:
        proc.kill()
        raise
    finally:
        os.close(read)
        proc.wait()
    done = {row.exercise for row in rows}
    return rows, [n for n in names if n not in done]


def run_checks(directory, names, run, time_limit) -> list:
    """The rows of the exercises ``names`` of ``directory``, checked in child processes
    (see the module notes); ``run`` as :func:`srsan_np.exercises.checks.check_exercise`."""
    rows, pending = [], list(names)
    while pending:
        got, pending = _one_child(directory, pending, run, time_limit)
        rows += got
    return rows


def _refuse_exit(status=0):
    raise SystemExit(f"os._exit({status})")


def _main(fd, request):
    from .checks import Setting, check_exercise

    os._exit = _refuse_exit  # this process is the checker's own: an os._exit raises here
    run = request["run"]
    run = None if run is None else Setting(**{**run, "batch": tuple(run["batch"])})
    with os.fdopen(fd, "w", buffering=1) as out:
        for name in request["names"]:
            out.write(json.dumps({"start": name}) + "\n")
            rows = check_exercise(name, Path(request["directory"]), run)
            out.write(json.dumps({"rows": [asdict(row) for row in rows]}) + "\n")


if __name__ == "__main__":
    _main(int(sys.argv[1]), json.loads(sys.argv[2]))
