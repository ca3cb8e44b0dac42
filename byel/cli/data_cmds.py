"""`byel generate` and `byel data inspect`: making and scanning data."""

from __future__ import annotations

import argparse

from byel.choices import BACKENDS
from byel.cli.args import CLASS_COUNTS, Bounded, Parser, class_choice, int_range, positive_int, seed_int, size_int
from byel.cli.paths import declared_outputs
from byel.config import LIMITS, GenerateConfig
from byel.errors import ByelError


def add_generate(sub) -> None:
    """`byel generate`."""
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


def add_data(sub) -> None:
    """`byel data inspect`."""
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


def cmd_data_inspect(args) -> int:
    from byel.data.inspect import inspect

    print(inspect(args.spec, args.out, size=args.size, unlabelled=args.unlabelled, log_path=args.log,
                  classes=args.classes))
    return 0


def _inspect_outputs(args) -> list[tuple[str, str, str]]:
    from byel.outputs import inspect_log

    planned = declared_outputs(args)
    if args.out and args.log is None:
        planned.append(("the list of unusable files", inspect_log(args.out), "file"))
    return planned
