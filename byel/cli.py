"""The `byel` command: parses, validates, and calls one function per subcommand.

Every problem with the user's input or the machine (a full disk, a missing GPU) ends as one line
on stderr and exit code 2 (130 for Ctrl-C), never a traceback: numbers and choices are checked
when the command line is parsed, output locations before any work starts.
Anything else is a bug in byel: one line saying so, exit code 1, and the traceback in a file.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import json
import math
import os
import shlex
import sys
from pathlib import Path

from byel import __version__
from byel.config import ACCELERATORS, HEADS, LIMITS, OPTIMIZERS, PRECISIONS, GenerateConfig, check_devices
from byel.errors import ByelError, StepFailed, escape_char, os_error_message
from byel.methods import VARIANTS
from byel.synth import BACKENDS

# CLI shortcut -> config key. Everything else is reachable with --set section.key=value.
SHORTCUTS = {
    "method": "method.name",
    "backbone": "model.backbone",
    "image_size": "data.image_size",
    "batch_size": "data.batch_size",
    "lr": "optim.lr",
    "optimizer": "optim.optimizer",
    "seed": "seed",
    "accelerator": "trainer.accelerator",
    "devices": "trainer.devices",
    "num_nodes": "trainer.num_nodes",
    "strategy": "trainer.strategy",
    "precision": "trainer.precision",
    "logger": "trainer.logger",
    "classes": "data.classes",
}
# Per subcommand: the training settings that stage reads (fine-tuning has its own lr, batch size
# and optimiser; optim.* and data.batch_size are pre-training's).
STAGE_SHORTCUTS = {
    "finetune": {"batch_size": "finetune.batch_size", "lr": "finetune.lr", "optimizer": "finetune.optimizer",
                 "head": "finetune.head"},
    "demo": {"head": "finetune.head"},
}
HEAD_HELP = ("pixels: the CNN alone (tier A); geometry: a face-geometry head (MediaPipe Face Landmarker, "
             "pretrained on real faces: tier B) where a face mesh is found, the CNN elsewhere; fused: their "
             "probabilities mixed with a weight chosen on the synthetic held-out split (default: the preset's, pixels)")


def printable(text: str) -> str:
    """text with control characters (from a binary file, a terminal escape) written as escapes,
    so an error message stays one readable line; a byte of a file name that is not UTF-8 as \\xNN."""
    return "".join(ch if ch.isprintable() else escape_char(ch) for ch in str(text))


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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, where it has one worth showing."""

    def _get_help_string(self, action):
        help = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in help or not action.option_strings:
            return help
        return help + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse that reports a wrong option as one line (and exit code 2), without the usage dump."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {printable(message)} (see {self.prog} --help)\n")


# --- option types: every number and choice is checked when the command line is parsed -----------
class Bounded:
    """An int or float option type with a range; `lo_open`: the lower bound itself is refused."""

    def __init__(self, kind: type, lo, hi, lo_open: bool = False):
        self.kind, self.lo, self.hi, self.lo_open = kind, lo, hi, lo_open
        self.__name__ = kind.__name__  # argparse names the type in some messages

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if self.kind is int else 'a number'}") from None
        low_ok = value > self.lo if self.lo_open else value >= self.lo
        if not (low_ok and value <= self.hi) or (self.kind is float and not math.isfinite(value)):
            num = (lambda x: f"{x:,}") if self.kind is int else (lambda x: f"{x:g}")
            low = f"> {num(self.lo)}" if self.lo_open else f"≥ {num(self.lo)}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: use a number {low} and ≤ {num(self.hi)}")
        return value


def int_range(lo: int, hi: int) -> Bounded:
    return Bounded(int, lo, hi)


positive_int = int_range(1, LIMITS["count"])
nonneg_int = int_range(0, LIMITS["count"])
seed_int = int_range(0, LIMITS["seed"])
size_int = int_range(16, LIMITS["image_size"])
batch_int = int_range(1, LIMITS["batch_size"])  # inference
train_batch_int = int_range(2, LIMITS["batch_size"])  # BatchNorm needs two images per batch
epochs_int = int_range(1, LIMITS["epochs"])
lr_float = Bounded(float, 0.0, LIMITS["lr"], lo_open=True)

LOGGERS = ("csv", "tensorboard", "both", "none")
CLASS_COUNTS = (6, 7)  # byel.classes.CLASS_COUNTS (not imported here: keeps --help light)
MAX_WINDOW = 1001  # byel.track.MAX_WINDOW: the longest --smooth window:K (not imported: keeps --help light)
MIN_PER_SET = 2  # byel.latents.MIN_PER_SET: the projection needs two points of a set (not imported: torch)
CLASSES_HELP = "6: the six emotions; 7: the six and neutral (default: the preset's, 6)"
UNLABELLED_HELP = ("unlabelled real images (a folder: every image below it, or any data spec; labels never read) "
                   "that join stage 1's BYOL term, a batch of them beside each synthetic batch (same steps, same "
                   "synthetic data); byel, byol-cls and byol only; results are tier C")


def _type_from_check(check):
    """An argparse type from a check that raises ByelError."""

    def parse(text: str):
        try:
            return check(text)
        except ByelError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = check.__name__
    return parse


def class_choice(text: str) -> int | str:
    """`generate --classes`: a class count (6 or 7) or a class name (checked by generate)."""
    if text.strip().isdigit():
        if int(text) not in CLASS_COUNTS:
            raise argparse.ArgumentTypeError(f"{text} classes: use 6 (the six emotions) or 7 (and neutral), "
                                             "or class names")
        return int(text)
    return text


def _device(text: str) -> str:
    from byel.checks import check_device

    return check_device(text)


def _accelerator(text: str) -> str:
    value = text.strip().lower()
    if value not in ACCELERATORS:
        raise ByelError(f"invalid choice {text!r} (choose from {', '.join(ACCELERATORS)})")
    if value in ("gpu", "cuda", "mps"):  # else Lightning says "No supported gpu backend found!", after the data loaded
        try:
            _device("mps" if value == "mps" else "cuda")
        except ByelError:
            raise ByelError(f"{value!r}: no such accelerator on this machine (torch sees none); "
                            "use cpu or auto") from None
    return value


device_arg = _type_from_check(_device)


def _smooth(text: str) -> str:
    from byel.track import check_smooth

    return check_smooth(text)


smooth_arg = _type_from_check(_smooth)
prob_float = Bounded(float, 0.0, 1.0, lo_open=True)
accelerator_arg = _type_from_check(_accelerator)
devices_arg = _type_from_check(check_devices)


def preset_batch_arg(text: str) -> str:
    """PRESET=N with N a training batch size; returned unchanged."""
    name, sep, n = text.partition("=")
    if not (sep and name.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not PRESET=N")
    train_batch_int(n)
    return text


def _config_args(p: argparse.ArgumentParser, epochs_key: str | None) -> None:
    g = p.add_argument_group("configuration (every key can also be set with --set section.key=value)")
    g.add_argument("--preset", default="cpu-demo", help="preset name under byel/configs/ or a YAML file")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=0.1 (repeatable)")
    g.add_argument("--method", choices=sorted(VARIANTS), help="stage-1 method (default: the preset's)")
    g.add_argument("--backbone", help="smallnet | resnet18 | resnet50 (default: the preset's)")
    g.add_argument("--image-size", type=size_int, metavar="PX",
                   help=f"image side in pixels, 16–{LIMITS['image_size']} (default: the preset's)")
    g.add_argument("--batch-size", type=train_batch_int, metavar="N",
                   help=f"images per step and process, 2–{LIMITS['batch_size']} (default: the preset's)")
    g.add_argument("--lr", type=lr_float, help=f"learning rate, > 0 and ≤ {LIMITS['lr']:g} (default: the preset's)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help="(default: the preset's)")
    g.add_argument("--seed", type=seed_int, help=f"0–{LIMITS['seed']} (default: the preset's)")
    g.add_argument("--classes", type=int, choices=CLASS_COUNTS, help=f"sets data.classes: {CLASSES_HELP}")
    if epochs_key:
        g.add_argument("--epochs", type=epochs_int, metavar="N", help=f"sets {epochs_key} (default: the preset's)")
    t = p.add_argument_group("hardware")
    t.add_argument("--accelerator", type=accelerator_arg, choices=ACCELERATORS, help="(default: the preset's, auto)")
    t.add_argument("--devices", type=devices_arg, help="number of devices, a list like 0,1, or auto (default: the preset's)")
    t.add_argument("--num-nodes", type=int_range(1, LIMITS["nodes"]), metavar="N", help="machines (default: the preset's, 1)")
    t.add_argument("--strategy", help="auto | ddp | ddp_spawn | ... (Lightning's names; default: the preset's, auto)")
    t.add_argument("--precision", choices=PRECISIONS, metavar="{auto,32-true,bf16-mixed,16-mixed,...}",
                   help=f"one of {', '.join(PRECISIONS)} (default: the preset's, auto)")
    t.add_argument("--logger", choices=LOGGERS, help="(default: the preset's, csv)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. in CI logs)")
    p.set_defaults(epochs_key=epochs_key)


def _resolve_config(args):
    from byel.config import load_config

    overrides = {}
    for arg, key in {**SHORTCUTS, **STAGE_SHORTCUTS.get(getattr(args, "command", None), {})}.items():
        value = getattr(args, arg, None)
        if value is not None:
            overrides[key] = value
    if getattr(args, "epochs", None) is not None:
        overrides[args.epochs_key] = args.epochs
    if getattr(args, "no_progress", False):
        overrides["trainer.progress"] = False
    cfg = load_config(args.preset, args.overrides)  # --set first, shortcuts win
    from byel.config import set_value, validate

    for key, value in overrides.items():
        set_value(cfg, key, value)
    validate(cfg)
    return cfg


def _load_labelled(spec: str, size: int, progress: bool, out: str | Path, classes: int = 6):
    """Load a labelled data spec of `classes` classes (6, or 7 with neutral), say what was found,
    and log unusable files in the run folder."""
    from byel.data.sources import load, write_problem_log

    data = load(spec, size, progress=progress, classes=classes)
    print(f"data {data.spec}: {data.summary()}", file=sys.stderr)
    for u in data.real_uses:  # warp faces: tier C (byel.provenance)
        print(f"  note: warped from {u['n_images']} unlabelled real faces ({u['data']}): "
              "scores of a model trained on them are tier C", file=sys.stderr)
    for note in data.notes:
        print(f"  note: {note}", file=sys.stderr)
    if data.problems:
        log = Path(out) / "data-problems.txt"
        log.parent.mkdir(parents=True, exist_ok=True)
        write_problem_log(data, str(log))
        print(f"  {len(data.problems)} unusable file(s) skipped; listed in {log}", file=sys.stderr)
    return data


def _load_unlabelled(spec: str | None, size: int, progress: bool):
    """Unlabelled real images for stage 1's BYOL term (--unlabelled), or None; says what was found."""
    if not spec:
        return None
    from byel.data.sources import load

    data = load(spec, size, unlabelled=True, progress=progress)
    print(f"unlabelled {data.spec}: {data.summary()} (BYOL term only)", file=sys.stderr)
    return data


# --- subcommands -------------------------------------------------------------------------------
def cmd_generate(args) -> int:
    from byel.synth.generate import generate

    classes = args.classes
    if classes and any(isinstance(c, int) for c in classes):
        if len(classes) > 1:
            raise ByelError("--classes takes a count (6 or 7) or class names, not both")
        classes = classes[0]
    summary = generate(
        args.out, backend=args.backend, per_class=args.per_class, size=args.size, seed=args.seed,
        workers=args.workers, sources=args.sources, grey=args.grey, classes=classes,
        warp_strength=args.warp_strength, progress=not args.no_progress, gate=args.gate, overwrite=args.overwrite,
    )
    if summary.get("unchanged"):
        print(f"{args.out} already holds these {summary['n_images']} images (a finished run of the same settings): "
              "nothing written; --overwrite makes them again")
        return 0
    print(f"wrote {summary['n_images']} images to {args.out} ({summary['images_per_s']:.0f} images/s)")
    for c, g in (summary.get("gate") or {}).get("per_class", {}).items():
        print(f"  gate {c}: {g['accepted']}/{g['tried']} renders accepted ({g['acceptance']:.0%}), "
              f"{g['no_mesh']} without a face mesh, {g['kept_rejected']} kept after the last try")
    print(f"manifest: {summary['manifest']}\npreview:  {summary['preview']}\nsettings: {summary['provenance']}")
    return 0


def cmd_pretrain(args) -> int:
    from byel.data.split import SPLIT_FILE, holdout_split
    from byel.checks import global_rank
    from byel.train import check_classes, check_unlabelled_method, pretrain

    cfg = _resolve_config(args)
    if args.unlabelled:
        check_unlabelled_method(cfg.method.name)
    data = _load_labelled(args.data, cfg.data.image_size, cfg.trainer.progress, args.out, cfg.data.classes)
    check_classes(data.labels, cfg.data.classes, f"--data {data.spec}")
    unlabelled = _load_unlabelled(args.unlabelled, cfg.data.image_size, cfg.trainer.progress)
    # Fine-tuning selects its best epoch on images held out here, before stage 1 sees any.
    train, held, split = holdout_split(data, cfg.data.val_fraction, cfg.seed)
    print(f"  held out {len(held)} images (by {split['grouped_by']}) for fine-tuning's model selection: "
          f"{Path(args.out) / SPLIT_FILE}", file=sys.stderr)
    # pretrain writes split.json and config.yaml only once --resume (if given) has checked out
    last = pretrain(cfg, data.images[train], data.labels[train], args.out, resume=args.resume,
                    overwrite=args.overwrite, unlabelled=unlabelled, generator_sources=data.real_uses, split=split,
                    val=(data.images[held], data.labels[held]))
    if global_rank() == 0:
        print(f"pre-training checkpoint: {last}")
    return 0


def cmd_finetune(args) -> int:
    from byel.checkpoint import load_checkpoint
    from byel.data.split import SPLIT_FILE, holdout_split, recorded_split, stage1_split
    from byel.checks import global_rank
    from byel.train import check_classes, finetune, finetune_config

    cfg = _resolve_config(args)
    if args.checkpoint:  # the input size comes from the stage-1 checkpoint
        cfg = finetune_config(cfg, load_checkpoint(args.checkpoint))
    data = _load_labelled(args.data, cfg.data.image_size, cfg.trainer.progress, args.out, cfg.data.classes)
    check_classes(data.labels, cfg.data.classes, f"--data {data.spec}")
    images, labels, gen, info = data.images, data.labels, data.real_uses, None
    if args.val:
        v = _load_labelled(args.val, cfg.data.image_size, cfg.trainer.progress, args.out, cfg.data.classes)
        val, gen = (v.images, v.labels), gen + v.real_uses
    else:  # the images stage 1 held out when it trained on this data, else a split of our own
        split = recorded_split(data, stage1_split(args.checkpoint)) if args.checkpoint else None
        train, held, info = split or holdout_split(data, cfg.data.val_fraction, cfg.seed)
        print(f"  model selection on {len(held)} held-out images (by {info['grouped_by']}"
              f"{', as in stage 1' if split else ''}): {Path(args.out) / SPLIT_FILE}", file=sys.stderr)
        images, labels, val = images[train], labels[train], (images[held], labels[held])
    best = finetune(cfg, args.checkpoint, images, labels, args.out, val=val, resume=args.resume,
                    overwrite=args.overwrite, generator_sources=gen, split=info)
    if global_rank() == 0:
        print(f"fine-tuned checkpoint (best validation macro-F1): {best}")
    return 0


def cmd_evaluate(args) -> int:
    from byel.evaluate import evaluate, format_result

    result = evaluate(args.checkpoint, args.data, args.report, adapt_bn=args.adapt_bn,
                      batch_size=args.batch_size, device=args.device, progress=not args.no_progress)
    print(format_result(result))
    print(f"report: {result['report']}\nconfusion matrix: {result['confusion_png']}")
    return 0


def cmd_adapt(args) -> int:
    from byel.adapt.common import Options
    from byel.adapt.run import adapt_checkpoint, format_report

    opts = Options(epochs=args.epochs, rounds=args.rounds, lr=args.lr, optimizer=args.optimizer,
                   batch_size=args.batch_size, share=args.share, max_class_share=args.max_class_share, seed=args.seed)
    r = adapt_checkpoint(args.checkpoint, args.data, args.method, args.out, opts, synthetic=args.synthetic,
                         device=args.device, progress=not args.no_progress)
    print(format_report(r))
    return 0


def cmd_demo(args) -> int:
    from byel.pipeline import run_demo

    cfg = _resolve_config(args)
    run_demo(cfg, out=Path(args.out), real=args.real, backend=args.backend, sources=args.sources,
             adapt_bn=args.adapt_bn, per_class=args.per_class, resume=args.resume, overwrite=args.overwrite,
             unlabelled=args.unlabelled)
    return 0


def cmd_data_inspect(args) -> int:
    from byel.data.inspect import inspect

    print(inspect(args.spec, args.out, size=args.size, unlabelled=args.unlabelled, log_path=args.log,
                  classes=args.classes))
    return 0


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


def cmd_predict(args) -> int:
    from byel.data.formats import IMAGE_EXTS
    from byel.predict import format_result, predict

    if Path(args.out).suffix.lower() in IMAGE_EXTS:  # a CSV under a picture's name would mislead
        raise ByelError(f"--out {args.out}: predictions are a CSV table, give a .csv path "
                        "(pictures with boxes drawn: --annotate DIR)")
    result = predict(args.checkpoint, args.inputs, args.out, detect=not args.no_detect, annotate_dir=args.annotate,
                     batch_size=args.batch_size, device=args.device, progress=not args.no_progress,
                     video_stride=args.video_stride, detector=args.detector, min_face=args.min_face,
                     uncertain=args.uncertain, smooth=args.smooth)
    print(format_result(result))
    return 0


def cmd_serve(args) -> int:
    from byel.serve import serve

    serve(args.checkpoint, host=args.host, port=args.port, device=args.device, uncertain=args.uncertain,
          queue=args.queue, allow_hosts=args.allow_host or ())
    return 0


def cmd_export(args) -> int:
    from byel.export import export

    r = export(args.checkpoint, args.out, fmt=args.format)
    print(f"exported {r['format']} model: {r['path']} (input: float RGB [0, 1], {r['image_size']} px)")
    print(f"preprocessing and classes: {r['json']}; max |exported − PyTorch| = {r['parity_max_abs_diff']:.1e}")
    if "geometry_path" in r:
        print(f"geometry head: {r['geometry_path']} (input: 1008 face-geometry features; max |exported − PyTorch| = "
              f"{r['geometry_parity_max_abs_diff']:.1e}); computing them needs the MediaPipe face landmarker "
              f"(byel's or MediaPipe's): recipe and fusion weight in the JSON")
    return 0


def cmd_submit(args) -> int:
    from byel.submit import format_result, submit

    result = submit(args.checkpoint, args.frames, args.out, batch_size=args.batch_size, device=args.device,
                    progress=not args.no_progress, codes=args.codes)
    print(format_result(result))
    return 0


def cmd_plot_latents(args) -> int:
    from byel.latents import plot_emotion_vectors, plot_latents

    if args.data:
        r = plot_latents(args.checkpoint, args.data, args.out, max_per_set=args.max_per_set, device=args.device)
        print(f"latent projection: {r.get('png', args.out)}")
    if args.emotion_vectors:
        plot_emotion_vectors(args.checkpoint, args.emotion_vectors)
        print(f"emotion-vector cosine similarities: {args.emotion_vectors}")
    if not args.data and not args.emotion_vectors:
        raise ByelError("nothing to plot: give --data SPEC (latents) and/or --emotion-vectors PNG")
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


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="byel", description="BYEL: facial-expression recognition learned from synthetic faces only.")
    p.add_argument("--version", action="version", version=f"byel {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    g = sub.add_parser("generate", help="make labelled synthetic expression faces")
    g.add_argument("--backend", default="procedural", choices=BACKENDS,
                   help="procedural needs nothing; warp needs --sources and byel[warp]; mesh needs --sources "
                        "(drives the face mesh of each source face)")
    g.add_argument("--out", required=True, help="output folder: OUT/<class>/*.png, manifest.csv, preview.png; "
                   "new or empty, or a generate run of the same settings (kept as it is, nothing written)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the generate run already in OUT (a folder holding anything else is never written)")
    g.add_argument("--per-class", type=positive_int, default=1000, metavar="N", help="images per class")
    g.add_argument("--size", type=size_int, default=64, metavar="PX", help=f"image side in pixels, 16–{LIMITS['image_size']}")
    g.add_argument("--seed", type=seed_int, default=0, help=f"0–{LIMITS['seed']}")
    g.add_argument("--workers", type=int_range(1, LIMITS["workers"]), default=2, metavar="N", help="worker processes")
    g.add_argument("--sources", help="warp and mesh: folder of unlabelled (neutral) face images")
    g.add_argument("--grey", action="store_true", help="grey output (3 equal channels)")
    g.add_argument("--warp-strength", type=Bounded(float, 0.0, LIMITS["warp_strength"], lo_open=True),
                   default=GenerateConfig.warp_strength, metavar="X",
                   help=f"warp: multiple of the FACS displacement magnitudes, > 0 and ≤ {LIMITS['warp_strength']:g}")
    g.add_argument("--classes", nargs="+", type=class_choice, metavar="6|7|NAME",
                   help="6: the six emotions; 7: the six and neutral (faces with no action unit); "
                        "or some of the classes by name (default: 6)")
    g.add_argument("--no-progress", action="store_true")
    g.add_argument("--gate", action=argparse.BooleanOptionalAction, default=None,
                   help="mesh: re-draw faces whose measured blendshapes contradict their action units (default on)")
    g.set_defaults(func=cmd_generate, writes={"out": "folder"}, reads=("sources",))

    pt = sub.add_parser("pretrain", help="stage 1: BYEL (or an ablation) on labelled synthetic images")
    pt.add_argument("--data", required=True, help="data spec, e.g. imagefolder:DIR, abaw-lsd:DIR, or a plain path")
    pt.add_argument("--out", required=True, help="run folder (checkpoints/, logs/, config.yaml)")
    pt.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                    help="continue from OUT/checkpoints/last.ckpt (or the given checkpoint)")
    pt.add_argument("--overwrite", action="store_true", help="replace the run already in OUT (refused without it)")
    pt.add_argument("--unlabelled", metavar="SPEC", help=UNLABELLED_HELP)
    _config_args(pt, "pretrain.epochs")
    pt.set_defaults(func=cmd_pretrain, writes={"out": "run"}, reads=("data", "unlabelled"))

    ft = sub.add_parser("finetune", help="stage 2: classifier on top of a stage-1 backbone")
    ft.add_argument("--checkpoint", help="stage-1 checkpoint (its online backbone is loaded); omit to train from scratch")
    ft.add_argument("--data", required=True, help="labelled synthetic training data (spec or path)")
    ft.add_argument("--val", help="validation data for model selection (default: held-out synthetic split)")
    ft.add_argument("--out", required=True)
    ft.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                    help="continue from OUT/checkpoints/last.ckpt (or the given checkpoint)")
    ft.add_argument("--overwrite", action="store_true", help="replace the run already in OUT (refused without it)")
    ft.add_argument("--head", choices=HEADS, help=HEAD_HELP)
    _config_args(ft, "finetune.epochs")
    ft.set_defaults(func=cmd_finetune, writes={"out": "run"}, reads=("data", "val", "checkpoint"))

    ev = sub.add_parser("evaluate", help="macro-F1 / accuracy / per-class F1 on labelled (real) faces")
    ev.add_argument("--checkpoint", required=True, help="a fine-tuned checkpoint")
    ev.add_argument("--data", required=True, help="labelled images: root/<class>/* (aliases ok) or any data spec")
    ev.add_argument("--report", help="JSON report path; its confusion matrix goes beside it as NAME.png (default: "
                                     "RUN/eval/<data>.json for a checkpoint in a run's RUN/checkpoints/ folder, "
                                     "else ./eval-<checkpoint name>/<data>.json in the current folder)")
    ev.add_argument("--adapt-bn", nargs="?", const=True, metavar="SPEC",
                    help="also report scores after BatchNorm adaptation (AdaBN): alone, on the evaluated images "
                         "without their labels; with SPEC, on the unlabelled images of SPEC instead")
    ev.add_argument("--batch-size", type=batch_int, default=256, metavar="N", help="images per forward pass")
    ev.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda, cuda:N or mps")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=cmd_evaluate, writes={"report": "file"}, reads=("checkpoint", "data", "adapt_bn"),
                    outputs=_evaluate_outputs)

    from byel.adapt import METHODS as ADAPT_METHODS  # names only: no torch import

    ad = sub.add_parser("adapt", help="adapt a fine-tuned model to unlabelled real faces (AdaBN, TENT, SHOT-IM, "
                                      "self-training, co-training) → an adapted fine-tuned checkpoint")
    ad.add_argument("--checkpoint", required=True, help="a fine-tuned checkpoint")
    ad.add_argument("--data", required=True, help="unlabelled real images: a folder (every image below it) or any "
                                                  "data spec; labels, if any, are never read")
    ad.add_argument("--method", required=True, metavar="|".join(ADAPT_METHODS),  # checked by byel.adapt.method
                    help="adabn: BatchNorm statistics only; tent: + BatchNorm affine parameters by entropy "
                         "minimisation; shot-im: backbone by information maximisation, classifier frozen; "
                         "self-train: rounds of class-balanced pseudo-labels mixed with --synthetic; co-train (a "
                         "geometry or fused head): the pixel CNN and the face-geometry head pseudo-label faces for "
                         "each other, in rounds, mixed with --synthetic (tier B+C)")
    ad.add_argument("--out", required=True, help="folder: checkpoints/adapted.ckpt and adapt.json")
    ad.add_argument("--synthetic", metavar="SPEC", help="self-train, co-train: the labelled synthetic set to mix in")
    ad.add_argument("--epochs", type=epochs_int, metavar="N", help="passes over the images (self-train: per round; "
                                                                   "default: the method's)")
    ad.add_argument("--rounds", type=int_range(1, 1000), metavar="N",
                    help="self-train, co-train: pseudo-labelling rounds (default 2)")
    ad.add_argument("--lr", type=lr_float, help="learning rate (default: the method's)")
    ad.add_argument("--optimizer", choices=("adam", "sgd"), help="default: adam")
    ad.add_argument("--batch-size", type=train_batch_int, metavar="N", help="images per step (default: the method's)")
    ad.add_argument("--share", type=prob_float, metavar="X",
                    help="self-train, co-train: fraction of the images (co-train: of those with a face mesh) "
                         "pseudo-labelled in the last round, 0 < X ≤ 1 (default 0.5)")
    ad.add_argument("--max-class-share", type=prob_float, default=0.9, metavar="X",
                    help="stop if more than this fraction of the images is predicted as one class (collapse)")
    ad.add_argument("--seed", type=seed_int, help="default: the checkpoint's")
    ad.add_argument("--overwrite", action="store_true", help="replace the adapted checkpoint already in OUT")
    ad.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda, cuda:N or mps")
    ad.add_argument("--no-progress", action="store_true")
    ad.set_defaults(func=cmd_adapt, writes={"out": "run"}, reads=("checkpoint", "data", "synthetic"), resume=False,
                    resume_hint=None)  # no --resume: a run folder in the way can only be replaced

    de = sub.add_parser("demo", help="the main job: generate → pre-train → fine-tune → evaluate on real faces → report")
    de.add_argument("--out", default="runs/demo")
    de.add_argument("--real", help="labelled real faces for the final evaluation (e.g. FER2013 PublicTest folders)")
    de.add_argument("--backend", choices=BACKENDS, help="generator backend (default: the preset's, procedural)")
    de.add_argument("--sources", help="warp and mesh backends: unlabelled neutral faces")
    de.add_argument("--per-class", type=positive_int, metavar="N", help="synthetic images per class (default: the preset's)")
    de.add_argument("--adapt-bn", nargs="?", const=True, metavar="SPEC",
                    help="also report scores after BatchNorm adaptation (AdaBN): alone, on the evaluated real "
                         "images without their labels; with SPEC, on the unlabelled images of SPEC instead")
    de.add_argument("--resume", action="store_true", help="reuse finished stages and resume an interrupted one")
    de.add_argument("--overwrite", action="store_true", help="replace the demo already in OUT (refused without it)")
    de.add_argument("--unlabelled", metavar="SPEC", help=UNLABELLED_HELP)
    de.add_argument("--head", choices=HEADS, help=HEAD_HELP)
    _config_args(de, "pretrain.epochs")
    de.set_defaults(func=cmd_demo, writes={"out": "demo"}, reads=("real", "sources", "adapt_bn", "unlabelled"))

    pr = sub.add_parser("predict", help="expressions of the faces in photos, folders or videos → CSV")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or video files")
    pr.add_argument("--checkpoint", help="a fine-tuned checkpoint (default: the model shipped with byel)")
    pr.add_argument("--out", default="predictions.csv",
                    help="CSV: file, frame, [track,] x, y, w, h, predicted, p_<class>…")
    pr.add_argument("--no-detect", action="store_true", help="inputs are already face crops")
    pr.add_argument("--annotate", metavar="DIR", help="save copies with boxes and labels drawn (under the inputs' "
                                                      "names) in DIR, a folder that neither holds nor lies in an input")
    pr.add_argument("--detector", default="auto", choices=("auto", "landmarker", "opencv-haar", "dlib-hog"),
                    help="face detector. auto: landmarker (MediaPipe's BlazeFace + face mesh, shipped with byel; crops "
                         "aligned on the eyes), or where its runtime has no wheel opencv-haar, else dlib-hog (both: "
                         "axis-aligned crops around the box)")
    pr.add_argument("--min-face", type=int_range(1, 100_000), default=24, metavar="PX",
                    help="report only faces whose box is at least PX pixels on its shorter side, in pixels of the "
                         "input image (every detector; values under 8 count as 8)")
    pr.add_argument("--video-stride", type=positive_int, default=1, metavar="K", help="use every k-th video frame")
    pr.add_argument("--uncertain", type=prob_float, metavar="P",
                    help="label a face `uncertain` when its top probability is below P (0 < P ≤ 1)")
    pr.add_argument("--smooth", type=smooth_arg, default="none", metavar="SPEC",
                    help="videos: smooth each face track's probabilities: none | ema:A (A = weight of the newest "
                         f"frame, 0 < A ≤ 1) | window:K (centred mean over K frames, 1 ≤ K ≤ {MAX_WINDOW})")
    pr.add_argument("--batch-size", type=batch_int, default=64, metavar="N", help="faces per forward pass")
    pr.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda, cuda:N or mps")
    pr.add_argument("--no-progress", action="store_true")
    pr.set_defaults(func=cmd_predict, writes={"out": "table", "annotate": "folder"}, reads=("checkpoint", "inputs"))

    se = sub.add_parser("serve", help="a local web page: a photo or webcam snapshot → a box, label and "
                                      "probability chart per face (needs byel[serve])")
    se.add_argument("--checkpoint", help="a fine-tuned checkpoint (default: the model shipped with byel)")
    se.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: the whole network)")
    se.add_argument("--port", type=int_range(0, 65535), default=8000, metavar="N", help="0: any free port")
    se.add_argument("--allow-host", action="append", metavar="NAME",
                    help="a host name the page may be opened by besides localhost and IP addresses (with --host "
                         "0.0.0.0: the machine's name on the network); repeatable. Other names are refused "
                         "(DNS rebinding)")
    se.add_argument("--queue", type=int_range(1, 32), default=4, metavar="N",
                    help="requests that may wait while the model runs; more get 503 (busy) at once")
    se.add_argument("--uncertain", type=prob_float, metavar="P", help="as for predict")
    se.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda, cuda:N or mps")
    se.set_defaults(func=cmd_serve, reads=("checkpoint",))

    ex = sub.add_parser("export", help="a standalone TorchScript or ONNX model with its preprocessing in JSON",
                        description="A standalone TorchScript or ONNX model of the pixel CNN, its preprocessing in "
                                    "OUT.json. A model with a geometry or fused head also gets OUT_STEM.geometry.pt|"
                                    ".onnx: 1008 face-geometry features -> class probabilities. Those features come "
                                    "from a face mesh of the MediaPipe Face Landmarker v2 (byel's byel.faces code or "
                                    "MediaPipe's own): the exported files cannot compute them; the JSON says how, "
                                    "with the landmarker's sha256 and the fusion weight.")
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--out", required=True, help="model file; the JSON goes beside it as OUT.json")
    ex.add_argument("--format", default="torchscript", choices=("torchscript", "onnx"), help="onnx needs byel[onnx]")
    ex.add_argument("--overwrite", action="store_true",
                    help="replace the files of an earlier export to OUT (refused without it)")
    ex.set_defaults(func=cmd_export, writes={"out": "new"}, reads=("checkpoint",), outputs=_export_outputs)

    su = sub.add_parser("submit", help="challenge files for an Aff-Wild2-style frame tree: one text file per video")
    su.add_argument("--checkpoint", required=True)
    su.add_argument("--frames", required=True, help="ROOT/<video>/<00001>.jpg")
    su.add_argument("--out", required=True)
    su.add_argument("--codes", default="byel", choices=("byel", "affwild2"),
                    help="byel: header anger…surprise, labels 0–5 (a 7-class model: …,neutral, 0–6); affwild2: "
                         "the official header, labels 1–6 (neutral 0)")
    su.add_argument("--batch-size", type=batch_int, default=64, metavar="N", help="frames per forward pass")
    su.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda, cuda:N or mps")
    su.add_argument("--no-progress", action="store_true")
    su.set_defaults(func=cmd_submit, writes={"out": "folder"}, reads=("checkpoint", "frames"))

    pl = sub.add_parser("plot", help="pictures of a model")
    plsub = pl.add_subparsers(dest="plot_command", required=True, parser_class=Parser)
    la = plsub.add_parser("latents", help="2-D projection of backbone features per data set; emotion-vector similarities")
    la.add_argument("--checkpoint", required=True)
    la.add_argument("--data", action="append", help="data spec (repeat: e.g. synthetic and real side by side)")
    la.add_argument("--out", default="latents.png", help="the latent projection picture")
    la.add_argument("--emotion-vectors", metavar="PNG", help="also plot cos(W_i, W_j) (stage-1 byel/byol-cls checkpoints)")
    la.add_argument("--max-per-set", type=int_range(MIN_PER_SET, LIMITS["count"]), default=600, metavar="N",
                    help=f"at most N images per data set (a random subset), N ≥ {MIN_PER_SET}")
    la.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda, cuda:N or mps")
    la.set_defaults(func=cmd_plot_latents, writes={"out": "picture", "emotion_vectors": "picture"},
                    reads=("checkpoint", "data"))

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
    sp.add_argument("--presets", nargs="+", default=["cpu-demo", "paper"])
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

    da = sub.add_parser("data", help="data utilities")
    dsub = da.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    ins = dsub.add_parser("inspect", help="scan a data spec: per-class counts, problems, a contact sheet")
    ins.add_argument("spec")
    ins.add_argument("--out", help="contact sheet picture, e.g. sheet.png (default: none)")
    ins.add_argument("--size", type=size_int, default=64, metavar="PX", help="tile side in pixels")
    ins.add_argument("--unlabelled", action="store_true", help="read every image under the folder, no classes")
    ins.add_argument("--log", help="write the list of unusable files here (default: beside --out)")
    ins.add_argument("--classes", type=int, choices=CLASS_COUNTS, default=6,
                     help="6: the six emotions (neutral skipped and counted); 7: with neutral")
    ins.set_defaults(func=cmd_data_inspect, writes={"out": "picture", "log": "file"}, reads=("spec",),
                     outputs=_inspect_outputs)
    return p


FOLDER_KINDS = ("folder", "run", "demo")


def _declared_outputs(args) -> list[tuple[str, str, str]]:
    """(what, path, kind) of each output option given (`writes`)."""
    return [("--" + name.replace("_", "-"), value, kind) for name, kind in getattr(args, "writes", {}).items()
            if (value := getattr(args, name, None)) is not None]


# What each command writes beyond its output options: the files named after them, by the
# functions the commands use to name them (byel.outputs), so that the check cannot drift.
def _evaluate_outputs(args) -> list[tuple[str, str, str]]:
    from byel.outputs import default_report, evaluation_files

    report = args.report if args.report is not None else default_report(args.checkpoint, args.data)
    files = evaluation_files(report, adapt_bn=bool(args.adapt_bn))
    named = {"report": "--report" if args.report is not None else "--report's default"}
    return [(named.get(what, f"the {what}"), str(path), "file") for what, path in files.items()]


def _export_outputs(args) -> list[tuple[str, str, str]]:
    from byel.outputs import export_files

    return [("--out" if what == "model" else f"the exported {what}", str(path), "new")
            for what, path in export_files(args.out, args.format).items()]


def _inspect_outputs(args) -> list[tuple[str, str, str]]:
    from byel.outputs import inspect_log

    planned = _declared_outputs(args)
    if args.out and args.log is None:
        planned.append(("the list of unusable files", inspect_log(args.out), "file"))
    return planned


def _check_paths(args) -> None:
    """Before any work: every input there, every output location usable, and no two paths in each
    other's way: no output is, holds or lies inside an input, or is another output. Subparsers
    declare `writes` (option -> file | table | folder | picture | run | demo | new; a table is a
    file never read as input, e.g. predictions.csv, and may go beside the inputs; a new file is
    not replaced without --overwrite), `reads` (their input options) and, where a command also
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
    planned = getattr(args, "outputs", _declared_outputs)(args)
    for what, value, kind in planned:
        check_output(value, folder=kind in FOLDER_KINDS, what=what, inputs=reads, inside_inputs_ok=kind == "table")
        if kind == "picture":
            check_picture(value, what)
    check_apart([(what, value, kind in FOLDER_KINDS) for what, value, kind in planned])
    for what, value, kind in planned:
        if kind == "new" and not args.overwrite and os.path.lexists(os.path.expanduser(value)):
            raise ByelError(f"{what} {value} already exists; replace it with --overwrite or choose another --out")
    if getattr(args, "resume", False) and getattr(args, "overwrite", False):
        raise ByelError("--resume continues the run in --out and --overwrite replaces it: give one of them")


@contextlib.contextmanager
def _own_run_folder(args):
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = "byel " + shlex.join(sys.argv[1:] if argv is None else argv)  # recorded by results files

    def run():
        _check_paths(args)
        with _own_run_folder(args):
            return args.func(args)

    return run_guarded(run)


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


if __name__ == "__main__":
    raise SystemExit(main())
