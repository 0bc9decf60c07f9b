"""Errors meant for people. A `UserError` is a mistake in input (config, data, arguments):
the CLI prints its message and exits 2, never a traceback."""

from __future__ import annotations


class DanluError(Exception):
    """Base class of danlu's own errors (exit code 1 unless a subclass says otherwise)."""

    exit_code = 1


class UserError(DanluError):
    """Bad input: what was wrong, where (file:line or config key), and what to do. Exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.where, self.hint = where, hint
        text = f"{where}: {message}" if where else message
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)


class ConfigError(UserError):
    """A config file or override is invalid."""


class DataError(UserError):
    """A data file or row is invalid."""


class DiskFullError(UserError):
    """The disk filled up while saving: the message names the path, the bytes needed and free."""


class UnsafeFileError(UserError):
    """A file would run code when loaded (pickle); refused."""


class TrainingInterrupted(DanluError):
    """Training stopped by a signal after saving a checkpoint."""


def closest(name: str, choices) -> str | None:
    """The closest valid name to `name`, for 'did you mean' hints."""
    import difflib

    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return found[0] if found else None
