"""The errors a user can cause (kept free of NumPy and Numba so that the CLI can name them
before anything compiled is imported)."""


class DataError(ValueError):
    """Bad input: a file, line, flag or directory; the message names it."""


class ConfigError(ValueError):
    """An impossible configuration; ``fields`` names the settings that make it so, so that
    whoever merged the configuration can blame the flag or file that set them."""

    def __init__(self, message, fields):
        super().__init__(message)
        self.fields = tuple(fields)


class TrainingDiverged(RuntimeError):
    """The loss became NaN, infinite or orders of magnitude worse than a uniform guess, or
    the weights or Adam's moments stopped being finite; the last good checkpoint is kept."""


class LearnerError(DataError):
    """A learner's op (``srsan-np train --ops DIR``) fails its check, or raised while
    training; the message names their file and line, or the op and the check's verdict."""
