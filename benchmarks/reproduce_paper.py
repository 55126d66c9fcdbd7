"""The paper's row on real data: ``faithful`` mode, the original's protocol, several seeds.

On a dataset folder -- an SR-GNN one (``train.txt`` or ``all_train_seq.txt``, and
``test.txt``) or one ``srsan-np preprocess`` wrote -- this trains, each in its own run
directory under ``--runs``:

- ``original-s<seed>``: ``faithful`` mode with the original's protocol (the ``original``
  preset: every training example trains, 12 epochs, lr 1e-3 decayed x0.1 every 3 epochs);
  its figure is the original's: each metric's best epoch *on the test set*;
- ``validation-s<seed>``: the same model and settings with 10% of the training examples
  held out; the honest figure is the test metrics at the epoch chosen on validation HR@20;
- ``sequence-s<seed>`` and ``positions-s<seed>`` (``--sequence-seeds``): ``sequence``
  mode (clicks in order, padding masked) without and with learned positions, otherwise
  the validation run's settings: does correcting the original's input quirks help?
- ``torch-s<seed>`` (``--torch-seeds``): the original network and optimiser in PyTorch
  (``torch_original.py``, beside this script) with the original's protocol, on the batches
  srsan-np builds in ``faithful`` mode and scored by srsan-np's evaluation: where srsan-np's
  figure differs from a published one, this tells the implementation from the protocol.
  It keeps no checkpoint: an interrupted one starts again once its directory is deleted.

and fits the classic baselines (POP, S-POP, Markov, SKNN) on the same test set. It prints
the figures beside the published ones and writes them, with every run's per-epoch seconds
and the load average at the end of each epoch, to ``RUNS/results.json``.

Resumable: a run keeps its checkpoints (``srsan_np.train.fit``'s run directory), so an
interrupted benchmark, started again with the same arguments, continues each run from its
last finished epoch and skips the finished ones. Several processes may share the work:
each takes the next run no other process holds (a run directory's lock).

    python benchmarks/reproduce_paper.py --data ../shared/data/diginetica --runs RUNS
    python benchmarks/reproduce_paper.py --data DIR --runs RUNS --only original-s0
    python benchmarks/reproduce_paper.py --data DIR --runs RUNS --report    # the table so far
    python benchmarks/reproduce_paper.py --data DIR --runs RUNS --torch-seeds 0 --only torch-s0
    python benchmarks/reproduce_paper.py --data DIR --time-steps 300        # one epoch's time

``--time-steps N`` trains N steps of the faithful original-protocol run (after a few
warm-up steps) and scores a few test batches, then extrapolates the seconds of one epoch
as ``fit`` runs it. Per-epoch seconds measured beside other work are inflated: the load
average is printed with every figure; time on a quiet machine for the figure to quote.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from functools import partial
from pathlib import Path

from srsan_np.runtime import configure_threads

configure_threads()  # first: OpenBLAS reads its setting when NumPy loads

import numba  # noqa: E402
import numpy as np  # noqa: E402

from srsan_np import kernels as kernel_sets  # noqa: E402
from srsan_np import model  # noqa: E402
from srsan_np.baselines import fit_baselines  # noqa: E402
from srsan_np.data import iterate_batches, load_dataset, make_batch, split_validation  # noqa: E402
from srsan_np.errors import DataError  # noqa: E402
from srsan_np.evaluate import evaluate  # noqa: E402
from srsan_np.files import write_json  # noqa: E402
from srsan_np.run import Run  # noqa: E402
from srsan_np.settings import load_preset  # noqa: E402
from srsan_np.optim import step_lr  # noqa: E402
from srsan_np.train import TrainConfig, _summarise, fit, model_scorer  # noqa: E402

import torch_original  # noqa: E402  (beside this script)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "diginetica"
PUBLISHED = {  # HR@20 ("P@20"), MRR@20 on Diginetica; ../shared/data/diginetica/README.md
    "SR-GNN paper": (50.73, 17.59),
    "original SR-SAN code, rerun": (51.36, 17.17),
}
METRICS = ("HR@20", "MRR@20")
KINDS = {  # run kind -> (model settings, train settings) on top of the `original` preset
    "original": ({}, {}),
    "validation": ({}, {"valid_fraction": 0.1}),
    "sequence": ({"mode": "sequence"}, {"valid_fraction": 0.1}),
    "positions": ({"mode": "sequence", "positions": True}, {"valid_fraction": 0.1}),
}


def configs(kind, seed, n_items, epochs):
    """``(model.Config, TrainConfig)`` of the run ``<kind>-s<seed>``."""
    preset = load_preset("original")
    model_kw, train_kw = KINDS[kind]
    model_config = model.Config(**{**preset["model"], **model_kw, "n_items": n_items})
    train_config = TrainConfig(**{**preset["train"], **train_kw, "seed": seed, "epochs": epochs})
    return model_config, train_config


def planned(args):
    """The run names, in the order they are taken."""
    names = []  # seed by seed, so that the first runs to finish can be compared
    for seed in dict.fromkeys(args.seeds + args.sequence_seeds):
        kinds = ("original", "validation") if seed in args.seeds else ()
        kinds += ("sequence", "positions") if seed in args.sequence_seeds else ()
        names += [f"{kind}-s{seed}" for kind in kinds]
    names += [f"torch-s{seed}" for seed in args.torch_seeds]
    return [n for n in names if not args.only or n in args.only]


def _load():
    return [round(x, 2) for x in os.getloadavg()]


def train_one(dataset, run_dir, kind, seed, n_items, epochs):
    """Train (or resume, or skip if finished) one run; True if it is finished."""
    model_config, train_config = configs(kind, seed, n_items, epochs)
    if Run(run_dir).summary() is not None:
        return True
    loads_path = run_dir / "loads.json"  # beside fit's files: the load at each epoch's end
    loads = json.loads(loads_path.read_text()) if loads_path.exists() else {}

    def log(line):
        print(f"{run_dir.name}: {line}", flush=True)
        if line.startswith("epoch"):
            loads[line.split()[1]] = {"loadavg": _load(), "numba_threads": numba.get_num_threads(),
                                      "time": time.strftime("%Y-%m-%d %H:%M:%S")}
            write_json(loads_path, loads)

    print(f"{run_dir.name}: {model_config.mode} mode"
          f"{' with positions' if model_config.positions else ''}, valid_fraction "
          f"{train_config.valid_fraction}, seed {seed}, load {_load()}", flush=True)
    fit(dataset, model_config, train_config, run_dir, resume=True, log=log)
    return True


def train_torch(dataset, run_dir, seed, n_items, epochs):
    """The original network in PyTorch, the original's protocol (``original-s<seed>``'s
    settings), on srsan-np's faithful batches; its record, ``torch.json``, is a run's summary
    as ``fit`` makes it without a validation split (``srsan_np.train._summarise``). The directory is claimed by creating it: an
    unfinished one (another process, or an interrupted run) is skipped until deleted."""
    import torch

    model_config, tc = configs("original", seed, n_items, epochs)
    record_path = run_dir / "torch.json"
    if record_path.exists():
        return True
    try:
        run_dir.mkdir()
    except FileExistsError:
        print(f"{run_dir.name}: skipped: started by another process or interrupted "
              f"(delete {run_dir} to train it again)", flush=True)
        return False
    step = torch_original.stepper(model_config, seed, tc.lr, tc.l2)
    rng = np.random.default_rng(seed)
    len_max = {"train": int(dataset.train.lengths().max()), "test": int(dataset.test.lengths().max())}
    print(f"{run_dir.name}: PyTorch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"seed {seed}, load {_load()}", flush=True)

    def score_fn(index):
        with torch.no_grad():
            batch = make_batch(dataset.test, index, "faithful", len_max["test"])
            return step.scores(batch).numpy()

    history = []
    for epoch in range(tc.epochs):
        started = time.perf_counter()
        lr = step_lr(tc.lr, epoch, tc.lr_dc_step, tc.lr_dc)  # StepLR, stepped after each epoch
        for group in step.optimizer.param_groups:
            group["lr"] = lr
        step.modules.train()
        losses = [step(batch) for batch in iterate_batches(dataset.train, tc.batch_size, "faithful",
                                                           rng, len_max["train"])]
        step.modules.eval()
        test, load = evaluate(score_fn, dataset.test, tc.batch_size), _load()
        history.append({"epoch": epoch, "lr": lr, "train_loss": float(np.mean(losses)),
                        "valid": None, "test": test, "seconds": time.perf_counter() - started,
                        "loadavg": load})
        print(f"{run_dir.name}: epoch {epoch:2d}  lr {lr:.0e}  loss {history[-1]['train_loss']:.4f}"
              f"  test HR@20 {test['HR@20']:.2f}  load {load}", flush=True)
    write_json(record_path, _summarise(history, history[-1], tc))  # as fit's: the last epoch
    return True


def _summary(run_dir):
    """A finished run's summary (srsan-np's, or the PyTorch run's record), else None."""
    if run_dir.name.startswith("torch-"):
        path = run_dir / "torch.json"
        return json.loads(path.read_text()) if path.exists() else None
    return Run(run_dir).summary()


def baselines(dataset, path):
    """The baselines' test metrics (cached in ``path``)."""
    if path.exists():
        return json.loads(path.read_text())
    started = time.perf_counter()
    rows = {name: evaluate(base.score_fn(dataset.test), dataset.test)
            for name, base in fit_baselines(dataset.train, dataset.n_items).items()}
    result = {"rows": rows, "seconds": time.perf_counter() - started, "loadavg": _load()}
    write_json(path, result)
    return result


def _mean_sd(values):
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def report(runs_dir, names, base, data_info):
    """Gather the finished runs into ``results.json`` and print the table."""
    runs = {}
    for name in names:
        summary = _summary(runs_dir / name)
        if summary is None:
            continue
        loads_path = runs_dir / name / "loads.json"
        loads = json.loads(loads_path.read_text()) if loads_path.exists() else {}
        runs[name] = {
            "best_on_test": {m: summary["best_on_test"][m] for m in METRICS},
            "best_on_test_epoch": {m: summary["best_on_test_epoch"][m] for m in METRICS},
            "test_at_selected": {m: summary["test_at_selected"][m] for m in METRICS},
            "selected_epoch": summary["selected_epoch"],
            "epoch_seconds": [h["seconds"] for h in summary["history"]],
            "epoch_loadavg": [loads.get(str(h["epoch"]), {}).get("loadavg", h.get("loadavg")) for h in summary["history"]],
        }
    rows = []  # (label, seeds, HR@20 (mean, sd), MRR@20 (mean, sd), median s/epoch)

    def add(label, kind, figure):
        done = [r for n, r in runs.items() if n.rsplit("-s", 1)[0] == kind]
        if done:
            seconds = float(np.median([s for r in done for s in r["epoch_seconds"]]))
            rows.append((label, len(done), *(_mean_sd([r[figure][m] for r in done]) for m in METRICS),
                         seconds))

    add("faithful, original protocol: best epoch on test", "original", "best_on_test")
    add("faithful, 10% validation: selected epoch", "validation", "test_at_selected")
    add("faithful, 10% validation: best epoch on test", "validation", "best_on_test")
    add("sequence: selected epoch", "sequence", "test_at_selected")
    add("sequence: best epoch on test", "sequence", "best_on_test")
    add("sequence + positions: selected epoch", "positions", "test_at_selected")
    add("sequence + positions: best epoch on test", "positions", "best_on_test")
    add("PyTorch, the original network: best epoch on test", "torch", "best_on_test")

    print(f"\n{data_info['source']}: {data_info['n_train']:,} training / {data_info['n_test']:,} "
          f"test examples, {data_info['n_items']:,} items; HR@20 and MRR@20 (x100)")
    print(f"{'':<50} {'seeds':>5} {'HR@20':>15} {'MRR@20':>15} {'s/epoch':>8}")
    for label, (hr, mrr) in PUBLISHED.items():
        print(f"{'published, ' + label:<50} {'':>5} {hr:>15.2f} {mrr:>15.2f}")
    for label, n, (hr, hr_sd), (mrr, mrr_sd), seconds in rows:
        spread = (lambda sd: f" +- {sd:4.2f}" if n > 1 else " " * 8)
        print(f"{label:<50} {n:>5} {hr:>7.2f}{spread(hr_sd)} {mrr:>7.2f}{spread(mrr_sd)} {seconds:>8.0f}")
    if base is not None:
        for name, metrics in base["rows"].items():
            print(f"{'baseline ' + name:<50} {'':>5} {metrics['HR@20']:>15.2f} {metrics['MRR@20']:>15.2f}")
    missing = [n for n in names if n not in runs]
    if missing:
        print(f"not finished yet: {', '.join(missing)}")
    result = {"data": data_info, "published": PUBLISHED, "runs": runs,
              "table": [{"row": label, "seeds": n, "HR@20": hr, "MRR@20": mrr,
                         "median_seconds_per_epoch": s} for label, n, hr, mrr, s in rows],
              "baselines": base, "missing": missing}
    write_json(runs_dir / "results.json", result)
    return result


def time_steps(dataset, n_steps, n_items, mode_kind, warmup=5, eval_batches=20):
    """Seconds of one epoch of the run kind ``mode_kind``, extrapolated from ``n_steps`` steps."""
    model_config, tc = configs(mode_kind, 0, n_items, 1)
    train_set, valid_set = (split_validation(dataset.train, tc.valid_fraction, tc.seed)
                            if tc.valid_fraction > 0 else (dataset.train, None))
    params = model.init_params(model_config, tc.seed)
    optimizer = kernel_sets.get(tc.kernels).Adam(params, lr=tc.lr, weight_decay=tc.l2)
    rng = np.random.default_rng(0)
    batches = iterate_batches(train_set, tc.batch_size, model_config.mode, rng)
    load_before = _load()
    for i, batch in enumerate(batches):  # as fit's loop: building the batch is part of a step
        if i == warmup:
            started = time.perf_counter()
        if i == warmup + n_steps:
            break
        _, grads = model.loss_and_grads(params, batch, model_config, rng, tc.kernels)
        optimizer.step(grads)
    step = (time.perf_counter() - started) / n_steps
    score = model_scorer(params, model_config, dataset.test, tc.kernels)
    index = np.arange(min(len(dataset.test), eval_batches * tc.batch_size))
    evaluate(score, dataset.test.subset(index[:tc.batch_size]), tc.batch_size)  # compile
    started = time.perf_counter()
    evaluate(score, dataset.test.subset(index), tc.batch_size)
    per_example = (time.perf_counter() - started) / len(index)
    n_scored = len(dataset.test) + (len(valid_set) if valid_set is not None else 0)
    steps = math.ceil(len(train_set) / tc.batch_size)
    epoch = steps * step + n_scored * per_example
    return {"kind": mode_kind, "steps_timed": n_steps, "seconds_per_step": step,
            "steps_per_epoch": steps, "seconds_scoring_per_epoch": n_scored * per_example,
            "seconds_per_epoch": epoch, "loadavg_before": load_before, "loadavg_after": _load(),
            "numba_threads": numba.get_num_threads(),
            "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED,
                        help="a dataset folder (default: ../shared/data/diginetica)")
    parser.add_argument("--runs", type=Path, help="the directory of the run directories")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sequence-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--torch-seeds", type=int, nargs="*", default=[],
                        help="also train the original network in PyTorch for these seeds")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--n-items", type=int, help="score against this many items (default: "
                        "the data's; the original hard-codes 43,097 for Diginetica)")
    parser.add_argument("--only", nargs="+", metavar="RUN", help="train only these runs")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--report", action="store_true", help="train nothing: the table so far")
    parser.add_argument("--time-steps", type=int, metavar="N",
                        help="train nothing: time N steps and extrapolate one epoch")
    parser.add_argument("--time-kind", choices=sorted(KINDS), default="original")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    try:
        dataset = load_dataset(args.data)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    load_seconds = time.perf_counter() - started
    n_items = args.n_items or dataset.n_items
    data_info = {"source": str(args.data), "n_train": len(dataset.train), "n_test": len(dataset.test),
                 "n_items": dataset.n_items, "n_items_scored": n_items,
                 "load_seconds": round(load_seconds, 2)}
    print(f"loaded {args.data} in {load_seconds:.1f} s: {len(dataset.train):,} training / "
          f"{len(dataset.test):,} test examples, {dataset.n_items:,} items", flush=True)

    if args.time_steps:
        result = time_steps(dataset, args.time_steps, n_items, args.time_kind)
        print(json.dumps(result, indent=2))
        return 0
    if args.runs is None:
        parser.error("--runs is required (unless --time-steps)")
    args.runs.mkdir(parents=True, exist_ok=True)
    names = planned(args)
    if not args.report:
        for name in names:
            kind, seed = name.rsplit("-s", 1)
            try:  # fit locks the run: another process may be training it
                train = train_torch if kind == "torch" else partial(train_one, kind=kind)
                train(dataset, args.runs / name, seed=int(seed), n_items=n_items, epochs=args.epochs)
            except DataError as err:  # held by another process, or started with other settings
                print(f"{name}: skipped: {err}", flush=True)
    base_path = args.runs / "baselines.json"
    base = None
    if not args.no_baselines and not args.report:
        base = baselines(dataset, base_path)
    elif base_path.exists():
        base = json.loads(base_path.read_text())
    report(args.runs, planned(argparse.Namespace(**{**vars(args), "only": None})), base, data_info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
