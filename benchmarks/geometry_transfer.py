"""Face geometry transfer, tier B (+ pretrained face-geometry model): a linear classifier on
MediaPipe Face Landmarker features (52 blendshapes + 478 landmarks aligned on the eye corners),
trained on synthetic faces from `byel generate` ONLY, scored on real labelled faces.

    python benchmarks/geometry_transfer.py --real ../shared/data/fer2013-publictest \
        --sources ../shared/data/fer2013-train-neutral --warp-per-class 1300 --procedural-per-class 300

No real label is used except for the final scores. The classifier: features standardised on the
synthetic set, scikit-learn's logistic regression (L2, C = --C, balanced class weights). Scores:
macro-F1 over the real faces where a mesh is found, and counting the faces without a mesh as
errors; per-class F1; the mesh detection rates; landmark extraction speed with 1 and 2 workers.
Writes RESULTS.json and RESULTS.md (default benchmarks/results/geometry_transfer.*).
The landmarker was trained by Google on real faces (geometry only, no expression classes):
every figure is labelled "tier B (+ pretrained face-geometry model)".
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from byel.classes import CLASSES
from byel.cli import Parser, run_guarded
from byel.config import GenerateConfig
from byel.data.sources import load
from byel.errors import ConfigError
from byel.faces import geometry_features, measure_images
from byel.synth.generate import generate

TIER = "tier B (+ pretrained face-geometry model)"
ROOT = Path(__file__).resolve().parent.parent


def synthetic(args) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], dict]:
    """Generate the training faces with each backend asked for; images, labels, backend of each."""
    images, labels, backend, commands, speed = [], [], [], [], {}
    for name, n in (("warp", args.warp_per_class), ("procedural", args.procedural_per_class)):
        if n <= 0:
            continue
        folder = Path(args.out) / f"data-{name}"
        gen = generate(folder, backend=name, per_class=n, size=args.size, seed=args.seed, workers=args.workers,
                       sources=args.sources if name == "warp" else None, warp_strength=args.warp_strength,
                       progress=False)
        commands.append(f"byel generate --backend {name} --out {folder} --per-class {n} --size {args.size} "
                        f"--seed {args.seed} --workers {args.workers}"
                        + (f" --sources {args.sources} --warp-strength {args.warp_strength}" if name == "warp" else ""))
        speed[name] = round(gen["images_per_s"], 1)
        data = load(f"imagefolder:{folder}", args.size, progress=False, cache=False)
        images.append(data.images)
        labels.append(data.labels)
        backend += [name] * len(data.labels)
    return np.concatenate(images), np.concatenate(labels), np.array(backend), commands, speed


def f1s(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """macro-F1 over the six classes and per class (a prediction of -1 = no mesh: an error)."""
    from sklearn.metrics import f1_score

    per = f1_score(y_true, y_pred, labels=range(len(CLASSES)), average=None, zero_division=0)
    return {"macro_f1": round(float(per.mean()), 4), "accuracy": round(float((y_true == y_pred).mean()), 4),
            "per_class_f1": {c: round(float(v), 4) for c, v in zip(CLASSES, per)}}


def speed(images: np.ndarray, args) -> dict:
    """Landmark extraction speed (faces/s, detection + mesh + blendshapes) without the cache."""
    out = {}
    sample = images[:args.speed_images]
    for w in (1, 2):
        m = measure_images(sample, mode=args.mode, workers=w, cache=False)
        out[f"{w}_worker" + ("s" if w > 1 else "")] = m.meta["faces_per_s"]
    return out


def run(args) -> dict:
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise ConfigError("this benchmark needs scikit-learn: pip install 'byel[plots]'") from None
    t0 = time.time()
    real = load(args.real, args.real_size, progress=False)
    images, labels, backend, commands, gen_speed = synthetic(args)
    t_gen = time.time() - t0

    syn_m = measure_images(images, mode=args.mode, workers=args.workers, key=f"{args.out}:synthetic")
    real_m = measure_images(real.images, mode=args.mode, workers=args.workers, key=real.spec)
    x_syn, ok_syn = geometry_features(syn_m)
    x_real, ok_real = geometry_features(real_m)
    if len(np.unique(labels[ok_syn])) < 2:
        raise ConfigError(f"a face mesh was found on {ok_syn.sum()} synthetic faces of "
                          f"{len(np.unique(labels[ok_syn]))} classes: too few to train on")

    scaler = StandardScaler().fit(x_syn[ok_syn])
    clf = LogisticRegression(C=args.C, class_weight="balanced", max_iter=3000)
    clf.fit(scaler.transform(x_syn[ok_syn]), labels[ok_syn])
    pred = np.full(len(real.labels), -1)
    if ok_real.any():
        pred[ok_real] = clf.predict(scaler.transform(x_real[ok_real]))
    found_only = f1s(real.labels[ok_real], pred[ok_real])
    with_misses = f1s(real.labels, pred)
    rate = lambda ok, y: {c: round(float(ok[y == k].mean()), 4) if (y == k).any() else None  # noqa: E731
                          for k, c in enumerate(CLASSES)}
    return {
        "tier": TIER, "real": real.spec, "n_real": int(len(real.labels)), "n_real_with_mesh": int(ok_real.sum()),
        "macro_f1_mesh_found": found_only["macro_f1"], "macro_f1_misses_as_errors": with_misses["macro_f1"],
        "accuracy_mesh_found": found_only["accuracy"], "accuracy_misses_as_errors": with_misses["accuracy"],
        "per_class_f1_mesh_found": found_only["per_class_f1"],
        "per_class_f1_misses_as_errors": with_misses["per_class_f1"],
        "detection_rate_real": round(float(ok_real.mean()), 4), "detection_rate_real_per_class": rate(ok_real, real.labels),
        "n_synthetic": int(len(labels)), "n_synthetic_with_mesh": int(ok_syn.sum()),
        "detection_rate_synthetic": {b: round(float(ok_syn[backend == b].mean()), 4) for b in np.unique(backend)},
        "detection_rate_synthetic_per_class": rate(ok_syn, labels),
        "mesh_mode": args.mode, "features": int(x_syn.shape[1]), "classifier": f"logistic regression, C={args.C}, balanced, standardised",
        "generate_commands": commands, "generate_images_per_s": gen_speed,
        "landmark_faces_per_s": speed(real.images, args),
        "seconds": {"generate": round(t_gen, 1), "total": round(time.time() - t0, 1)},
    }


def markdown(r: dict, command: str) -> str:
    per = lambda d: " | ".join(f"{d[c]:.2f}" for c in CLASSES)  # noqa: E731
    return "\n".join([
        f"# Geometry transfer — {TIER}",
        "",
        "Logistic regression on MediaPipe Face Landmarker features (52 blendshapes + 478 eye-aligned landmarks), "
        "trained on synthetic faces only; no real label used except for these scores.",
        "",
        f"Command: `{command}`",
        "",
        f"Real set: {r['real']} ({r['n_real']} faces, six classes); a mesh was found on {r['n_real_with_mesh']} "
        f"({100 * r['detection_rate_real']:.1f} %). Synthetic: {r['n_synthetic']} faces, mesh on "
        f"{r['n_synthetic_with_mesh']}. Mesh mode: {r['mesh_mode']}.",
        "",
        f"| {TIER} | macro-F1 | accuracy | " + " | ".join(CLASSES) + " |",
        "|---|---|---|" + "---|" * len(CLASSES),
        f"| faces with a mesh | {r['macro_f1_mesh_found']:.3f} | {r['accuracy_mesh_found']:.3f} | "
        f"{per(r['per_class_f1_mesh_found'])} |",
        f"| all faces, no mesh = error | {r['macro_f1_misses_as_errors']:.3f} | {r['accuracy_misses_as_errors']:.3f} | "
        f"{per(r['per_class_f1_misses_as_errors'])} |",
        "",
        "Detection rate (real) per class: " + ", ".join(
            f"{c} {v:.2f}" for c, v in r["detection_rate_real_per_class"].items() if v is not None) + ".",
        "Detection rate (synthetic) per backend: " + ", ".join(
            f"{b} {v:.2f}" for b, v in r["detection_rate_synthetic"].items()) + ".",
        f"Landmark extraction ({TIER}): {r['landmark_faces_per_s']['1_worker']} faces/s with 1 worker, "
        f"{r['landmark_faces_per_s']['2_workers']} with 2 (detection + mesh + blendshapes, "
        f"{platform.processor() or platform.machine()}, shared CPU).",
        f"Time: {r['seconds']['total']} s in all ({r['seconds']['generate']} s generating).",
        "",
    ])


def main() -> None:
    ap = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True, help="labelled real faces (class folders or any byel data spec)")
    ap.add_argument("--real-size", type=int, default=48, help="pixel side the real faces are read at (FER2013: 48)")
    ap.add_argument("--sources", help="unlabelled neutral faces for the warp backend (needed when --warp-per-class > 0)")
    ap.add_argument("--warp-per-class", type=int, default=1300)
    ap.add_argument("--procedural-per-class", type=int, default=300)
    ap.add_argument("--size", type=int, default=96, help="side of the generated faces")
    ap.add_argument("--warp-strength", type=float, default=GenerateConfig.warp_strength)
    ap.add_argument("--mode", choices=["detect", "crop"], default="detect",
                    help="detect: BlazeFace on the framed crop, then the mesh (the issue's recipe); "
                         "crop: the mesh model straight on the crop, refined once")
    ap.add_argument("--C", type=float, default=0.05, help="inverse L2 strength of the logistic regression")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--speed-images", type=int, default=256, help="real faces timed for the speed figures")
    ap.add_argument("--out", default="runs/bench-geometry", help="folder for the generated faces")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "geometry_transfer"),
                    help="writes RESULTS.json and RESULTS.md")
    args = ap.parse_args()
    if args.warp_per_class > 0 and not args.sources:
        raise ConfigError("--warp-per-class needs --sources DIR (neutral faces); or pass --warp-per-class 0")
    if args.warp_per_class <= 0 and args.procedural_per_class <= 0:
        raise ConfigError("nothing to train on: --warp-per-class and --procedural-per-class are both 0")
    command = "python benchmarks/geometry_transfer.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    r = run(args)
    r["command"] = command
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(r, indent=2) + "\n")
    md = markdown(r, command)
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    raise SystemExit(run_guarded(main))
