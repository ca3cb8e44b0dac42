"""The `byel` command: parses, validates, and calls one function per subcommand.

A module per command group builds its subparsers and holds their `cmd_*` functions: data_cmds
(generate, data inspect), train_cmds (pretrain, finetune, demo), model_cmds (evaluate, adapt,
export, submit, plot latents), use_cmds (predict, serve), bench_cmds (benchmark ablation, speed).
Shared below them: args (the parser class and argument types), settings (the configuration
options of the training commands), paths (input and output checks before any work) and guard
(errors as one line and an exit code).

Every problem with the user's input or the machine (a full disk, a missing GPU) ends as one line
on stderr and exit code 2 (130 for Ctrl-C), never a traceback: numbers and choices are checked
when the command line is parsed, output locations before any work starts.
Anything else is a bug in byel: one line saying so, exit code 1, and the traceback in a file.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from byel import __version__
from byel.cli.args import Parser
from byel.cli.guard import run_guarded
from byel.cli.paths import check_paths, own_run_folder


def build_parser() -> argparse.ArgumentParser:
    # the command groups are imported here, not above: `byel.cli.args` and `byel.cli.guard` (the
    # benchmark scripts' imports) stay free of every command module
    from byel.cli import bench_cmds, data_cmds, model_cmds, train_cmds, use_cmds

    p = Parser(prog="byel", description="BYEL: facial-expression recognition learned from synthetic faces only.")
    p.add_argument("--version", action="version", version=f"byel {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    for add in (data_cmds.add_generate, train_cmds.add_pretrain, train_cmds.add_finetune, model_cmds.add_evaluate,
                model_cmds.add_adapt, train_cmds.add_demo, use_cmds.add_predict, use_cmds.add_serve,
                model_cmds.add_export, model_cmds.add_submit, model_cmds.add_plot, bench_cmds.add_benchmark,
                data_cmds.add_data):  # in the order `byel --help` lists them
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = "byel " + shlex.join(sys.argv[1:] if argv is None else argv)  # recorded by results files

    def run():
        check_paths(args)
        with own_run_folder(args):
            return args.func(args)

    return run_guarded(run)


if __name__ == "__main__":
    raise SystemExit(main())
