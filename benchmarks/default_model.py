"""The model shipped with byel (byel/assets/default_model): train it, score it on real faces, and
write the slim inference checkpoint with its model card.

    python benchmarks/default_model.py

1. the main job (byel.pipeline, the code of `byel demo`) with the preset (default-model: synthetic
   procedural faces only, BYEL pre-training, fine-tuning with the fused head) into --out; an
   interrupted run continues, a finished one is not trained again;
2. the fine-tuned model scored on each --real set: the six emotions always, seven classes too
   when the model has neutral and the set a neutral/ folder; plain scores only (no AdaBN);
3. into --ship: model.ckpt (the fine-tuned weights and the byel metadata that loads them; no
   optimiser, EMA/target, loop or random state; at most 20 MB), MODEL_CARD.md and
   model_card.json; into --results: results.md and results.json.

Every figure in the card is read from this run (its config, synthetic manifest, reports and
timings), none typed by hand. Tiers: A = the pixel CNN alone (synthetic pixels only), B = the
fused head (+ the MediaPipe Face Landmarker, pretrained on real faces).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, also when imported by a test
from common import command_line, commit, machine, run_record  # noqa: E402

from byel.cli.args import Parser  # noqa: E402
from byel.cli.guard import run_guarded  # noqa: E402
from byel import files  # noqa: E402
from byel.errors import ByelError  # noqa: E402
from byel.export import file_sha256  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL_FILE = "model.ckpt"
CONFUSION_PNG = "confusion_matrix.png"  # beside it: the confusion matrix of the card's main score
MAX_BYTES = 20 * 1024 * 1024  # the shipped checkpoint travels inside the package
LEDGER = "default-model.json"  # in --out: the wall-clock of every invocation that trained
LANDMARKER_LICENCE = "Apache License 2.0, Google LLC (byel/assets/face_landmarker/LICENSE and NOTICE.md)"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = Parser(prog="default_model.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="default-model", help="preset name or YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of the preset (repeatable)")
    p.add_argument("--out", default="runs/default-model", help="the training run (resumable)")
    p.add_argument("--real", nargs="+", default=["../shared/data/fer2013-publictest"],
                   help="labelled real face folders to score the model on")
    p.add_argument("--ship", help="where the shipped files go (default: byel/assets/default_model)")
    p.add_argument("--results", help="results.md and results.json (default: benchmarks/results/default_model)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--card-only", action="store_true",
                   help="no training: score the shipped --ship/model.ckpt on --real and rewrite its card and results "
                        "(training facts from its metadata and the model_card.json there); the checkpoint is not changed")
    args = p.parse_args(argv)
    return run_guarded(lambda: run(args, argv))


def run(args, argv: list[str]) -> int:
    from byel.checks import check_output, run_lock
    from byel.config import load_config
    from byel.classifier import DEFAULT_MODEL_DIR

    cfg = load_config(args.preset, args.overrides)
    if args.no_progress:
        cfg.trainer.progress = False
    out = Path(args.out)
    ship = Path(args.ship) if args.ship else DEFAULT_MODEL_DIR
    results = Path(args.results) if args.results else ROOT / "benchmarks" / "results" / "default_model"
    check_output(out, folder=True, what="--out", inputs={"--real": args.real})
    for path, what in ((ship, "--ship"), (results, "--results")):
        check_output(path, folder=True, what=what)
    other = sorted(p.name for p in ship.glob("*.ckpt") if p.name != MODEL_FILE) if ship.is_dir() else []
    if other:  # byel.load() needs exactly one
        raise ByelError(f"--ship {ship} holds other checkpoints ({', '.join(other)}); byel loads the only "
                        f"*.ckpt there: remove them first")
    from byel.data.sources import load

    for spec in args.real:  # decoded now (then cached): a bad set fails before the training, not after
        load(spec, cfg.data.image_size, progress=cfg.trainer.progress, classes=cfg.data.classes)
    command = command_line(__file__, argv)
    if args.card_only:
        return card_only(args, argv, command, out, ship, results)

    with run_lock(out):
        summary, timing = train(cfg, out)
        best = out / "finetune" / "checkpoints" / Path(summary["finetune_checkpoint"]).name
        t = time.time()
        evaluations = [ev for spec in args.real for ev in evaluate_real(best, spec, out, cfg.trainer.progress)]
        timing["evaluate_s"] = round(time.time() - t, 1)
        shipped = write_slim(best, ship / MODEL_FILE)
        card = model_card(out, summary, shipped, evaluations, timing, command)
        publish(card, evaluations, card["model"]["classes"], ship, results, argv)
    print(card_markdown(card))
    print(f"shipped: {ship / MODEL_FILE} ({shipped['bytes'] / 1e6:.1f} MB), {ship / 'MODEL_CARD.md'}, "
          f"{ship / 'model_card.json'}\nresults: {results / 'results.md'}, {results / 'results.json'}")
    return 0


def card_only(args, argv: list[str], command: str, out: Path, ship: Path, results: Path) -> int:
    """The card and results of the shipped checkpoint, re-scored on --real without training: the
    training facts (data, recipe, time, command) from the card already there and the checkpoint's
    metadata; the checkpoint itself is read, never written."""
    from byel.checkpoint import load_checkpoint

    ckpt, old_card = ship / MODEL_FILE, ship / "model_card.json"
    for path in (ckpt, old_card):
        if not path.is_file():
            raise ByelError(f"--card-only needs the shipped {path}: it is missing")
    before = file_sha256(ckpt)
    meta = load_checkpoint(ckpt, kinds=("finetune",))["byel"]
    card = json.loads(old_card.read_text())
    t = time.time()
    evaluations = [ev for spec in args.real for ev in evaluate_real(ckpt, spec, out, not args.no_progress)]
    card["time"]["evaluate_s"] = round(time.time() - t, 1)
    card["model"].update(bytes=ckpt.stat().st_size, sha256=before)
    card["card_command"] = command
    card.update(card_sections(meta["config"], meta, evaluations))
    if file_sha256(ckpt) != before:  # cannot happen: nothing above writes it
        raise ByelError(f"{ckpt} changed while its card was written")
    publish(card, evaluations, meta["classes"], ship, results, argv)
    print(card_markdown(card))
    return 0


def publish(card: dict, evaluations: list[dict], classes, ship: Path, results: Path, argv) -> None:
    """The card beside the shipped checkpoint (JSON, Markdown, confusion-matrix picture) and the
    results files with the run record (the command, machine, versions and git commit)."""
    ship_confusion(evaluations, classes, ship)
    write_text(ship / "model_card.json", json.dumps(card, indent=2) + "\n")
    write_text(ship / "MODEL_CARD.md", card_markdown(card))
    record = run_record(__file__, argv)
    write_text(results / "results.json", json.dumps({**card, "run": record, "evaluation_reports": evaluations},
                                                    indent=2) + "\n")
    write_text(results / "results.md", results_markdown(card, record))


# --------------------------------------------------------------------------- training


def train(cfg, out: Path) -> tuple[dict, dict]:
    """The main job into `out` (resumed where it stopped; not rerun once its report exists) →
    (its report, the wall-clock of every invocation that trained it)."""
    from byel.pipeline import run_demo

    ledger_path = out / LEDGER
    report = out / "report.json"
    check_recipe(out, cfg)
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {"invocations": []}
    if not report.exists():
        entry = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
                 "load_average_at_start": round(os.getloadavg()[0], 2), "completed": False}
        t = time.time()
        try:
            summary = run_demo(cfg, out, resume=True)
            entry.update(completed=True, stages_s=summary["seconds"])
        finally:  # an interrupted invocation's time counts too
            entry["seconds"] = round(time.time() - t, 1)
            ledger["invocations"].append(entry)
            write_text(ledger_path, json.dumps(ledger, indent=2) + "\n")
    summary = json.loads(report.read_text())
    runs = ledger["invocations"]
    timing = {"training_s": round(sum(r["seconds"] for r in runs), 1) if runs else summary["seconds"]["total_s"],
              "invocations": len(runs) or None,  # None: trained before this script kept a ledger
              "last_stages_s": next((r["stages_s"] for r in reversed(runs) if r["completed"]), summary["seconds"]),
              "machine": runs[-1]["machine"] if runs else machine(),
              "load_average_at_start": [r["load_average_at_start"] for r in runs]}
    return summary, timing


def check_recipe(out: Path, cfg) -> None:
    """A run already in `out` must come from this recipe: resuming another (a smoke test, an
    older preset) would ship a model the card does not describe."""
    import yaml

    saved_path = out / "pretrain" / "config.yaml"
    if not saved_path.exists():
        return
    saved = _flat(yaml.safe_load(saved_path.read_text()) or {})
    now = _flat(cfg.to_dict())
    differ = sorted(k for k in set(saved) | set(now)
                    if not k.startswith("trainer.") and k != "preset" and saved.get(k) != now.get(k))
    if differ:
        raise ByelError(f"--out {out} holds a run of another recipe (it differs in {', '.join(differ[:5])}); "
                        "choose another --out or delete that run")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


# --------------------------------------------------------------------------- evaluation


def class_sets(spec: str, classes) -> list[int]:
    """The class counts a real set is scored with: 6 always; 7 too when the model's `classes`
    hold neutral and the set is a folder with a neutral/ class folder."""
    from byel.checks import spec_paths
    from byel.classes import NEUTRAL, canonical

    has_neutral = any(c.is_dir() and canonical(c.name, 7) == NEUTRAL
                      for p in spec_paths(spec) if p.is_dir() for c in p.iterdir())
    return [6, 7] if NEUTRAL in classes and has_neutral else [6]


def six_class_view(best: Path, path: Path) -> Path:
    """A 7-class checkpoint as the six-class classifier it holds: the neutral output of each
    head (pixel CNN, face geometry) removed, so both softmaxes run over the six emotions. Its
    six-class score is comparable with a six-class model's."""
    import torch

    from byel import classifier
    from byel.checkpoint import atomic_torch_save, load_checkpoint
    from byel.classes import class_names

    ckpt = load_checkpoint(best, kinds=("finetune",))
    meta, six = ckpt["byel"], list(class_names(6))
    keep = torch.tensor([meta["classes"].index(c) for c in six])
    model = classifier.load(best)
    outputs = [name for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and m.out_features == len(meta["classes"])]
    state = dict(ckpt["state_dict"])
    for name in outputs:  # rows of the class outputs
        for k in (f"{name}.weight", f"{name}.bias"):
            state[k] = state[k][keep].clone()
    config = {**meta["config"], "data": {**meta["config"]["data"], "classes": 6}}
    atomic_torch_save({"state_dict": state, "byel": {**meta, "classes": six, "config": config,
                                                     "six_class_view_of": str(best)}}, path)
    return path


def evaluate_real(best: Path, spec: str, out: Path, progress: bool) -> list[dict]:
    """The evaluation reports of the fine-tuned model on one real set, one per class set
    (a 7-class model's six-class score: its six_class_view on the six emotion folders)."""
    from byel.checkpoint import load_checkpoint
    from byel.evaluate import evaluate

    classes = load_checkpoint(best, kinds=("finetune",))["byel"]["classes"]
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(spec.split(":", 1)[-1]).name) or "real"
    reports = []
    for n in class_sets(spec, classes):
        ckpt = best if n == len(classes) else six_class_view(best, out / "eval" / "six-class-view.ckpt")
        print(f"[default model] scoring {ckpt} on {spec} ({n} classes)", file=sys.stderr, flush=True)
        reports.append(evaluate(ckpt, spec, out / "eval" / f"{name}-{n}class.json", progress=progress))
    return reports


def score_rows(result: dict) -> list[dict]:
    """One row per predictor in an evaluation report: the pixel CNN alone (its tier A scores
    beside a geometry head's) and the fused/geometry head (tier B), read from the report."""
    parts = [("pixel CNN alone", result["pixels_only"])] if "pixels_only" in result else []
    geo = result["tier"]["face_geometry"]
    parts.append((f"{geo['head']} head (pixel CNN + face geometry)" if geo else "pixel CNN", result))
    rows = []
    for what, r in parts:
        row = {"predictor": what, "tier": r["tier"]["name"], "tier_label": r["tier"]["label"],
               "macro_f1": r["macro_f1"], "accuracy": r["accuracy"], "per_class_f1": r["per_class_f1"]}
        g = r["tier"]["face_geometry"]
        if g:
            row.update(detection_rate=g["detection_rate"], n_mesh=g["n_mesh"], fusion_weight=g["fusion_weight"])
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- shipping


def write_slim(best: Path, path: Path) -> dict:
    """The inference checkpoint of `best`: its weights and byel metadata only, written
    atomically, checked to load (weights only) into the same network, and at most MAX_BYTES."""
    import torch

    from byel.checkpoint import atomic_torch_save, load_checkpoint

    full = load_checkpoint(best, kinds=("finetune",))
    meta = {**full["byel"], "shipped": {"source": "fine-tuned best.ckpt", "source_sha256": file_sha256(best)}}
    atomic_torch_save({"state_dict": full["state_dict"], "byel": meta}, path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        path.unlink()
        raise ByelError(f"the slim checkpoint is {size / 2**20:.1f} MiB, over the {MAX_BYTES // 2**20} MiB a "
                        "shipped model may weigh; not shipped")
    slim = load_checkpoint(path, kinds=("finetune",))  # weights_only=True
    if slim["state_dict"].keys() != full["state_dict"].keys() or not all(
            torch.equal(slim["state_dict"][k], v) for k, v in full["state_dict"].items()):
        raise ByelError(f"the slim checkpoint {path} does not hold the weights of {best}")
    return {"file": path.name, "bytes": size, "sha256": file_sha256(path), "max_bytes": MAX_BYTES,
            "contents": "fine-tuned weights (state_dict) and byel metadata; no optimiser, EMA/target, "
                        "loop or random state", "meta": meta}


def write_text(path: Path, text: str) -> None:
    """byel's atomic text write (byel.files), into a folder made first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(path, text)


# --------------------------------------------------------------------------- the card


def model_card(out: Path, summary: dict, shipped: dict, evaluations: list[dict], timing: dict, command: str) -> dict:
    """Everything the card says, read from the run."""
    import csv

    import yaml

    from byel import classifier
    from byel.faces.model import DEFAULT_MODEL

    meta = shipped.pop("meta")
    cfg = yaml.safe_load((out / "finetune" / "config.yaml").read_text())
    with open(out / "synthetic" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    per_class = Counter(r["class"] for r in rows)
    model = classifier.load(out / "finetune" / "checkpoints" / Path(summary["finetune_checkpoint"]).name)
    cnn = sum(p.numel() for m in (model.backbone, model.head) for p in m.parameters())
    g = cfg["generate"]
    components = []
    if meta.get("face_geometry"):
        components.append({"name": meta["face_geometry"]["model"], "file": "byel/assets/face_landmarker/face_landmarker.task",
                           "sha256": file_sha256(DEFAULT_MODEL), "sha256_in_checkpoint": meta["face_geometry"]["sha256"],
                           "licence": LANDMARKER_LICENCE, "tier": "B",
                           "trained_on": "real faces, by Google, for face geometry (landmarks, blendshapes); "
                                         "it predicts no expression class"})
    unlabelled = [u for ev in evaluations for u in ev["tier"]["unlabelled_real"]]
    return {
        "name": "byel default model",
        "model": {**shipped, "classes": meta["classes"], "backbone": meta["backbone"],
                  "parameters_cnn": cnn,
                  "parameters_geometry_head": sum(p.numel() for p in model.geometry.parameters())
                  if getattr(model, "geometry", None) is not None else 0,
                  "image_size": meta["image_size"], "normalize": meta["normalize"],
                  "head": cfg["finetune"]["head"], "fusion": meta.get("fusion"),
                  "byel_version": meta["byel_version"], "checkpoint_format": meta["format"]},
        "training_data": {
            "synthetic_only": not unlabelled,
            "generator": {"backend": sorted({r["backend"] for r in rows}), "seed": sorted({int(r["seed"]) for r in rows}),
                          "images_per_class": dict(sorted(per_class.items())), "n_images": len(rows),
                          "image_size": cfg["data"]["image_size"], "grey": g["grey"]},
            "held_out": summary["held_out"],
            "real_images": unlabelled,  # unlabelled real images the weights learned from (none: tier A/B)
            "pretrained_components": components,
        },
        "recipe": {"preset": cfg["preset"], "method": cfg["method"]["name"], "seed": cfg["seed"],
                   "pretrain_epochs": cfg["pretrain"]["epochs"], "pretrain_batch_size": cfg["data"]["batch_size"],
                   "pretrain_lr": cfg["optim"]["lr"], "finetune_epochs": cfg["finetune"]["epochs"],
                   "finetune_batch_size": cfg["finetune"]["batch_size"], "finetune_lr": cfg["finetune"]["lr"]},
        "command": command,
        "time": timing,
        **card_sections(cfg, meta, evaluations),
    }


def card_sections(cfg: dict, meta: dict, evaluations: list[dict]) -> dict:
    """The card's parts read from the evaluation reports and the code: the scores, the uses and the limits."""
    return {
        "evaluations": [{"data": ev["data"], "dataset": dataset_name(ev), "data_resolved": ev["data_resolved"],
                         "classes": ev["classes"], "n_images": ev["n_images"], "class_counts": ev["class_counts"],
                         "report": ev["report"],
                         "outputs": f"all {len(ev['classes'])} of the model's outputs" if ev["classes"] == meta["classes"]
                         else "the model's six emotion outputs (neutral dropped from both heads' softmax; comparable "
                              "with a six-class model)",
                         "chance_macro_f1": round(1 / len(ev["classes"]), 3), "rows": score_rows(ev),
                         "confusion_matrix": ev["confusion_matrix"],
                         "precision_recall": precision_recall(ev["confusion_matrix"], ev["classes"]),
                         "over_predicted": over_predicted(precision_recall(ev["confusion_matrix"], ev["classes"]))}
                        for ev in evaluations],
        "confusion_matrix_png": CONFUSION_PNG if evaluations else None,
        "confusion_matrix_title": (lambda ev: ev and f"{score_rows(ev)[-1]['predictor']} on {dataset_name(ev)}; rows: "
                                   "true class, columns: predicted; counts and row share")(
            shipped_confusion(evaluations, meta["classes"])),
        "adabn": "not part of the shipped model: no weight or BatchNorm statistic was adapted to real images; "
                 "every score is plain",
        "intended_use": INTENDED_USE,
        "out_of_scope": OUT_OF_SCOPE,
        "limits": limits(cfg, meta, evaluations),
    }


def shipped_confusion(evaluations: list[dict], classes: list[str]) -> dict | None:
    """The evaluation whose confusion picture ships: the one over all the model's classes, else the last."""
    return next((ev for ev in evaluations if ev["classes"] == classes), evaluations[-1] if evaluations else None)


def ship_confusion(evaluations: list[dict], classes: list[str], ship: Path) -> None:
    import shutil

    ev = shipped_confusion(evaluations, classes)
    if ev is not None:
        tmp = ship / f".{CONFUSION_PNG}.tmp"
        shutil.copyfile(ev["confusion_png"], tmp)
        tmp.replace(ship / CONFUSION_PNG)


def limits(cfg: dict, meta: dict, evaluations: list[dict]) -> list[str]:
    out = []
    if any("fer2013" in ev["data_resolved"].lower() for ev in evaluations):
        out.append("FER2013 PublicTest is the validation set on which byel's design choices (preset, head, "
                   "normalisation) were made: its scores are not those of an independent test set.")
    out.append(f"Trained on {'grey ' if cfg['generate']['grey'] else ''}{cfg['data']['image_size']} px synthetic "
               f"faces ({cfg['generate']['backend']} generator): crops are resized to that; detail and colour "
               "beyond it are not used.")
    if "neutral" in meta["classes"]:
        out.append("Neutral is learned from synthetic faces without any action unit; real neutral faces "
                   "(resting expressions, faint smiles) need not look like that.")
    for ev in evaluations:
        g = ev["tier"]["face_geometry"]
        if g:
            out.append(f"On {dataset_name(ev)} the landmarker found no face mesh on {1 - g['detection_rate']:.1%} of the faces: those are "
                       "classified by the pixel CNN alone (the tier A row).")
    out.append(export_sentence(meta))
    out.append(detector_sentence())
    out += bias_sentences(evaluations)
    out.append("No evaluation across age, gender or skin tone has been made.")
    return out


def export_sentence(meta: dict) -> str:
    """What `byel export` writes for this model's head, from byel.outputs.export_files (the
    names of the files byel.export writes) — so the sentence follows the code."""
    from byel.outputs import export_files

    files = export_files("model", "onnx")
    head = meta.get("head") or meta["config"]["finetune"]["head"]
    if head == "pixels":
        return (f"`byel export --out model` writes the pixel CNN (`{files['model'].name}`, tier A) and "
                f"`{files['JSON'].name}`.")
    return (f"`byel export --out model` writes the pixel CNN (`{files['model'].name}`), the {head} head's "
            f"geometry model (`{files['geometry model'].name}`, face-geometry features → class probabilities) and "
            f"`{files['JSON'].name}` (classes, fusion weight, how to compute the features); the MediaPipe Face "
            "Landmarker that measures the features is not in them: a deployment runs it itself.")


DETECTOR_MEANING = {  # what each of byel.choices.DETECTORS is (a test checks every one has a line)
    "auto": "the landmarker where its runtime, ai-edge-litert, is installed, else OpenCV's Haar cascade, "
            "else dlib's HOG",
    "landmarker": "the MediaPipe Face Landmarker shipped with byel: BlazeFace, then the 478-point mesh",
    "opencv-haar": "OpenCV's bundled Haar cascade",
    "dlib-hog": "dlib's HOG frontal-face detector",
}


def default_detector() -> str:
    """The detector `byel predict`, byel.load() and `byel serve` use unless told: byel.detect.FaceFinder's default."""
    import inspect

    from byel.detect import FaceFinder

    return inspect.signature(FaceFinder).parameters["detector"].default


def detector_sentence() -> str:
    from byel.choices import DETECTORS
    from byel.detect import FaceFinder

    default = default_detector()
    try:  # what the default resolved to where this card was written
        here = f"; here it resolved to `{FaceFinder(48, detector=default).name}`"
    except ByelError:
        here = ""
    others = ", ".join(f"`{d}` ({DETECTOR_MEANING[d]})" for d in DETECTORS if d != default)
    return (f"`byel predict` finds faces with the `{default}` detector by default ({DETECTOR_MEANING[default]}{here}); "
            f"`--detector` also takes {others}. Its crops are framed like the training faces; profile, occluded "
            "or very small faces are often missed or misread.")


def precision_recall(cm, classes: list[str]) -> dict:
    """Per-class precision (the confusion matrix column-normalised: of the faces predicted c, the
    share that are c) and recall (row-normalised: of the faces that are c, the share predicted c);
    rows = true class, columns = predicted (byel.metrics)."""
    out = {}
    for i, c in enumerate(classes):
        true, predicted = sum(cm[i]), sum(row[i] for row in cm)
        out[c] = {"precision": round(cm[i][i] / predicted, 4) if predicted else 0.0,
                  "recall": round(cm[i][i] / true, 4) if true else 0.0, "n_true": true, "n_predicted": predicted}
    return out


def over_predicted(pr: dict) -> list[str]:
    """Classes predicted at least 1.5 times as often as they occur, with precision below recall."""
    return [c for c, v in pr.items() if v["n_true"] and v["n_predicted"] >= 1.5 * v["n_true"]
            and v["precision"] < v["recall"]]


def bias_sentences(evaluations: list[dict]) -> list[str]:
    """The known biases, in words generated from each evaluation's confusion matrix and F1."""
    out = []
    for ev in evaluations:
        pr = precision_recall(ev["confusion_matrix"], ev["classes"])
        name = dataset_name(ev)
        over = over_predicted(pr)
        if over:
            out.append(f"Over-predicts {_and(over)} on {name}: " + "; ".join(
                f"{c} predicted for {pr[c]['n_predicted']} faces, {pr[c]['n_true']} of them true (precision "
                f"{pr[c]['precision']:.2f}, recall {pr[c]['recall']:.2f})" for c in over) + ".")
        weak = [c for c in ev["classes"] if ev["per_class_f1"][c] < 0.25]
        if weak:
            out.append(f"Weak on {_and(weak)} on {name}: F1 " + ", ".join(f"{ev['per_class_f1'][c]:.3f}" for c in weak)
                       + ", each under 0.25.")
    return out


def _and(xs: list[str]) -> str:
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]


DATASETS = {"fer2013-publictest": "FER2013 PublicTest", "fer_sample": "a FER2013 sample (byel's test fixture)"}


def dataset_name(ev: dict) -> str:
    """A real set by name (the folder's name where it has none), its size and classes — no path."""
    folder = Path(ev["data_resolved"].split(":", 1)[-1].rstrip("/")).name
    return f"{DATASETS.get(folder, folder)} ({ev['n_images']:,} faces of {len(ev['classes'])} classes)"


INTENDED_USE = [
    "Research and prototyping of facial-expression recognition on images of people who consented to it.",
    "Teaching and comparing methods: what a model trained on synthetic faces alone (plus a pretrained face-geometry "
    "model) does on real faces.",
]
OUT_OF_SCOPE = [
    "Decisions about people: hiring, grading, policing, health, credit, insurance or access to services. An expression "
    "is not an emotion, and the scores below are far from reliable.",
    "Covert monitoring, or any use on people who have not agreed to it.",
    "Emotion recognition in workplaces and education institutions: the EU AI Act (Regulation (EU) 2024/1689, "
    "Article 5(1)(f)) prohibits it there, except for medical or safety reasons.",
]


def _score_table(card: dict) -> list[str]:
    lines = []
    for ev in card["evaluations"]:
        classes = ev["classes"]
        counts = ", ".join(f"{c} {ev['class_counts'].get(c, 0)}" for c in classes)
        lines += [f"**{ev['dataset']}** ({counts}); scored: {ev['outputs']}; chance macro-F1 "
                  f"{ev['chance_macro_f1']:.3f}.",
                  "",
                  "| predictor | tier | macro-F1 | accuracy | " + " | ".join(classes) + " | face mesh found |",
                  "|---|---|---|---|" + "---|" * len(classes) + "---|"]
        for r in ev["rows"]:
            mesh = f"{r['detection_rate']:.1%} (fusion weight {r['fusion_weight']:.1f})" if "detection_rate" in r else "—"
            lines.append(f"| {r['predictor']} | {r['tier']} | {r['macro_f1']:.3f} | {r['accuracy']:.3f} | "
                         + " | ".join(f"{r['per_class_f1'][c]:.2f}" for c in classes) + f" | {mesh} |")
        lines.append("")
        if "precision_recall" in ev:
            pr, head = ev["precision_recall"], ev["rows"][-1]["predictor"]
            lines += [f"Per class, {head} — precision: of the faces predicted as the class, the share that are; recall: "
                      "of the faces of the class, the share found (the confusion matrix column- and row-normalised):",
                      "",
                      "| | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes),
                      "| precision | " + " | ".join(f"{pr[c]['precision']:.2f}" for c in classes) + " |",
                      "| recall | " + " | ".join(f"{pr[c]['recall']:.2f}" for c in classes) + " |",
                      "| predicted / true | " + " | ".join(f"{pr[c]['n_predicted']} / {pr[c]['n_true']}" for c in classes)
                      + " |", ""]
            if ev["over_predicted"]:
                lines += [f"Over-predicted (predicted at least 1.5× as often as true, precision below recall): "
                          f"{_and(ev['over_predicted'])}.", ""]
    tiers = {r["tier"]: r["tier_label"] for ev in card["evaluations"] for r in ev["rows"]}
    lines += [f"{label[0].upper()}{label[1:]}." for _, label in sorted(tiers.items())]
    return lines


def _time_line(card: dict) -> str:
    t = card["time"]
    stages = ", ".join(f"{k.removesuffix('_s')} {v / 60:.1f}" for k, v in t["last_stages_s"].items()
                       if k not in ("total_s", "evaluate_s"))  # the demo scores nothing here
    runs = f"{t['invocations']} invocation(s)" if t["invocations"] else "a run made before this script kept times"
    return (f"Wall-clock: training {t['training_s'] / 60:.1f} min over {runs} (last one by stage, min: {stages}); "
            f"scoring the real sets {t['evaluate_s'] / 60:.1f} min. Machine: {t['machine']}; load average at start "
            f"{', '.join(str(x) for x in t['load_average_at_start']) or 'not recorded'}.")


def card_markdown(card: dict) -> str:
    m, d, r = card["model"], card["training_data"], card["recipe"]
    gen = d["generator"]
    fusion = m.get("fusion") or {}
    lines = [
        "# byel default model — model card",
        "",
        "Written by `benchmarks/default_model.py` from its run; every figure below comes from that run"
        + (f" (the scores re-measured from the shipped checkpoint by `{card['card_command']}`)"
           if card.get("card_command") else "") + ".",
        "",
        "## Intended use",
        *[f"- {x}" for x in card["intended_use"]],
        "",
        "## Out of scope",
        *[f"- {x}" for x in card["out_of_scope"]],
        "",
        "## Model",
        f"- File `{m['file']}`: {m['bytes']:,} bytes, sha256 `{m['sha256']}`; {m['contents']}.",
        f"- Classes: {', '.join(m['classes'])}.",
        f"- Pixel CNN: {m['backbone']}, {m['parameters_cnn']:,} parameters, {m['image_size']} px input, "
        f"normalisation {m['normalize']}.",
    ]
    if m["head"] != "pixels":
        lines.append(f"- Head: {m['head']} — the pixel CNN and a linear face-geometry head ({m['parameters_geometry_head']:,} "
                     f"parameters) on the landmarker's features; fusion weight {fusion.get('weight', 1.0):.1f}, chosen on "
                     f"the {fusion.get('chosen_on', 'synthetic held-out split')} ({fusion.get('n_images', '?')} faces, "
                     f"{fusion.get('n_mesh', '?')} with a mesh). Faces without a mesh get the pixel CNN's prediction.")
    lines += [
        f"- byel {m['byel_version']}, checkpoint format {m['checkpoint_format']}. Load it with `byel.load()` "
        "or `byel predict` / `byel serve` without `--checkpoint`.",
        "",
        "## Training data",
        f"- Synthetic only: {'yes' if d['synthetic_only'] else 'no — unlabelled real images: ' + json.dumps(d['real_images'])}; "
        "byel used no real face image and no real label to train the model or to select it.",
        f"- Generator: {', '.join(gen['backend'])}, seed {', '.join(map(str, gen['seed']))}, {gen['n_images']:,} faces "
        f"({', '.join(f'{c} {n}' for c, n in gen['images_per_class'].items())}), {gen['image_size']} px"
        f"{', grey' if gen['grey'] else ''}.",
        f"- Held out for model selection (fine-tuning's best epoch and the fusion weight): {d['held_out']['n_held_out']} "
        f"faces (fraction {d['held_out']['fraction']}, by {d['held_out']['grouped_by']}); trained on "
        f"{d['held_out']['n_train']}.",
    ]
    for c in d["pretrained_components"]:
        lines.append(f"- Pretrained component (tier {c['tier']}): {c['name']}, `{c['file']}`, sha256 `{c['sha256']}`; "
                     f"licence {c['licence']}; trained on {c['trained_on']}.")
    lines += [
        f"- Recipe: preset `{r['preset']}`, {r['method']} pre-training {r['pretrain_epochs']} epochs (batch "
        f"{r['pretrain_batch_size']}, lr {r['pretrain_lr']}), fine-tuning {r['finetune_epochs']} epochs (batch "
        f"{r['finetune_batch_size']}, lr {r['finetune_lr']}), seed {r['seed']}.",
        "",
        "## How it was made",
        f"Command: `{card['command']}`",
        "",
        _time_line(card),
        "",
        "## Scores on real faces",
        "",
        *_score_table(card),
        "",
        *([f"Confusion matrix ({card['confusion_matrix_title']}): ![confusion matrix]({card['confusion_matrix_png']})", ""]
          if card.get("confusion_matrix_png") else []),
        f"AdaBN: {card['adabn']}.",
        "",
        "## Known limits",
        *[f"- {x}" for x in card["limits"]],
        "",
    ]
    return "\n".join(lines)


def results_markdown(card: dict, record: dict | None = None) -> str:
    m = card["model"]
    return "\n".join([
        "# Default model (byel/assets/default_model)",
        "",
        f"Command: `{card['command']}`  ",
        *([f"Commit: {commit(record)}  "] if record else []),
        _time_line(card) + "  ",
        f"Shipped: `{m['file']}`, {m['bytes']:,} bytes, sha256 `{m['sha256']}`; classes {', '.join(m['classes'])}; "
        f"head {m['head']}. Model card: byel/assets/default_model/MODEL_CARD.md.",
        "",
        *_score_table(card),
        "",
        f"AdaBN: {card['adabn']}.",
        "",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
