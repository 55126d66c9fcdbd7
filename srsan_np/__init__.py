"""SR-SAN (Fang, arXiv 2102.01922) from scratch in NumPy and Numba."""

__version__ = "0.1.0"
