"""Exceptions raised by cellsynth.

Every error a user can cause by giving bad input is a :class:`CellsynthError`, so callers can catch the
family; each message says what is wrong, where (file, row, column, station) and how to fix it.
"""

from __future__ import annotations


class CellsynthError(Exception):
    """Base class of every error cellsynth raises on purpose."""


class DataError(CellsynthError, ValueError):
    """Input data is malformed: wrong shape, NaN, negative traffic, unknown station, irregular time axis...

    ``source`` names the file (or argument) the data came from, when known; it is prefixed to the message.
    """

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class ConfigError(CellsynthError, ValueError):
    """A configuration value or option is invalid or inconsistent."""


class NotFittedError(CellsynthError, RuntimeError):
    """A generator was asked to generate or save before ``fit`` was called."""


class OutputError(CellsynthError):
    """cellsynth will not write an output where it was asked to (the path holds other files, an input, an
    output of another kind; see :mod:`cellsynth.outputs`), or could not (no space left, permission denied).
    Nothing was deleted, and an earlier output there is unchanged."""


def one_line(text: object) -> str:
    """``text`` (another library's error message, say) on one line: each run of whitespace, line breaks
    included, becomes one space, so that a message quoting it stays the one line the CLI promises."""
    return " ".join(str(text).split())


class DataRepairWarning(UserWarning):
    """A loader filled in values it could not read (e.g. a missing interval); the count is in the message,
    and the values are flagged in ``StationTraffic.repaired``."""
