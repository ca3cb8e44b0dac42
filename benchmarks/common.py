"""What every benchmark script shares: the run record its results JSON keeps (the command, the
machine, the versions and the git commit: byel.provenance.run_record), the lines its Markdown
says them in, and the one `mean ± std` of a table cell.

A script imports it as `from common import ...`: run as `python benchmarks/NAME.py` the scripts'
folder is on sys.path; a script a test imports puts it there first."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np

from byel import provenance

ROOT = Path(__file__).resolve().parent.parent


def command_line(script: str, argv: list[str] | None = None) -> str:
    """`python benchmarks/NAME.py ARGS` (shlex.join: pasted back into a shell it runs again):
    `script` the benchmark's __file__, `argv` its arguments (default: sys.argv[1:])."""
    path = Path(script).resolve()
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    return shlex.join(["python", name, *(sys.argv[1:] if argv is None else argv)])


def run_record(script: str, argv: list[str] | None = None) -> dict:
    """The benchmark's run record: its command (see `command_line`), machine, versions and git commit."""
    return provenance.run_record(command_line(script, argv))


def machine(run: dict | None = None) -> str:
    """One line for the Markdown: "CPU, N cores, torch X, Python Y" of `run` (default: now)."""
    run = run or provenance.run_record()
    m, v = run["machine"], run["versions"]
    return f"{m['cpu']}, {m['cores']} cores, torch {v['torch']}, Python {v['python']}"


def commit(run: dict) -> str:
    """The git commit of a run record, for the Markdown: the hash (and whether the checkout had
    uncommitted changes), or "unknown" outside a git checkout."""
    if run.get("commit") is None:
        return "unknown (not run from a git checkout)"
    return run["commit"] + (" (with uncommitted changes)" if run.get("dirty") else "")


def mean_std(values: list[float]) -> str:
    """"0.312 ± 0.014" (sample std, ddof 1) over several values; the value alone for one."""
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def publish(script: str, r: dict, path: str | Path, markdown) -> str:
    """Give the results `r` of a benchmark run their command and run record (`script`: the
    benchmark's __file__), write PATH.json and PATH.md (`markdown(r, command)`, byel.files.write_text:
    whole files or none) and return the markdown."""
    from byel.files import write_text

    command = command_line(script)
    r["command"] = command
    r["run"] = run_record(script)  # the command, machine, versions and git commit
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".json"), json.dumps(r, indent=2) + "\n")
    md = markdown(r, command)
    write_text(out.with_suffix(".md"), md)
    return md
