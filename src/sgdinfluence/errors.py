"""The library's exceptions: one base, so that callers (and the command line) can tell an
expected failure, whose message names the problem and its fix, from a bug.

Every class subclasses :class:`Error`, itself a ``ValueError`` (as Kronfluence's do), so code
that already catches ``ValueError`` keeps working. Messages speak of the library's arguments
(``label_column``, ``overwrite``), never of command-line flags.
"""

from __future__ import annotations


class Error(ValueError):
    """An expected failure of sgdinfluence: bad input, a bad run, or an unusable output path."""


class ConfigError(Error):
    """Options out of range or that cannot work together."""


class DataError(Error):
    """Data that cannot be used as given: a malformed file, bad labels, wrong shapes."""


class OutputError(Error):
    """An output path that must not or cannot be written: it exists and holds what
    sgdinfluence did not write, it contains the input, or it is not writable."""


class IndexOutOfRange(Error, IndexError):
    """Training-instance indices outside the training set (also an ``IndexError``)."""


class RunFileError(Error):
    """A saved run that cannot be read: missing, truncated, foreign or incomplete."""


class RunFileNotFound(RunFileError, FileNotFoundError):
    """No run at the given path (also a ``FileNotFoundError``)."""


class TrainingDiverged(Error, FloatingPointError):
    """The training loss became NaN or infinite at step ``step`` of epoch ``epoch``, whose
    learning rate was ``lr``."""

    def __init__(self, message: str, *, step: int | None = None, epoch: int | None = None,
                 lr: float | None = None):
        super().__init__(message)
        self.step, self.epoch, self.lr = step, epoch, lr
