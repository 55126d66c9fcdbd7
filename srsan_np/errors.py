"""The error a user's mistake raises (kept free of NumPy and Numba so the CLI can catch it
before anything compiled is imported)."""


class DataError(ValueError):
    """Bad input: a file, line, flag or directory; the message names it."""
