"""The learner track: write every backward pass yourself, have it checked, diagnosed, trained.

- :mod:`~srsan_np.exercises.workspace`: ``init`` writes one stub per textbook op (the
  reference less its solution regions), ``load`` makes a package of the learner's modules
  and the reference's.
- :mod:`~srsan_np.exercises.checks`: :func:`check` runs finite differences and the
  comparison with the reference op on every exercise; the result prints as a table.
- :mod:`~srsan_np.exercises.diagnosis`: how a wrong output is wrong.
- :func:`learner_kernels`: the kernel set that trains the model with every exercise that
  passes (``srsan-np train --ops DIR``).
- :func:`your_turn`: the one call of a notebook's "your turn" cell.

From the command line: ``srsan-np exercises init DIR``, ``srsan-np exercises check DIR
[NAME ...]``, ``pytest DIR`` (or ``pytest --workspace DIR``).
"""

from __future__ import annotations

from pathlib import Path

from .checks import CheckResult, check
from .workspace import EXERCISES, default_workspace, init

__all__ = ["EXERCISES", "init", "check", "CheckResult", "learner_kernels", "your_turn",
           "MODEL_OPS"]

# The exercises the model is built from; the step-by-step ones only teach.
MODEL_OPS = ("embedding", "linear", "layernorm", "relu", "dropout", "attention", "encoder",
             "scoring", "adam")


def learner_kernels(directory):
    """The kernel set of a workspace: each op of :data:`MODEL_OPS` that passes its check is
    the learner's, the reference serves the rest.

    Returns
    -------
    kernels : srsan_np.kernels.Kernels
    origin : dict[str, str]
        For every op, where it comes from: ``"yours"``, or why the reference serves it
        (``"reference (not done)"``, ``"reference (fails its check: ...)"``).
    """
    from .. import kernels
    from . import workspace

    result = check(directory, MODEL_OPS)
    origin, mine = {}, []
    for name in MODEL_OPS:
        status = result.status(name)
        if status == "pass":
            origin[name], mine = "yours", mine + [name]
        else:
            first = next(r for r in result.rows if r.exercise == name and not r.passed)
            why = "not done" if status == "not done" else \
                f"{'fails its check' if status == 'fail' else 'raises'}: {first.output} -- {first.message}"
            origin[name] = f"reference ({why})"
    package = workspace.load(directory, mine)
    return kernels.from_modules(f"workspace {directory}", package.embedding, package.encoder,
                                package.scoring, package.adam), origin


def your_turn(name, directory=None) -> CheckResult:
    """Check exercise ``name`` in the learner's workspace, or say how to start one.

    ``directory`` defaults to ``$SRSAN_EXERCISES``, else ``./srsan-exercises``. With no
    workspace there, prints how to start one and checks the reference ops instead (so the
    cell runs, and passes, anywhere). Returns the :class:`CheckResult`; a notebook shows it
    as a table.
    """
    directory = Path(directory) if directory is not None else default_workspace()
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; the exercises are {list(EXERCISES)}")
    if (directory / f"{name}.py").is_file():
        return check(directory, [name])
    print(f"Your turn: write {name} yourself. Start a workspace with\n"
          f"    srsan-np exercises init {directory}\n"
          f"fill in {directory / (name + '.py')}, and run this cell again (or: srsan-np "
          f"exercises check {directory} {name}). Until then, the reference ops:")
    return check(None, [name])
