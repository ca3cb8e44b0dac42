"""Every problem with the user's input or the machine (a full disk, a missing GPU) ends as one line
on stderr and exit code 2 (130 for Ctrl-C), never a traceback; anything else is a bug in byel: one
line saying so, exit code 1, and the traceback in a file. Used by the `byel` command and by the
scripts in benchmarks/."""

from __future__ import annotations

import codecs
import contextlib
import os
import sys

from byel import __version__
from byel.errors import ByelError, StepFailed, escape_char, os_error_message, printable


def _escape_errors(e: UnicodeError) -> tuple[str, int]:
    """Codec error handler "byel-escape": what the output's encoding cannot hold, as escapes."""
    if not isinstance(e, UnicodeEncodeError):
        raise e
    return "".join(escape_char(ch) for ch in e.object[e.start:e.end]), e.end


codecs.register_error("byel-escape", _escape_errors)


def _escape_unencodable_output() -> None:
    """Printing a name the terminal's encoding cannot hold (a file name that is not UTF-8, any
    non-ASCII name under an ASCII locale) writes escapes instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) in ("strict", "backslashreplace"):
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(errors="byel-escape")


def run_guarded(func) -> int:
    """Run func() and turn the errors a user can cause into one line on stderr and an exit code
    (used by the `byel` command and by the scripts in benchmarks/)."""
    _escape_unencodable_output()
    try:
        return func() or 0
    except StepFailed as e:  # the step's own error line is above
        print(f"stopped: {printable(e)}", file=sys.stderr)
        return e.exit_code
    except ByelError as e:
        print(f"byel: error: {printable(e)}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # read-only folder, full disk, ...: the machine, not a bug
        print(f"byel: error: {printable(os_error_message(e))}", file=sys.stderr)
        return 2
    except MemoryError:
        print("byel: error: out of memory; use smaller images (--image-size), batches (--batch-size) "
              "or less data", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # byel.errors.Interrupted says how to continue
        print(f"byel: interrupted{'; ' + printable(e) if str(e) else ''}", file=sys.stderr)
        return 130
    except Exception as e:  # not the user's input: a bug. One line here, the traceback in a file.
        print(_internal_error_line(e), file=sys.stderr)
        return 1


def _internal_error_line(e: Exception) -> str:
    """The one line that reports a bug; nothing in it can fail (an odd or huge message, an
    unwritable traceback file)."""
    try:
        first = printable((str(e)[:1000].strip().splitlines() or [""])[0][:200])
    except Exception:  # noqa: BLE001 - a message that cannot even be made a string
        first = "(no message)"
    return (f"byel: internal error (a bug in byel, not in your input): {type(e).__name__}: {first}; "
            f"{_crash_report()} — please report it")


def _crash_report() -> str:
    """Write the current exception's traceback to a new temporary file; say where."""
    import tempfile
    import time
    import traceback

    try:
        fd, path = tempfile.mkstemp(prefix=f"byel-crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
        # backslashreplace: the command line and the messages may hold names that are not UTF-8
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(f"byel {__version__}: {' '.join(sys.argv)}\n\n{traceback.format_exc()}")
        return f"traceback in {printable(path)}"
    except OSError as e:
        return f"could not write the traceback ({printable(e.strerror or e)})"
    except Exception as e:  # noqa: BLE001 - the report of a bug must not become a second one
        return f"could not write the traceback ({type(e).__name__})"
