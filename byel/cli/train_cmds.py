"""`byel pretrain`, `byel finetune` and `byel demo`: training, stage by stage or all at once."""

from __future__ import annotations

import sys
from pathlib import Path

from byel.choices import ADAPT_METHODS, BACKENDS
from byel.cli.args import positive_int
from byel.cli.settings import config_args, resolve_config
from byel.config import HEADS


HEAD_HELP = ("pixels: the CNN alone (tier A); geometry: a face-geometry head (MediaPipe Face Landmarker, "
             "pretrained on real faces: tier B) where a face mesh is found, the CNN elsewhere; fused: their "
             "probabilities mixed with a weight chosen on the synthetic held-out split (default: the preset's, pixels)")
UNLABELLED_HELP = ("unlabelled real images (a folder: every image below it, or any data spec; labels never read) "
                   "that join stage 1's BYOL term, a batch of them beside each synthetic batch (same steps, same "
                   "synthetic data); byel, byol-cls and byol only; results are tier C")


def add_pretrain(sub) -> None:
    """`byel pretrain`: stage 1."""
    pt = sub.add_parser("pretrain", help="stage 1: BYEL (or an ablation) on labelled synthetic images")
    pt.add_argument("--data", required=True, help="data spec, e.g. imagefolder:DIR, abaw-lsd:DIR, or a plain path")
    pt.add_argument("--out", required=True, help="run folder (checkpoints/, logs/, config.yaml)")
    pt.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                    help="continue from OUT/checkpoints/last.ckpt (or the given checkpoint)")
    pt.add_argument("--overwrite", action="store_true", help="replace the run already in OUT (refused without it)")
    pt.add_argument("--unlabelled", metavar="SPEC", help=UNLABELLED_HELP)
    config_args(pt, "pretrain.epochs")
    pt.set_defaults(func=cmd_pretrain, writes={"out": "run"}, reads=("data", "unlabelled"))


def add_finetune(sub) -> None:
    """`byel finetune`: stage 2."""
    ft = sub.add_parser("finetune", help="stage 2: classifier on top of a stage-1 backbone")
    ft.add_argument("--checkpoint", help="stage-1 checkpoint (its online backbone is loaded); omit to train from scratch")
    ft.add_argument("--data", required=True, help="labelled synthetic training data (spec or path)")
    ft.add_argument("--val", help="validation data for model selection (default: held-out synthetic split)")
    ft.add_argument("--out", required=True)
    ft.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                    help="continue from OUT/checkpoints/last.ckpt (or the given checkpoint)")
    ft.add_argument("--overwrite", action="store_true", help="replace the run already in OUT (refused without it)")
    ft.add_argument("--head", choices=HEADS, help=HEAD_HELP)
    config_args(ft, "finetune.epochs")
    ft.set_defaults(func=cmd_finetune, writes={"out": "run"}, reads=("data", "val", "checkpoint"))


def add_demo(sub) -> None:
    """`byel demo`: the main job."""
    de = sub.add_parser("demo", help="the main job: generate → pre-train → fine-tune → evaluate on real faces → report")
    de.add_argument("--out", default="runs/demo", help="the demo's folder: synthetic faces, both runs, report.json")
    de.add_argument("--real", help="labelled real faces for the final evaluation (e.g. FER2013 PublicTest folders)")
    de.add_argument("--backend", choices=BACKENDS, help="generator backend (default: the preset's, procedural)")
    de.add_argument("--sources", help="warp and mesh backends: unlabelled neutral faces")
    de.add_argument("--per-class", type=positive_int, metavar="N", help="synthetic images per class (default: the preset's)")
    de.add_argument("--adapt-bn", nargs="?", const=True, metavar="SPEC",
                    help="also report scores after BatchNorm adaptation (AdaBN): alone, on the evaluated real "
                         "images without their labels; with SPEC, on the unlabelled images of SPEC instead")
    de.add_argument("--resume", action="store_true", help="reuse finished stages and resume an interrupted one")
    de.add_argument("--overwrite", action="store_true", help="replace the demo already in OUT (refused without it)")
    de.add_argument("--unlabelled", metavar="SPEC",
                    help="unlabelled real images (a folder: every image below it, or any data spec; labels never "
                         "read), used twice (tier C): in stage 1's BYOL term, then by --adapt after fine-tuning")
    de.add_argument("--adapt", metavar="METHOD", choices=[*ADAPT_METHODS, "none"],
                    help="with --unlabelled: the adaptation after fine-tuning (default: co-train of the three views "
                         "with --head fused or geometry and --set finetune.no_mesh=activations, else self-train; "
                         "none: skip it); its model is scored beside the fine-tuned one")
    de.add_argument("--head", choices=HEADS, help=HEAD_HELP)
    config_args(de, "pretrain.epochs")
    de.set_defaults(func=cmd_demo, writes={"out": "demo"}, reads=("real", "sources", "adapt_bn", "unlabelled"))


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


def cmd_pretrain(args) -> int:
    from byel.data.split import SPLIT_FILE, holdout_split
    from byel.checks import global_rank
    from byel.train import check_classes, check_unlabelled_method, pretrain

    cfg = resolve_config(args)
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

    cfg = resolve_config(args)
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


def cmd_demo(args) -> int:
    from byel.pipeline import run_demo

    cfg = resolve_config(args)
    run_demo(cfg, out=Path(args.out), real=args.real, backend=args.backend, sources=args.sources,
             adapt_bn=args.adapt_bn, per_class=args.per_class, resume=args.resume, overwrite=args.overwrite,
             unlabelled=args.unlabelled, adapt=args.adapt)
    return 0
