"""Benchmark: how long Numba takes to compile every kernel of the library, cold and warm.

Runs, in a fresh interpreter with an empty ``NUMBA_CACHE_DIR`` (cold) and then again with
the cache it filled (warm), everything that has a kernel: the model's forward and backward
in float32 and float64, both input modes, with positions and two layers, both kernel sets
(fast and reference), scoring and attention maps, both Adams, pessimistic ranks, top-k, and
every baseline.

    python benchmarks/bench_compile.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def compile_everything():
    import numpy as np

    from srsan_np import kernels, model
    from srsan_np.baselines import fit_baselines
    from srsan_np.data import make_batch, sample_dataset
    from srsan_np.evaluate import ranks_pessimistic, top_k

    data = sample_dataset(0)
    index = np.arange(50)
    for dtype in (np.float32, np.float64):
        for mode, positions in (("faithful", False), ("sequence", True)):
            config = model.Config(n_items=data.n_items, hidden=16, heads=2, layers=2, mode=mode,
                                  positions=positions)
            params = model.init_params(config, 0, dtype)
            batch = make_batch(data.train, index, mode)
            for name in kernels.NAMES:
                _, grads = model.loss_and_grads(params, batch, config,
                                                np.random.default_rng(0), name)
                kernels.get(name).Adam(params).step(grads)
                scores = model.score(params, batch, config, name)
                model.attention_maps(params, batch, config, name)
            ranks_pessimistic(scores, batch.targets)
            top_k(scores, 20)
    for baseline in fit_baselines(data.train, data.n_items).values():
        baseline.score(data.test.subset(index))


def main():
    if "--child" in sys.argv:
        compile_everything()
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for name in ("cold", "warm"):
            start = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--child"], env=env, check=True)
            results[f"{name}_s"] = round(time.perf_counter() - start, 2)
    results["load_after"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))
    print(f"every kernel, float32 and float64: cold {results['cold_s']:.1f} s, "
          f"warm {results['warm_s']:.1f} s (interpreter start included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
