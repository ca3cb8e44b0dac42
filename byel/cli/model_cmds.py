"""`byel evaluate`, `adapt`, `export`, `submit` and `plot latents`: what is done with a trained model."""

from __future__ import annotations

from byel.choices import ADAPT_METHODS
from byel.cli.args import (MIN_PER_SET, Parser, batch_int, device_arg, epochs_int, int_range, lr_float, prob_float,
                           seed_int, train_batch_int)
from byel.config import LIMITS
from byel.errors import ByelError


def add_evaluate(sub) -> None:
    """`byel evaluate`."""
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


def add_adapt(sub) -> None:
    """`byel adapt`."""
    ad = sub.add_parser("adapt", help="adapt a fine-tuned model to unlabelled real faces (AdaBN, TENT, SHOT-IM, "
                                      "self-training, co-training, class-prior correction) → an adapted fine-tuned checkpoint")
    ad.add_argument("--checkpoint", required=True, help="a fine-tuned checkpoint")
    ad.add_argument("--data", required=True, help="unlabelled real images: a folder (every image below it) or any "
                                                  "data spec; labels, if any, are never read")
    ad.add_argument("--method", required=True, metavar="|".join(ADAPT_METHODS),  # checked by byel.adapt.method
                    help="adabn: BatchNorm statistics only; tent: + BatchNorm affine parameters by entropy "
                         "minimisation; shot-im: backbone by information maximisation, classifier frozen; "
                         "self-train: rounds of the pixel CNN's class-balanced pseudo-labels mixed with --synthetic; co-train (a "
                         "geometry or fused head): its views (the pixel CNN, the face-geometry head and, where the "
                         "model has one, the activation head) pseudo-label faces for each other, in rounds, mixed with --synthetic (tier B+C); prior: no weight changed, the "
                         "outputs re-weighted per class so that the predictions on the images are balanced as "
                         "the training data was (a class-prior correction); prior-em: the same with Saerens et "
                         "al.'s EM estimate of the images' class mix (amplifies a biased model's bias)")
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
    ad.add_argument("--views", type=int, choices=(2, 3),
                    help="co-train: 2 = the pixel CNN and the geometry head; 3 = + the activation head (a model "
                         "fine-tuned with --set finetune.no_mesh=activations), each view learning from the other "
                         "two (default: every view the model has)")
    ad.add_argument("--max-class-share", type=prob_float, default=0.9, metavar="X",
                    help="stop if more than this fraction of the images is predicted as one class (collapse)")
    ad.add_argument("--seed", type=seed_int, help="default: the checkpoint's")
    ad.add_argument("--overwrite", action="store_true", help="replace the adapted checkpoint already in OUT")
    ad.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda, cuda:N or mps")
    ad.add_argument("--no-progress", action="store_true")
    ad.set_defaults(func=cmd_adapt, writes={"out": "run"}, reads=("checkpoint", "data", "synthetic"), resume=False,
                    resume_hint=None)  # no --resume: a run folder in the way can only be replaced


def add_export(sub) -> None:
    """`byel export`."""
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


def add_submit(sub) -> None:
    """`byel submit`."""
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


def add_plot(sub) -> None:
    """`byel plot latents`."""
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
                   batch_size=args.batch_size, share=args.share, max_class_share=args.max_class_share, seed=args.seed,
                   views=args.views)
    r = adapt_checkpoint(args.checkpoint, args.data, args.method, args.out, opts, synthetic=args.synthetic,
                         device=args.device, progress=not args.no_progress)
    print(format_report(r))
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


# What a command writes beyond its output options: the files named after them, by the
# functions the command uses to name them (byel.outputs), so that the check cannot drift.
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
