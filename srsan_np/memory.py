"""Memory checked before it is spent: what this process can still allocate, what a training
run and an array file will take, and a refusal that says so when they do not fit.

SQLite and PostgreSQL refuse work they cannot hold in memory with an error, and NumPy refuses
an impossible shape before it allocates; a process that allocates until the kernel kills it
tells its user nothing. So the bytes are estimated first -- a model's parameters with their
gradients and Adam's two moments, a batch's activations, the scores over the catalogue
(:func:`training_bytes`); the arrays of an ``.npy`` or ``.npz`` file from their headers,
before anything is inflated (:func:`stored_bytes`) -- and compared with what the machine
can give this process now (:func:`available`): the memory the system reports available,
the address-space limit (``ulimit -v``) less what the process already maps, and its
control group's limit less its usage. A figure that cannot be known is left out; with
none known, nothing is refused.

The estimates are upper bounds of the largest arrays, not an account of every byte: they
exist to turn "killed" into "refused, and why", not to pack a machine full.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

from srsan_np.errors import ConfigError, DataError

__all__ = ["available", "describe", "check", "training_bytes", "check_training",
           "stored_bytes", "check_stored"]

# float32 copies of every parameter while training: the weights, their gradient, Adam's two
# moments, the selected epoch's weights, the diagnostics' copy before a sampled step; on a
# resume, a checkpoint's weights, moments and selected weights are read beside the first three.
PARAMETER_COPIES = 8
# float32 numbers per example and layer kept for the backward pass and its gradients: per
# position and feature of the (T, D) activations (inputs, queries, keys, values, attention
# output, residuals, layer norms, dropout masks), per position and unit of the (T, F)
# feed-forward ones, per head and pair of positions of the (H, T, T) attention weights.
# The textbook kernels keep the most of the kernel sets; the fast one less.
ACTIVATIONS_D, ACTIVATIONS_F, ACTIVATIONS_TT = 12, 3, 6
# bytes per example and item of the scores: float32 exponentials while training, float32
# scores and the comparisons that rank them while evaluating.
SCORE_BYTES = 12


def _meminfo_available():
    """``MemAvailable`` of ``/proc/meminfo`` (Linux), else the physical memory, else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _address_space_left():
    """The address-space limit (``RLIMIT_AS``) less what this process maps now, or None."""
    try:
        import resource
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, AttributeError, OSError, ValueError):
        return None
    if limit == resource.RLIM_INFINITY:
        return None
    try:
        status = Path("/proc/self/status").read_text()
        mapped = int(status.split("VmSize:")[1].split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        mapped = 0
    return max(limit - mapped, 0)


def _cgroup_left():
    """This process's control group's memory limit less its usage (v2 or v1), or None."""
    root = Path("/sys/fs/cgroup")
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            places, names = [root / path.lstrip("/"), root], ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            places = [root / "memory" / path.lstrip("/"), root / "memory"]
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        for place in places:
            try:
                limit, usage = ((place / n).read_text().strip() for n in names)
                if limit != "max" and int(limit) < 1 << 60:
                    return max(int(limit) - int(usage), 0)
            except (OSError, ValueError):
                continue
    return None


def available():
    """The bytes this process can still allocate, as far as can be known, or None."""
    known = [n for n in (_meminfo_available(), _address_space_left(), _cgroup_left())
             if n is not None]
    return min(known) if known else None


def describe(n) -> str:
    """A size for a person: ``"512 MB"``, ``"3.2 GB"``, ``"4.0e+13 GB"``."""
    if n < 1e9:
        return f"{n / 1e6:.0f} MB"
    return f"{n / 1e9:.1f} GB" if n < 1e14 else f"{n / 1e9:.1e} GB"


def _too_much(needed, what) -> str | None:
    """Why ``needed`` bytes do not fit now, or None if they do (or nothing is known)."""
    left = available()
    if left is None or needed <= left:
        return None
    return (f"{what} about {describe(needed)}, more than the {describe(left)} this process "
            f"can still allocate")


def check(needed, what, advice="") -> None:
    """:class:`DataError` if ``needed`` bytes do not fit: ``"<what> about N GB, more
    than ...<advice>"`` (``what`` ends in a verb: ``"train.npz: its arrays take"``)."""
    said = _too_much(needed, what)
    if said:
        raise DataError(said + advice)


# --------------------------------------------------------------------------- training

def _sizes(model_config, train_config, longest, n_examples):
    """The numbers a training run's memory depends on."""
    sizes = {f: getattr(model_config, f) for f in ("n_items", "hidden", "heads", "layers",
                                                   "ff_mult", "positions", "max_len")}
    batch = min(train_config.batch_size, n_examples or train_config.batch_size)
    return {**sizes, "batch_size": max(batch, 1), "longest": max(longest or 1, 1)}


def _parts(z):
    """:func:`training_bytes` of the sizes ``z`` (:func:`_sizes`)."""
    from srsan_np.ops.encoder import layer_shapes

    D, H, L, V = z["hidden"], z["heads"], z["layers"], z["n_items"]
    B, T = z["batch_size"], z["longest"]
    F = z["ff_mult"] * D
    table = (V + 1) * D + (z["max_len"] * D if z["positions"] else 0)
    encoder = L * sum(math.prod(s) for s in layer_shapes(D, F).values())
    return {
        "parameters with their gradients and Adam's two moments":
            (4 * PARAMETER_COPIES * (table + encoder),
             ["n_items", "hidden"] if table >= encoder else ["layers", "hidden"]),
        "a batch's activations":
            (4 * L * B * T * (ACTIVATIONS_D * D + ACTIVATIONS_F * F + ACTIVATIONS_TT * H * T),
             ["layers", "batch_size", "hidden"]),
        "the scores over the items": (SCORE_BYTES * B * (V + 1), ["batch_size", "n_items"]),
    }


def training_bytes(model_config, train_config, longest=None, n_examples=None):
    """The largest arrays a training run makes, in bytes, by part:
    ``{part: (bytes, the fields that set its size)}``.

    Parameters
    ----------
    model_config : srsan_np.model.Config
    train_config : srsan_np.train.TrainConfig
    longest : int or None
        The data's longest prefix (the positions ``T`` of a batch); None: 1.
    n_examples : int or None
        The data's training examples, which no batch exceeds; None: a full batch.
    """
    return _parts(_sizes(model_config, train_config, longest, n_examples))


_FLAGS = {"n_items": "--n-items", "hidden": "--hidden", "layers": "--layers",
          "batch_size": "--batch-size"}


def _culprit(sizes, fields, model_config, train_config):
    """The one of ``fields`` that, at its default (``n_items``: 1), saves the most."""
    def total(z):
        return sum(n for n, _ in _parts(z).values())

    def default(field):
        config = train_config if field == "batch_size" else model_config
        return 1 if field == "n_items" else type(config).__dataclass_fields__[field].default

    return max(fields, key=lambda f: -total({**sizes, f: min(sizes[f], default(f))}))


def check_training(model_config, train_config, longest=None, n_examples=None) -> None:
    """:class:`~srsan_np.errors.ConfigError` if a training run of these configurations does
    not fit in what this process can allocate, naming the field that, at its default,
    would save the most (so that the setting is blamed on whoever set it)."""
    sizes = _sizes(model_config, train_config, longest, n_examples)
    parts = _parts(sizes)
    said = _too_much(sum(n for n, _ in parts.values()), "training needs")
    if said:
        fields = parts[max(parts, key=lambda p: parts[p][0])][1]
        breakdown = ", ".join(f"{part} {describe(n)}" for part, (n, _) in parts.items())
        raise ConfigError(f"{said} ({breakdown}): lower "
                          f"{' or '.join(_FLAGS[f] for f in fields)}",
                          [_culprit(sizes, fields, model_config, train_config)])


# --------------------------------------------------------------------------- array files

def _npy_bytes(f, where, holds):
    """The data bytes the ``.npy`` header at the start of ``f`` declares (``holds``, the
    bytes there, if it is no such header: reading it will say what it is);
    :class:`DataError` naming ``where`` when it declares more than ``holds``."""
    import numpy as np

    try:
        version = np.lib.format.read_magic(f)
        shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                           else np.lib.format.read_array_header_2_0(f))
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, zipfile.BadZipFile):
        return holds
    declared = math.prod(shape) * dtype.itemsize
    if declared > holds:
        raise DataError(f"{where}: its header declares {describe(declared)} of array data "
                        f"but the file holds {describe(holds)}: damaged, or not NumPy's")
    return declared


def stored_bytes(path) -> int:
    """The bytes the arrays of the ``.npy`` or ``.npz`` file ``path`` take once read, from
    their headers and the archive's directory (nothing is inflated but the headers);
    :class:`DataError` naming the file when a header declares more than its entry holds.
    A file that is neither is counted at its size (reading it will say what it is)."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if not zipfile.is_zipfile(f):
            f.seek(0)
            return _npy_bytes(f, path, size)
    try:
        with zipfile.ZipFile(path) as archive:
            total = 0
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as member:
                        _npy_bytes(member, f"{path}: {info.filename}", info.file_size)
                total += info.file_size
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError):
        return size
    return total


def check_stored(path) -> None:
    """:class:`DataError` naming ``path`` if its arrays do not fit in what this process can
    still allocate, or their headers do not match what the file holds."""
    check(stored_bytes(path), f"{path}: its arrays take", " once read (is it the file you meant?)")
