"""SR-SAN (Fang, arXiv 2102.01922) from scratch in NumPy and Numba."""

import os

# Numba's OpenMP workers spin-wait after each parallel region, holding the cores that
# OpenBLAS's threads need for the next matrix product. With both on 2 cores a training step
# ran 20-50x slower (measured: 18.4 s vs 0.39 s for the same short run). Passive waiting
# gives the cores back. It must be set before libgomp loads, i.e. before the first
# parallel kernel runs; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

__version__ = "0.1.0"
