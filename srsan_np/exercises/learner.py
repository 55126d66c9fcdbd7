"""Training with the learner's ops (``srsan-np train --ops DIR``): checked first, theirs after.

:func:`learner_kernels` checks every op the model is built from in the run's own
configuration (float32, its dropout, heads and key mask: :func:`checks.run_setting`)
before the first step. An op that passes is the learner's, one still a stub is the
reference's, and one that fails or raises is refused (:class:`~srsan_np.errors.LearnerError`,
one line naming it and the check's verdict): never trained silently with a wrong gradient.

Every function of the kernel set is guarded: an exception raised in the learner's code
while training (or a ``sys.exit`` there) becomes a :class:`~srsan_np.errors.LearnerError`
at their file and line, reported as theirs, never as a bug in srsan-np.
"""

from __future__ import annotations

import functools
import types
from pathlib import Path

from ..errors import LearnerError
from . import workspace
from .checks import TIME_LIMIT, check, learner_location, run_setting

__all__ = ["MODEL_OPS", "learner_kernels"]

# The exercises the model is built from; the step-by-step ones only teach.
MODEL_OPS = ("linear", "relu", "embedding", "scoring", "layernorm", "dropout", "attention",
             "encoder", "adam")


def _guarded(function, root):
    """``function``, with an exception raised in ``root``'s files made a LearnerError."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # noqa: BLE001 -- a sys.exit in their code included
            where = learner_location(err, root)
            if where is None:
                raise
            raise LearnerError(f"your code raised while training: {where}") from err
    return call


def _guarded_module(module, root):
    """The public functions of ``module``, each guarded."""
    return types.SimpleNamespace(**{name: _guarded(value, root) for name, value in
                                    vars(module).items() if callable(value)
                                    and not name.startswith("_") and not isinstance(value, type)})


def _guarded_adam(cls, root):
    """A subclass of the Adam class ``cls`` whose methods are guarded."""
    methods = {name: _guarded(getattr(cls, name), root)
               for name in ("__init__", "step", "state_dict", "load_state_dict")}
    return type(cls.__name__, (cls,), methods)


_last = {}  # the last result, by its arguments and the workspace's files as they were


def _files(root):
    """The workspace's Python files as they are now: what a check's result depends on."""
    return tuple((p.name, p.read_bytes()) for p in sorted(root.glob("*.py")))


def learner_kernels(directory, heads=2, dropout=0.1, masked=True, time_limit=TIME_LIMIT):
    """The kernel set of a workspace for a training run, every op checked in the run's
    configuration first.

    Parameters
    ----------
    directory : path
        The workspace.
    heads, dropout, masked
        The run's attention heads, dropout probability, and whether it masks padded keys
        (sequence mode) or not (faithful mode).
    time_limit : float
        Seconds each op's check may take.

    Returns
    -------
    kernels : srsan_np.kernels.Kernels
        Each op that passes is the learner's, the reference serves those not done; every
        function guarded (see the module notes).
    origin : dict[str, str]
        For every op: ``"yours"``, or ``"reference (not done)"``.

    Raises
    ------
    LearnerError
        An op fails its check or raises: one line naming it and what the check says.

    A second call with the same arguments, the workspace's files unchanged, returns the
    first call's result (the command line checks before it opens the run, training after).
    """
    root = Path(directory).resolve()
    key = (root, heads, dropout, masked, _files(root))
    if key not in _last:  # the same files in the same configuration: checked once
        _last.clear()
        _last[key] = _learner_kernels(directory, root, heads, dropout, masked, time_limit)
    return _last[key]


def _learner_kernels(directory, root, heads, dropout, masked, time_limit):
    from .. import kernels

    result = check(directory, MODEL_OPS, run=run_setting(heads, dropout, masked),
                   time_limit=time_limit)
    refused = [next(r for r in result.rows if r.exercise == name and not r.passed)
               for name in MODEL_OPS if result.status(name) in ("fail", "error")]
    if refused:
        row = refused[0]
        also = f" (and {', '.join(r.exercise for r in refused[1:])})" if refused[1:] else ""
        verdict = "fails its check" if row.status == "fail" else "raises"
        raise LearnerError(
            f"--ops {directory}: your {row.exercise} {verdict} in this run's configuration"
            f"{also}: {row.output}: {row.message} (srsan-np exercises check {directory} "
            f"{row.exercise}); finish it, or move it away to train with the reference's")
    origin = {name: "yours" if result.status(name) == "pass" else "reference (not done)"
              for name in MODEL_OPS}
    mine = [name for name in MODEL_OPS if origin[name] == "yours"]
    package = _guarded(workspace.load, root)(directory, mine)
    return kernels.from_modules(
        f"workspace {directory}", *(_guarded_module(getattr(package, name), root)
                                    for name in ("embedding", "encoder", "scoring")),
        types.SimpleNamespace(Adam=_guarded_adam(package.adam.Adam, root))), origin
