"""Training diagnostics: how the network trains, recorded into the run directory.

What is recorded, and when (``N`` = :attr:`Diagnostics.every`):

- every step: the loss, its exponential moving average (``BETA = 0.98``, bias-corrected,
  so the first steps are not pulled towards 0) and the learning rate;
- every ``N``-th step of each epoch (step 0 included, so every epoch has one), for each
  parameter tensor ``W`` with gradient ``g`` and Adam update ``dW``: the gradient norm
  ``||g||`` and the update-to-weight ratio ``||dW|| / ||W||`` (CS231n's rule of thumb:
  around ``1e-3``; much larger and the rate is too high, much smaller and it learns
  nothing). Sampling keeps the cost low: the update needs a copy of the weights before the
  step, the embedding table included;
- every epoch: the mean of that epoch's sampled ratios and norms, and, on one fixed batch of
  validation examples in evaluation mode, each head's attention entropy at the read-out
  query (in nats: 0 reads one key, ``log n`` spreads evenly over ``n`` keys) and, in
  faithful mode, the attention mass the read-out query puts on padding (id 0) keys. The
  entropy's ceiling on that batch, the mean of ``log n`` over its read-out rows, is
  recorded once, as ``uniform_entropy``.

File format. Everything lives in one JSON file of the run directory
(:attr:`srsan_np.run.Run.diagnostics_path`), one object rewritten whole -- temporary file,
then rename -- at the end of every epoch and, in a long epoch, at most every
:attr:`Diagnostics.flush_seconds`. A reader (``srsan-np plot``)
therefore always finds a complete file, also while training runs; at worst it misses the
steps since the last write. Lists are columns (one entry per step), so the file stays
small: a few numbers per step.

Reading: :func:`load_diagnostics`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from srsan_np import model
from srsan_np.data import make_batch
from srsan_np.errors import DataError
from srsan_np.files import read_json, write_json

__all__ = ["Diagnostics", "attention_statistics", "load_diagnostics"]

VERSION = 1
STEP_COLUMNS = ("epoch", "loss", "loss_smoothed", "lr")  # one entry per step each
BETA = 0.98  # the loss's moving average: about the last 50 steps


def _norm(a) -> float:
    a = np.asarray(a).reshape(-1)  # a kernel set's own gradient form made an array
    with np.errstate(over="ignore"):  # an overflowing gradient's norm is inf: recorded as such
        return float(np.sqrt(np.dot(a, a)))  # one BLAS pass, no temporary as a * a would make


def _short(x) -> float:
    """Five significant digits: what a plot needs, a third of the file of full precision."""
    return float(f"{x:.5g}")


def attention_statistics(maps, batch, mode):
    """Per layer and head: the read-out query's attention entropy and mass on padding.

    Parameters
    ----------
    maps : list of L arrays (B, H, T, T)
        :func:`srsan_np.model.attention_maps` of ``batch``.
    batch : srsan_np.data.Batch
    mode : {"faithful", "sequence"}

    Returns
    -------
    entropy : list of L lists of H floats
        Mean over the batch of ``-sum_s p_s log p_s`` over the keys ``s`` of the read-out
        query's row (``0 log 0 = 0``: masked keys contribute nothing).
    padding_mass : list of L lists of H floats, or None
        Faithful mode: mean over the batch of the read-out row's weight on keys whose id
        is 0 (the original attends to its padding). Sequence mode masks padding: None.
    """
    B = len(batch.last)
    rows = [m[np.arange(B), :, batch.last] for m in maps]  # L x (B, H, T): the read-out rows
    entropy = [(-np.where(r > 0, r * np.log(np.where(r > 0, r, 1.0)), 0.0)).sum(-1).mean(0)
               for r in rows]  # L x (H,)
    padding = None
    if mode == "faithful":
        is_pad = (batch.inputs == 0)[:, None, :]  # (B, 1, T)
        padding = [(r * is_pad).sum(-1).mean(0) for r in rows]  # L x (H,)
    as_lists = lambda per_layer: [[_short(v) for v in h] for h in per_layer]  # noqa: E731
    return as_lists(entropy), None if padding is None else as_lists(padding)


class Diagnostics:
    """Records the diagnostics of one training run (see the module docstring).

    ``fit`` calls, around each Adam step, :meth:`before_step` and :meth:`after_step`, and
    after each epoch :meth:`end_epoch`. Nothing here changes the training: the weights,
    gradients and random streams are only read.

    Parameters
    ----------
    path : path
        The file to write.
    params : dict[str, np.ndarray]
        The weights Adam updates in place.
    config : srsan_np.model.Config
    probe : srsan_np.data.Sessions
        The examples of the fixed attention batch (the validation split; its first
        ``probe_size``).
    start_epoch : int
        Resuming: the records of this epoch and later, in an existing file, are dropped
        (that epoch is trained again).
    every, probe_size, flush_seconds : int, int, float
    """

    def __init__(self, path, params, config, probe, start_epoch=0, every=20,
                 probe_size=100, flush_seconds=60.0):
        self.path = Path(path)
        self.params, self.config = params, config
        self.every, self.flush_seconds = int(every), float(flush_seconds)
        n = min(probe_size, len(probe))
        self.probe = make_batch(probe, np.arange(n), config.mode,
                                int(probe.lengths().max())) if n else None
        # columns: one entry per step, and per sampled step
        self.data = {"version": VERSION, "every": self.every, "mode": config.mode,
                     "params": list(params),
                     # the read-out entropy of a uniform row, averaged over the probe batch
                     "uniform_entropy": (_short(np.log(self.probe.key_mask.sum(1)).mean())
                                         if n else None),
                     "steps": {"epoch": [], "loss": [], "loss_smoothed": [], "lr": []},
                     "sampled": {"step": [], "epoch": [], "grad_norm": {n: [] for n in params},
                                 "update_ratio": {n: [] for n in params}},
                     "epochs": []}
        self._ema, self._before = 0.0, None
        if start_epoch > 0 and self.path.exists():
            self._keep_before(load_diagnostics(self.path), start_epoch)
        self._written = time.monotonic()

    def _keep_before(self, old, epoch):
        """Take over ``old``'s records of the epochs before ``epoch``."""
        for part in ("steps", "sampled"):
            keep = [i for i, e in enumerate(old[part]["epoch"]) if e < epoch]
            self.data[part] = _take(old[part], keep)
        self.data["epochs"] = [r for r in old["epochs"] if r["epoch"] < epoch]
        smoothed = self.data["steps"]["loss_smoothed"]
        if smoothed:  # the moving average goes on from where it was, not from 0
            self._ema = smoothed[-1] * (1.0 - BETA ** len(smoothed))

    # ------------------------------------------------------------------ the hooks

    def before_step(self, epoch, step, loss, grads):
        """Record step ``step`` of ``epoch`` (its loss and, if sampled, its gradients)."""
        steps = self.data["steps"]
        n = len(steps["loss"]) + 1
        self._ema = BETA * self._ema + (1.0 - BETA) * loss
        steps["epoch"].append(epoch)
        steps["loss"].append(_short(loss))
        steps["loss_smoothed"].append(_short(self._ema / (1.0 - BETA ** n)))
        if step % self.every == 0:
            sampled = self.data["sampled"]
            sampled["step"].append(n - 1)
            sampled["epoch"].append(epoch)
            for name, g in grads.items():
                sampled["grad_norm"][name].append(_short(_norm(g)))
            self._before = {name: w.copy() for name, w in self.params.items()}

    def after_step(self, lr):
        """After Adam's step: the learning rate used and, if sampled, the update ratios."""
        self.data["steps"]["lr"].append(lr)
        if self._before is not None:
            ratios = self.data["sampled"]["update_ratio"]
            for name, w in self.params.items():
                before = self._before[name]
                np.subtract(w, before, out=before)  # the update, in the copy's memory
                ratios[name].append(_short(_norm(before) / max(_norm(w), 1e-30)))
            self._before = None
            if time.monotonic() - self._written > self.flush_seconds:
                self.write()

    def end_epoch(self, epoch):
        """The epoch's means and the attention statistics of the probe batch; write the file."""
        s = self.data["sampled"]
        here = [i for i, e in enumerate(s["epoch"]) if e == epoch]
        mean = lambda column: _short(np.mean([column[i] for i in here])) if here else None  # noqa: E731
        lrs = self.data["steps"]["lr"]
        record = {"epoch": epoch, "lr": lrs[-1] if lrs else None,
                  "grad_norm": {n: mean(c) for n, c in s["grad_norm"].items()},
                  "update_ratio": {n: mean(c) for n, c in s["update_ratio"].items()},
                  "attention_entropy": None, "padding_mass": None}
        if self.probe is not None:
            maps = model.attention_maps(self.params, self.probe, self.config)
            record["attention_entropy"], record["padding_mass"] = attention_statistics(
                maps, self.probe, self.config.mode)
        self.data["epochs"].append(record)
        self.write()

    def write(self):
        """Replace the file atomically (compact: a column per line would be huge)."""
        write_json(self.path, self.data, indent=None)
        self._written = time.monotonic()


def _take(columns, keep):
    """Entries ``keep`` of every list in ``columns``, a dict of lists or of such dicts."""
    return {k: _take(v, keep) if isinstance(v, dict) else [v[i] for i in keep]
            for k, v in columns.items()}


def load_diagnostics(path):
    """The contents of the diagnostics file ``path``, or None if there is none (yet).

    Raises :class:`~srsan_np.errors.DataError` naming the file when it is not such a file.
    """
    path = Path(path)
    if not path.exists():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise DataError(f"{path}: not an srsan-np diagnostics file (version {VERSION})")
    broken = _broken(data)
    if broken:
        raise DataError(f"{path}: not an srsan-np diagnostics file ({broken})")
    return data


def _numbers(column, n=None) -> bool:
    """Whether ``column`` is a list of numbers (of length ``n``, if given)."""
    return isinstance(column, list) and (n is None or len(column) == n) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in column)


def _per_head(value) -> bool:
    """Whether ``value`` is None or a list of layers, each a list of one number per head."""
    return value is None or isinstance(value, list) and all(_numbers(h) for h in value)


def _length(columns, key) -> int:
    """The length of the column ``key`` of ``columns`` (-1, which none has, if it is none)."""
    column = columns.get(key) if isinstance(columns, dict) else None
    return len(column) if isinstance(column, list) else -1


def _broken(data) -> str | None:
    """What in ``data`` is not as :class:`Diagnostics` writes it, or None: columns of numbers
    of one length each, one column per parameter, epochs of the same attention shape."""
    params, steps, sampled, epochs = (data.get(k) for k in ("params", "steps", "sampled", "epochs"))
    if not isinstance(params, list) or not all(isinstance(n, str) for n in params):
        return "params: a list of parameter names"
    if not isinstance(steps, dict) or not all(
            _numbers(steps.get(k), _length(steps, "loss")) for k in STEP_COLUMNS):
        return f"steps: columns {', '.join(STEP_COLUMNS)} of one length"
    n = _length(sampled, "step")
    columns = [sampled.get(k) for k in ("step", "epoch")] if isinstance(sampled, dict) else [None]
    per_param = [sampled.get(k) for k in ("grad_norm", "update_ratio")] if n >= 0 else [None]
    if not all(_numbers(c, n) for c in columns) or not all(
            isinstance(p, dict) and set(p) == set(params)
            and all(_numbers(c, n) for c in p.values())
            for p in per_param):
        return "sampled: columns of one length, one per parameter"
    if not isinstance(epochs, list) or not all(
            isinstance(r, dict) and _numbers([r.get("epoch")])
            and _per_head(r.get("attention_entropy")) and _per_head(r.get("padding_mass"))
            for r in epochs):
        return "epochs: records of an epoch and its attention statistics per layer and head"
    shapes = {str([len(h) for h in r[k]]) for r in epochs for k in ("attention_entropy",
                                                                   "padding_mass") if r.get(k)}
    return "epochs: attention statistics of one shape" if len(shapes) > 1 else None
