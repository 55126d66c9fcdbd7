"""Benchmark: what each of the fast path's choices saves, each against its alternative.

The library's comments say which way each choice goes ("cheaper", "saves a pass"); this
script measures by how much, on the step's shapes (B = 100 sessions, V = 43,188 items,
float32), every pair timed in turn, rep by rep, medians reported. docs/performance.md
quotes it.

- NumPy's ``exp`` and ``exp2`` and the library's float32 ``exp`` (:func:`_expf`) on the
  scores (per element);
- the scoring head's forward (the product, ``exp``, row sums, and ``dh``'s product ``U E``):
  the fast op's item blocks on the fast path's threads, BLAS on one thread each, against
  NumPy's products (BLAS on every thread) with the textbook's softmax between them (a max
  pass, shift, ``exp``, row sums); the blocks on one thread;
- the tied table's gradient and its Adam update: made block by block inside the fast
  Adam's update (:class:`srsan_np.fast.table.TableGradient`) against NumPy's ``dE``
  product followed by the Adam kernel's pass;
- the read-out attention, forward and backward: keys and values folded into the query
  (the fast op) against the textbook's attention at every position;
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
from srsan_np.fast import attention as fast_attention
from srsan_np.fast import threads
from srsan_np.ops import attention as textbook_attention
from srsan_np.fast import optim as fast_optim
from srsan_np.fast.optim import _adam_serial_kernel
from srsan_np.fast.table import TableGradient
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


def fast_forward(h, E, n_threads=None):
    """The fast op's forward blocks: ``S^T`` block by block, exponentiated, summed, and
    each block's share of ``U E``."""
    exp_t = np.empty((E.shape[0] - 1, h.shape[0]), h.dtype)
    sums = np.empty((threads.n_blocks(exp_t.shape[0]), h.shape[0]), h.dtype)
    parts = np.empty((len(sums), h.shape[0], E.shape[1]), h.dtype)
    args = (E[1:], h.T, exp_t, sums, parts)
    if n_threads == 1:
        with threads.blas_on_one_thread():
            scoring._forward_blocks(0, len(sums), *args)
    else:
        threads.for_row_blocks(scoring._forward_blocks, len(sums), *args)
    return exp_t


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
    work = np.empty_like(scores)  # (B, V)

    def fresh():
        np.copyto(work, scores)

    ms = interleaved({
        "exp": lambda: np.exp(work, out=work),
        "exp2": lambda: np.exp2(work, out=work),
        "ours": lambda: scoring._expf_in_place(work.reshape(-1)),
    }, reps, fresh)
    print(f"exp  {ms['exp'] * 1e6 / scores.size:.2f} ns/element, "
          f"exp2 {ms['exp2'] * 1e6 / scores.size:.2f} ns/element, "
          f"_expf {ms['ours'] * 1e6 / scores.size:.2f} ns/element "
          f"(float32 uses _expf, float64 {scoring._EXP.__name__})")
    E = (rng.standard_normal((V + 1, D)) * 0.1).astype(np.float32)  # (V + 1, D)
    h = rng.standard_normal((B, D)).astype(np.float32)  # (B, D)
    S = np.empty((B, V), np.float32)
    def numpy_forward():
        textbook_softmax(np.matmul(h, E[1:].T, out=S))
        return S @ E[1:]
    ms = interleaved({
        "numpy": numpy_forward,
        "products alone": lambda: (np.matmul(h, E[1:].T, out=S), S @ E[1:]),
        "fast": lambda: fast_forward(h, E),
        "fast, one thread": lambda: fast_forward(h, E, n_threads=1),
    }, reps)
    print(f"scoring forward (S, exp, sums, U E): NumPy's products + the textbook softmax "
          f"{ms['numpy']:.2f} ms (the products alone {ms['products alone']:.2f}); fast blocks "
          f"{ms['fast']:.2f} ms, on one thread {ms['fast, one thread']:.2f} ms")
    U_t = fast_forward(h, E)
    targets = rng.integers(1, V + 1, B)
    table_ = [E.copy(), np.zeros_like(E), np.zeros_like(E)]  # p, m, v
    dE = np.empty_like(E)
    scalars = (np.float32(0.1), np.float32(0.999), np.float32(0.001), np.float32(1e-5),
               np.float32(1e-3), np.float32(0.5), np.float32(1e-8))

    def numpy_then_adam():
        dE[0] = 0.0
        np.matmul(U_t, h, out=dE[1:])
        np.subtract.at(dE, targets, h)
        adam_kernel(table_[0].reshape(-1), dE.reshape(-1), table_[1].reshape(-1),
                    table_[2].reshape(-1), *scalars)

    adam = fast_optim.Adam({"E": table_[0]})
    ms = interleaved({
        "numpy": numpy_then_adam,
        "fast": lambda: adam._update(table_[0], TableGradient(U_t, h, targets, h, V + 1),
                                     table_[1], table_[2], *scalars),
    }, reps)
    print(f"the table's gradient and update: NumPy's dE product, then Adam's pass "
          f"{ms['numpy']:.2f} ms; made in Adam's blocks {ms['fast']:.2f} ms")

    for T in (15, 48):
        x = rng.standard_normal((B, T, D)).astype(np.float32)  # (B, T, D)
        weights = [(rng.standard_normal(shape) * 0.1).astype(np.float32)
                   for shape in [(3 * D, D), (3 * D,), (D, D), (D,)]]
        last = np.full(B, T - 1)
        dout = rng.standard_normal((B, D)).astype(np.float32)
        dfull = np.zeros((B, T, D), np.float32)
        dfull[:, T - 1] = dout

        def folded():
            with threads.blas_on_one_thread():
                out, cache = fast_attention.readout_attention_forward(x, *weights, 2, None,
                                                                      0.0, None, last)
                return fast_attention.readout_attention_backward(dout, cache)

        def textbook():
            out, cache = textbook_attention.attention_forward(x, *weights, 2)
            return textbook_attention.attention_backward(dfull, cache)
        ms = interleaved({"folded": folded, "textbook": textbook}, reps * 2)
        print(f"read-out attention fwd + bwd, T={T}: folded {ms['folded'] * 1e3:.0f} us, "
              f"the textbook's at every position {ms['textbook'] * 1e3:.0f} us")

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
