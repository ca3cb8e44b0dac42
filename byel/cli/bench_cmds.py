"""`byel benchmark ablation` and `byel benchmark speed`: experiments."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from byel.choices import ADAPT_METHODS
from byel.cli.args import CLASS_COUNTS, CLASSES_HELP, Parser, device_arg, int_range, preset_batch_arg
from byel.errors import ByelError


def add_benchmark(sub) -> None:
    """`byel benchmark ablation` and `byel benchmark speed`."""
    be = sub.add_parser("benchmark", help="experiments: the ablation table on real faces")
    bsub = be.add_subparsers(dest="benchmark_command", required=True, parser_class=Parser)
    ab = bsub.add_parser("ablation", help="supervised / byol / byol-cls / byel on the same data and budget, over seeds")
    ab.add_argument("--out", default="runs/ablation", help="results.json, results.md, results.png (resumable)")
    ab.add_argument("--eval", nargs="+", help="labelled real sets (default: ../shared/data/fer2013-publictest if present)")
    ab.add_argument("--preset", default="cpu-demo", help="preset name or YAML file")
    ab.add_argument("--seeds", type=int_range(1, 1000), default=3, metavar="N", help="seeds 0 … N-1 per method")
    ab.add_argument("--methods", nargs="+", choices=("supervised", "byol", "byol-cls", "byel"),
                    help="a subset of the methods (default: all four)")
    ab.add_argument("--data", help="synthetic training data (default: generated once from the preset)")
    ab.add_argument("--adapt-bn", metavar="SPEC",
                    help="AdaBN on the unlabelled images of SPEC (default: each evaluation set's own scored images)")
    ab.add_argument("--unlabelled", metavar="SPEC",
                    help="also pre-train byel, byol-cls and byol with these unlabelled real images in the BYOL term "
                         "(rows '+ unlabelled real'; supervised cannot use them)")
    ab.add_argument("--adapt", choices=list(ADAPT_METHODS),
                    help="also score every run after this adaptation (byel adapt, its default settings) on the "
                         "AdaBN images; self-train and co-train mix in the synthetic training set; co-train needs "
                         "--set finetune.head=fused (or geometry)")
    ab.add_argument("--classes", type=int, choices=CLASS_COUNTS, help=f"sets data.classes: {CLASSES_HELP}")
    ab.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ab.add_argument("--no-progress", action="store_true")
    ab.set_defaults(func=cmd_benchmark_ablation, writes={"out": "folder"}, reads=("eval", "data", "adapt_bn", "unlabelled"))

    sp = bsub.add_parser("speed", help="step throughput vs a plain-PyTorch loop, FLOP/s vs matmul peak, loader, memory")
    sp.add_argument("--presets", nargs="+", default=["cpu-demo", "paper"], metavar="PRESET",
                    help="presets to measure: names under byel/configs/ or YAML files")
    sp.add_argument("--steps", type=int_range(1, 100_000), default=8, metavar="N",
                    help="timed whole steps per repeat, after --warmup ones")
    sp.add_argument("--warmup", type=int_range(0, 100_000), default=2, metavar="N", help="untimed steps before each timed run")
    sp.add_argument("--repeats", type=int_range(1, 1000), default=3, metavar="N",
                    help="byel and plain loops alternate this often; medians reported")
    sp.add_argument("--e2e-epochs", type=int_range(0, 1000), default=2, metavar="N",
                    help="epochs of the end-to-end pretrain() run (0: skip it)")
    sp.add_argument("--e2e-steps", type=int_range(1, 100_000), default=4, metavar="N",
                    help="steps per epoch of the end-to-end run")
    sp.add_argument("--batch-size", action="append", type=preset_batch_arg, metavar="PRESET=N",
                    help="measure a preset at another batch size (default: paper=16 on CPU)")
    sp.add_argument("--device", type=device_arg, default="cpu", help="cpu or cuda")
    sp.add_argument("--out", help="write OUT/NAME.json and OUT/NAME.md (table, command, machine)")
    sp.add_argument("--name", default="results", help="file name stem under --out")
    sp.add_argument("--json", help="also write the JSON results to this file")
    sp.set_defaults(func=cmd_benchmark_speed, writes={"out": "folder", "json": "file"})


def cmd_benchmark_ablation(args) -> int:
    from byel.experiments import ABLATION_METHODS, run_ablation

    evals = args.eval or [d for d in ("../shared/data/fer2013-publictest",) if Path(d).is_dir()]
    if not evals:
        raise ByelError("no evaluation set: pass --eval DIR (labelled real faces)")
    for m in args.methods or []:
        if m not in ABLATION_METHODS:
            raise ByelError(f"unknown method {m!r}; choose from {', '.join(ABLATION_METHODS)}")
    overrides = args.overrides + ([f"data.classes={args.classes}"] if args.classes else [])
    run_ablation(args.out, evals, preset=args.preset, seeds=args.seeds, methods=tuple(args.methods or ABLATION_METHODS),
                 overrides=overrides, data=args.data, adapt_bn=args.adapt_bn, progress=not args.no_progress,
                 unlabelled=args.unlabelled, adapt=args.adapt, command=args.command_line)
    print((Path(args.out) / "results.md").read_text())
    print(f"results: {Path(args.out) / 'results.json'}\nchart:   {Path(args.out) / 'results.png'}")
    return 0


def cmd_benchmark_speed(args) -> int:
    from byel.speed import run_speed

    sizes = {}
    for item in args.batch_size or []:
        name, _, bs = item.partition("=")
        if not bs.isdigit():
            raise ByelError(f"--batch-size wants PRESET=N, got {item!r}")
        sizes[name] = int(bs)
    if args.device == "cpu":
        sizes.setdefault("paper", 16)  # a ResNet-50 step at batch 256 takes minutes on a laptop CPU
    # the command that reproduces the results, every setting explicit
    command = shlex.join(["byel", "benchmark", "speed", "--presets", *args.presets, "--steps", str(args.steps),
                          "--warmup", str(args.warmup), "--repeats", str(args.repeats),
                          "--e2e-epochs", str(args.e2e_epochs), "--e2e-steps", str(args.e2e_steps),
                          *[a for p, n in sizes.items() if p in args.presets for a in ("--batch-size", f"{p}={n}")],
                          "--device", args.device, *(["--out", args.out, "--name", args.name] if args.out else [])])
    result = run_speed(args.presets, args.steps, sizes, args.out, args.device, args.warmup, args.repeats,
                       args.e2e_epochs, args.e2e_steps, args.name, command)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0
