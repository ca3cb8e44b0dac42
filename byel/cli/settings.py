"""The configuration options of the training commands (pretrain, finetune, demo) and how they
become a config: a preset, then --set overrides, then the shortcut options."""

from __future__ import annotations

import argparse

from byel.choices import METHODS
from byel.cli.args import (CLASS_COUNTS, CLASSES_HELP, LOGGERS, accelerator_arg, devices_arg, epochs_int, int_range,
                           lr_float, seed_int, size_int, train_batch_int)
from byel.config import ACCELERATORS, LIMITS, OPTIMIZERS, PRECISIONS


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


def config_args(p: argparse.ArgumentParser, epochs_key: str | None) -> None:
    g = p.add_argument_group("configuration (every key can also be set with --set section.key=value)")
    g.add_argument("--preset", default="cpu-demo", help="preset name under byel/configs/ or a YAML file")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=0.1 (repeatable)")
    g.add_argument("--method", choices=sorted(METHODS.names), help="stage-1 method (default: the preset's)")
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


def resolve_config(args):
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
    from byel.config import check_no_mesh, set_value, validate

    for key, value in overrides.items():
        set_value(cfg, key, value)
    validate(cfg)
    check_no_mesh(cfg)
    return cfg
