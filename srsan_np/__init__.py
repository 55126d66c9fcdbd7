"""SR-SAN (Fang, arXiv 2102.01922) from scratch in NumPy and Numba.

Importing the package changes nothing outside it; thread settings are an explicit call,
:func:`srsan_np.runtime.configure_threads`.
"""

__version__ = "0.1.0"
