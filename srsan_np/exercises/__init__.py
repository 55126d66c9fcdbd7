"""The learner track: write every backward pass yourself, have it checked, diagnosed, trained.

- :mod:`~srsan_np.exercises.workspace`: ``init`` writes one stub per textbook op (the
  reference less its solution regions), ``load`` makes a package of the learner's modules
  and the reference's, :func:`find_workspace` finds the learner's workspace.
- :mod:`~srsan_np.exercises.checks`: :func:`check` runs every exercise in every
  configuration training runs it in (dropout, float32, masks, heads), against finite
  differences and the reference op; the result prints as a table.
- :mod:`~srsan_np.exercises.diagnosis` and :mod:`~srsan_np.exercises.mistakes`: how a
  wrong output is wrong, and which known mistake it is.
- :mod:`~srsan_np.exercises.sandbox`: the learner's code runs in a child process, with a
  time limit.
- :func:`learner_kernels` (:mod:`~srsan_np.exercises.learner`): the kernel set that trains
  the model with the learner's ops (``srsan-np train --ops DIR``).
- :func:`your_turn`: the one call of a notebook's "your turn" cell.

From the command line: ``srsan-np exercises init [DIR]``, ``srsan-np exercises check [DIR]
[NAME ...]``, ``pytest DIR`` (or ``pytest --workspace [DIR]``).
"""

from __future__ import annotations

from pathlib import Path

from .checks import CheckResult, check
from .learner import MODEL_OPS, learner_kernels
from .workspace import ENV_VAR, EXERCISES, find_workspace, init

__all__ = ["EXERCISES", "init", "check", "CheckResult", "learner_kernels", "your_turn",
           "find_workspace", "MODEL_OPS"]


def your_turn(name, directory=None) -> CheckResult:
    """Check exercise ``name`` in the learner's workspace, or say plainly that it checks the
    reference.

    ``directory`` defaults to :func:`find_workspace` (``$SRSAN_EXERCISES``, else the
    nearest ``srsan-exercises/`` in the working directory or above it). With no workspace,
    or none with ``name``'s file, prints how to start one and checks the REFERENCE
    implementation, captioned as such: never the learner's pass. Returns the
    :class:`CheckResult`; a notebook shows it as a table.
    """
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; the exercises are {list(EXERCISES)}")
    directory = Path(directory) if directory is not None else find_workspace()
    if directory is not None and (directory / f"{name}.py").is_file():
        return check(directory, [name])
    if directory is None:
        why = (f"No workspace found (${ENV_VAR} is not set, and there is no srsan-exercises/ "
               f"here or in a folder above). Start one with\n    srsan-np exercises init\n"
               f"at the top of the repository")
    else:
        why = (f"{directory} has no {name}.py. Write its stub with\n    srsan-np exercises "
               f"init {directory} {name}\n")
    print(f"{why}, fill in {name}.py, and run this cell again. Until then this cell checks "
          f"the REFERENCE implementation, not your code:")
    return check(None, [name])
