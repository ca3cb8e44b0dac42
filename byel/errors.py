"""User-facing errors: the CLI prints their message as one line and exits non-zero."""

from __future__ import annotations


class ByelError(Exception):
    """A problem with the user's input (path, option, data, checkpoint). Exit code 2."""

    exit_code = 2


class DataError(ByelError):
    """The data cannot be used: missing, empty, unreadable, or nothing of the six classes."""


class ConfigError(ByelError):
    """An unknown or invalid configuration key or value."""


class CheckpointError(ByelError):
    """A checkpoint that is missing, truncated, or belongs to another model."""
