"""User-facing errors: the CLI prints their message as one line and exits non-zero."""

from __future__ import annotations


class ByelError(Exception):
    """A problem with the user's input (path, option, data, checkpoint). Exit code 2."""

    exit_code = 2


class InputTypeError(ByelError, TypeError):
    """An argument of a type byel does not take (the Python API): the message names the argument
    and what it accepts. A ByelError like every input problem, and a TypeError for code that
    catches those."""


class DataError(ByelError):
    """The data cannot be used: missing, empty, unreadable, or nothing of the six classes."""


class ConfigError(ByelError):
    """An unknown or invalid configuration key or value."""


class CheckpointError(ByelError):
    """A checkpoint that is missing, truncated, or belongs to another model."""


class StepFailed(ByelError):
    """A byel command that a script ran as one of its steps failed, and has already said why in
    its own `byel: error:` line. The script only says where it stopped (no second error line)
    and exits with the step's code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code if exit_code > 0 else 1  # a step killed by a signal: < 0


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training: Lightning stopped the run; the last checkpoint is kept. The
    message says how to continue. The CLI prints it and exits with 130, as for any Ctrl-C."""


def escape_char(ch: str) -> str:
    """ch written as an escape: \\xNN for a byte of a file name that is not valid UTF-8 (which
    Python holds as a surrogate escape, U+DC80..U+DCFF), else as Python writes it (\\n, \\u2265)."""
    if "\udc80" <= ch <= "\udcff":
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return ch.encode("unicode_escape").decode("ascii")


def escape_surrogates(text: str) -> str:
    """text with its lone surrogates (the bytes of a file name that is not UTF-8) written as
    escapes, so that any file, font or terminal takes it (a plot title, a line of a report)."""
    return "".join(escape_char(ch) if "\ud800" <= ch <= "\udfff" else ch for ch in str(text))


def printable(text: str) -> str:
    """text with control characters (from a binary file, a terminal escape) written as escapes,
    so an error message stays one readable line; a byte of a file name that is not UTF-8 as \\xNN."""
    return "".join(ch if ch.isprintable() else escape_char(ch) for ch in str(text))


# Operating-system errors in words a user can act on (errno -> reason).
_OS_REASONS = {
    "ENOSPC": "disk full (no space left on device)",
    "EDQUOT": "disk quota exceeded",
    "EROFS": "read-only file system",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "EEXIST": "a file of that name is in the way",
    "ENOTDIR": "a file is in the way where a folder is expected",
    "EISDIR": "it is a folder, not a file",
    "ENOENT": "no such file or folder",
    "ENAMETOOLONG": "file name too long",
    "EMFILE": "too many open files",
    "EIO": "input/output error (a failing disk or a lost network share?)",
    "EFBIG": "file too large (over this system's or this shell's file-size limit, ulimit -f)",
}


def os_reason(e: OSError) -> str:
    """Why an OSError happened, in words (e.g. 'disk full (no space left on device)')."""
    import errno

    name = errno.errorcode.get(e.errno or -1, "")
    return _OS_REASONS.get(name) or str(e.strerror or e).lower()


def os_error_message(e: OSError) -> str:
    """One line for an OSError: what could not be done to which path, and why."""
    reason = os_reason(e)
    where = " → ".join(str(f) for f in (e.filename, e.filename2) if f)
    if not where:
        return reason
    verb = "cannot write" if reason.startswith(("disk", "read-only", "file too large")) else \
        "cannot create" if "in the way" in reason else "cannot use"
    return f"{verb} {where}: {reason}"
