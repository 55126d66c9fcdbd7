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
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from srsan_np import kernels as kernel_sets
from srsan_np import model
from srsan_np.checkpoint import load_checkpoint, save_checkpoint, write_json
from srsan_np.data import iterate_batches, make_batch, split_validation
from srsan_np.diagnostics import Diagnostics
from srsan_np.errors import DataError, TrainingDiverged
from srsan_np.evaluate import evaluate
from srsan_np.optim import step_lr

__all__ = ["TrainConfig", "TrainingDiverged", "fit", "model_scorer", "load_run", "load_preset",
           "preset_path", "check_resume", "run_configs"]


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
    kernels : {"fast", "reference"}
        The kernel set that trains and scores (see :mod:`srsan_np.kernels`). Both give the
        same gradients; their dropout masks are drawn for different positions, so a run is
        reproducible with the kernel set it was trained with.
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
        checks = [
            (self.seed >= 0, "seed must be >= 0"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (len(self.lrs) > 0 and min(self.lrs) > 0, "lr must be > 0 (or a list of them)"),
            (len(set(self.lrs)) == len(self.lrs), "lr: a list of rates must not repeat one"),
            (len(self.lrs) == 1 or self.valid_fraction > 0,
             "a list of learning rates is chosen on validation: valid_fraction must be > 0"),
            (self.l2 >= 0, "l2 must be >= 0"),
            (0 < self.lr_dc <= 1, "lr_dc must be in (0, 1]"),
            (self.lr_dc_step >= 1, "lr_dc_step must be >= 1"),
            (self.patience >= 1, "patience must be >= 1"),
            (0 <= self.valid_fraction < 1, "valid_fraction must be in [0, 1)"),
            (len(self.ks) > 0 and min(self.ks) >= 1, "ks must be positive cut-offs"),
            (self.kernels in kernel_sets.NAMES, f"kernels must be one of {kernel_sets.NAMES}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")
        name, _, k = self.select.partition("@")
        if name not in ("HR", "MRR", "NDCG") or not k.isdigit() or int(k) not in self.ks:
            raise ValueError(f"TrainConfig: select must be HR@K, MRR@K or NDCG@K with K in "
                             f"{self.ks}, got {self.select!r}")

    def _check_types(self):
        """Integers where a count is meant, finite numbers where a rate is (a JSON file may hold anything)."""
        def whole(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

        def real(v):
            return (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                    and math.isfinite(v))

        for name in ("epochs", "batch_size", "lr_dc_step", "patience", "seed"):
            if not whole(getattr(self, name)):
                raise ValueError(f"TrainConfig: {name} must be an integer, got {getattr(self, name)!r}")
        for name in ("l2", "lr_dc", "valid_fraction"):
            if not real(getattr(self, name)):
                raise ValueError(f"TrainConfig: {name} must be a finite number, got {getattr(self, name)!r}")
        rates = self.lr if isinstance(self.lr, (list, tuple)) else [self.lr]
        if not all(real(lr) for lr in rates):
            raise ValueError(f"TrainConfig: lr must be a number or a list of numbers, got {self.lr!r}")
        if not isinstance(self.ks, (list, tuple)) or not all(whole(k) for k in self.ks):
            raise ValueError(f"TrainConfig: ks must be a list of integers, got {self.ks!r}")
        if not isinstance(self.select, str):
            raise ValueError(f"TrainConfig: select must be a string such as 'HR@20', got {self.select!r}")

    @property
    def lrs(self) -> tuple:
        """The learning rates to try: ``(lr,)`` or the list."""
        return self.lr if isinstance(self.lr, tuple) else (self.lr,)


PRESETS_DIR = Path(__file__).resolve().parent / "configs"


def preset_path(name):
    """The file of the named configuration in ``srsan_np/configs``; ValueError naming the known ones."""
    path = PRESETS_DIR / f"{name}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.json")))
        raise ValueError(f"no preset {name!r} (presets: {known})")
    return path


def load_preset(name):
    """A named configuration ``{"model": {...}, "train": {...}}`` from ``srsan_np/configs``.

    ``sample``: the configuration chosen on the built-in sample's validation split
    (sequence mode); ``original``: the original code's protocol (faithful mode, no
    validation split). The keys are fields of :class:`srsan_np.model.Config` (less
    ``n_items``) and of :class:`TrainConfig`.
    """
    return json.loads(preset_path(name).read_text())


# A batch loss this many times a uniform guess's (ln V) is a run that has left the rails.
DIVERGED_FACTOR = 100


def _diverged(loss, n_items):
    return not math.isfinite(loss) or loss > DIVERGED_FACTOR * math.log(n_items + 1)


def _state_finite(params, adam_state):
    return all(np.isfinite(a).all() for a in (*params.values(), *adam_state.values())
               if a.dtype.kind == "f")


def _diverged_message(what, epoch, run_dir, history):
    kept = (f"the last good state (epoch {history[-1]['epoch']}: weights and Adam's moments) is "
            f"kept in {run_dir / 'last.npz'}" if run_dir is not None and history
            else "no epoch had finished, so nothing was kept")
    return (f"training diverged: {what} at epoch {epoch}; {kept}. Try a lower --lr (a tenth "
            f"of this one) or a larger --batch-size, in a new run (--overwrite or another --out)")


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


def _epoch_rngs(seed, epoch):
    """Independent generators for epoch ``epoch``'s shuffle and its dropout masks."""
    return np.random.default_rng([seed, epoch, 0]), np.random.default_rng([seed, epoch, 1])


def run_configs(model_config, train_config):
    """The JSON of ``config.json``: what a resume must match."""
    return {"model": dataclasses.asdict(model_config), "train": dataclasses.asdict(train_config)}


def _param_arrays(params, prefix="param/"):
    return {f"{prefix}{name}": value for name, value in params.items()}


def _prefixed(arrays, prefix):
    return {name[len(prefix):]: value for name, value in arrays.items() if name.startswith(prefix)}


def load_run(run_dir, which="best"):
    """Weights and config of a run: ``(params, model.Config, meta)``.

    ``which`` is ``"best"`` (the validation-selected epoch) or ``"last"``. Both come from
    ``last.npz`` when the run has one -- it carries the selected epoch's weights too, so
    the pair is always consistent -- else from ``best.npz`` (the top of a run over several
    learning rates). ``DataError`` names a checkpoint that is not one of a training run.
    """
    run_dir = Path(run_dir)
    last = run_dir / "last.npz"
    arrays, meta, path = None, None, last
    if last.exists():
        arrays, meta = load_checkpoint(last)
    prefix = "param/" if which == "last" else "best/param/"
    if not _prefixed(arrays or {}, prefix):
        path, prefix = run_dir / f"{which}.npz", "param/"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no checkpoint (is {run_dir} a training run directory?)")
        arrays, meta = load_checkpoint(path)
    params = _prefixed(arrays, prefix)
    try:
        config = model.Config(**meta["config"]["model"])
        missing = [key for key, value in (("epoch", meta.get("epoch")),
                                          ("best", meta.get("best")),
                                          ("config.train", meta["config"].get("train")))
                   if value is None]
        if missing:  # what evaluate and recommend read
            raise KeyError(", ".join(missing))
        expected = model.init_params(config, 0)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: not a checkpoint of a training run ({type(err).__name__}: "
                        f"{err})") from None
    if {k: v.shape for k, v in params.items()} != {k: v.shape for k, v in expected.items()}:
        raise DataError(f"{path}: its weights do not match its own model configuration")
    return params, config, meta


def check_resume(run_dir, model_config, train_config):
    """``DataError`` unless the run in ``run_dir`` was started with these configs (or has no
    ``config.json`` yet): what a resume must check before it writes anything."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return
    try:
        started = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise DataError(f"{path}: unreadable ({err})") from None
    wanted = json.loads(json.dumps(run_configs(model_config, train_config)))
    if started == wanted:
        return
    changed = []
    for section, fields in wanted.items():
        before = started.get(section) if isinstance(started, dict) else None
        before = before if isinstance(before, dict) else {}
        changed += [f"{section}.{k} {before.get(k)!r} -> {v!r}" for k, v in fields.items()
                    if before.get(k) != v]
    raise DataError(f"{run_dir}: cannot resume: the run was started with other settings "
                    f"({'; '.join(changed) or 'config.json differs'}); resume with the same "
                    f"flags, or start again with --overwrite")


def _export_best(run_dir, best_params, meta):
    """``best.npz``: the selected epoch's weights, as a file of their own (``last.npz``
    already holds them; this copy is for readers that want one file per epoch)."""
    b = meta["best"]["epoch"]
    save_checkpoint(run_dir / "best.npz", _param_arrays(best_params),
                    {**meta, "epoch": b, "history": meta["history"][:b + 1]})


def _best_exported(run_dir, meta):
    try:
        return load_checkpoint(run_dir / "best.npz")[1].get("epoch") == meta["best"]["epoch"]
    except (OSError, ValueError):
        return False


def fit(dataset, model_config, train_config, run_dir=None, resume=False, log=print,
        kernels=None):
    """Train SR-SAN on ``dataset``; return the summary (also ``summary.json`` in ``run_dir``).

    Parameters
    ----------
    dataset : srsan_np.data.Dataset
        ``train`` is split into training and validation examples; ``test`` is only scored.
    model_config : srsan_np.model.Config
        Its ``n_items`` is the dataset's, or more to score against a larger catalogue
        (the original hard-codes 37,483 items whatever the data).
    train_config : TrainConfig
    run_dir : path or None
        Where ``config.json``, ``last.npz`` (every epoch), ``best.npz`` (the selected epoch),
        ``diagnostics.json`` (:mod:`srsan_np.diagnostics`) and ``summary.json`` go. None
        keeps everything in memory (and records no diagnostics). With a list of learning
        rates, each rate's run has its own ``run_dir/lr-<rate>``, and ``run_dir`` gets the
        chosen run's ``best.npz`` and the summary.
    resume : bool
        Continue from ``run_dir/last.npz`` (same configs required).
    log : callable
        Receives one line per epoch.
    kernels : srsan_np.kernels.Kernels or None
        A kernel set to train and score with instead of ``train_config.kernels``: a
        learner's ops (:func:`srsan_np.exercises.learner_kernels`).

    Returns
    -------
    dict
        ``history`` (per epoch: lr, train loss, valid and test metrics, seconds),
        ``selected_epoch``, ``test_at_selected``, ``best_on_test`` (per metric, the best
        value over epochs on the test set, as the original reports, with its epoch), and
        ``params`` (the selected weights); with a list of learning rates also
        ``selected_lr`` and ``valid_by_lr`` (each rate's best validation ``select`` metric).
    """
    tc = train_config
    if len(tc.lrs) > 1:
        return _fit_each_lr(dataset, model_config, tc, run_dir, resume, log, kernels)
    if model_config.n_items < dataset.n_items:
        raise ValueError(f"model n_items={model_config.n_items} but the data has "
                         f"{dataset.n_items} items")
    if tc.valid_fraction > 0:
        train_set, valid_set = split_validation(dataset.train, tc.valid_fraction, tc.seed)
    else:
        train_set, valid_set = dataset.train, None
    configs = run_configs(model_config, tc)

    kernels = tc.kernels if kernels is None else kernels
    params = model.init_params(model_config, tc.seed)
    optimizer = kernel_sets.get(kernels).Adam(params, lr=tc.lr, weight_decay=tc.l2)
    history, best, best_params, start = [], None, None, 0
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume and (run_dir / "last.npz").exists():
            arrays, meta = load_checkpoint(run_dir / "last.npz")
            if meta["config"] != json.loads(json.dumps(configs)):
                raise ValueError(f"{run_dir}: cannot resume, the run was started with another "
                                 f"config:\n{json.dumps(meta['config'], indent=2)}")
            for name in params:
                params[name][...] = arrays[f"param/{name}"]
            optimizer.load_state_dict({k[len("adam/"):]: v for k, v in arrays.items()
                                       if k.startswith("adam/")})
            history, best, start = meta["history"], meta["best"], meta["epoch"] + 1
            best_params = load_run(run_dir)[0]
            if not _best_exported(run_dir, meta):  # killed between last.npz and best.npz
                _export_best(run_dir, best_params, meta)
            log(f"resumed from {run_dir / 'last.npz'} after epoch {meta['epoch']}")
        write_json(run_dir / "config.json", configs)

    # Built once: the scorers read `params`, which Adam updates in place.
    score_valid = (model_scorer(params, model_config, valid_set, kernels)
                   if valid_set is not None else None)
    score_test = model_scorer(params, model_config, dataset.test, kernels)
    train_len_max = int(train_set.lengths().max())  # what recommend pads faithful sessions to
    stale = 0 if best is None else len(history) - 1 - best["epoch"]
    # Diagnostics hook (srsan_np/diagnostics.py): reads, never changes, the training.
    diagnostics = None if run_dir is None else Diagnostics(
        run_dir, params, model_config, valid_set if valid_set is not None else train_set, start)
    for epoch in range(start, tc.epochs):
        if valid_set is not None and stale >= tc.patience:
            log(f"early stop: no better validation {tc.select} for {tc.patience} epochs")
            break
        started = time.perf_counter()
        optimizer.lr = step_lr(tc.lr, epoch, tc.lr_dc_step, tc.lr_dc)
        shuffle_rng, dropout_rng = _epoch_rngs(tc.seed, epoch)
        n_batches = math.ceil(len(train_set) / tc.batch_size)
        # A bar only on a terminal (disable=None), so a log file holds the epoch lines
        # alone; tqdm takes TQDM_DISABLE as a default, which an explicit argument overrides.
        bar_options = {} if "TQDM_DISABLE" in os.environ else {"disable": None}
        bar = tqdm(iterate_batches(train_set, tc.batch_size, model_config.mode, shuffle_rng),
                   total=n_batches, desc=f"epoch {epoch}", leave=False, **bar_options)
        loss_sum, seen = 0.0, 0
        for i, batch in enumerate(bar):
            # for the optimizer alone, unless the diagnostics read this step's gradients
            for_optimizer = diagnostics is None or not diagnostics.reads_gradients(i)
            loss, grads = model.loss_and_grads(params, batch, model_config, dropout_rng,
                                               kernels, for_optimizer=for_optimizer)
            if _diverged(loss, model_config.n_items):
                raise TrainingDiverged(_diverged_message(
                    f"the loss reached {loss:.3g} in batch {i} (a uniform guess scores "
                    f"{math.log(model_config.n_items):.2f})", epoch, run_dir, history))
            if diagnostics is not None:
                diagnostics.before_step(epoch, i, loss, grads)
            optimizer.step(grads)
            if diagnostics is not None:
                diagnostics.after_step(optimizer.lr)
            loss_sum += loss * len(batch.targets)
            seen += len(batch.targets)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        bar.close()
        adam_state = optimizer.state_dict()
        if not _state_finite(params, adam_state):
            raise TrainingDiverged(_diverged_message(
                "the weights or Adam's moments overflowed", epoch, run_dir, history))

        valid = (evaluate(score_valid, valid_set, tc.batch_size, tc.ks)
                 if valid_set is not None else None)
        test = evaluate(score_test, dataset.test, tc.batch_size, tc.ks)
        record = {"epoch": epoch, "lr": optimizer.lr, "train_loss": loss_sum / seen,
                  "valid": valid, "test": test, "seconds": time.perf_counter() - started}
        history.append(record)
        improved = valid is None or best is None or valid[tc.select] > best["valid"][tc.select]
        if improved:
            best = {"epoch": epoch, "valid": valid, "test": test}
            best_params = {name: value.copy() for name, value in params.items()}
        stale = 0 if improved else stale + 1
        if run_dir is not None:
            diagnostics.end_epoch(epoch)
            meta = {"config": configs, "epoch": epoch, "history": history, "best": best,
                    "len_max": train_len_max}
            adam = {f"adam/{k}": v for k, v in adam_state.items()}
            # last.npz alone is the commit: it carries the selected weights too (see load_run).
            save_checkpoint(run_dir / "last.npz", {**_param_arrays(params), **adam,
                                                   **_param_arrays(best_params, "best/param/")}, meta)
            if improved:
                _export_best(run_dir, best_params, meta)

        shown = f"valid {tc.select} {valid[tc.select]:.2f}  " if valid is not None else ""
        log(f"epoch {epoch:2d}  lr {optimizer.lr:.0e}  loss {record['train_loss']:.4f}  "
            f"{shown}test {tc.select} {test[tc.select]:.2f}{'  *' if improved else ''}")

    summary = _summarise(history, best, tc)
    if run_dir is not None:
        write_json(run_dir / "summary.json", summary)
    return {**summary, "params": best_params}


def _fit_each_lr(dataset, model_config, tc, run_dir, resume, log, kernels):
    """:func:`fit` once per learning rate of ``tc.lr``; keep the best on validation.

    Every run has the same seed, so the same initial weights, validation split, shuffles
    and dropout masks: the rate is the only difference. A tie goes to the rate listed first.
    """
    runs = {}
    for lr in tc.lrs:
        log(f"learning rate {lr:g} (one of {', '.join(f'{r:g}' for r in tc.lrs)})")
        sub_dir = None if run_dir is None else Path(run_dir) / f"lr-{lr:g}"
        runs[lr] = fit(dataset, model_config, dataclasses.replace(tc, lr=lr), sub_dir, resume, log,
                       kernels)
    valid_by_lr = {f"{lr:g}": runs[lr]["valid_at_selected"][tc.select] for lr in tc.lrs}
    chosen = max(tc.lrs, key=lambda lr: runs[lr]["valid_at_selected"][tc.select])
    log(f"chosen: learning rate {chosen:g} (validation {tc.select} by rate: {valid_by_lr})")
    summary = {**runs[chosen], "selected_lr": chosen, "valid_by_lr": valid_by_lr,
               "selected_by": f"validation {tc.select}, over epochs and learning rates"}
    if run_dir is not None:
        write_json(Path(run_dir) / "config.json", run_configs(model_config, tc))
        arrays, meta = load_checkpoint(Path(run_dir) / f"lr-{chosen:g}" / "best.npz")
        save_checkpoint(Path(run_dir) / "best.npz", arrays, meta)
        write_json(Path(run_dir) / "summary.json",
                   {k: v for k, v in summary.items() if k != "params"})
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
