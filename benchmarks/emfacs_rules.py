"""EMFACS rules, tier B (+ pretrained face-geometry model): the six EMFACS prototypes scored on
MediaPipe's 52 blendshapes with a fixed AU <-> blendshape table (byel.faces.rules), no learning
at all, on real labelled faces; and, as a sanity check, on synthetic faces from `byel generate`.

    python benchmarks/emfacs_rules.py --real ../shared/data/fer2013-publictest \
        --synthetic procedural mesh --synthetic-per-class 100 --sources ../shared/data/fer2013-train-neutral

Every real figure is tier B: the blendshapes come from Google's Face Landmarker (trained on real
faces, for geometry; it knows no expression class); no label of any image, real or synthetic,
chose anything (no weight, no threshold: byel.faces.rules' docstring says how a score is made).
The real set's six classes are scored (neutral folders are skipped, as everywhere in byel):
macro-F1 and accuracy over the faces where a mesh is found, and over all faces counting the
faces without one as errors (as benchmarks/geometry_transfer.py counts them), per-class F1 and
the confusion matrix. Deterministic: the meshes and the rules involve no randomness, so no seed
is needed (the generated faces of the sanity check are fixed by --seed).

The sanity check asks whether the rules read the generator's action units: on each backend's
faces, the Pearson correlation of each AU's intensity as generated (the manifest) and as read
from the blendshapes, and the rules' macro-F1 on those faces. The mesh backend is run with its
quality gate off, since the gate keeps faces by their blendshapes. Its faces are made of real
unlabelled neutral faces (--sources); the procedural faces of no real image.
Writes RESULTS.json and RESULTS.md (default benchmarks/results/emfacs_rules.*).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, also when imported by a test
from common import commit, machine, publish  # noqa: E402

from byel.classes import CLASSES  # noqa: E402
from byel.cli.args import Parser, nonneg_int, positive_int, seed_int, size_int  # noqa: E402
from byel.cli.guard import run_guarded  # noqa: E402
from byel.choices import FROM_REAL  # noqa: E402
from byel.data.formats import MANIFEST  # noqa: E402
from byel.data.sources import load  # noqa: E402
from byel.errors import ConfigError  # noqa: E402
from byel.faces import measure_images  # noqa: E402
from byel.faces.rules import AUS, PROTOTYPES, au_intensities, mapping_table, predict, prototype_scores, rest_level  # noqa: E402
from byel.metrics import confusion_matrix, per_class_f1  # noqa: E402
from byel.synth.generate import generate  # noqa: E402

TIER = "tier B (+ pretrained face-geometry model)"
ROOT = Path(__file__).resolve().parent.parent
NO_MESH = "no mesh"


def score(pred: np.ndarray, labels: np.ndarray) -> dict:
    """macro-F1, accuracy, per-class F1 and confusion matrix (byel.metrics) of predictions, where
    -1 (no mesh) is a seventh predicted column: an error, a false negative of the face's class."""
    k = len(CLASSES)
    cm = confusion_matrix(torch.from_numpy(np.where(pred < 0, k, pred)), torch.from_numpy(labels), k + 1)[:k]
    per = per_class_f1(torch.cat([cm, torch.zeros(1, k + 1, dtype=cm.dtype)]))[:k]  # rows + columns of the six
    return {"n": int(len(labels)), "macro_f1": round(float(per.mean()), 4),
            "accuracy": round(float(cm.diagonal().sum()) / max(len(labels), 1), 4),
            "per_class_f1": {c: round(float(v), 4) for c, v in zip(CLASSES, per)},
            "confusion_matrix": cm.tolist()}  # rows: true class; columns: CLASSES, then no mesh


def scored(pred: np.ndarray, labels: np.ndarray, blendshapes: np.ndarray, rest=None) -> dict:
    """The rules' figures on faces with a mesh and on all faces (no mesh = error), what they predict,
    and how many faces read no AU at all (every score 0: the arg-max's tie, anger, is their label)."""
    found = pred >= 0
    zero = found & (np.nan_to_num(prototype_scores(blendshapes, rest)).max(1) <= 0)
    return {"mesh_found": score(pred[found], labels[found]), "misses_as_errors": score(pred, labels),
            "predicted": {c: int((pred == k).sum()) for k, c in enumerate(CLASSES)} | {NO_MESH: int((~found).sum())},
            "n_all_scores_zero": int(zero.sum())}


def rest_faces(args) -> dict:
    """The rest level: `byel generate`'s neutral faces (no AU) of one backend, meshed; the median of
    the AU intensities they read (byel.faces.rules.rest_level)."""
    folder = Path(args.out) / f"rest-{args.rest}"
    real = args.rest in FROM_REAL
    generate(folder, backend=args.rest, per_class=args.rest_faces, classes=["neutral"], size=args.size,
             seed=args.seed, workers=args.workers, sources=args.sources if real else None, progress=False,
             overwrite=True, gate=False if args.rest == "mesh" else None)
    data = load(f"imagefolder:{folder}", args.size, progress=False, cache=False, classes=7)
    meshes = measure_images(data.images, mode=args.mode, workers=args.workers, cache=False)
    rest = rest_level(meshes.blendshapes)
    return {"backend": args.rest, "n": int(len(data)), "n_with_mesh": int(meshes.found.sum()),
            "made_of": [{k: v for k, v in u.items() if k != "fingerprint"} for u in data.real_uses],
            "command": f"byel generate --backend {args.rest} --out {folder} --per-class {args.rest_faces} "
                       f"--classes neutral --size {args.size} --seed {args.seed} --workers {args.workers}"
                       + (f" --sources {args.sources}" if real else "") + (" --no-gate" if args.rest == "mesh" else ""),
            "level": {str(au): round(float(v), 4) for au, v in zip(AUS, rest)}}


def real_rows(args) -> dict:
    real = load(args.real, args.real_size, progress=False)
    meshes = measure_images(real.images, mode=args.mode, workers=args.workers, key=real.spec)
    pred = predict(meshes.blendshapes)
    found = pred >= 0
    r = {"real": real.spec, "n_real": int(len(real)), "skipped": real.skipped, "n_with_mesh": int(found.sum()),
         "detection_rate": round(float(found.mean()), 4) if len(found) else 0.0,
         **scored(pred, real.labels, meshes.blendshapes),
         "mesh_seconds": meshes.meta["seconds"], "mesh_cached": bool(meshes.meta.get("cached"))}
    if args.rest != "none":
        rest = rest_faces(args)
        level = np.array([rest["level"][str(au)] for au in AUS])
        r["rest"] = {**rest, **scored(predict(meshes.blendshapes, level), real.labels, meshes.blendshapes, level)}
    return r


def synthetic_row(backend: str, args) -> dict:
    """Generate faces with one backend, mesh them, and compare the AUs read with those generated."""
    folder = Path(args.out) / f"data-{backend}"
    real = backend in FROM_REAL
    gen = generate(folder, backend=backend, per_class=args.synthetic_per_class, size=args.size, seed=args.seed,
                   workers=args.workers, sources=args.sources if real else None, progress=False, overwrite=True,
                   gate=False if backend == "mesh" else None)
    command = (f"byel generate --backend {backend} --out {folder} --per-class {args.synthetic_per_class} "
               f"--size {args.size} --seed {args.seed} --workers {args.workers}"
               + (f" --sources {args.sources}" if real else "") + (" --no-gate" if backend == "mesh" else ""))
    data = load(f"imagefolder:{folder}", args.size, progress=False, cache=False)
    with open(folder / MANIFEST, newline="", encoding="utf-8") as f:
        manifest = {row["file"]: row for row in csv.DictReader(f)}
    rows = [manifest[Path(p).relative_to(folder.resolve()).as_posix()] for p in data.paths]
    meshes = measure_images(data.images, mode=args.mode, workers=args.workers, cache=False)
    pred = predict(meshes.blendshapes)
    found = pred >= 0
    made = np.array([[float(r.get(f"au{au:02d}") or 0) for au in AUS] for r in rows])[found]
    read = au_intensities(meshes.blendshapes)[found]
    per_au = {}
    for a, au in enumerate(AUS):
        x, y = made[:, a], read[:, a]
        present, absent = x >= 0.3, x == 0
        per_au[str(au)] = {
            "r": round(float(np.corrcoef(x, y)[0, 1]), 3) if len(x) > 2 and x.std() > 0 and y.std() > 0 else None,
            "read_when_present": round(float(y[present].mean()), 3) if present.any() else None,
            "read_when_absent": round(float(y[absent].mean()), 3) if absent.any() else None,
            "n_present": int(present.sum())}
    uses = [{k: v for k, v in u.items() if k != "fingerprint"} for u in data.real_uses]
    return {"backend": backend, "command": command, "n": int(len(data)), "n_with_mesh": int(found.sum()),
            "made_of": uses, "images_per_s": round(gen["images_per_s"], 1),
            "mesh_found": score(pred[found], data.labels[found]), "misses_as_errors": score(pred, data.labels),
            "au": per_au}


def run(args) -> dict:
    t0 = time.time()
    r = {"tier": TIER, "mode": args.mode, "prototypes": {c: list(PROTOTYPES[c]) for c in CLASSES},
         "mapping": mapping_table(),
         "rule": "AU intensity = mean of its blendshapes (left/right averaged); emotion score = mean of its "
                 "prototype's AU intensities; prediction = arg-max; no mesh = a miss (an error)",
         **real_rows(args)}
    r["synthetic"] = [synthetic_row(b, args) for b in args.synthetic] if args.synthetic_per_class else []
    r["seconds"] = round(time.time() - t0, 1)
    return r


def _per(d: dict) -> str:
    return " | ".join(f"{d[c]:.2f}" for c in CLASSES)


def _rest_rows(r: dict) -> list[str]:
    if "rest" not in r:
        return []
    t, m, e = r["rest"], r["rest"]["mesh_found"], r["rest"]["misses_as_errors"]
    name = (f"EMFACS rules less the rest level of {t['n_with_mesh']} {t['backend']} neutral faces"
            + (" (tier B+C: made of real unlabelled faces)" if t["made_of"] else ""))
    made = ("; those faces are made of " + "; ".join(f"{u['n_images']} real unlabelled faces of {u['data']}"
                                                     for u in t["made_of"])) if t["made_of"] else ""
    return [
        f"| {name}, faces with a mesh | {m['n']} | {m['macro_f1']:.3f} | {m['accuracy']:.3f} | {_per(m['per_class_f1'])} |",
        f"| {name}, all faces, no mesh = error | {e['n']} | {e['macro_f1']:.3f} | {e['accuracy']:.3f} | "
        f"{_per(e['per_class_f1'])} |",
        "",
        "The first two rows are the rules as chosen before any figure was seen. The last two take away from each "
        "face's AU intensities those read on synthetic neutral faces (no action unit; `" + t["command"] + "`), "
        "clipped at 0" + made + "; this variant was added after the first rows were seen, to remove blendshapes' "
        "resting offsets the synthetic check shows (e.g. eyeSquint). Rest level: "
        + ", ".join(f"AU{au} {v:.2f}" for au, v in t["level"].items()) + ".",
        f"Predicted: {', '.join(f'{c} {v}' for c, v in r['predicted'].items())}; less the rest level: "
        f"{', '.join(f'{c} {v}' for c, v in t['predicted'].items())}. Faces with a mesh reading no AU at all "
        f"(every score 0; the arg-max's tie makes them anger): {r['n_all_scores_zero']}; less the rest level: "
        f"{t['n_all_scores_zero']}.",
    ]


def markdown(r: dict, command: str) -> str:
    lines = [
        f"# EMFACS rules on blendshapes — {r['tier']}",
        "",
        "The six EMFACS prototypes scored on MediaPipe Face Landmarker's 52 blendshapes (byel.faces.rules), "
        "no learning at all: no weight fitted, no threshold tuned, no label of any image used except for these "
        "scores. " + r["rule"] + ". Deterministic (no randomness: no seed).",
        "",
        f"Command: `{command}`",
        "",
        *([f"Commit: {commit(r['run'])}", f"Machine: {machine(r['run'])}", ""] if "run" in r else []),
        f"Real set: {r['real']} ({r['n_real']} faces, six classes; skipped: "
        + (", ".join(f"{k} {v}" for k, v in r["skipped"].items()) or "none")
        + f"). Mesh mode: {r['mode']}; a mesh on {r['n_with_mesh']} faces ({r['detection_rate']:.1%}).",
        "",
        f"| {r['tier'].split(' (')[0]} | faces scored | macro-F1 | accuracy | " + " | ".join(CLASSES) + " |",
        "|---|---|---|---|" + "---|" * len(CLASSES),
        f"| EMFACS rules, faces with a mesh | {r['mesh_found']['n']} | {r['mesh_found']['macro_f1']:.3f} | "
        f"{r['mesh_found']['accuracy']:.3f} | {_per(r['mesh_found']['per_class_f1'])} |",
        f"| EMFACS rules, all faces, no mesh = error | {r['misses_as_errors']['n']} | "
        f"{r['misses_as_errors']['macro_f1']:.3f} | {r['misses_as_errors']['accuracy']:.3f} | "
        f"{_per(r['misses_as_errors']['per_class_f1'])} |",
        *_rest_rows(r),
        "",
        f"Confusion matrix, all faces ({r['tier']}; rows: true class, columns: predicted):",
        "",
        "| true \\ predicted | " + " | ".join(CLASSES) + f" | {NO_MESH} |",
        "|---|" + "---|" * (len(CLASSES) + 1),
        *(f"| {c} | " + " | ".join(str(v) for v in row) + " |"
          for c, row in zip(CLASSES, r["misses_as_errors"]["confusion_matrix"])),
        "",
        "Mapping (AU: blendshapes, left/right averaged; the prototypes holding it):",
        "",
        "| AU | FACS name | blendshapes | in | why |",
        "|---|---|---|---|---|",
        *(f"| {m['au']} | {m['name']} | {', '.join(m['blendshapes'])} | {', '.join(m['in'])} | {m['why']} |"
          for m in r["mapping"]),
        "",
        "Prototypes: " + "; ".join(f"{c} {'+'.join(map(str, v))}" for c, v in r["prototypes"].items()) + ".",
        "",
    ]
    if r["synthetic"]:
        lines += [
            "## Sanity check: do the rules read the generator's action units?",
            "",
            "Synthetic faces (no real label anywhere). r: Pearson correlation, over the faces with a mesh, of each "
            "AU's intensity as generated (the manifest) and as read from the blendshapes; then the mean read "
            "intensity where the AU was generated at >= 0.3 and where it was absent (0).",
            "",
            "| backend | faces | with a mesh | macro-F1, with a mesh | accuracy | " + " | ".join(CLASSES) + " |",
            "|---|---|---|---|---|" + "---|" * len(CLASSES),
            *(f"| {s['backend']} | {s['n']} | {s['n_with_mesh']} | {s['mesh_found']['macro_f1']:.3f} | "
              f"{s['mesh_found']['accuracy']:.3f} | {_per(s['mesh_found']['per_class_f1'])} |" for s in r["synthetic"]),
            "",
            "| AU | " + " | ".join(f"{s['backend']}: r | read present / absent" for s in r["synthetic"]) + " |",
            "|---|" + "---|---|" * len(r["synthetic"]),
        ]
        fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
        for au in AUS:
            cells = [f"{fmt(s['au'][str(au)]['r'])} | {fmt(s['au'][str(au)]['read_when_present'])} / "
                     f"{fmt(s['au'][str(au)]['read_when_absent'])}" for s in r["synthetic"]]
            lines.append(f"| {au} | " + " | ".join(cells) + " |")
        lines += ["", "Generated with: " + "; ".join(f"`{s['command']}`" for s in r["synthetic"]) + "."]
        for s in r["synthetic"]:
            if s["made_of"]:
                lines.append(f"The {s['backend']} faces are made of real unlabelled faces: "
                             + "; ".join(f"{u['n_images']} faces of {u['data']}" for u in s["made_of"]) + ".")
        lines.append("")
    lines += [f"Meshing the real faces: {r['mesh_seconds']} s"
              + (" (measured by an earlier identical run, read from the cache)" if r["mesh_cached"] else "")
              + f". Time: {r['seconds']} s in all.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True, help="labelled real faces (class folders or any byel data spec)")
    ap.add_argument("--real-size", type=size_int, default=48, help="pixel side the real faces are read at (FER2013: 48)")
    ap.add_argument("--mode", choices=["detect", "crop"], default="detect",
                    help="mesh mode (byel.faces.measure_images): detect, BlazeFace then the mesh; crop, the mesh alone")
    ap.add_argument("--synthetic", nargs="*", choices=["procedural", "mesh", "warp"], default=["procedural"],
                    help="backends whose faces the sanity check scores (none: skip it)")
    ap.add_argument("--synthetic-per-class", type=nonneg_int, default=100, help="faces per class of each backend (0: skip)")
    ap.add_argument("--rest", choices=["procedural", "mesh", "warp", "none"], default="procedural",
                    help="a second row: the AU intensities read on this backend's neutral faces (no AU) taken "
                         "away from every face's (none: no such row)")
    ap.add_argument("--rest-faces", type=positive_int, default=100, help="neutral faces the rest level is read on")
    ap.add_argument("--sources", help="unlabelled neutral faces for the mesh and warp backends")
    ap.add_argument("--size", type=size_int, default=96, help="side of the generated faces")
    ap.add_argument("--seed", type=seed_int, default=0, help="seed of the generated faces")
    ap.add_argument("--workers", type=positive_int, default=2)
    ap.add_argument("--out", default="runs/bench-emfacs", help="folder for the generated faces")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "emfacs_rules"),
                    help="writes RESULTS.json and RESULTS.md")
    args = ap.parse_args()
    if args.synthetic_per_class and not args.sources and any(b in FROM_REAL for b in args.synthetic):
        raise ConfigError("--synthetic mesh or warp needs --sources DIR (neutral faces); or leave them out")
    if args.rest in FROM_REAL and not args.sources:
        raise ConfigError(f"--rest {args.rest} needs --sources DIR (neutral faces); or use --rest procedural")
    print(publish(__file__, run(args), args.results, markdown))


if __name__ == "__main__":
    raise SystemExit(run_guarded(main))
