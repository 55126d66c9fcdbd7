"""Training: seeded epochs, validation-based selection, early stopping, checkpoints, resume.

One epoch = shuffle the training examples, cut them into batches, for each batch
``loss_and_grads`` then one Adam step; then score the validation and the test examples.
The learning rate follows the original's step decay, set from the epoch number alone.

Honest model selection. The original code reports, for each metric, its best value over
all epochs *on the test set* -- that picks the epoch with the test labels. Here the epoch
is selected on a validation split carved out of the training examples, and the test
metrics at that epoch are the result. The original's figure is reported too, labelled
``best_on_test``, because that is what published numbers compare with.

Determinism and resume. Everything random in epoch ``e`` -- the shuffle and the dropout
masks -- comes from generators seeded with ``(seed, e)``, so an epoch depends only on the
weights and optimiser state it starts from. A run interrupted after epoch ``k`` and resumed
from its checkpoint therefore reaches the very same weights as a run that never stopped.

Where it is written: a :class:`srsan_np.run.Run`, which owns the run directory's files.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from srsan_np import kernels as kernel_sets
from srsan_np import memory, model
from srsan_np.data import iterate_batches, make_batch, split_validation
from srsan_np.data.batching import validation_sizes
from srsan_np.diagnostics import Diagnostics
from srsan_np.errors import ConfigError, TrainingDiverged
from srsan_np.evaluate import evaluate
from srsan_np.optim import step_lr
from srsan_np.run import Run

__all__ = ["TrainConfig", "TrainingDiverged", "fit", "kernel_set", "model_scorer"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the original's, plus a validation split.

    Attributes
    ----------
    epochs : int
        Maximum number of epochs (the original: 12).
    batch_size : int
        Examples per Adam step (100).
    lr : float, or a list of floats
        Adam learning rate (1e-3). A list is a choice made on validation: one run per
        rate, all else equal (seed, split, shuffles), and the run with the best validation
        ``select`` metric is kept (see :func:`fit`).
    l2 : float
        Adam's coupled L2 weight decay (1e-5).
    lr_dc, lr_dc_step : float, int
        The learning rate is multiplied by ``lr_dc`` every ``lr_dc_step`` epochs (0.1, 3).
    patience : int
        Stop after this many epochs without a better validation ``select`` metric (10).
    valid_fraction : float
        Fraction of the training examples held out for validation (0.1). 0 trains on all
        of them, as the original does; the last epoch is then the selected one.
    select : str
        The validation metric that selects the epoch, e.g. ``"HR@20"`` or ``"MRR@20"``.
    ks : tuple of int
        Cut-offs of the reported metrics.
    seed : int
        Seeds the initial weights, the validation split, every shuffle and dropout mask.
    kernels : str
        The kernels that train and score: ``"fast"`` or ``"reference"`` (the textbook ops),
        see :mod:`srsan_np.kernels`, or ``"workspace:DIR"``, a learner's workspace
        (:func:`srsan_np.exercises.learner_kernels`). All give the same gradients; their
        dropout masks are drawn for different positions, so a run is reproducible with the
        kernels it was trained with.
    """

    epochs: int = 12
    batch_size: int = 100
    lr: float | tuple = 1e-3
    l2: float = 1e-5
    lr_dc: float = 0.1
    lr_dc_step: int = 3
    patience: int = 10
    valid_fraction: float = 0.1
    select: str = "HR@20"
    ks: tuple = (5, 10, 20)
    seed: int = 0
    kernels: str = "fast"

    def __post_init__(self):
        self._check_types()
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))
        if isinstance(self.lr, (list, tuple)):
            rates = tuple(float(lr) for lr in self.lr)
            object.__setattr__(self, "lr", rates[0] if len(rates) == 1 else rates)
        checks = [  # (holds, what it says, the fields that make it fail)
            (self.seed >= 0, "seed must be >= 0", ["seed"]),
            (self.epochs >= 1, "epochs must be >= 1", ["epochs"]),
            (self.batch_size >= 1, "batch_size must be >= 1", ["batch_size"]),
            (len(self.lrs) > 0 and min(self.lrs) > 0, "lr must be > 0 (or a list of them)", ["lr"]),
            (len(set(self.lrs)) == len(self.lrs), "lr: a list of rates must not repeat one",
             ["lr"]),
            (len({f"{lr:g}" for lr in self.lrs}) == len(self.lrs), "lr: a list of rates must "
             "differ in their first six digits, the precision that names each rate's run: "
             f"{', '.join(map(repr, self.lrs))} do not", ["lr"]),
            (len(self.lrs) == 1 or self.valid_fraction > 0, "a list of learning rates is chosen "
             "on validation: valid_fraction must be > 0", ["lr", "valid_fraction"]),
            (self.l2 >= 0, "l2 must be >= 0", ["l2"]),
            (0 < self.lr_dc <= 1, "lr_dc must be in (0, 1]", ["lr_dc"]),
            (self.lr_dc_step >= 1, "lr_dc_step must be >= 1", ["lr_dc_step"]),
            (self.patience >= 1, "patience must be >= 1", ["patience"]),
            (0 <= self.valid_fraction < 1, "valid_fraction must be in [0, 1)", ["valid_fraction"]),
            (len(self.ks) > 0 and min(self.ks) >= 1, "ks must be positive cut-offs", ["ks"]),
            (self.kernels in kernel_sets.NAMES or self.kernels.startswith(kernel_sets.WORKSPACE),
             f"kernels must be one of {kernel_sets.NAMES} or {kernel_sets.WORKSPACE}DIR",
             ["kernels"]),
        ]
        for ok, message, fields in checks:
            if not ok:
                raise ConfigError(f"TrainConfig: {message}", fields)
        metric = re.fullmatch(r"(HR|MRR|NDCG)@([1-9][0-9]*)", self.select)
        if metric is None or int(metric[2]) not in self.ks:
            raise ConfigError(f"TrainConfig: select must be HR@K, MRR@K or NDCG@K with K in "
                              f"{self.ks}, got {self.select!r}", ["select", "ks"])

    def _check_types(self):
        """Integers where a count is meant, finite numbers where a rate is (a JSON file may hold anything)."""
        def whole(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

        def real(v):
            return (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                    and math.isfinite(v))

        for name in ("epochs", "batch_size", "lr_dc_step", "patience", "seed"):
            if not whole(getattr(self, name)):
                raise ConfigError(f"TrainConfig: {name} must be an integer, got "
                                  f"{getattr(self, name)!r}", [name])
        for name in ("l2", "lr_dc", "valid_fraction"):
            if not real(getattr(self, name)):
                raise ConfigError(f"TrainConfig: {name} must be a finite number, got "
                                  f"{getattr(self, name)!r}", [name])
        rates = self.lr if isinstance(self.lr, (list, tuple)) else [self.lr]
        if not all(real(lr) for lr in rates):
            raise ConfigError(f"TrainConfig: lr must be a number or a list of numbers, got "
                              f"{self.lr!r}", ["lr"])
        if not isinstance(self.ks, (list, tuple)) or not all(whole(k) for k in self.ks):
            raise ConfigError(f"TrainConfig: ks must be a list of integers, got {self.ks!r}", ["ks"])
        for name in ("select", "kernels"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"TrainConfig: {name} must be a string such as "
                                  f"{TrainConfig.__dataclass_fields__[name].default!r}, got "
                                  f"{getattr(self, name)!r}", [name])

    def check_split(self, n_examples: int) -> None:
        """:class:`~srsan_np.errors.ConfigError` (``valid_fraction``) when the validation
        split of ``n_examples`` training examples leaves none to train on, or holds out none."""
        n_train, n_valid = validation_sizes(n_examples, self.valid_fraction)
        said = f"valid_fraction {self.valid_fraction:.12g} of the {n_examples} training examples"
        if n_train == 0:
            raise ConfigError(f"{said} leaves none to train on: lower it", ["valid_fraction"])
        if self.valid_fraction > 0 and n_valid == 0:
            raise ConfigError(f"{said} holds none out to select the epoch on: raise it, or "
                              f"set 0 to train on all of them (the last epoch is then kept)",
                              ["valid_fraction"])

    @property
    def lrs(self) -> tuple:
        """The learning rates to try: ``(lr,)`` or the list."""
        return self.lr if isinstance(self.lr, tuple) else (self.lr,)


# A batch loss this many times a uniform guess's (ln V) is a run that has left the rails.
DIVERGED_FACTOR = 100


def model_scorer(params, config, sessions, kernels="fast"):
    """``score_fn(index) -> (B, V)`` for :func:`srsan_np.evaluate.evaluate`, in eval mode,
    scored with the kernel set ``kernels``.

    In ``faithful`` mode every prefix is padded to the maximum prefix length of
    ``sessions`` -- the original pads each data set to its own maximum -- so it is
    computed once here, not per batch.
    """
    len_max = int(sessions.lengths().max()) if len(sessions) else 0

    def score_fn(index):
        return model.score(params, make_batch(sessions, index, config.mode, len_max), config,
                           kernels)

    return score_fn


def fit(dataset, model_config, train_config, run=None, *, resume=False, overwrite=False,
        log=print, progress=None):
    """Train SR-SAN on ``dataset``; return the summary (also written into the run).

    Parameters
    ----------
    dataset : srsan_np.data.Dataset
        ``train`` is split into training and validation examples; ``test`` is only scored.
    model_config : srsan_np.model.Config
        Its ``n_items`` is the dataset's, or more to score against a larger catalogue
        (the original hard-codes 37,483 items whatever the data).
    train_config : TrainConfig
    run : srsan_np.run.Run, a directory, or None
        Where the checkpoints, diagnostics and summary go (:mod:`srsan_np.run`): an open
        :class:`~srsan_np.run.Run`, or a directory, opened here with ``resume`` and
        ``overwrite``. None keeps everything in memory (and records no diagnostics). With
        a list of learning rates, each rate has its own run inside it.
    resume, overwrite : bool
        For a directory: continue its run from the last finished epoch (same
        configurations and data required), or replace the run it holds. (An open ``Run``
        was opened with them.)
    log : callable
        Receives one line per epoch.
    progress : bool or None
        A progress bar per epoch: None (default) when stderr is a terminal.

    Returns
    -------
    dict
        ``history`` (per epoch: lr, train loss, valid and test metrics, seconds),
        ``selected_epoch``, ``test_at_selected``, ``best_on_test`` (per metric, the best
        value over epochs on the test set, as the original reports, with its epoch), and,
        not in the run's summary, ``params`` (the selected weights) and ``kernels`` (the
        kernel set that trained); with a list of learning rates also ``selected_lr`` and
        ``valid_by_lr`` (each rate's best validation ``select`` metric).
    """
    # what can be refused is, before a run directory is opened
    if model_config.n_items < dataset.n_items:
        raise ValueError(f"model n_items={model_config.n_items} but the data has "
                         f"{dataset.n_items} items")
    train_config.check_split(len(dataset.train))
    memory.check_training(model_config, train_config, _longest(dataset), len(dataset.train))
    kernel_set(train_config, model_config)  # checks a learner's ops (once: kept for below)
    if run is not None and not isinstance(run, Run):
        with Run.open(run, model_config, train_config, dataset, resume=resume,
                      overwrite=overwrite) as opened:
            if resume and not opened.resumed:
                log(f"nothing to resume in {opened.directory}: starting a new run")
            return fit(dataset, model_config, train_config, opened, log=log, progress=progress)
    K = _kernel_set(train_config, model_config, run, log)
    if len(train_config.lrs) > 1:
        return _fit_each_lr(dataset, model_config, train_config, run, K, log, progress)
    return _fit_one(dataset, model_config, train_config, run, K, log, progress)


def _longest(dataset) -> int:
    """The longest prefix of the data: the positions of its widest batch."""
    return max((int(split.lengths().max()) for split in (dataset.train, dataset.test)
                if len(split)), default=1)


def _fit_one(dataset, model_config, tc, run, K, log, progress):
    """:func:`fit` at one learning rate: the epochs, from the run's last one if it has one."""
    train_set, valid_set = (split_validation(dataset.train, tc.valid_fraction, tc.seed)
                            if tc.valid_fraction > 0 else (dataset.train, None))
    state = _start(model_config, tc, K, run, log)
    # Built once: the scorers read the weights, which Adam updates in place.
    scorers = [model_scorer(state.params, model_config, split, K) if split is not None else None
               for split in (valid_set, dataset.test)]
    # Diagnostics hook (srsan_np/diagnostics.py): reads, never changes, the training.
    diagnostics = None if run is None else Diagnostics(
        run.diagnostics_path, state.params, model_config,
        valid_set if valid_set is not None else train_set, state.start)
    len_max = int(train_set.lengths().max())  # what recommend pads faithful sessions to
    for epoch in range(state.start, tc.epochs):
        if valid_set is not None and state.stale >= tc.patience:
            log(f"early stop: no better validation {tc.select} for {tc.patience} epochs")
            break
        started = time.perf_counter()
        loss = _train_epoch(epoch, state, train_set, model_config, tc, K, diagnostics, run,
                            progress)
        _end_epoch(epoch, loss, started, state, (valid_set, dataset.test), scorers, tc, run,
                   diagnostics, len_max, log)
    summary = _summarise(state.history, state.best, tc)
    if run is not None:
        run.write_summary(summary)
    return {**summary, "params": state.best_params, "kernels": K}


def kernel_set(train_config, model_config):
    """The kernels ``train_config.kernels`` names, and, for a learner's workspace, which op
    is whose (else None): each of its ops checked in this run's configuration first, a
    failing one refused (:class:`~srsan_np.errors.LearnerError`)."""
    spec = train_config.kernels
    if not spec.startswith(kernel_sets.WORKSPACE):
        return kernel_sets.get(spec), None
    from srsan_np.exercises import learner_kernels

    return learner_kernels(spec[len(kernel_sets.WORKSPACE):], model_config.heads,
                           model_config.dropout, model_config.mode == "sequence")


def _kernel_set(tc, model_config, run, log):
    """:func:`kernel_set`, saying (and recording in the run) which op is whose."""
    K, origin = kernel_set(tc, model_config)
    if origin is not None:
        directory = tc.kernels[len(kernel_sets.WORKSPACE):]
        log(f"ops: the exercises that pass their check in {directory} (float32, dropout "
            f"{model_config.dropout:g}, {model_config.heads} heads) are yours, the reference "
            f"serves those not done")
        for name, where in origin.items():
            log(f"  {name:<10} {where}")
        if run is not None:
            run.record_ops(directory, origin)
    return K


@dataclass
class _State:
    """What an epoch changes, and what a checkpoint keeps of it."""

    params: dict
    optimizer: object
    history: list
    best: dict | None  # the selected epoch: its number, valid and test metrics
    best_params: dict | None
    start: int  # the first epoch still to train

    @property
    def stale(self):
        """Epochs since the selected one."""
        return 0 if self.best is None else len(self.history) - 1 - self.best["epoch"]


def _start(model_config, tc, K, run, log):
    """Fresh weights and optimiser, or, in a run with a finished epoch, its state."""
    params = model.init_params(model_config, tc.seed)
    state = _State(params, K.Adam(params, lr=tc.lr, weight_decay=tc.l2), [], None, None, 0)
    last = run.last_epoch() if run is not None else None
    if last is not None:
        weights, adam_state, state.best_params, meta = last
        for name in params:
            params[name][...] = weights[name]
        state.optimizer.load_state_dict(adam_state)
        state.history, state.best, state.start = meta["history"], meta["best"], meta["epoch"] + 1
        log(f"resumed from {run.directory}'s checkpoint after epoch {meta['epoch']}")
    return state


def _epoch_rngs(seed, epoch):
    """Independent generators for epoch ``epoch``'s shuffle and its dropout masks."""
    return np.random.default_rng([seed, epoch, 0]), np.random.default_rng([seed, epoch, 1])


def _train_epoch(epoch, state, train_set, model_config, tc, K, diagnostics, run, progress):
    """One pass over the training examples, an Adam step per batch: the mean loss."""
    state.optimizer.lr = step_lr(tc.lr, epoch, tc.lr_dc_step, tc.lr_dc)
    shuffle_rng, dropout_rng = _epoch_rngs(tc.seed, epoch)
    bar = tqdm(iterate_batches(train_set, tc.batch_size, model_config.mode, shuffle_rng),
               total=math.ceil(len(train_set) / tc.batch_size), desc=f"epoch {epoch}",
               leave=False, disable=None if progress is None else not progress)
    loss_sum, seen = 0.0, 0
    for i, batch in enumerate(bar):
        loss, grads = model.loss_and_grads(state.params, batch, model_config, dropout_rng, K)
        if not math.isfinite(loss) or loss > DIVERGED_FACTOR * math.log(model_config.n_items + 1):
            raise TrainingDiverged(_diverged_message(
                f"the loss reached {loss:.3g} in batch {i} (a uniform guess scores "
                f"{math.log(model_config.n_items):.2f})", epoch, run, state.history, tc.l2))
        if diagnostics is not None:
            diagnostics.before_step(epoch, i, loss, grads)
        state.optimizer.step(grads)
        if diagnostics is not None:
            diagnostics.after_step(state.optimizer.lr)
        loss_sum += loss * len(batch.targets)
        seen += len(batch.targets)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
    bar.close()
    return loss_sum / seen


def _end_epoch(epoch, loss, started, state, splits, scorers, tc, run, diagnostics, len_max,
               log):
    """Score the validation and test examples, select, commit the epoch, log its line."""
    adam_state = state.optimizer.state_dict()
    if not all(np.isfinite(a).all() for a in (*state.params.values(), *adam_state.values())
               if a.dtype.kind == "f"):
        raise TrainingDiverged(_diverged_message(
            "the weights or Adam's moments overflowed", epoch, run, state.history, tc.l2))
    valid, test = (evaluate(score, split, tc.batch_size, tc.ks) if split is not None else None
                   for score, split in zip(scorers, splits))
    state.history.append({"epoch": epoch, "lr": state.optimizer.lr, "train_loss": loss,
                          "valid": valid, "test": test,
                          "seconds": time.perf_counter() - started})
    improved = (valid is None or state.best is None
                or valid[tc.select] > state.best["valid"][tc.select])
    if improved:
        state.best = {"epoch": epoch, "valid": valid, "test": test}
        state.best_params = {name: value.copy() for name, value in state.params.items()}
    if run is not None:
        diagnostics.end_epoch(epoch)
        meta = {"config": run.configs(), "epoch": epoch, "history": state.history,
                "best": state.best, "len_max": len_max}
        run.save_epoch(state.params, adam_state, state.best_params, meta, improved)
    shown = f"valid {tc.select} {valid[tc.select]:.2f}  " if valid is not None else ""
    log(f"epoch {epoch:2d}  lr {state.optimizer.lr:.0e}  loss {loss:.4f}  "
        f"{shown}test {tc.select} {test[tc.select]:.2f}{'  *' if improved else ''}")


# A coupled L2 this large is what overflows: its term l2 * w dominates the gradient, and
# Adam's second moment squares it.
L2_SUSPECT = 1.0


def _diverged_message(what, epoch, run, history, l2):
    kept = (f"the last good state (epoch {history[-1]['epoch']}: weights and Adam's moments) is "
            f"kept in {run.directory}" if run is not None and history
            else "no epoch had finished, so nothing was kept")
    advice = (f"Try a much lower --l2 (it is {l2:g}; the original uses 1e-05)" if l2 >= L2_SUSPECT
              else "Try a lower --lr (a tenth of this one) or a larger --batch-size")
    return (f"training diverged: {what} at epoch {epoch}; {kept}. {advice}, in a new run "
            f"(--overwrite or another --out)")


def _fit_each_lr(dataset, model_config, tc, run, K, log, progress):
    """:func:`fit` once per learning rate of ``tc.lr``; keep the best on validation.

    Every run has the same seed, so the same initial weights, validation split, shuffles
    and dropout masks: the rate is the only difference. A tie goes to the rate listed first.
    """
    runs, subs = {}, {}
    for lr in tc.lrs:
        log(f"learning rate {lr:g} (one of {', '.join(f'{r:g}' for r in tc.lrs)})")
        one = replace(tc, lr=lr)
        subs[lr] = run.sub_run(lr, model_config, one, run.resumed) if run is not None else None
        runs[lr] = _fit_one(dataset, model_config, one, subs[lr], K, log, progress)
    valid_by_lr = {f"{lr:g}": runs[lr]["valid_at_selected"][tc.select] for lr in tc.lrs}
    chosen = max(tc.lrs, key=lambda lr: runs[lr]["valid_at_selected"][tc.select])
    log(f"chosen: learning rate {chosen:g} (validation {tc.select} by rate: "
        f"{', '.join(f'{lr} {value:.2f}' for lr, value in valid_by_lr.items())})")
    summary = {**runs[chosen], "selected_lr": chosen, "valid_by_lr": valid_by_lr,
               "selected_by": f"validation {tc.select}, over epochs and learning rates"}
    if run is not None:
        run.adopt_best(subs[chosen])
        run.write_summary({k: v for k, v in summary.items() if k not in ("params", "kernels")})
    return summary


def _summarise(history, best, tc):
    """The selected epoch's test metrics and the original's best-over-epochs figure."""
    metrics = list(history[-1]["test"])
    best_on_test = {m: max(h["test"][m] for h in history) for m in metrics}
    best_epoch = {m: max(history, key=lambda h: h["test"][m])["epoch"] for m in metrics}
    return {
        "selected_epoch": best["epoch"],
        "selected_by": (f"validation {tc.select}" if tc.valid_fraction > 0
                        else "last epoch (no validation split)"),
        "valid_at_selected": best["valid"],
        "test_at_selected": best["test"],
        "best_on_test": best_on_test,
        "best_on_test_epoch": best_epoch,
        "history": history,
    }
