"""A learner's workspace: stubs made from the textbook ops, and loading what the learner wrote.

The exercises are the textbook ops themselves. Each reference file marks what a learner
writes with a pair of one-line comments, ``# >>> solution`` and ``# <<< solution``;
:func:`stub_source` turns a reference file into its stub by replacing each marked region
with a blank between ``YOUR CODE`` markers (and, inside a function, a
``raise NotImplementedError`` that the checker reports as "not done"). So a stub can never
drift from the textbook: it *is* the textbook, less the solution.

:func:`load` makes one package out of a workspace. Each module of the package is either
the learner's file or, for an exercise the caller does not take from the learner, the
reference module's source, loaded under the package's name. Every module is executed
inside the package, so the relative imports of the encoder (``from .layernorm import
...``) and of the attention resolve to the learner's layer norm, linear layer, ... when
those are taken from the learner, and to the reference otherwise.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
import sys
import textwrap
import types
from pathlib import Path

from ..errors import DataError
from ..files import atomic_write_bytes, remove_leftovers

__all__ = ["EXERCISES", "SECTIONS", "init", "stub_source", "load",
           "WorkspaceExists", "DEFAULT_DIR", "ENV_VAR", "find_workspace", "resolve",
           "is_not_done"]

_PACKAGE = Path(__file__).resolve().parents[1]  # srsan_np/

# Exercise name -> its reference file, in the order the notebooks teach them (02: linear,
# relu; 03: embedding, the softmax cross-entropy; 04: layer norm; 05: dropout, attention;
# 06: the encoder, Adam), which is also an order where a module's imports come first.
EXERCISES = {
    "linear": _PACKAGE / "ops" / "linear.py",
    "relu": _PACKAGE / "ops" / "relu.py",
    "embedding": _PACKAGE / "ops" / "embedding.py",
    "softmax_ce_steps": _PACKAGE / "exercises" / "softmax_ce_steps.py",
    "scoring": _PACKAGE / "ops" / "scoring.py",
    "layernorm_steps": _PACKAGE / "exercises" / "layernorm_steps.py",
    "layernorm": _PACKAGE / "ops" / "layernorm.py",
    "dropout": _PACKAGE / "ops" / "dropout.py",
    "attention_steps": _PACKAGE / "exercises" / "attention_steps.py",
    "attention": _PACKAGE / "ops" / "attention.py",
    "encoder": _PACKAGE / "ops" / "encoder.py",
    "adam": _PACKAGE / "optim.py",
}

# The section of docs/derivations.md that derives each exercise.
SECTIONS = {
    "embedding": "1. Embedding lookup",
    "linear": "2. Linear layer",
    "layernorm": "3. Layer norm",
    "relu": "4. ReLU",
    "dropout": "5. Dropout",
    "attention": "6. Multi-head self-attention",
    "encoder": "7. The post-LN encoder layer",
    "scoring": "8. Read-out and 9. Tied scores and softmax cross-entropy",
    "adam": "12. Adam with coupled L2",
    "layernorm_steps": "3. Layer norm",
    "softmax_ce_steps": "9. Tied scores and softmax cross-entropy",
    "attention_steps": "6. Multi-head self-attention",
}

ENV_VAR = "SRSAN_EXERCISES"
DEFAULT_DIR = Path("srsan-exercises")
TIME_LIMIT = 60.0  # seconds the check of one exercise may take (it takes a few)

_BEGIN, _END = "# >>> solution", "# <<< solution"
_NOT_DONE = "your turn"  # in every stub's NotImplementedError


class WorkspaceExists(FileExistsError):
    """``init`` would overwrite a file the learner may have written."""


def is_not_done(error) -> bool:
    """True if ``error`` is the ``NotImplementedError`` of an untouched stub."""
    return isinstance(error, NotImplementedError) and str(error).startswith(_NOT_DONE)


def find_workspace(start=None) -> Path | None:
    """The learner's workspace, by the one rule the CLI, pytest and the notebooks share.

    ``$SRSAN_EXERCISES`` when it is set (whether or not it exists yet); else the nearest
    ``srsan-exercises/`` directory in ``start`` (default: the working directory) or one of
    its parents, so a workspace at the repository root is found from ``notebooks/``; else
    None.
    """
    from ..runtime import exercises_directory

    if exercises_directory() is not None:
        return exercises_directory()
    start = Path.cwd() if start is None else Path(start)
    for folder in (start, *start.resolve().parents):
        if (folder / DEFAULT_DIR).is_dir():
            return folder / DEFAULT_DIR
    return None


def resolve(directory, names, create=False) -> tuple[Path, list[str]]:
    """The workspace and exercises of ``srsan-np exercises init|check [DIR] [NAME ...]``.

    ``DIR`` may be left out (the workspace is then :func:`find_workspace`'s, or with
    ``create`` and none found, ``./srsan-exercises``), so a first argument that is an
    exercise's name and not a directory is the first name. Raises
    :class:`~srsan_np.errors.DataError` naming what is wrong.
    """
    names = list(names)
    if directory is not None and not Path(directory).is_dir() and str(directory) in EXERCISES:
        directory, names = None, [str(directory), *names]
    unknown = [n for n in names if n not in EXERCISES]
    if unknown:
        raise DataError(f"no exercise {', '.join(unknown)}; the exercises are "
                        f"{', '.join(EXERCISES)}")
    if create:
        return Path(directory or find_workspace() or DEFAULT_DIR), names
    if directory is None:
        directory = find_workspace()
        if directory is None:
            raise DataError(f"no workspace: set {ENV_VAR}, or start one with srsan-np exercises "
                            f"init (it writes ./{DEFAULT_DIR}, found from here and every folder "
                            f"below)")
    if not Path(directory).is_dir():
        raise DataError(f"{directory}: no such workspace (start one: srsan-np exercises init "
                        f"{directory})")
    return Path(directory), names


def _enclosing_function(lines, i, indent):
    """Name of the function whose body line ``i`` (indented ``indent``) is in, or None."""
    for line in reversed(lines[:i]):
        stripped = line.lstrip()
        if stripped and len(line) - len(stripped) < len(indent):
            match = re.match(r"def (\w+)", stripped)
            return match.group(1) if match else None
    return None


def stub_source(name: str) -> str:
    """The stub of exercise ``name``: its reference file with every solution region blank."""
    reference = EXERCISES[name]
    lines = reference.read_text().split("\n")
    yours = []  # the functions with a region to fill, in the file's order
    for i, line in enumerate(lines):
        if line.strip() == _BEGIN:
            function = _enclosing_function(lines, i, line[: len(line) - len(line.lstrip())])
            if function is not None and function not in yours:
                yours.append(function)
    out, i = [], 0
    note = (f"You write: {', '.join(yours)}; the rest is given (keep it, or write your own). "
            f"Read docs/derivations.md, \"{SECTIONS[name]}\". Your forward may return any "
            f"cache you like: the checker hands it back to your backward.")
    header = (f"# Exercise {name!r}: fill in every YOUR CODE block, then run\n"
              f"#     srsan-np exercises check <this directory> {name}\n"
              + textwrap.fill(note, 88, initial_indent="# ", subsequent_indent="# "))
    out.append(header)
    while i < len(lines):
        line = lines[i]
        if line.strip() != _BEGIN:
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == _END)
        function = _enclosing_function(lines, i, indent)
        out.append(f"{indent}# ---------------- YOUR CODE ----------------")
        if function is not None:
            out.append(f'{indent}raise NotImplementedError("{_NOT_DONE}: {function}")')
        else:
            out.append(f"{indent}# (your own helpers, if you want any)")
        out.append(f"{indent}# -------------- END OF YOUR CODE --------------")
        i = end + 1
    return "\n".join(out)


def init(directory, names=None) -> list[Path]:
    """Write the stubs of ``names`` (default: every exercise) into ``directory``.

    Refuses, writing nothing, if any of those files exists and differs from its stub
    (:class:`WorkspaceExists` names them; files are compared as bytes, so one in any
    encoding is refused, not misread): a learner's work is never overwritten. Each file is
    written to a temporary file, then renamed (:func:`srsan_np.runs.atomic_write_bytes`:
    the umask's permissions, no temporary file left by an error or an interrupt, and what
    a killed ``init`` left is removed the next time). Also writes ``test_exercises.py``, so
    that ``pytest DIR`` runs the checks. Returns the paths written.
    """
    directory = Path(directory)
    names = list(EXERCISES) if names is None else list(names)
    unknown = [n for n in names if n not in EXERCISES]
    if unknown:
        raise KeyError(f"no exercise {unknown}; the exercises are {list(EXERCISES)}")
    files = {directory / f"{n}.py": stub_source(n).encode() for n in names}
    files[directory / "test_exercises.py"] = _TEST_FILE.encode()
    if directory.exists() and not directory.is_dir():
        raise WorkspaceExists(f"{directory} exists and is not a directory")
    kept = [p for p, data in files.items() if p.exists() and p.read_bytes() != data]
    if kept:
        raise WorkspaceExists(
            f"{directory}: will not overwrite {', '.join(p.name for p in kept)} (your work?); "
            f"move them away or choose another directory")
    directory.mkdir(parents=True, exist_ok=True)
    remove_leftovers(directory)
    for path, data in files.items():
        atomic_write_bytes(path, data)
    return list(files)


_TEST_FILE = '''"""pytest DIR: one test per exercise output, the diagnosis as the failure message.

Written by `srsan-np exercises init`; `srsan-np exercises check DIR` prints the same as a
table.
"""

from pathlib import Path

import pytest

from srsan_np.exercises.checks import check


@pytest.mark.parametrize("row", check(Path(__file__).parent).rows, ids=str)
def test_exercise_output(row):
    assert row.passed, row.message
'''

def _imports(name):
    """``{module: [names]}`` of the reference module ``name``'s relative imports of other
    exercises (``from .layernorm import layernorm_forward, ...``)."""
    tree = ast.parse(EXERCISES[name].read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in EXERCISES:
            found.setdefault(node.module, []).extend(alias.name for alias in node.names)
    return found


def _reference_module(name):
    """The installed reference module itself (``srsan_np.ops.layernorm``, ``srsan_np.optim``)."""
    dotted = ".".join(EXERCISES[name].relative_to(_PACKAGE.parent).with_suffix("").parts)
    return importlib.import_module(dotted)


def _rebound(reference, full, imports, package):
    """The reference module ``reference`` with what it imports taken from ``package``.

    A copy of its namespace in which every plain function is rebound to the copy (so it
    calls the learner's ``layernorm_forward``, ...), the imported names are the package's,
    and the Numba kernels and classes are the reference's own: the same code, compiled
    once, its on-disk cache tied to the reference module alone.
    """
    module = types.ModuleType(full, reference.__doc__)
    namespace = module.__dict__
    namespace.update({k: v for k, v in vars(reference).items() if k not in ("__name__", "__doc__")})
    for key, value in vars(reference).items():
        if isinstance(value, types.FunctionType) and value.__module__ == reference.__name__:
            function = types.FunctionType(value.__code__, namespace, value.__name__,
                                          value.__defaults__, value.__closure__)
            function.__kwdefaults__, function.__doc__ = value.__kwdefaults__, value.__doc__
            namespace[key] = function
    for source, names in imports.items():
        for n in names:
            namespace[n] = getattr(getattr(package, source), n)
    return module


def load(directory, learner=(), names=None) -> types.ModuleType:
    """One package of exercise modules: the learner's for ``learner``, else the reference.

    Parameters
    ----------
    directory : path or None
        The workspace (None: every module is the reference).
    learner : iterable of str
        Exercise names whose module comes from ``directory/<name>.py``.
    names : iterable of str or None
        The modules wanted, with what they import (default: all).

    Returns
    -------
    package : module
        With one attribute per module (``package.layernorm``, ``package.adam``, ...). A
        reference module none of whose imports is the learner's is the installed module
        itself; one that imports a learner's module (the encoder imports the layer norm,
        ...) is the reference with those imports taken from the learner (see
        :func:`_rebound`). Executing a learner's module may raise whatever their code
        raises.

    Notes
    -----
    A learner's module is named after its workspace (``srsan_np_workspace_<hash>.layernorm``),
    the same name in every process: Numba's on-disk cache of a kernel of theirs records
    its module's name and imports it when it loads the kernel again.
    """
    learner = set(learner)
    wanted = set(EXERCISES if names is None else names)
    for name in reversed(EXERCISES):  # a module's imports come before it
        if name in wanted:
            wanted |= set(_imports(name))
    root = Path(directory).resolve() if directory is not None else _PACKAGE
    package = types.ModuleType(
        f"srsan_np_workspace_{hashlib.sha1(str(root).encode()).hexdigest()[:12]}")
    package.__path__ = [str(root)]
    sys.modules[package.__name__] = package
    mine = set()  # the learner's modules and every module that imports one
    for name in (n for n in EXERCISES if n in wanted):
        full = f"{package.__name__}.{name}"
        if name in learner:
            spec = importlib.util.spec_from_file_location(full, root / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[full] = module
            spec.loader.exec_module(module)
            mine.add(name)
        elif set(_imports(name)) & mine:
            module = _rebound(_reference_module(name), full, _imports(name), package)
            mine.add(name)
        else:
            module = _reference_module(name)
        sys.modules[full] = module  # where a learner's `from .dropout import ...` looks
        setattr(package, name, module)
    return package
