"""Before any work: the paths a command reads and writes are checked (byel.checks), and a
training command's run folder is locked."""

from __future__ import annotations

import contextlib
import os

from byel.errors import ByelError


FOLDER_KINDS = ("folder", "run", "demo")


def declared_outputs(args) -> list[tuple[str, str, str]]:
    """(what, path, kind) of each output option given (`writes`)."""
    return [("--" + name.replace("_", "-"), value, kind) for name, kind in getattr(args, "writes", {}).items()
            if (value := getattr(args, name, None)) is not None]


def check_paths(args) -> None:
    """Before any work: every input there, every output location usable, and no two paths in each
    other's way: no output is, holds or lies inside an input, or is another output. Subparsers
    declare `writes` (option -> file | table | folder | picture | run | demo | new; a table is a
    file never read as input, e.g. predictions.csv, and may go beside the inputs; a new file or
    a table is not replaced without --overwrite), `reads` (their input options) and, where a command also
    writes files named after those options, `outputs` (a function listing all it writes)."""
    from byel.checks import check_apart, check_output, check_picture, spec_paths

    reads = {}
    for name in getattr(args, "reads", ()):
        value = getattr(args, name, None)
        values = value if isinstance(value, list) else [value]
        label = {"inputs": "INPUT", "spec": "SPEC"}.get(name, "--" + name.replace("_", "-"))  # positionals by name
        reads[label] = [v for v in values if isinstance(v, str)]
    for name, values in reads.items():  # a missing input fails here, not after the work that comes before its use
        for value in values:
            if name != "INPUT" and value.strip() and not spec_paths(value):  # predict reports each INPUT itself
                raise ByelError(f"{name} {value}: not found")
    planned = getattr(args, "outputs", declared_outputs)(args)
    for what, value, kind in planned:
        check_output(value, folder=kind in FOLDER_KINDS, what=what, inputs=reads, inside_inputs_ok=kind == "table")
        if kind == "picture":
            check_picture(value, what)
    check_apart([(what, value, kind in FOLDER_KINDS) for what, value, kind in planned])
    for what, value, kind in planned:
        if kind in ("new", "table") and not args.overwrite and os.path.lexists(os.path.expanduser(value)):
            raise ByelError(f"{what} {value} already exists; replace it with --overwrite or choose another --out")
    if getattr(args, "resume", False) and getattr(args, "overwrite", False):
        raise ByelError("--resume continues the run in --out and --overwrite replaces it: give one of them")


@contextlib.contextmanager
def own_run_folder(args):
    """A training command's --out belongs to this run from before its first write: locked
    (a second run into it is refused), then checked to hold no other run unless --resume or
    --overwrite. Other commands: nothing to do."""
    kind = next((k for k in getattr(args, "writes", {}).values() if k in ("run", "demo")), None)
    if kind is None:
        yield
        return
    from byel.checks import RUN_MARKERS, check_run_folder, run_lock

    if kind == "demo":
        from byel.pipeline import DEMO_MARKERS as markers
    else:
        markers = RUN_MARKERS
    with run_lock(args.out):
        check_run_folder(args.out, resume=bool(args.resume), overwrite=args.overwrite, markers=markers,
                         resume_hint=getattr(args, "resume_hint", "--resume"))
        yield
