"""SR-SAN (Fang, arXiv 2102.01922) from scratch in NumPy and Numba."""

import os

# Numba's OpenMP workers spin-wait after each parallel region, holding the cores that
# OpenBLAS's threads need for the next matrix product. With both on 2 cores a training step
# ran 20-50x slower (measured: 18.4 s vs 0.39 s for the same short run). Passive waiting
# gives the cores back. It must be set before libgomp loads, i.e. before the first
# parallel kernel runs; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

# OpenBLAS's idle workers also spin, 2^28 cycles after every product by default: with the
# products of a step a few milliseconds apart, one core is always taken by a waiting
# thread, and Adam, the softmax and Numba's second thread run on what is left (a 20 ms
# sleep right after a product cost 20 ms of CPU by default, 0.04 ms with 2^4). Measured with
# `benchmarks/bench_train.py --threads-matrix`: step 1.99x -> 1.69x the GEMM floor. It acts
# only if set before NumPy loads OpenBLAS, i.e. if srsan_np is imported first.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

__version__ = "0.1.0"
