"""Benchmark: what each of the fast path's choices saves, each against its alternative.

The library's comments say which way each choice goes ("cheaper", "saves a pass"); this
script measures by how much, on the step's shapes (B = 100 sessions, V = 43,188 items,
float32), every pair timed in turn, rep by rep, medians reported. docs/performance.md
quotes it.

- NumPy's ``exp`` and ``exp2`` and the library's float32 ``exp`` (:func:`_expf`) on the
  scores (per element);
- the softmax beyond its product: the fast pass (no max pass, the block sums taken in the
  pass, on every thread) against the textbook's (a max pass, shift, ``exp``, row sums);
- the fast pass on one thread and on all of them;
- the row sums: taken per block in the pass, against a BLAS product ``U 1`` after it;
- the per-head outer product of the one-query backward: the Numba loop, NumPy's batched
  ``@`` with an inner dimension of 1, a broadcast multiply (into the strided halves);
- Adam: a layer's twelve small arrays on one thread against on all of them;
- an OpenBLAS worker's spin: the CPU time a 20 ms sleep right after a product costs, with
  ``OPENBLAS_THREAD_TIMEOUT`` at its default and at 4 (fresh interpreters).

    python benchmarks/bench_claims.py [--reps 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from srsan_np.runtime import configure_threads

configure_threads()  # first: OpenBLAS reads its setting when NumPy loads
import numba
import numpy as np

from srsan_np.fast import scoring
from srsan_np.fast.attention import _query_sum_product
from srsan_np.fast.optim import _adam_serial_kernel
from srsan_np.optim import adam_kernel

B, V, D = 100, 43_188, 96


def interleaved(fns, reps, setup=None):
    """Median ms of each of ``fns`` (name -> callable), run in turn rep by rep (``setup``
    before each call, untimed)."""
    times = {name: [] for name in fns}
    for rep in range(reps + 2):
        for name, fn in fns.items():
            if setup:
                setup()
            start = time.perf_counter()
            fn()
            if rep >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(ts) * 1e3) for name, ts in times.items()}


def textbook_softmax(S):
    """The textbook's work beyond the product: max, shift, exp, row sums."""
    S -= S.max(axis=1, keepdims=True)
    np.exp(S, out=S)
    return S.sum(axis=1)


def fast_softmax(S_t, threads=None):
    n_blocks = -(-S_t.shape[0] // scoring._BLOCK)
    sums = np.empty((n_blocks, S_t.shape[1]), S_t.dtype)
    if threads == 1:
        scoring._exp_blocks(0, n_blocks, S_t, sums)
    else:
        scoring._for_row_blocks(scoring._exp_blocks, n_blocks, S_t, sums)
    return np.add.reduce(sums, axis=0)


def exp_then_blas_sums(S_t):
    scoring._for_row_blocks(lambda lo, hi: scoring._exp_in_place(
        S_t[lo * scoring._BLOCK:hi * scoring._BLOCK]), -(-S_t.shape[0] // scoring._BLOCK))
    return np.ones(S_t.shape[0], S_t.dtype) @ S_t


SPIN = """
import resource, time, numpy as np
a = np.ones((100, 2000), np.float32); b = np.ones((2000, 2000), np.float32)
cpu = []
for _ in range(10):
    a @ b
    start = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(0.02)
    end = resource.getrusage(resource.RUSAGE_SELF)
    cpu.append(end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime)
print(sorted(cpu)[5] * 1e3)
"""


def spin_cpu_ms(timeout):
    env = dict(os.environ)
    env.pop("OPENBLAS_THREAD_TIMEOUT", None)
    if timeout is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = str(timeout)
    out = subprocess.run([sys.executable, "-c", SPIN], env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=100)
    args = parser.parse_args()
    reps = args.reps
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, "
          f"Numba {numba.get_num_threads()} threads; B={B}, V={V:,}, float32")
    rng = np.random.default_rng(0)
    scores = (rng.standard_normal((B, V)) * 2).astype(np.float32)  # (B, V)
    work, work_t = np.empty_like(scores), np.empty_like(scores.T, order="C")  # (B, V), (V, B)

    def fresh():
        np.copyto(work, scores)
        np.copyto(work_t, scores.T)

    ms = interleaved({
        "exp": lambda: np.exp(work, out=work),
        "exp2": lambda: np.exp2(work, out=work),
        "ours": lambda: scoring._expf_in_place(work.reshape(-1)),
    }, reps, fresh)
    print(f"exp  {ms['exp'] * 1e6 / scores.size:.2f} ns/element, "
          f"exp2 {ms['exp2'] * 1e6 / scores.size:.2f} ns/element, "
          f"_expf {ms['ours'] * 1e6 / scores.size:.2f} ns/element "
          f"(float32 uses _expf, float64 {scoring._EXP.__name__})")
    ms = interleaved({
        "textbook": lambda: textbook_softmax(work),
        "fast": lambda: fast_softmax(work_t),
        "fast, one thread": lambda: fast_softmax(work_t, threads=1),
        "exp, then U 1": lambda: exp_then_blas_sums(work_t),
    }, reps, fresh)
    print(f"softmax beyond its product: textbook (max pass, exp, sums) {ms['textbook']:.2f} ms, "
          f"fast {ms['fast']:.2f} ms; fast on one thread {ms['fast, one thread']:.2f} ms; "
          f"sums by a BLAS U 1 after the pass {ms['exp, then U 1']:.2f} ms")

    for T in (15, 48):
        a = rng.standard_normal((B, 2, 1, T)).astype(np.float32)  # (B, H, 1, T)
        b = rng.standard_normal((B, 2, 1, D // 2)).astype(np.float32)  # (B, H, 1, dh)
        halves = np.empty((B, T, 2 * D), np.float32)
        out = halves[..., D:].reshape(B, T, 2, D // 2).transpose(0, 2, 1, 3)  # (B, H, T, dh)
        ms = interleaved({
            "loop": lambda: _query_sum_product(a, b, out=out),
            "@": lambda: np.matmul(a.transpose(0, 1, 3, 2), b, out=out),
            "broadcast": lambda: np.multiply(a.transpose(0, 1, 3, 2), b, out=out),
        }, reps * 5)
        print(f"one-query outer product, T={T}: loop {ms['loop'] * 1e3:.0f} us, "
              f"@ {ms['@'] * 1e3:.0f} us, broadcast {ms['broadcast'] * 1e3:.0f} us")

    from srsan_np.ops.encoder import layer_shapes
    arrays = [[rng.standard_normal(s).astype(np.float32).reshape(-1) for _ in range(4)]
              for s in layer_shapes(D, 4 * D).values()]
    args = (np.float32(0.1), np.float32(0.999), np.float32(0.001), np.float32(1e-5),
            np.float32(1e-3), np.float32(0.5), np.float32(1e-8))

    def adam(kernel):
        for p, g, m, v in arrays:
            kernel(p, g, m, v, *args)
    ms = interleaved({"serial": lambda: adam(_adam_serial_kernel),
                      "parallel": lambda: adam(adam_kernel)}, reps * 5)
    n = sum(a[0].size for a in arrays)
    print(f"Adam over a layer's {len(arrays)} arrays ({n:,} elements): one thread "
          f"{ms['serial']:.3f} ms, all threads {ms['parallel']:.3f} ms")

    print(f"CPU time of a 20 ms sleep right after a product: OPENBLAS_THREAD_TIMEOUT default "
          f"{spin_cpu_ms(None):.2f} ms, 4: {spin_cpu_ms(4):.2f} ms")
    print(f"load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
