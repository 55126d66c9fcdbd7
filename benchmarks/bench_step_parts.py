"""Benchmark: where a training step's time goes, part by part, against the GEMM floor.

``bench_train.py`` gives the step as one ratio to its floor (the three float32 GEMMs of the
tied scoring layer). This script splits the same fast step (``model.loss_and_grads`` +
``Adam.step``, as ``train.fit`` runs it; generated ``diginetica``
preset, B=100, D=96, default ``Config``) into its parts. The fast path moves two of the
floor's products: the forward makes ``dh``'s product ``U E`` in its blocks, and Adam makes
the table's gradient ``dE = U^T (c h)`` block by block as it updates the table. So:

- **scoring forward** is set beside the floor's ``S`` and ``dH`` products (its ``exp``,
  sums and blocks beyond them; negative when the blocked products beat the floor's by more
  than the rest costs), **scoring backward** is what is left of ``dh`` (a row scaling);
- **Adam** is set beside the floor's ``dE`` product, and beside the *traffic* of the table's
  update as a pass of its own, measured in the same run: a Numba pass that reads the table
  and both moments and writes them back (6 x 16.6 MB for 43,189 x 96 float32) with no
  arithmetic worth the name. Adam beyond the product costs less than that pass: its
  blocks' updates overlap with their products.
- **ranks** (evaluation): one read of the ``(B, V)`` scores (a BLAS matrix-vector product),
  beside the pessimistic-rank pass that compares every score with the target's, each timed
  on fresh scores (they take turns going first). The
  evaluation batch is split into batch building, encoder, score product and ranks, against
  the forward GEMM alone, as ``bench_train.py`` times it whole.

Everything is timed in turn, rep by rep, so every figure sees the same load::

    python benchmarks/bench_step_parts.py             # 60 steps, about a minute
    python benchmarks/bench_step_parts.py --reps 150 --json parts.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from srsan_np.runtime import configure_threads

configure_threads()  # first: OpenBLAS reads its setting when NumPy loads
import numpy as np
from bench_train import scoring_gemms  # the floor, defined once
from numba import njit, prange


STEP_TARGET = 1.25  # the step's ceiling as a multiple of the floor (issue 13)


@njit(cache=True, parallel=True)
def _adam_traffic(p, m, v):
    """The table's update's memory traffic without its arithmetic: reads p, m, v; writes
    p, m, v."""
    for i in prange(p.size):
        a = p[i] + m[i]
        m[i] = a
        v[i] = v[i] + a
        p[i] = p[i] - v[i]


def measure_parts(dataset, reps):
    """Median ms of every part of the step, of the three GEMMs and of Adam's bound."""
    from srsan_np import kernels, model
    from srsan_np.data import iterate_batches

    config = model.Config(n_items=dataset.n_items)  # one layer: the last is the read-out's
    params = model.init_params(config, 0)
    fast = kernels.get("fast")
    optimizer = fast.Adam(params, weight_decay=1e-5)
    dropout_rng = np.random.default_rng(1)
    it = iterate_batches(dataset.train, 100, config.mode, np.random.default_rng(0))
    batches = [next(it) for _ in range(reps + 3)]

    times = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            times.setdefault(name, []).append(time.perf_counter() - start)
            return out
        return wrapper

    # the parts as loss_and_grads calls them: the fast kernel set with each function timed
    parts = {"lookup forward": "embedding_forward", "encoder forward": "readout_layer_forward",
             "scoring forward": "softmax_cross_entropy",
             "scoring backward": "softmax_cross_entropy_backward",
             "encoder backward": "readout_layer_backward",
             "lookup backward": "embedding_backward"}
    timed_fast = fast._replace(**{attr: timed(name, getattr(fast, attr))
                                  for name, attr in parts.items()})
    step_adam = timed("Adam", optimizer.step)

    S = np.empty((100, config.n_items), np.float32)  # (B, V) the floor's scores
    table = [np.random.default_rng(3).random(params["embedding.weight"].size, np.float32)
             for _ in range(3)]  # p, m, v of the table's size
    others = {
        **scoring_gemms(params, config, S),
        "bound: Adam traffic": lambda: _adam_traffic(*table),
    }

    def step(batch):
        start = time.perf_counter()
        step_adam(model.loss_and_grads(params, batch, config, dropout_rng, timed_fast)[1])
        times.setdefault("step", []).append(time.perf_counter() - start)

    for i, batch in enumerate(batches):
        if i == 3:  # compiled and warm: start counting
            times.clear()
        step(batch)
        for name, fn in others.items():
            start = time.perf_counter()
            fn()
            times.setdefault(name, []).append(time.perf_counter() - start)
    return {name: float(np.median(ts) * 1e3) for name, ts in times.items()}


def measure_eval_parts(dataset, n_batches):
    """Median ms of the parts of one evaluation batch (as ``bench_train.measure_eval``
    times it whole), of the forward GEMM and of a read of the scores (the ranks' bound)."""
    from srsan_np import kernels, model
    from srsan_np.data import make_batch
    from srsan_np.evaluate import ranks_pessimistic
    from srsan_np.ops.scoring import scores_forward

    config = model.Config(n_items=dataset.n_items)
    params = model.init_params(config, 0)
    E = params["embedding.weight"]
    forward_gemm = scoring_gemms(params, config)["GEMM S = H E^T"]
    ones = np.ones(config.n_items, np.float32)
    len_max = int(dataset.test.lengths().max())
    times = {}
    for i in range(-2, n_batches):  # two warm-up batches
        index = np.arange(100 * max(i, 0), 100 * max(i, 0) + 100)
        marks = [time.perf_counter()]
        forward_gemm()
        marks.append(time.perf_counter())
        batch = make_batch(dataset.test, index, config.mode, len_max)
        marks.append(time.perf_counter())
        h = model._encode(params, batch, config, None, kernels.get("fast"))[0]  # (B, D)
        marks.append(time.perf_counter())
        scores = scores_forward(h, E)
        marks.append(time.perf_counter())
        # the ranks, and a BLAS read of the same scores on the same threads, in turn
        # first: whichever goes second finds the scores warm, so only the first is kept
        first, second = (("eval: ranks", lambda: ranks_pessimistic(scores, batch.targets)),
                         ("bound: read scores", lambda: scores @ ones))[::1 - 2 * (i % 2)]
        first[1]()
        marks.append(time.perf_counter())
        second[1]()
        if i >= 0:
            for name, a, b in zip(("eval: forward GEMM", "eval: batch", "eval: encoder",
                                   "eval: scores", first[0]), marks, marks[1:]):
                times.setdefault(name, []).append(b - a)
    return {name: float(np.median(ts) * 1e3) for name, ts in times.items()}


def report(ms):
    """The readable table and the derived figures (all ms unless named otherwise)."""
    floor = ms["GEMM S = H E^T"] + ms["GEMM dH = dS E"] + ms["GEMM dE = dS^T H"]
    forward = ms["scoring forward"] - ms["GEMM S = H E^T"] - ms["GEMM dH = dS E"]
    adam = ms["Adam"] - ms["GEMM dE = dS^T H"]
    encoder = (ms["lookup forward"] + ms["encoder forward"] + ms["encoder backward"]
               + ms["lookup backward"])
    rest = ms["step"] - ms["Adam"] - ms["scoring forward"] - ms["scoring backward"] - encoder
    bound = ms["bound: Adam traffic"]
    derived = {
        "floor_ms": floor, "step_vs_floor": ms["step"] / floor,
        "overhead_ms": ms["step"] - floor, "allowed_overhead_ms": (STEP_TARGET - 1) * floor,
        "scoring_forward_beyond_gemms_ms": forward,
        "scoring_backward_ms": ms["scoring backward"],
        "adam_beyond_gemm_ms": adam, "encoder_and_lookup_ms": encoder, "rest_ms": rest,
        # what the encoder (lookup, forward, backward) could take for the step to meet
        # the target, everything else as measured
        "encoder_budget_ms": (STEP_TARGET - 1) * floor - forward - ms["scoring backward"]
            - adam - rest,
    }
    rows = [
        ("GEMM floor (3 GEMMs)", floor, ""),
        ("train step", ms["step"], f"{derived['step_vs_floor']:.2f} x floor"),
        ("  scoring forward beyond S, dH GEMMs", forward, ""),
        ("  scoring backward (dh's scaling)", ms["scoring backward"], ""),
        ("  lookup forward", ms["lookup forward"], ""),
        ("  encoder forward", ms["encoder forward"], ""),
        ("  encoder backward", ms["encoder backward"], ""),
        ("  lookup backward (into dE's parts)", ms["lookup backward"], ""),
        ("  Adam beyond the dE GEMM", adam, f"its own pass's traffic: {bound:.2f}"),
        ("  the rest (model, dicts)", rest, ""),
    ]
    for name, value, note in rows:
        share = f"{value / floor:6.1%} of floor" if name != "train step" else ""
        print(f"{name:38s} {value:7.2f} ms  {share:16s} {note}")
    print(f"overhead beyond the floor {derived['overhead_ms']:.2f} ms; {STEP_TARGET} x allows "
          f"{derived['allowed_overhead_ms']:.2f} ms")
    print(f"the encoder's share of a {STEP_TARGET} x step, the rest as measured: "
          f"{derived['encoder_budget_ms']:.2f} ms (measured {encoder:.2f} ms)")
    gemm = ms["eval: forward GEMM"]
    evaluation = sum(ms[f"eval: {part}"] for part in ("batch", "encoder", "scores", "ranks"))
    derived["eval_vs_forward_gemm"] = evaluation / gemm
    print(f"evaluation batch {evaluation:.2f} ms = {evaluation / gemm:.2f} x forward GEMM "
          f"({gemm:.2f} ms):")
    for part in ("batch", "encoder", "scores", "ranks"):
        value = ms[f"eval: {part}"]
        note = f"bound {ms['bound: read scores']:.2f}" if part == "ranks" else ""
        print(f"  {part:36s} {value:7.2f} ms  {value / gemm:6.1%} of GEMM     {note}")
    return derived


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=60, help="train steps timed (default 60)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    from srsan_np.data import sample_dataset

    load = round(os.getloadavg()[0], 2)
    dataset = sample_dataset(0, "diginetica")
    ms = measure_parts(dataset, args.reps)
    ms.update(measure_eval_parts(dataset, min(args.reps, len(dataset.test) // 100)))
    print(f"load average {load} on {os.cpu_count()} cores; V = {dataset.n_items:,}, B = 100")
    results = {"load_before": load, "parts_ms": ms, **report(ms)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
