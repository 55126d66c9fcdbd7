"""Benchmark: how close a training step and an evaluation pass come to the hardware's floor.

Every figure is a ratio against a floor measured in the same process, because the machines
this runs on are shared (other jobs move absolute times by 2-5x from minute to minute):

- **train step**, for each kernel set (``fast``, the default, and ``reference``, the textbook
  ops): ``model.loss_and_grads`` + the set's ``Adam.step`` on a Diginetica-sized batch
  (generated ``diginetica`` preset, B=100, D=96, default ``Config``) against the *floor*:
  the three float32 GEMMs of the tied scoring layer done with NumPy on the same shapes,
  ``S = H E^T``, ``dH = dS E``, ``dE = dS^T H`` (into preallocated outputs). When torch is
  importable, the same step in PyTorch built like the original code (``torch_original.stepper``)
  on the same batches. All of them are timed alternately, rep by rep, so they see the same
  load; the medians are reported.
- **evaluation**: full-catalogue pessimistic ranks for test prefixes (``model.score`` +
  ``ranks_pessimistic``, one batch of 100) against the forward GEMM ``S = H E^T`` alone.
- **epoch**: the extrapolated time of one epoch of the preset as ``srsan_np.train.fit``
  runs it with its defaults: steps (and batch building) over the 90% kept for training,
  then scoring the 10% validation split and the test set.
- **compile**: a fresh interpreter running import -> first step, with an empty
  ``NUMBA_CACHE_DIR`` (cold) and again with the cache it filled (warm).
- **a script against the command line**: the fast step timed in fresh interpreters, one a
  plain script of the Python API (no ``configure_threads()``, none of its environment
  variables), one with the command line's settings, back to back, several pairs (which goes
  first alternates): the median of the pairs' ratios, script over command line; the same
  for evaluation batches (2,000 test prefixes scored and ranked).
- **diagnostics**: the training diagnostics' hooks (:mod:`srsan_np.diagnostics`) timed
  within steps interleaved with plain ones, their mean per step plus the per-epoch part
  spread over an epoch's steps, as a fraction of the plain step (``--diagnostics``).
- **memory**: a fresh interpreter holding a Yoochoose 1/4-sized training set (about
  6 million examples over 30,000 items, session lengths 1 + geometric with mean 3.57 as
  Yoochoose's) and training a few steps on it: its resident size (``ru_maxrss``).

    python benchmarks/bench_train.py            # everything, about 4 minutes
    python benchmarks/bench_train.py --quick    # fewer repetitions, no compile/memory runs
    python benchmarks/bench_train.py --json out.json
    python benchmarks/bench_train.py --threads-matrix   # --quick under each thread setting
    python benchmarks/bench_train.py --diagnostics      # only the diagnostics' overhead

Threads. ``--threads-matrix`` reruns ``--quick`` in fresh interpreters with Numba and
OpenBLAS at 1 or 2 threads (they are read when the libraries load). On cores busy with
other work two OpenBLAS threads make a step several times slower, because a thread that
waits for a descheduled partner loses a time slice at every small GEMM; on idle cores two
BLAS threads give the fastest step, so the library leaves OpenBLAS at its default (all
cores). The last row of ``--threads-matrix`` measures the default threads with
``OPENBLAS_THREAD_TIMEOUT=4`` (idle BLAS workers sleep at once instead of spinning).
docs/performance.md has the figures, with the command and machine.

The load average is printed with the figures: above the core count, re-run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from srsan_np.runtime import configure_threads

configure_threads()  # first: OpenBLAS reads its setting when NumPy loads
import numpy as np  # noqa: E402
import torch_original  # noqa: E402  (beside this script)

TARGETS = {"api_vs_cli": 1.05, "step_vs_floor": 1.25, "eval_vs_forward_gemm": 1.2, "torch_vs_step": 3.0,
           "epoch_extrapolated_s": 200.0, "reference_step_vs_floor": 3.0,
           "warm_start_s": 5.0, "yoochoose4_peak_mb": 1024, "diag_overhead": 0.03}


def _load():
    return round(os.getloadavg()[0], 2)


def _median_ms(times):
    return float(np.median(times) * 1e3)


def scoring_gemms(params, config, S=None):
    """The floor: the tied scoring layer's three float32 products on a batch's shapes, as
    callables into preallocated outputs, ``S = H E^T``, ``dH = dS E``, ``dE = dS^T H`` (one
    ``(B, V)`` array, ``S`` if given, stands for ``S`` and ``dS``; B = 100)."""
    E1 = params["embedding.weight"][1:]  # (V, D)
    H = np.random.default_rng(2).standard_normal((100, config.hidden)).astype(np.float32)
    S = np.empty((100, config.n_items), np.float32) if S is None else S  # (B, V)
    dH, dE = np.empty_like(H), np.empty_like(E1)
    return {"GEMM S = H E^T": lambda: np.matmul(H, E1.T, out=S),
            "GEMM dH = dS E": lambda: np.matmul(S, E1, out=dH),
            "GEMM dE = dS^T H": lambda: np.matmul(S.T, H, out=dE)}


KERNEL_SETS = ("fast", "reference")  # timed side by side; keys of the reference's figures
# carry the prefix "reference_"


def _prefix(name):
    return "" if name == "fast" else f"{name}_"


def torch_threads():
    import torch

    return torch.get_num_threads()


def measure_step(dataset, reps):
    """Median train step of each kernel set and GEMM floor (ms), interleaved rep by rep."""
    from srsan_np import kernels, model
    from srsan_np.data import iterate_batches

    config = model.Config(n_items=dataset.n_items)
    batch_times, batches = [], []
    it = iterate_batches(dataset.train, 100, config.mode, np.random.default_rng(0))
    for _ in range(reps + 3):
        start = time.perf_counter()
        batches.append(next(it))
        batch_times.append(time.perf_counter() - start)

    def stepper(name):
        params = model.init_params(config, 0)
        optimizer = kernels.get(name).Adam(params, weight_decay=1e-5)
        dropout_rng = np.random.default_rng(1)

        def step(batch):
            loss, grads = model.loss_and_grads(params, batch, config, dropout_rng, name)
            optimizer.step(grads)
        return step

    steps = {name: stepper(name) for name in KERNEL_SETS}
    torch_step = torch_original.stepper(config)
    if torch_step is not None:
        steps["torch"] = torch_step
    gemms = scoring_gemms(model.init_params(config, 0), config).values()

    def floor():
        for gemm in gemms:
            gemm()

    def timed(fn, *args):
        start = time.perf_counter()
        fn(*args)
        return time.perf_counter() - start

    for batch in batches[:3]:  # compile and warm the caches
        floor()
        for step in steps.values():
            step(batch)
    times = {"floor": [], **{name: [] for name in steps}}
    for batch in batches[3:]:
        times["floor"].append(timed(floor))
        for name, step in steps.items():
            times[name].append(timed(step, batch))
    floor_ms = _median_ms(times["floor"])
    out = {"floor_ms": floor_ms, "batch_build_ms": _median_ms(batch_times[3:]),
           "median_T": int(np.median([b.inputs.shape[1] for b in batches]))}
    if torch_step is not None:
        out["torch_step_ms"] = _median_ms(times["torch"])
        out["torch_vs_step"] = out["torch_step_ms"] / _median_ms(times["fast"])
        out["torch_threads"] = torch_threads()
    for name in KERNEL_SETS:
        step_ms = _median_ms(times[name])
        out[f"{_prefix(name)}step_ms"] = step_ms
        out[f"{_prefix(name)}step_vs_floor"] = step_ms / floor_ms
        # the fastest reps saw the least interference: their ratio is a second opinion
        out[f"{_prefix(name)}step_vs_floor_best"] = min(times[name]) / min(times["floor"])
    return out


def measure_diagnostics(dataset, epochs_ends=3):
    """The training diagnostics' cost against a plain step, interleaved rep by rep.

    Each rep times a plain step (``loss_and_grads`` + ``Adam.step``) and a step with the
    :class:`srsan_np.diagnostics.Diagnostics` hooks around it, whose own time is taken
    apart. The reps cover two sampling periods, so the sampled steps (copy of the weights,
    norms) count at their real rate. The per-epoch part (attention on the probe batch, the
    file's rewrite) is spread over the steps of one epoch of ``dataset``.
    """
    from srsan_np import kernels, model
    from srsan_np.data import iterate_batches
    from srsan_np.diagnostics import Diagnostics

    config = model.Config(n_items=dataset.n_items)
    params = model.init_params(config, 0)
    optimizer = kernels.get("fast").Adam(params, weight_decay=1e-5)
    dropout_rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as run_dir:
        diagnostics = Diagnostics(Path(run_dir) / "diagnostics.json", params, config,
                                  dataset.test)
        reps = 2 * diagnostics.every
        it = iterate_batches(dataset.train, 100, config.mode, np.random.default_rng(0))
        batches = [next(it) for _ in range(2 * reps + 3)]
        for batch in batches[:3]:  # compile and warm the caches
            optimizer.step(model.loss_and_grads(params, batch, config, dropout_rng)[1])
        plain, hooked, hooks = [], [], []
        for i in range(reps):  # as train.fit runs them without and with the diagnostics
            start = time.perf_counter()
            optimizer.step(model.loss_and_grads(params, batches[3 + 2 * i], config,
                                                dropout_rng)[1])
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            loss, grads = model.loss_and_grads(params, batches[4 + 2 * i], config, dropout_rng)
            before = time.perf_counter()
            diagnostics.before_step(0, i, loss, grads)
            hook = time.perf_counter() - before
            optimizer.step(grads)
            before = time.perf_counter()
            diagnostics.after_step(optimizer.lr)
            hooks.append(hook + time.perf_counter() - before)
            hooked.append(time.perf_counter() - start)
        ends = []
        for epoch in range(epochs_ends):
            start = time.perf_counter()
            diagnostics.end_epoch(epoch)
            ends.append(time.perf_counter() - start)
    steps_per_epoch = -(-len(dataset.train) // 100)
    step_ms = _median_ms(plain)
    per_step_ms = float(np.mean(hooks) * 1e3) + _median_ms(ends) / steps_per_epoch
    return {"diag_plain_step_ms": step_ms, "diag_hooks_mean_ms": float(np.mean(hooks) * 1e3),
            "diag_sampled_step_hooks_ms": float(max(hooks) * 1e3),
            "diag_end_epoch_ms": _median_ms(ends), "diag_steps_per_epoch": steps_per_epoch,
            "diag_overhead": per_step_ms / step_ms,
            # a second opinion, noisier: whole steps with the hooks against plain ones
            "diag_overhead_means": float(np.mean(hooked) / np.mean(plain)) - 1.0}


def measure_eval(dataset, n_batches):
    """Median evaluation batch (score + ranks) of each kernel set and forward GEMM (ms),
    interleaved."""
    from srsan_np import model
    from srsan_np.evaluate import ranks_pessimistic
    from srsan_np.train import model_scorer

    config = model.Config(n_items=dataset.n_items)
    params = model.init_params(config, 0)
    scorers = {name: model_scorer(params, config, dataset.test, name) for name in KERNEL_SETS}
    forward_gemm = scoring_gemms(params, config)["GEMM S = H E^T"]
    n_batches = min(n_batches, len(dataset.test) // 100)
    times = {"gemm": [], **{name: [] for name in scorers}}
    for i in range(-2, n_batches):  # two warm-up batches
        index = np.arange(100 * max(i, 0), 100 * max(i, 0) + 100)
        start = time.perf_counter()
        forward_gemm()
        gemm = time.perf_counter() - start
        if i >= 0:
            times["gemm"].append(gemm)
        for name, score_fn in scorers.items():
            start = time.perf_counter()
            ranks_pessimistic(score_fn(index), dataset.test.targets[index])
            if i >= 0:
                times[name].append(time.perf_counter() - start)
    gemm_ms = _median_ms(times["gemm"])
    out = {"forward_gemm_ms": gemm_ms}
    for name in scorers:
        eval_ms = _median_ms(times[name])
        out[f"{_prefix(name)}eval_batch_ms"] = eval_ms
        out[f"{_prefix(name)}eval_vs_forward_gemm"] = eval_ms / gemm_ms
        out[f"{_prefix(name)}eval_vs_forward_gemm_best"] = min(times[name]) / min(times["gemm"])
    return out


# A fresh interpreter: import, a small batch over a Diginetica-sized catalogue, one step.
FIRST_STEP = textwrap.dedent("""
    import time
    start = time.perf_counter()
    import numpy as np
    from srsan_np import model
    from srsan_np.data import Sessions, make_batch
    from srsan_np.evaluate import ranks_pessimistic
    from srsan_np.fast.optim import Adam
    imported = time.perf_counter()
    rng = np.random.default_rng(0)
    V = 43_000
    prefixes = [list(rng.integers(1, V + 1, size=n)) for n in rng.integers(1, 12, size=100)]
    sessions = Sessions.from_lists(prefixes, rng.integers(1, V + 1, size=100))
    config = model.Config(n_items=V)
    params = model.init_params(config, 0)
    batch = make_batch(sessions, np.arange(100), config.mode)
    loss, grads = model.loss_and_grads(params, batch, config, rng)
    Adam(params).step(grads)
    stepped = time.perf_counter()
    ranks_pessimistic(model.score(params, batch, config), batch.targets)
    print(imported - start, stepped - start, time.perf_counter() - start)
""")


def measure_compile():
    """Cold and warm start-to-first-step in fresh interpreters (seconds)."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for name in ("cold", "warm"):
            start = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", FIRST_STEP], env=env, check=True,
                                 capture_output=True, text=True)
            total = time.perf_counter() - start
            imported, stepped, evaluated = map(float, res.stdout.split())
            out[f"{name}_start_s"] = total - (evaluated - stepped)  # launch .. first step
            out[f"{name}_import_s"] = imported
            out[f"{name}_first_eval_s"] = evaluated - stepped
    return out


# A fresh interpreter: a Yoochoose 1/4-sized training set in the ragged store, then training.
YOOCHOOSE = textwrap.dedent("""
    import gc, resource, time
    import numpy as np
    from srsan_np import model
    from srsan_np.data import iterate_batches
    from srsan_np.data.store import Sessions, gather_ragged
    from srsan_np.fast.optim import Adam

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

    base = rss_mb()
    rng = np.random.default_rng(0)
    V, n_sessions = 30_000, {n_sessions}
    lengths = 1 + rng.geometric(1 / 2.57, size=n_sessions)  # >= 2 clicks, mean 3.57
    starts = np.concatenate([[0], np.cumsum(lengths)])
    clicks = (rng.zipf(1.3, size=int(starts[-1])) % V + 1).astype(np.int32)
    # session s of length L gives examples k = 1..L-1: prefix clicks[s:s+k], target clicks[s+k]
    session = np.repeat(np.arange(n_sessions), lengths - 1)
    k = np.arange(len(session)) - np.repeat(np.cumsum(lengths - 1) - (lengths - 1), lengths - 1) + 1
    items, offsets = gather_ragged(clicks, starts[session], k)
    train = Sessions(items, offsets, clicks[starts[session] + k])
    del clicks, session, k, starts, lengths, items, offsets
    gc.collect()
    held = rss_mb()
    config = model.Config(n_items=V)
    params = model.init_params(config, 0)
    optimizer = Adam(params, weight_decay=1e-5)
    for i, batch in enumerate(iterate_batches(train, 100, config.mode, rng)):
        optimizer.step(model.loss_and_grads(params, batch, config, rng)[1])
        if i == 3:
            break
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    nbytes = train.items.nbytes + train.offsets.nbytes + train.targets.nbytes
    print(len(train), nbytes / 2**20, base, held, rss_mb(), peak)
""")


# A fresh interpreter timing the fast step as a plain script of the Python API does, or,
# with "cli", after the command line's thread settings.
API_STEP = textwrap.dedent("""
    import sys, time
    if sys.argv[1] == "cli":
        from srsan_np.runtime import configure_threads
        configure_threads()
    import numpy as np
    from srsan_np import kernels, model
    from srsan_np.data import iterate_batches, load_dataset
    dataset = load_dataset(sys.argv[2])
    config = model.Config(n_items=dataset.n_items)
    params = model.init_params(config, 0)
    optimizer = kernels.get("fast").Adam(params, weight_decay=1e-5)
    rng = np.random.default_rng(1)
    batches = iterate_batches(dataset.train, 100, config.mode, np.random.default_rng(0))
    times = []
    for i, batch in zip(range(int(sys.argv[3]) + 3), batches):
        start = time.perf_counter()
        optimizer.step(model.loss_and_grads(params, batch, config, rng)[1])
        times.append(time.perf_counter() - start)
    from srsan_np.evaluate import evaluate_ranks
    from srsan_np.train import model_scorer
    test = dataset.test.subset(np.arange(min(len(dataset.test), 2000)))
    evaluate_ranks(model_scorer(params, config, test), test)  # compile, warm
    start = time.perf_counter()
    evaluate_ranks(model_scorer(params, config, test), test)
    print(np.median(times[3:]) * 1e3, (time.perf_counter() - start) / (len(test) / 100) * 1e3)
""")


def measure_api_vs_cli(dataset, reps, rounds):
    """The fast step's median (ms) in a plain script and with the command line's settings,
    fresh interpreters back to back, ``rounds`` pairs (which goes first alternates); the
    median of the pairs' ratios, script over command line."""
    from srsan_np.data import save_dataset
    from srsan_np.runtime import THREAD_SETTINGS

    plain_env = {k: v for k, v in os.environ.items() if k not in THREAD_SETTINGS}
    times = {"api": [], "cli": []}  # (step, evaluation batch) ms per process
    with tempfile.TemporaryDirectory() as tmp:
        save_dataset(dataset, Path(tmp) / "data")
        for i in range(rounds):
            for how in ("api", "cli") if i % 2 == 0 else ("cli", "api"):
                res = subprocess.run([sys.executable, "-c", API_STEP, how, str(Path(tmp) / "data"),
                                      str(reps)], env=plain_env, check=True, capture_output=True,
                                     text=True)
                times[how].append([float(x) for x in res.stdout.split()])
    api, cli = np.array(times["api"]), np.array(times["cli"])  # (rounds, 2)
    ratios = api / cli
    return {"api_step_ms": float(np.median(api[:, 0])), "cli_step_ms": float(np.median(cli[:, 0])),
            "api_vs_cli": float(np.median(ratios[:, 0])), "api_vs_cli_rounds": list(ratios[:, 0]),
            "api_eval_ms": float(np.median(api[:, 1])), "cli_eval_ms": float(np.median(cli[:, 1])),
            "api_vs_cli_eval": float(np.median(ratios[:, 1])),
            "api_vs_cli_eval_rounds": list(ratios[:, 1])}


def measure_memory(n_sessions=2_330_000):
    res = subprocess.run([sys.executable, "-c", YOOCHOOSE.format(n_sessions=n_sessions)],
                         check=True, capture_output=True, text=True)
    n, data_mb, base, held, training, peak = map(float, res.stdout.split())
    return {"yoochoose4_examples": int(n), "yoochoose4_data_mb": data_mb,
            "rss_after_import_mb": base, "rss_holding_data_mb": held,
            "rss_training_mb": training, "yoochoose4_peak_mb": peak}


THREAD_SETTINGS = [
    {},  # the library's default
    {"NUMBA_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"},
    {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    {"NUMBA_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "1"},
    {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "2"},
    {"OPENBLAS_THREAD_TIMEOUT": "4"},  # the default threads, idle BLAS workers sleep at once
]


def threads_matrix():
    """``--quick`` under each of :data:`THREAD_SETTINGS`, each in a fresh interpreter."""
    rows = []
    for setting in THREAD_SETTINGS:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run([sys.executable, __file__, "--quick", "--json", out.name],
                           env=dict(os.environ, **setting), check=True, capture_output=True)
            r = json.loads(Path(out.name).read_text())
        rows.append({"setting": setting or "default", **{k: r[k] for k in (
            "load_before", "step_ms", "floor_ms", "step_vs_floor", "step_vs_floor_best",
            "eval_batch_ms", "eval_vs_forward_gemm", "epoch_extrapolated_s")}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions; skip the compile and memory subprocesses")
    parser.add_argument("--reps", type=int, help="train steps timed (default 100, quick 30)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--diagnostics", action="store_true",
                        help="only the training diagnostics' overhead against a step")
    parser.add_argument("--threads-matrix", action="store_true",
                        help="run --quick under each thread setting (fresh interpreters)")
    args = parser.parse_args()
    if args.threads_matrix:
        rows = threads_matrix()
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
        return 0
    reps = args.reps or (30 if args.quick else 100)

    from srsan_np.data import sample_dataset

    results = {"load_before": _load(), "cores": os.cpu_count(),
               "env": {k: os.environ.get(k) for k in
                       ("OMP_WAIT_POLICY", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                        "OPENBLAS_THREAD_TIMEOUT", "OMP_NUM_THREADS", "NUMBA_THREADING_LAYER")}}
    start = time.perf_counter()
    dataset = sample_dataset(0, "diginetica")
    results["generate_s"] = time.perf_counter() - start
    results.update(n_items=dataset.n_items, n_train=len(dataset.train), n_test=len(dataset.test))
    if args.diagnostics:
        results.update(measure_diagnostics(dataset))
        results["load_after"] = _load()
        print(f"load average {results['load_before']} / {results['load_after']}; plain step "
              f"{results['diag_plain_step_ms']:.1f} ms; hooks {results['diag_hooks_mean_ms']:.3f} "
              f"ms per step on average ({results['diag_sampled_step_hooks_ms']:.1f} ms on a "
              f"sampled step); end of epoch {results['diag_end_epoch_ms']:.1f} ms over "
              f"{results['diag_steps_per_epoch']} steps")
        print(f"diagnostics overhead {100 * results['diag_overhead']:.2f}% of a step "
              f"(target < {100 * TARGETS['diag_overhead']:.0f}%; whole steps with and without: "
              f"{100 * results['diag_overhead_means']:+.1f}%)")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    results.update(measure_step(dataset, reps))
    results.update(measure_eval(dataset, 20 if args.quick else 60))
    from srsan_np.train import TrainConfig

    n_valid = round(len(dataset.train) * TrainConfig.valid_fraction)
    steps = -(-(len(dataset.train) - n_valid) // 100)
    eval_batches = -(-n_valid // 100) + -(-len(dataset.test) // 100)
    results["epoch_extrapolated_s"] = (steps * (results["step_ms"] + results["batch_build_ms"])
                                       + eval_batches * results["eval_batch_ms"]) / 1e3
    results.update(measure_api_vs_cli(dataset, reps, 4 if args.quick else 8))
    if not args.quick:
        results.update(measure_compile())
        results.update(measure_memory())
    results["load_after"] = _load()

    import numba
    results["numba_threads"] = numba.get_num_threads()
    results["threading_layer"] = numba.threading_layer()
    rows = [
        ("load average (before / after)", f"{results['load_before']} / {results['load_after']}"
         f" on {results['cores']} cores"),
        ("threads", f"Numba {results['numba_threads']} ({results['threading_layer']}), "
         f"OPENBLAS_NUM_THREADS={results['env']['OPENBLAS_NUM_THREADS']}, "
         f"OPENBLAS_THREAD_TIMEOUT={results['env']['OPENBLAS_THREAD_TIMEOUT']}"),
        ("data", f"{results['n_train']:,} train / {results['n_test']:,} test examples, "
         f"V = {results['n_items']:,}, median T {results['median_T']}"),
        ("GEMM floor (3 GEMMs)", f"{results['floor_ms']:.1f} ms"),
        ("train step, fast", f"{results['step_ms']:.1f} ms = {results['step_vs_floor']:.2f} x "
         f"floor (target <= {TARGETS['step_vs_floor']}; fastest reps "
         f"{results['step_vs_floor_best']:.2f} x)"),
        ("train step, reference", f"{results['reference_step_ms']:.1f} ms = "
         f"{results['reference_step_vs_floor']:.2f} x floor (target <= "
         f"{TARGETS['reference_step_vs_floor']}; fastest reps "
         f"{results['reference_step_vs_floor_best']:.2f} x)"),
        ("train step, PyTorch", f"{results['torch_step_ms']:.1f} ms = "
         f"{results['torch_vs_step']:.2f} x the fast step (target >= "
         f"{TARGETS['torch_vs_step']}; torch {results['torch_threads']} threads)"
         if "torch_step_ms" in results else "torch not importable"),
        ("batch building", f"{results['batch_build_ms']:.2f} ms"),
        ("forward GEMM", f"{results['forward_gemm_ms']:.1f} ms"),
        ("evaluation batch, fast", f"{results['eval_batch_ms']:.1f} ms "
         f"({1e5 / results['eval_batch_ms']:,.0f} prefixes/s) = "
         f"{results['eval_vs_forward_gemm']:.2f} x forward GEMM "
         f"(target <= {TARGETS['eval_vs_forward_gemm']}; fastest reps "
         f"{results['eval_vs_forward_gemm_best']:.2f} x)"),
        ("evaluation batch, reference", f"{results['reference_eval_batch_ms']:.1f} ms = "
         f"{results['reference_eval_vs_forward_gemm']:.2f} x forward GEMM"),
        ("epoch, extrapolated", f"{results['epoch_extrapolated_s']:.0f} s "
         f"(target <= {TARGETS['epoch_extrapolated_s']:.0f})"),
        ("fast step, script / command line", f"{results['api_step_ms']:.1f} / "
         f"{results['cli_step_ms']:.1f} ms; median of the pairs "
         f"{results['api_vs_cli']:.3f} x (target <= {TARGETS['api_vs_cli']}; pairs "
         f"{', '.join(f'{r:.3f}' for r in results['api_vs_cli_rounds'])})"),
        ("evaluation, script / command line", f"{results['api_eval_ms']:.1f} / "
         f"{results['cli_eval_ms']:.1f} ms a batch; median of the pairs "
         f"{results['api_vs_cli_eval']:.3f} x (pairs "
         f"{', '.join(f'{r:.3f}' for r in results['api_vs_cli_eval_rounds'])})"),
    ]
    if not args.quick:
        rows += [
            ("cold start -> first step", f"{results['cold_start_s']:.1f} s"),
            ("warm start -> first step", f"{results['warm_start_s']:.1f} s "
             f"(target < {TARGETS['warm_start_s']})"),
            ("Yoochoose 1/4 training set", f"{results['yoochoose4_examples']:,} examples, "
             f"{results['yoochoose4_data_mb']:.0f} MB of arrays"),
            ("  peak RSS training on it", f"{results['yoochoose4_peak_mb']:.0f} MB "
             f"(target < {TARGETS['yoochoose4_peak_mb']})"),
        ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
