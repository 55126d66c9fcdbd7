"""SR-SAN (Fang, arXiv 2102.01922) from scratch in NumPy and Numba."""

import os

# Numba's OpenMP workers spin-wait after each parallel region, holding the cores that
# OpenBLAS's threads need for the next matrix product. With both on 2 cores a training step
# ran 20-50x slower (measured: 18.4 s vs 0.39 s for the same short run). Passive waiting
# gives the cores back. It must be set before libgomp loads, i.e. before the first
# parallel kernel runs; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

# One OpenBLAS thread unless the user chose otherwise. With two, every matrix product --
# the encoder's small ones included -- waits for a second thread, and when the cores are
# busy with anything else that wait is a whole scheduler time slice: a training step was
# 3-4x slower (benchmarks/bench_train.py --threads-matrix, 2 cores at load 4-9: 304 vs 73
# ms per step, Numba keeping its 2 threads, which do help). On an idle machine the big
# scoring products would gain from more threads: set OPENBLAS_NUM_THREADS to compare.
# Like the line above it acts only if numpy has not been imported yet.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
