"""A training run's directory: the one place its files are named, read and written.

::

    RUN/                    srsan-np train --out RUN (or fit(..., run=RUN))
      .srsan-np  .lock      the marker (the entries below that the run wrote) and the lock
                            (srsan_np.files): --overwrite replaces those, and nothing else
      config.json           the model and training configurations: what a resume must match
      data.json             where the data came from, and its fingerprint
      raw_ids.npy           the raw log's id of every item, when the data has them
      ops.json              trained with a learner's ops: which op came from where
      last.npz              every epoch: weights, Adam's state and the selected epoch's weights
      best.npz              the selected epoch's weights, a file of their own
      diagnostics.json      how the network trains (srsan_np.diagnostics)
      summary.json          the result, when training ends
      train.log             what `srsan-np train` printed (every start of the run, in order)
      metrics.csv           one row per epoch and learning rate: the learning rate, the loss,
                            the validation and test metrics, the seconds
      lr-<rate>/            several learning rates: one such run per rate (its own marker, no
                            lock, no train.log or metrics.csv: the top run keeps them for all)

``last.npz`` alone is the commit of an epoch: it carries the selected epoch's weights too, so
the pair it and ``best.npz`` can never be out of step (a process killed between the two
writes leaves ``best.npz`` one epoch behind; the next start exports it again).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from srsan_np import files
from srsan_np.checkpoint import load_checkpoint, save_checkpoint
from srsan_np.data.source import DataSource
from srsan_np.errors import DataError
from srsan_np.kernels import WORKSPACE

__all__ = ["Run"]

_CONFIG, _DATA, _RAW_IDS, _OPS = "config.json", "data.json", "raw_ids.npy", "ops.json"
_LAST, _BEST, _DIAGNOSTICS, _SUMMARY = "last.npz", "best.npz", "diagnostics.json", "summary.json"
_LOG, _METRICS = "train.log", "metrics.csv"
_FILES = (_CONFIG, _DATA, _RAW_IDS, _OPS, _LAST, _BEST, _DIAGNOSTICS, _SUMMARY, _LOG, _METRICS)
# a run from before markers listed their entries: recognised by three files; what it wrote
_LAYOUT = files.Layout((_CONFIG, _DATA, _LAST), (*_FILES, "lr-*/"))
# a learning rate's run, inside a run that owns it
_SUB_LAYOUT = files.Layout((), _FILES)


def _sub_name(lr) -> str:
    return f"lr-{lr:g}"


def _configs_json(model_config, train_config):
    """What ``config.json`` holds, as JSON gives it back."""
    return json.loads(json.dumps({"model": dataclasses.asdict(model_config),
                                  "train": dataclasses.asdict(train_config)}))


def _changes(started, wanted):
    """What differs between two ``config.json`` contents, said field by field."""
    changed = []
    for section, fields in wanted.items():
        before = started.get(section) if isinstance(started, dict) else None
        before = before if isinstance(before, dict) else {}
        changed += [f"{section}.{k} {before.get(k)!r} -> {v!r}" for k, v in fields.items()
                    if before.get(k) != v]
        if section == "train" and before.get("kernels") != fields["kernels"]:
            ops = str(before.get("kernels")).startswith(WORKSPACE)
            changed.append(f"it was started {'with' if ops else 'without'} --ops")
    return "; ".join(changed) or "config.json differs"


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _metrics(m) -> bool:
    return isinstance(m, dict) and all(isinstance(k, str) and _number(v) for k, v in m.items())


def _check_history(history, where):
    """``history`` if it is a run's epochs as :func:`srsan_np.train.fit` records them, each
    with the same test metrics; :class:`DataError` naming ``where`` otherwise."""
    if (not isinstance(history, list) or not history or not all(
            isinstance(r, dict) and _whole(r.get("epoch")) and _number(r.get("train_loss"))
            and _number(r.get("lr", 0)) and _metrics(r.get("test"))
            and (r.get("valid") is None or _metrics(r["valid"])) for r in history)
            or len({tuple(r["test"]) for r in history}) != 1):
        raise DataError(f"{where}: not a run's history (a list of epochs, each with epoch, "
                        f"lr, train_loss, valid and test metrics)")
    return history


def _check_meta(meta, where):
    """A checkpoint's metadata, if it has what a run's has; :class:`DataError` otherwise."""
    best, config = meta.get("best"), meta.get("config")
    if (not _whole(meta.get("epoch")) or not isinstance(best, dict) or not _whole(best.get("epoch"))
            or not isinstance(config, dict)
            or not all(isinstance(config.get(s), dict) for s in ("model", "train"))):
        raise DataError(f"{where}: not a checkpoint of a training run (its epoch, selected "
                        f"epoch and configuration)")
    _check_history(meta.get("history"), where)
    return meta


def _params(arrays, prefix):
    return {name[len(prefix):]: value for name, value in arrays.items() if name.startswith(prefix)}


def _prefixed(params, prefix):
    return {f"{prefix}{name}": value for name, value in params.items()}


class Run:
    """The run directory ``directory`` (see the module notes).

    Open one to train into with :meth:`open`; read a finished (or training) one with
    ``Run(directory)`` and :meth:`load_model`, :meth:`load_data`, :meth:`history`.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self._configs = None  # config.json's contents, once written or read
        self._root = self  # the run that keeps train.log and metrics.csv
        self._log = None  # train.log's lines, once read or written
        self._histories = {}  # learning rate -> its epochs, what metrics.csv holds
        self.resumed = False  # opened to continue the run it holds

    def __repr__(self):
        return f"Run({str(self.directory)!r})"

    # ------------------------------------------------------------------ opening

    @staticmethod
    def check(directory, inputs=(), resume=False, overwrite=False) -> bool:
        """Refuse, before anything is read or written, a ``directory`` srsan-np may not
        train into (:func:`srsan_np.files.check_target`); True if it holds a run."""
        return files.check_target(directory, "run", inputs, overwrite, resume, layout=_LAYOUT)

    @classmethod
    @contextmanager
    def open(cls, directory, model_config, train_config, dataset, source=None, *,
             resume=False, overwrite=False, inputs=()):
        """Lock ``directory`` for the block and yield its :class:`Run`, ready to train;
        ``run.resumed`` says whether it holds a run to continue.

        Everything that can refuse is checked before anything is written: that the
        directory is srsan-np's run (or new or empty), holds none of ``inputs``, is not in
        use, and -- to ``resume`` -- that the run was started with the same configurations on
        the same data. A new run (or one replaced with ``overwrite``) records the
        configurations, the data's ``source`` (a :class:`~srsan_np.data.source.DataSource`,
        or None from the Python API) and fingerprint, and the data's raw ids.
        """
        run = cls(directory)
        cls.check(directory, inputs, resume=True, overwrite=True)  # what is never replaced
        files.start(run.directory, "run", _LAYOUT)  # marked first: the lock is the marker's
        with files.lock(run.directory):
            exists = cls.check(directory, inputs, resume, overwrite)
            files.remove_leftovers(run.directory)
            run.resumed = exists and resume
            if run.resumed:
                run._check_resume(model_config, train_config, dataset)
            names = [*_FILES, *(f"{_sub_name(lr)}/" for lr in train_config.lrs
                                if len(train_config.lrs) > 1)]
            files.claim(run.directory, "run", names, layout=_LAYOUT)  # a user's entry in the way
            if exists and not run.resumed:
                files.clear_directory(run.directory, _LAYOUT)  # what the run wrote, no more
                files.claim(run.directory, "run", names)
            run._record(model_config, train_config, dataset, source)
            yield run

    def _record(self, model_config, train_config, dataset, source):
        """The configurations, the data's source and fingerprint, and its raw ids (written
        again on a resume: the same contents, and whatever a killed start left out)."""
        from srsan_np.data.store import fingerprint

        self.write_config(model_config, train_config)
        described = source.to_json() if source is not None else {}
        files.write_json(self.directory / _DATA, {**described, "fingerprint": fingerprint(dataset)})
        if dataset.raw_ids is not None:  # so that `recommend --raw` can speak the log's ids
            with files.atomic_write_stream(self.directory / _RAW_IDS) as f:
                np.save(f, dataset.raw_ids)

    def write_config(self, model_config, train_config):
        """Record the configurations a resume must match (the only writer of ``config.json``)."""
        self._configs = _configs_json(model_config, train_config)
        files.write_json(self.directory / _CONFIG, self._configs)

    def _check_resume(self, model_config, train_config, dataset=None):
        """:class:`DataError` unless the run was started with these configurations (and, if
        given, on this data): what a resume checks, once, before it writes anything."""
        path = self.directory / _CONFIG
        if path.exists():
            started, wanted = files.read_json(path), _configs_json(model_config, train_config)
            if started != wanted:
                raise DataError(f"{self.directory}: cannot resume: the run was started with "
                                f"another config ({_changes(started, wanted)}); resume with "
                                f"the same flags, or start again with --overwrite")
        if dataset is not None and (self.directory / _DATA).exists():
            self._check_fingerprint(dataset, f"--resume {self.directory}: this data")

    def _check_fingerprint(self, dataset, what):
        from srsan_np.data.store import fingerprint

        recorded = files.read_json(self.directory / _DATA)
        known = recorded.get("fingerprint") if isinstance(recorded, dict) else None
        if known not in (None, fingerprint(dataset)):
            raise DataError(f"{what} is not the data the run was trained on (its fingerprint "
                            f"differs): the run's checkpoints do not apply to it")

    def record_ops(self, workspace, origin):
        """Record which op came from the learner's ``workspace`` and which from the reference."""
        files.write_json(self.directory / _OPS, {"workspace": str(workspace), "ops": origin})

    def sub_run(self, lr, model_config, train_config, resume):
        """The run of one learning rate ``lr`` of several, in ``lr-<rate>/``, its own
        configurations recorded (checked, to ``resume``)."""
        sub = Run(self.directory / _sub_name(lr))
        sub._root = self._root
        files.claim(sub.directory, "run", _FILES, layout=_SUB_LAYOUT)
        files.remove_leftovers(sub.directory)
        if resume and (sub.directory / _CONFIG).exists():
            sub._check_resume(model_config, train_config)
        else:
            sub.write_config(model_config, train_config)
        return sub

    # ------------------------------------------------------------------ training into it

    def log(self, line):
        """Print ``line`` and keep it in ``train.log`` (rewritten atomically)."""
        print(line, flush=True)
        self.keep_log(line)

    def keep_log(self, *lines):
        """Add ``lines``, already printed, to ``train.log`` (after what earlier starts of a
        resumed run printed)."""
        root = self._root
        if root._log is None:
            path = root.directory / _LOG
            root._log = (files.read_bytes(path, files.JSON_LIMIT).decode(errors="replace")
                         .splitlines() if path.is_file() else [])
        root._log.extend(lines)
        files.atomic_write_bytes(root.directory / _LOG, ("\n".join(root._log) + "\n").encode())

    def _keep_history(self, history):
        """Rewrite the top run's ``metrics.csv`` with this learning rate's epochs so far."""
        root, configs = self._root, self.configs()
        root._histories[f"{configs['train']['lr']:g}"] = history
        rows = [{"learning_rate": rate, "epoch": r["epoch"], "epoch_lr": r["lr"],
                 "train_loss": r["train_loss"],
                 **{f"{split}_{m}": v for split in ("valid", "test")
                    for m, v in (r[split] or {}).items()}, "seconds": r["seconds"]}
                for rate, history in root._histories.items() for r in history]
        columns = list(dict.fromkeys(key for row in rows for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        files.atomic_write_bytes(root.directory / _METRICS, text.getvalue().encode())

    @property
    def diagnostics_path(self) -> Path:
        return self.directory / _DIAGNOSTICS

    def last_epoch(self):
        """The last finished epoch, or None: ``(params, adam_state, best_params, meta)``.
        Exports ``best.npz`` again when a process was killed between the two checkpoints."""
        if not (self.directory / _LAST).exists():
            return None
        arrays, meta = load_checkpoint(self.directory / _LAST)
        _check_meta(meta, self.directory / _LAST)
        best_params = _params(arrays, "best/param/")
        try:
            best_meta = load_checkpoint(self.directory / _BEST)[1]
            exported = best_meta.get("epoch") == meta["best"]["epoch"]
        except (OSError, ValueError):
            exported = False
        if not exported:
            self._export_best(best_params, meta)
        self._keep_history(meta["history"])
        return _params(arrays, "param/"), _params(arrays, "adam/"), best_params, meta

    def save_epoch(self, params, adam_state, best_params, meta, improved):
        """Commit an epoch: ``last.npz`` (weights, Adam's state, the selected weights), then,
        if the epoch is the new selection, ``best.npz``."""
        arrays = {**_prefixed(params, "param/"), **_prefixed(adam_state, "adam/"),
                  **_prefixed(best_params, "best/param/")}
        save_checkpoint(self.directory / _LAST, arrays, meta)
        if improved:
            self._export_best(best_params, meta)
        self._keep_history(meta["history"])

    def _export_best(self, best_params, meta):
        b = meta["best"]["epoch"]
        save_checkpoint(self.directory / _BEST, _prefixed(best_params, "param/"),
                        {**meta, "epoch": b, "history": meta["history"][:b + 1]})

    def adopt_best(self, sub):
        """This run's ``best.npz`` is the sub-run ``sub``'s (the chosen learning rate's)."""
        arrays, meta = load_checkpoint(sub.directory / _BEST)
        save_checkpoint(self.directory / _BEST, arrays, meta)

    def write_summary(self, summary):
        files.write_json(self.directory / _SUMMARY, summary)

    # ------------------------------------------------------------------ reading it

    def load_model(self, which="best"):
        """Weights and configuration: ``(params, model.Config, meta)``.

        ``which`` is ``"best"`` (the selected epoch) or ``"last"``. Both come from
        ``last.npz`` when the run has one (it carries the selected weights too, so the pair
        is always consistent), else from ``best.npz`` (the top of a run over several
        learning rates). :class:`DataError` names a checkpoint that is not a run's.
        """
        from srsan_np import model

        arrays, meta, path = {}, None, self.directory / _LAST
        if path.exists():
            arrays, meta = load_checkpoint(path)
        prefix = "param/" if which == "last" else "best/param/"
        if not _params(arrays, prefix):
            path, prefix = self.directory / f"{which}.npz", "param/"
            if not path.exists():
                raise DataError(f"{path}: no checkpoint (is {self.directory} a training run "
                                f"directory?)")
            arrays, meta = load_checkpoint(path)
        params = _params(arrays, prefix)
        try:
            config = model.Config(**meta["config"]["model"])
            if model.param_count(config) != len(params):  # before param_shapes lists them
                raise ValueError(f"{len(params)} weight arrays for {model.param_count(config)}")
            missing = [key for key in ("epoch", "best") if meta.get(key) is None]
            missing += [] if meta["config"].get("train") is not None else ["config.train"]
            if missing:  # what evaluate and recommend read
                raise KeyError(", ".join(missing))
            shapes = model.param_shapes(config)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise DataError(f"{path}: not a checkpoint of a training run ({type(err).__name__}: "
                            f"{err})") from None
        if {k: v.shape for k, v in params.items()} != shapes:
            raise DataError(f"{path}: its weights do not match its own model configuration")
        return params, config, meta

    def raw_ids(self):
        """The raw log's id of every item (``(V + 1,)``), or None if the data had none."""
        from srsan_np.data.store import load_raw_ids

        return load_raw_ids(self.directory / _RAW_IDS)

    def _record_dir(self):
        """Where ``data.json`` is: here, or beside a learning rate's run, in its parent."""
        here = self.directory / _DATA
        return self.directory if here.exists() or not (self.directory.parent / _DATA).exists() \
            else self.directory.parent

    def load_data(self):
        """The dataset the run was trained on, as ``data.json`` names it, checked against
        the fingerprint recorded there."""
        record = Run(self._record_dir())
        path = record.directory / _DATA
        source = DataSource.from_json(
            files.read_json(path, f"is {record.directory} a training run directory?"), path)
        if source is None:
            raise DataError(f"{path}: names no data (the run was trained from Python): "
                            f"pass --data or --input")
        dataset = source.load()
        record._check_fingerprint(dataset, f"{path}: the data it names")
        return dataset

    def diagnostics(self):
        """The run's training diagnostics (:func:`srsan_np.diagnostics.load_diagnostics`), or
        None before its first are written."""
        from srsan_np.diagnostics import load_diagnostics

        return load_diagnostics(self.diagnostics_path)

    def configs(self):
        """``config.json`` (``{"model": ..., "train": ...}``), or None if there is none."""
        path = self.directory / _CONFIG
        if self._configs is None and path.exists():
            configs = files.read_json(path)
            if (not isinstance(configs, dict) or not all(isinstance(configs.get(s), dict)
                                                         for s in ("model", "train"))
                    or not isinstance(configs["train"].get("select"), str)
                    or not all(_number(lr) for lr in np.ravel(configs["train"].get("lr", 1)))):
                raise DataError(f"{path}: not a run's configuration ({{\"model\": ..., "
                                f"\"train\": ...}})")
            self._configs = configs
        return self._configs

    def summary(self):
        """``summary.json``, or None while the run trains."""
        path = self.directory / _SUMMARY
        if not path.exists():
            return None
        summary = files.read_json(path)
        if (not isinstance(summary, dict) or not _whole(summary.get("selected_epoch"))
                or not _number(summary.get("selected_lr", 0))):
            raise DataError(f"{path}: not a run's summary (its history, selected epoch)")
        _check_history(summary.get("history"), path)
        return summary

    def history(self):
        """``(history, selected epoch)`` of a finished run or of one still training (from
        its last checkpoint), or ``(None, None)`` before its first epoch ends."""
        summary = self.summary()
        if summary is not None:
            return summary["history"], summary["selected_epoch"]
        if (self.directory / _LAST).exists():
            meta = _check_meta(load_checkpoint(self.directory / _LAST)[1], self.directory / _LAST)
            return meta["history"], meta["best"]["epoch"]
        return None, None

    def metrics(self):
        """``metrics.csv`` read back: ``{learning rate: its epochs}``, each epoch a record as
        :func:`srsan_np.train.fit`'s history has it (``valid`` None without a validation
        split), or None if there is none."""
        path = self.directory / _METRICS
        if not path.exists():
            return None
        by_rate = {}
        try:
            for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
                split = {s: {k[len(s) + 1:]: float(v) for k, v in row.items()
                             if k.startswith(f"{s}_") and v != ""} or None
                         for s in ("valid", "test")}
                by_rate.setdefault(row["learning_rate"], []).append({
                    "epoch": int(row["epoch"]), "lr": float(row["epoch_lr"]),
                    "train_loss": float(row["train_loss"]), **split,
                    "seconds": float(row["seconds"])})
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, csv.Error) as err:
            raise DataError(f"{path}: not a run's metrics ({type(err).__name__}: {err})") from None
        return by_rate

    def by_lr(self):
        """The runs of each learning rate (``{"0.003": Run, ...}``), empty if it has one."""
        return {p.name[len("lr-"):]: Run(p) for p in sorted(self.directory.glob("lr-*"))
                if (p / _CONFIG).exists()}

    def plotted(self):
        """The run whose files to draw: this one, or with several learning rates, the
        chosen rate's (while training: the latest to have written)."""
        runs = self.by_lr()
        if (self.directory / _LAST).exists() or self.diagnostics_path.exists() or not runs:
            return self
        summary = self.summary()
        if isinstance(summary, dict) and "selected_lr" in summary:
            return runs.get(f"{summary['selected_lr']:g}", self)
        return max(runs.values(), key=lambda r: (r.directory / _CONFIG).stat().st_mtime)
