"""The learner's code in a child process: whatever it does, the checker reports it as theirs.

:func:`run_checks` starts ``python -m srsan_np.exercises.child``, which checks the
exercises one after another (:func:`srsan_np.exercises.checks.check_exercise`) and sends
each one's rows back on its standard output, one JSON line per message (what the
learner's code prints goes to standard error). So:

- an endless loop is stopped: each exercise has ``time_limit`` seconds, after which the
  child is killed, the exercise gets an error row saying so, and a new child checks the
  exercises left;
- ``sys.exit`` in the learner's code is an exception like any other (their file and
  line); ``os._exit``, which would end a process without one, raises too in the child
  (the child is ours: nothing of the caller's changes), and a child that still dies (a
  crash, a signal) gives its exercise an error row with the exit status;
- Ctrl-C reaches the caller, which stops the child (the child ignores it);
- the child runs Numba on one thread (the arrays are tiny, and each of the many
  finite-difference calls would pay for waking others), set in the child's environment
  only.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path

__all__ = ["run_checks"]

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds srsan_np/


def _child_env():
    from srsan_np.runtime import child_environment

    env = child_environment(NUMBA_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT),
                                                      env.get("PYTHONPATH")]))
    return env


def _lines(stream, into):
    """Put each line of ``stream`` into the queue ``into``, then None at its end."""
    for line in stream:
        into.put(line)
    into.put(None)


def _error(exercise, message):
    """An error row, as the child sends its rows (``checks.Row``'s fields)."""
    return {"exercise": exercise, "output": "-", "status": "error", "message": message}


def _one_child(directory, names, run, time_limit):
    """Rows (as dicts) of the exercises ``names`` checked by one child, and the names it
    left."""
    request = {"directory": str(directory), "names": names,
               "run": None if run is None else asdict(run)}
    proc = subprocess.Popen([sys.executable, "-m", "srsan_np.exercises.child",
                             json.dumps(request)], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=_child_env(), text=True)
    messages = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, messages), daemon=True).start()
    rows, current = [], None
    try:
        while True:
            try:
                line = messages.get(timeout=time_limit)
            except queue.Empty:
                proc.kill()
                rows.append(_error(current or names[0], (
                    f"did not finish within {time_limit:g} s, and was stopped: an endless "
                    f"loop in your code? (a check takes a few seconds)")))
                break
            if line is None:  # the child's output ended
                status = proc.wait()
                if current is not None or (status != 0 and not rows):
                    rows.append(_error(current or names[0], (
                        f"the checker's process ended (exit status {status}) while running "
                        f"your {current or names[0]}: your code ended it (os._exit, a signal) "
                        f"or crashed it; an op must return its result")))
                break
            message = json.loads(line)
            if "start" in message:
                current = message["start"]
            else:
                rows += message["rows"]
                current = None
    finally:
        proc.kill()  # done, stopped, or interrupted: never left running
        proc.wait()
        proc.stdout.close()
    done = {row["exercise"] for row in rows}
    return rows, [n for n in names if n not in done]


def run_checks(directory, names, run, time_limit) -> list:
    """The rows (as dicts of ``checks.Row``'s fields) of the exercises ``names`` of
    ``directory``, checked in child processes (see the module notes); ``run`` as
    :func:`srsan_np.exercises.checks.check_exercise`."""
    rows, pending = [], list(names)
    while pending:
        got, pending = _one_child(directory, pending, run, time_limit)
        rows += got
    return rows
