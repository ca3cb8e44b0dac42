"""How stable the shipped model's labels are, with test-time mirroring and video smoothing off
(as before issue #29) and on (the defaults since):

- label changes under mirroring: tests/fixtures/photos/group.jpg (five faces) and its left-right
  mirror image; a face counts when its label differs from the label of the face at its mirrored
  box;
- label changes along each face track of a 30-frame clip of group.jpg shifted 2-3 px per frame
  (written as MJPG .avi), and the tracks seen on one frame only;
- the predicted-class histogram and macro-F1 on the 140 real fixture faces
  tests/fixtures/fer_sample (20 per class, ``detect=False``): tier B (FER2013 PublicTest faces,
  on which byel's design choices were made), and a noisy figure with 20 faces a class.

    python benchmarks/stable_predictions.py [--checkpoint CKPT] [--out benchmarks/results]

Writes OUT/stable_predictions.md and .json with the exact command.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GROUP = ROOT / "tests" / "fixtures" / "photos" / "group.jpg"
FER = ROOT / "tests" / "fixtures" / "fer_sample"
FER_CLASSES = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness", "neutral": "neutral",
               "sad": "sadness", "surprise": "surprise"}


def mirror_changes(model) -> dict:
    """Faces of group.jpg whose label differs from the label of the face at the mirrored box in
    the mirrored photo."""
    from byel import imageio
    from byel.track import iou

    rgb = imageio.read(GROUP)
    width = rgb.shape[1]
    faces, flipped = model.predict(rgb), model.predict(np.ascontiguousarray(rgb[:, ::-1]))
    changed = 0
    for f in faces:
        x, y, w, h = f.box
        back = (width - x - w, y, w, h)
        other = max(flipped, key=lambda g: iou(back, g.box))
        changed += other.label != f.label
    return {"faces": len(faces), "faces_mirrored": len(flipped), "changed": int(changed)}


def shifted_clip(path: Path, frames: int = 30) -> Path:
    """group.jpg panned 2-3 px per frame (alternately), cropped to a fixed size, as MJPG .avi."""
    from byel import imageio

    rgb = imageio.read(GROUP)
    pad = 3 * frames
    h, w = rgb.shape[0] - pad, rgb.shape[1] - pad
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    x = 0
    for i in range(frames):
        y = (i * 2) % pad // 2
        vw.write(cv2.cvtColor(np.ascontiguousarray(rgb[y:y + h, x:x + w]), cv2.COLOR_RGB2BGR))
        x += 2 + i % 2
    vw.release()
    return path


def clip_changes(model, clip: Path, smooth: str) -> dict:
    """Label changes along each track (tracks of two or more frames) and one-frame tracks."""
    results = model.predict_video(clip, smooth=smooth)
    labels: dict[int, list[str]] = {}
    for faces in results:
        for f in faces:
            labels.setdefault(f.track, []).append(f.label)
    changes = {t: sum(a != b for a, b in zip(ls, ls[1:])) for t, ls in labels.items()}
    return {"frames": len(results), "tracks": {str(t): {"frames": len(labels[t]), "changes": changes[t]}
                                               for t in sorted(labels)},
            "one_frame_tracks": sum(len(ls) == 1 for ls in labels.values())}


def fer_sample(model, root: Path = FER) -> dict:
    """Histogram of predicted labels and macro-F1 over the model's classes on the labelled face
    crops under root (FER2013 folder names; detect=False): the 140 fixture faces by default."""
    from byel.metrics import scores

    paths, truth = [], []
    for folder in sorted(p for p in root.iterdir() if p.name in FER_CLASSES):
        for p in sorted(folder.glob("*")):
            paths.append(str(p))
            truth.append(model.classes.index(FER_CLASSES[folder.name]))
    results = model.predict(paths)
    probs = np.array([[r[0].probabilities[c] for c in model.classes] for r in results])
    s = scores(probs, np.array(truth))
    hist = Counter(model.classes[i] for i in probs.argmax(1))
    return {"n": len(paths), "histogram": {c: hist.get(c, 0) for c in model.classes},
            "macro_f1": round(float(s["macro_f1"]), 4), "accuracy": round(float(s["accuracy"]), 4)}


def main(argv=None) -> int:
    from byel.cli.args import Parser
    from byel.errors import ByelError

    ap = Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--real", help="also score this labelled folder of face crops (FER2013 folder names, e.g. "
                                   "../shared/data/fer2013-publictest) with mirroring off and on")
    args = ap.parse_args(argv)
    if args.real and not any((Path(args.real) / name).is_dir() for name in FER_CLASSES):
        raise ByelError(f"--real {args.real}: not a folder of labelled face crops (class folders "
                        f"{', '.join(sorted(FER_CLASSES))})")
    import byel
    from byel import track

    out: dict = {"command": "python benchmarks/stable_predictions.py " + " ".join(argv or sys.argv[1:])}
    with tempfile.TemporaryDirectory() as tmp:
        clip = shifted_clip(Path(tmp) / "shifted.avi")
        for name, mirror, smooth in (("before", False, "none"), ("after", True, "ema:0.5")):
            model = byel.load(args.checkpoint, mirror=mirror)
            crops = byel.load(args.checkpoint, mirror=mirror, detect=False)
            keep_all = track.lasting
            if name == "before":  # one-frame tracks were kept
                track.lasting = lambda ids: [[True] * len(f) for f in ids]
            try:
                out[name] = {"mirror": mirror, "smooth": smooth, "group_mirrored": mirror_changes(model),
                             "shifted_clip": clip_changes(model, clip, smooth), "fer_sample": fer_sample(crops)}
                if args.real:
                    out[name]["real"] = {"data": Path(args.real).name, **fer_sample(crops, Path(args.real))}
            finally:
                track.lasting = keep_all
        for a in ("ema:0.3", "ema:0.7", "window:5"):
            out[f"smooth {a}"] = clip_changes(byel.load(args.checkpoint), clip, a)
    od = Path(args.out)
    od.mkdir(parents=True, exist_ok=True)
    (od / "stable_predictions.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# Stable predictions (shipped model unless --checkpoint)", "", f"`{out['command']}`", "",
             "| | before (mirror off, smooth none) | after (mirror on, ema:0.5) |", "|---|---|---|"]
    b, a = out["before"], out["after"]
    lines.append(f"| group.jpg: labels changed by mirroring (of {b['group_mirrored']['faces']}) | "
                 f"{b['group_mirrored']['changed']} | {a['group_mirrored']['changed']} |")
    fmt = lambda c: ", ".join(f"t{t}: {v['changes']}" for t, v in c["tracks"].items() if v["frames"] > 1)  # noqa: E731
    lines.append(f"| shifted clip: label changes per track | {fmt(b['shifted_clip'])} | {fmt(a['shifted_clip'])} |")
    lines.append(f"| shifted clip: one-frame tracks | {b['shifted_clip']['one_frame_tracks']} | "
                 f"{a['shifted_clip']['one_frame_tracks']} |")
    hist = lambda r: ", ".join(f"{c} {n}" for c, n in r["fer_sample"]["histogram"].items())  # noqa: E731
    lines.append(f"| fer_sample (140 real faces): predicted classes | {hist(b)} | {hist(a)} |")
    lines.append(f"| fer_sample macro-F1 (tier B, 140 faces: noisy) | {b['fer_sample']['macro_f1']:.3f} | "
                 f"{a['fer_sample']['macro_f1']:.3f} |")
    if args.real:
        lines.append(f"| {b['real']['data']} ({b['real']['n']} real faces, {len(b['real']['histogram'])} classes): "
                     "predicted classes | " + ", ".join(f"{c} {n}" for c, n in b["real"]["histogram"].items()) + " | "
                     + ", ".join(f"{c} {n}" for c, n in a["real"]["histogram"].items()) + " |")
        lines.append(f"| {b['real']['data']} macro-F1 / accuracy (tier B) | {b['real']['macro_f1']:.3f} / "
                     f"{b['real']['accuracy']:.3f} | {a['real']['macro_f1']:.3f} / {a['real']['accuracy']:.3f} |")
    lines += ["", "Other smoothing on the clip (mirror on): " + "; ".join(
        f"{k[7:]}: {fmt(out[k])}" for k in out if k.startswith("smooth "))]
    (od / "stable_predictions.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from byel.cli.guard import run_guarded

    raise SystemExit(run_guarded(main))
