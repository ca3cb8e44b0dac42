"""The class-prior correction (`byel adapt --method prior`, byel.adapt.prior) of the shipped
model, before and after, estimated without any label on

- (a) the 140 real fixture faces themselves (tests/fixtures/fer_sample; transductive, tier C:
  140 images);
- (b) a random subset (--unlabelled-n, seed --seed) of ../shared/data/fer2013-train-unlabelled
  (unlabelled real faces, tier C; none of them is scored here);

and, beside it, Saerens et al.'s EM estimate (`--method prior-em`) on the same images. Measured:

- the predicted-class histogram and macro-F1 on the 140 fixture faces with the prediction defaults
  (``byel.load(ckpt, detect=False).predict``: each face averaged with its mirror image);
- macro-F1 and accuracy on FER2013 PublicTest (``byel evaluate``, no mirroring) with seven classes
  (PublicTest-7) and with six (PublicTest-6: the model's six emotion outputs, its neutral output
  removed from both heads, as benchmarks/default_model.py scores it; the correction estimated
  again for that six-class view). The shipped model is fused: tier B, and B+C after a correction.

    python benchmarks/class_prior.py [--checkpoint CKPT] [--real ../shared/data/fer2013-publictest]
        [--unlabelled ../shared/data/fer2013-train-unlabelled] [--unlabelled-n 3000] [--seed 0]
        [--work DIR] [--out benchmarks/results]

Writes OUT/class_prior.md and .json (with the run record: the exact command). One run; every
step is deterministic.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, default_model, stable_predictions
from common import commit, machine, run_record  # noqa: E402

from byel.cli.args import Parser, positive_int, seed_int  # noqa: E402
from byel.cli.guard import run_guarded  # noqa: E402
from byel.errors import ByelError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FER = ROOT / "tests" / "fixtures" / "fer_sample"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def subset_folder(src: Path, n: int, seed: int, dest: Path) -> list[str]:
    """A folder of links to n files of `src` drawn at random (numpy, `seed`) from its sorted
    image files; their names."""
    import numpy as np

    files = sorted(p.name for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < n:
        raise ByelError(f"--unlabelled {src}: {len(files)} image files, fewer than --unlabelled-n {n}")
    chosen = [files[i] for i in sorted(np.random.default_rng(seed).choice(len(files), n, replace=False))]
    dest.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        os.symlink(src.resolve() / name, dest / name)
    return chosen


def fixture_scores(ckpt) -> dict:
    """Predicted-class histogram, macro-F1 and accuracy on the 140 fixture faces, with the
    prediction defaults (mirror averaging), through byel.load(...).predict."""
    import byel
    from stable_predictions import fer_sample

    model = byel.load(ckpt, detect=False)
    return fer_sample(model, FER)


def publictest(ckpt, real: str, report: Path) -> dict:
    from byel.evaluate import evaluate

    r = evaluate(ckpt, real, report, progress=False)
    return {"n": r["n_images"], "macro_f1": round(r["macro_f1"], 4), "accuracy": round(r["accuracy"], 4),
            "per_class_f1": {c: round(v, 3) for c, v in r["per_class_f1"].items()},
            "predicted": dict(zip(r["classes"], [int(sum(col)) for col in zip(*r["confusion_matrix"])])),
            "true": dict(zip(r["classes"], [int(sum(row)) for row in r["confusion_matrix"]])),
            "tier": r["tier"]["name"]}


def main(argv=None) -> int:
    ap = Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="a fine-tuned checkpoint (default: the shipped model)")
    ap.add_argument("--real", default="../shared/data/fer2013-publictest")
    ap.add_argument("--unlabelled", default="../shared/data/fer2013-train-unlabelled")
    ap.add_argument("--unlabelled-n", type=positive_int, default=3000, metavar="N")
    ap.add_argument("--seed", type=seed_int, default=0)
    ap.add_argument("--work", help="folder for the adapted checkpoints and reports (default: a temporary one)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    for name in ("real", "unlabelled"):
        if not Path(getattr(args, name)).is_dir():
            raise ByelError(f"--{name} {getattr(args, name)}: not a folder")

    from byel.adapt.run import adapt_checkpoint
    from byel.classifier import default_checkpoint
    from default_model import six_class_view

    ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    run = run_record(__file__, argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        unl = work / "unlabelled-subset"
        chosen = subset_folder(Path(args.unlabelled), args.unlabelled_n, args.seed, unl) if not unl.is_dir() \
            else sorted(os.listdir(unl))
        six = six_class_view(ckpt, work / "six-class-view.ckpt")
        sources = {"fixtures": str(FER), "unlabelled": str(unl)}
        out: dict = {"command": run["command"], "run": run, "checkpoint": str(ckpt), "real": args.real,
                     "unlabelled": {"data": args.unlabelled, "n": len(chosen), "seed": args.seed},
                     "rows": []}

        def row(name: str, source: str | None, method: str | None, seven, six_ckpt=None) -> None:
            print(f"[class prior] {name}", file=sys.stderr, flush=True)
            r = {"name": name, "estimated_on": source, "method": method,
                 "fixtures": fixture_scores(seven),
                 "publictest7": publictest(seven, args.real, work / "eval" / f"{name}-7.json")}
            if six_ckpt is not None:
                r["publictest6"] = publictest(six_ckpt, args.real, work / "eval" / f"{name}-6.json")
            out["rows"].append(r)

        row("before", None, None, ckpt, six)
        for method in ("prior", "prior-em"):
            for source, data in sources.items():
                name = f"{method} on {source}"
                rep = adapt_checkpoint(ckpt, data, method, work / name.replace(" ", "-"), progress=False)
                six_ckpt = None
                if method == "prior":  # the six-class view corrected on the same images
                    six_ckpt = adapt_checkpoint(six, data, method, work / f"{name.replace(' ', '-')}-6",
                                                progress=False)["checkpoint"]
                row(name, source, method, rep["checkpoint"], six_ckpt)
                out["rows"][-1].update({"n_images": rep["n_images"], "log_prior_ratio": dict(
                    zip(rep["rounds"][-1]["histogram"], rep["log_prior_ratio"])), "iterations": rep["iterations"],
                    "converged": rep["converged"], **({"target_prior": rep["target_prior"]}
                                                      if "target_prior" in rep else {})})
    od = Path(args.out)
    od.mkdir(parents=True, exist_ok=True)
    (od / "class_prior.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = table(out)
    (od / "class_prior.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def table(out: dict) -> list[str]:
    n_unl = out["unlabelled"]["n"]
    where = {None: "—", "fixtures": "the 140 fixture faces (transductive)",
             "unlabelled": f"{n_unl:,} faces of {Path(out['unlabelled']['data']).name} (seed {out['unlabelled']['seed']})"}
    tier = {None: "B", "fixtures": "B+C (140 images)", "unlabelled": f"B+C ({n_unl:,} images)"}
    lines = ["# Class-prior correction of the shipped model (byel adapt --method prior)", "",
             f"Command: `{out['command']}`", "",
             f"Machine: {machine(out['run'])}; commit {commit(out['run'])}.", "",
             "The correction re-weights the model's final probabilities, p'(c|x) ∝ p(c|x)·exp(r_c); r is "
             "estimated on unlabelled images, no label read. `prior`: r makes the mean corrected "
             "prediction on them uniform (the training prior: byel's generator renders each class "
             "equally often). `prior-em`: Saerens et al.'s EM estimate of their class prior. "
             "Fixture faces: 20 per class, byel.load(..., detect=False).predict with mirror averaging "
             "(the prediction default). PublicTest: `byel evaluate` (no mirroring); -6: the model's "
             "six emotion outputs (neutral output removed), the correction estimated again for them.", "",
             "| correction | estimated on | tier | fixture faces: predicted classes (20 each) | fixtures macro-F1 | "
             "PublicTest-7 macro-F1 / acc | PublicTest-6 macro-F1 / acc |",
             "|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        hist = ", ".join(f"{c} {n}" for c, n in r["fixtures"]["histogram"].items())
        p7 = r["publictest7"]
        p6 = r.get("publictest6")
        lines.append(f"| {r['method'] or 'none (shipped model)'} | {where[r['estimated_on']]} | {tier[r['estimated_on']]} | "
                     f"{hist} | {r['fixtures']['macro_f1']:.3f} | {p7['macro_f1']:.3f} / {p7['accuracy']:.3f} | "
                     + (f"{p6['macro_f1']:.3f} / {p6['accuracy']:.3f} |" if p6 else "— |"))
    lines += ["", "PublicTest-7: predicted classes (true: " + ", ".join(
        f"{c} {n}" for c, n in out["rows"][0]["publictest7"]["true"].items()) + ")", ""]
    for r in out["rows"]:
        lines.append(f"- {r['name']}: " + ", ".join(f"{c} {n}" for c, n in r["publictest7"]["predicted"].items()))
    lines += ["", "Log prior ratios r (centred) and iterations:", ""]
    for r in out["rows"][1:]:
        lines.append(f"- {r['name']}: " + ", ".join(f"{c} {v:+.2f}" for c, v in r["log_prior_ratio"].items())
                     + f"; {r['iterations']} iteration(s)" + ("" if r["converged"] else " (not converged: capped)"))
    return lines


if __name__ == "__main__":
    raise SystemExit(run_guarded(main))
