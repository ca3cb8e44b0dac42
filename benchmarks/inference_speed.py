"""Inference throughput of the Python API on video: faces/s and frames/s of
``model.predict_video`` (decode + face detection + crop + classification + tracking), with 1 and 2
worker processes, on a synthetic test video made from the fixture photo
tests/fixtures/photos/group.jpg (five faces; the photo pans a few pixels per frame so the
detector sees a new image every frame).

    python benchmarks/inference_speed.py --workers 1 2 [--checkpoint CKPT] [--preset cpu-demo]

With K workers the video is cut into K consecutive parts, one per process; each process loads
the model, warms up on the photo and on the first and last frame of its part (the video and
tracking path's first-use imports), then all start together and the wall time until the last one
finishes is measured (model loading and warm-up excluded). Each worker uses cores // K torch and OpenCV
threads. Without --checkpoint an untrained model of --preset is timed (the weights do not change
the speed). Writes OUT/inference_speed.md and OUT/inference_speed.json with the exact command.
Run it on an otherwise idle machine: other load on the cores lowers the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import platform
import queue
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, also when imported by a test
from common import command_line, commit, run_record  # noqa: E402

from byel.cli.args import Parser, positive_int  # noqa: E402
from byel.cli.guard import run_guarded  # noqa: E402
from byel.errors import ByelError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "tests" / "fixtures" / "photos" / "group.jpg"


def write_test_video(path: Path, frames: int, fps: int = 25) -> tuple[int, int]:
    """An MJPG .avi of the fixture photo panning ±8 px (replicated border); returns (w, h)."""
    return _write_panning(path, _read_photo(), frames, fps)


def _write_panning(path: Path, img: np.ndarray, frames: int, fps: int) -> tuple[int, int]:
    """img (BGR) panning ±8 px sideways and ±4 px up and down (replicated border) as an MJPG .avi;
    returns (w, h)."""
    import cv2

    from byel.media import video_writer

    h, w = img.shape[:2]
    with video_writer(path, "MJPG", fps, (w, h)) as vw:
        for i in range(frames):
            dx, dy = 8 * np.sin(i / 7), 4 * np.cos(i / 11)
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            vw.write(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE))
    return w, h


def _read_photo() -> np.ndarray:
    """The fixture photo, BGR, through byel's one image decoder."""
    from byel import imageio

    if not PHOTO.is_file():
        raise ByelError(f"fixture photo missing: {PHOTO}")
    return np.ascontiguousarray(imageio.read(PHOTO)[..., ::-1])


def median_run(runs: list[dict], count: str) -> tuple[dict, list[float]]:
    """The run of median rate (runs[i][count] per second) and every run's rate."""
    rates = [r[count] / r["seconds"] for r in runs]
    return runs[int(np.argsort(rates)[len(rates) // 2])], rates


def write_one_face_video(path: Path, frames: int, fps: int = 25) -> tuple[int, int]:
    """A 640x480 MJPG .avi of one face: the fixture photo's largest face (its ~2x box) scaled to
    ~240 px of face on a grey frame, panning ±8 px; returns (w, h)."""
    import cv2

    img = _read_photo()
    x, y, s = 15, 35, 200  # around the group photo's largest face (box 51, 60, 127 x 149 px)
    face = cv2.resize(img[y:y + s, x:x + s], (400, 400), interpolation=cv2.INTER_LINEAR)
    w, h = 640, 480
    canvas = np.full((h, w, 3), 128, np.uint8)
    canvas[40:440, 120:520] = face
    return _write_panning(path, canvas, frames, fps)


def split_video(path: Path, parts: int, out: Path) -> list[Path]:
    """The video cut into `parts` consecutive pieces (as MJPG files, written before timing)."""
    from byel.media import video_reader, video_writer

    with video_reader(path) as cap:
        frames = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(f)
    paths = []
    for k, chunk in enumerate(np.array_split(np.arange(len(frames)), parts)):
        p = out / f"part{parts}-{k}.avi"
        h, w = frames[0].shape[:2]
        with video_writer(p, "MJPG", 25, (w, h)) as vw:
            for i in chunk:
                vw.write(frames[i])
        paths.append(p)
    return paths


def untrained_checkpoint(preset: str, path: Path) -> Path:
    from byel.checkpoint import atomic_torch_save, metadata
    from byel.config import load_config
    from byel.methods import FineTune

    cfg = load_config(preset, [])
    atomic_torch_save({"state_dict": FineTune(cfg.to_dict()).state_dict(), "byel": metadata("finetune", cfg)}, path)
    return path


def _worker(ckpt: str, video: str, threads: int, stride: int, min_face: int, ready, start, results,
            track: bool | int = True) -> None:
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    import byel

    model = byel.load(ckpt, min_face=min_face)
    model.predict(np.ascontiguousarray(_read_photo()[..., ::-1]))  # warm-up
    from byel.media import video_info

    # and the video path's imports: its first and last frame (two frames: the tracking of faces
    # across frames too, whose first use imports SciPy's assignment, about a second)
    model.predict_video(video, stride=max(1, video_info(video)[0] - 1))
    if not isinstance(track, bool):  # track = K: the full face search on every K-th frame
        import byel.detect

        byel.detect.SEARCH_EVERY = track
    ready.put(1)
    start.wait()
    t0 = time.perf_counter()
    res = model.predict_video(video, stride=stride, track=bool(track))
    results.put((len(res), sum(len(r) for r in res), time.perf_counter() - t0, model.finder.name))


def measure(ckpt: Path, parts: list[Path], threads: int, stride: int, min_face: int,
            track: bool | int = True) -> dict:
    ctx = mp.get_context("spawn")
    ready, start, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker,
                         args=(str(ckpt), str(p), threads, stride, min_face, ready, start, results, track))
             for p in parts]
    for p in procs:
        p.start()
    try:
        for _ in procs:  # every worker has loaded the model and warmed up
            while True:
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise ByelError("a worker failed while loading the model (its error is above)")
                try:
                    ready.get(timeout=1)
                    break
                except queue.Empty:
                    pass
        start.set()
        t0 = time.perf_counter()
        got = []
        while len(got) < len(procs):
            if any(p.exitcode not in (None, 0) for p in procs):
                raise ByelError("a worker failed (its error is above)")
            try:
                got.append(results.get(timeout=1))
            except queue.Empty:
                pass
        wall = time.perf_counter() - t0
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
    frames, faces = sum(g[0] for g in got), sum(g[1] for g in got)
    return {"frames": frames, "faces": faces, "seconds": wall, "detector": got[0][3]}


def main() -> None:
    ap = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="a fine-tuned checkpoint (default: an untrained model of --preset)")
    ap.add_argument("--preset", default="cpu-demo", help="the model timed without --checkpoint")
    ap.add_argument("--frames", type=positive_int, default=150, help="frames in the test video")
    ap.add_argument("--stride", type=positive_int, default=1, help="predict_video's stride")
    ap.add_argument("--workers", type=positive_int, nargs="+", default=[1, 2])
    ap.add_argument("--min-face", type=positive_int, nargs="+", default=[24, 64], metavar="PX",
                    help="the detector's smallest face side (byel.load's min_face; 24 is the default): "
                         "dlib's detector upsamples the image by 80 / PX, its main cost")
    ap.add_argument("--repeats", type=positive_int, default=3, help="runs per worker count; the median is shown")
    ap.add_argument("--out", default="benchmarks/results", help="folder for inference_speed.{md,json}")
    ap.add_argument("--tracking", action="store_true",
                    help="instead: frames/s of one worker with face tracking on (--track, the default) and off "
                         "(--no-track) on the 5-face clip and a one-face 640x480 clip, the first --min-face; "
                         "writes OUT/inference_speed_tracking.{md,json}")
    args = ap.parse_args()
    command = command_line(__file__)
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = Path(args.checkpoint) if args.checkpoint else untrained_checkpoint(args.preset, tmp / "model.ckpt")
        from byel.checkpoint import load_checkpoint

        meta = load_checkpoint(ckpt, kinds=("finetune",))["byel"]
        video = tmp / "test.avi"
        w, h = write_test_video(video, args.frames)
        if args.tracking:
            return tracking(args, ckpt, meta, video, (w, h), tmp, out, command, cores)
        rows = []
        for min_face, k in itertools.product(args.min_face, sorted(set(args.workers))):
            parts = split_video(video, k, tmp)
            threads = max(1, cores // k)
            runs = [measure(ckpt, parts, threads, args.stride, min_face) for _ in range(args.repeats)]
            best, rates = median_run(runs, "faces")
            rows.append({"min_face": min_face, "workers": k, "threads_per_worker": threads, "frames": best["frames"],
                         "faces": best["faces"],
                         "seconds": round(best["seconds"], 3),
                         "faces_per_s": round(best["faces"] / best["seconds"], 1),
                         "frames_per_s": round(best["frames"] / best["seconds"], 1),
                         "runs_faces_per_s": [round(r, 1) for r in rates], "detector": best["detector"]})
            print(f"min face {min_face} px, {k} worker(s): {rows[-1]['faces_per_s']} faces/s, "
                  f"{rows[-1]['frames_per_s']} frames/s "
                  f"(runs: {', '.join(f'{r:.1f}' for r in rates)})", flush=True)
    for r in rows:  # against the fewest workers at the same min_face
        base = next(b["faces_per_s"] for b in rows if b["min_face"] == r["min_face"])
        r["speedup_vs_fewest_workers"] = round(r["faces_per_s"] / base, 2) if base else None
    import torch

    info = {"command": command, "cpu_count": cores, "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "load_average_at_start": load_start,
            "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "model": {"checkpoint": args.checkpoint or f"untrained {args.preset}", "backbone": meta["backbone"],
                      "image_size": meta["image_size"]},
            "video": {"width": w, "height": h, "frames": args.frames, "stride": args.stride,
                      "made_from": "tests/fixtures/photos/group.jpg (5 faces), panning ±8 px"},
            "repeats": args.repeats, "rows": rows,
            "run": run_record(__file__)}  # the command, machine, versions and git commit
    lines = [
        *_header("Inference speed: faces/s of `model.predict_video`, detection included", command, info["run"]),
        f"Model: {info['model']['checkpoint']} ({meta['backbone']}, {meta['image_size']} px input); "
        f"detector: {rows[0]['detector']}; video: {w}×{h}, {args.frames} frames of the fixture group photo "
        f"(5 faces a frame), stride {args.stride}; {cores} CPU cores, torch {torch.__version__}; median of "
        f"{args.repeats} runs; model loading excluded; load average at the end: "
        f"{', '.join(f'{v:.1f}' for v in info['load_average_at_end'] or [])}.",
        "",
        *([f"**The machine was busy** (1-minute load average {load_start:.1f} at the start, "
           f"{info['load_average_at_end'][0]:.1f} at the end, on {cores} cores): the figures are lower than on an "
           "idle machine, and the speed-up of more workers is inflated (more processes get a larger share of a "
           "busy CPU). Re-run on an idle machine for figures to quote.", ""]
          if load_start is not None and max(load_start, info["load_average_at_end"][0]) > cores else []),
        "| min face (px) | workers | threads each | faces/s | frames/s | speed-up | runs (faces/s) |",
        "|---|---|---|---|---|---|---|",
        *[f"| {r['min_face']} | {r['workers']} | {r['threads_per_worker']} | {r['faces_per_s']} | {r['frames_per_s']} | "
          f"{r['speedup_vs_fewest_workers']} | {', '.join(map(str, r['runs_faces_per_s']))} |" for r in rows],
        "",
    ]
    _write(out / "inference_speed", info, lines)
    print(f"written: {out / 'inference_speed.md'}, {out / 'inference_speed.json'}")


def _header(title: str, command: str, run: dict) -> list[str]:
    """The first lines of either table: its title, the command behind it and the commit."""
    return [f"# {title}", "", f"Command: `{command}`", "", f"Commit: {commit(run)}", ""]


def _write(path: Path, info: dict, lines: list[str]) -> None:
    """PATH.json and PATH.md, each whole or not at all (byel.files.write_text), and the table on stdout."""
    from byel.files import write_text

    write_text(path.with_suffix(".json"), json.dumps(info, indent=2) + "\n")
    write_text(path.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))


def tracking(args, ckpt: Path, meta: dict, video: Path, size: tuple[int, int], tmp: Path, out: Path, command: str,
             cores: int) -> None:
    """One worker, all cores: frames/s with tracking on and off, on both clips (issue #29 item 6)."""
    import torch

    one = tmp / "one_face.avi"
    one_size = write_one_face_video(one, args.frames)
    rows = []
    for name, path, (w, h) in (("5 faces (group photo)", video, size), ("1 face", one, one_size)):
        for track in (False, 10, 30):  # off; the full search every 10th, every 30th frame (the default)
            runs = [measure(ckpt, [path], cores, args.stride, args.min_face[0], track) for _ in range(args.repeats)]
            best, rates = median_run(runs, "frames")
            rows.append({"clip": name, "width": w, "height": h, "track": bool(track),
                         "search_every": track or None, "frames": best["frames"],
                         "faces": best["faces"], "seconds": round(best["seconds"], 3),
                         "frames_per_s": round(best["frames"] / best["seconds"], 1),
                         "faces_per_s": round(best["faces"] / best["seconds"], 1),
                         "runs_frames_per_s": [round(r, 1) for r in rates], "detector": best["detector"]})
            off = next(r for r in rows if r["clip"] == name and not r["track"])  # measured in this run
            rows[-1]["speedup_vs_no_track"] = round(rows[-1]["frames_per_s"] / off["frames_per_s"], 2) if track else None
            print(f"{name}, track={track}: {rows[-1]['frames_per_s']} frames/s", flush=True)
    info = {"command": command, "cpu_count": cores, "torch": torch.__version__,
            "model": {"checkpoint": args.checkpoint or f"untrained {args.preset}", "backbone": meta["backbone"],
                      "image_size": meta["image_size"]},
            "frames": args.frames, "stride": args.stride, "min_face": args.min_face[0], "repeats": args.repeats,
            "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "rows": rows, "run": run_record(__file__)}
    lines = [
        *_header("Inference speed with face tracking: frames/s of `model.predict_video`, one worker", command,
                 info["run"]),
        f"Model: {info['model']['checkpoint']} ({meta['backbone']}, {meta['image_size']} px input); detector: "
        f"{rows[0]['detector']}; min face {args.min_face[0]} px; {args.frames} frames a clip, stride {args.stride}; "
        f"one worker with {cores} threads on {cores} CPU cores, torch {torch.__version__}; median of {args.repeats} "
        "runs; model loading and warm-up (the photo, the clip's first and last frame) excluded"
        + (f"; 1-minute load average at the end {info['load_average_at_end'][0]:.1f}" if info["load_average_at_end"] else "")
        + ". Test-time mirroring on (the default; the mirrored face's mesh derived from the face's own, "
        "byel.faces.mirror). Tracking: faces followed by their landmarks, the full search on every "
        "K-th frame (K = 30 by default) and when a face is lost (byel.detect.FaceTracker); off: the full search on every frame. Clips: the "
        "fixture group photo (5 faces) panning ±8 px, and its largest face scaled onto a grey 640×480 frame, "
        "panning ±8 px.",
        "",
        "| clip | size | tracking | frames/s | faces/s | speed-up | runs (frames/s) |",
        "|---|---|---|---|---|---|---|",
        *[f"| {r['clip']} | {r['width']}×{r['height']} | {('search every %sth frame' % r['search_every']) if r['track'] else 'off'} | {r['frames_per_s']} | "
          f"{r['faces_per_s']} | {r['speedup_vs_no_track'] or ''} | {', '.join(map(str, r['runs_frames_per_s']))} |"
          for r in rows],
        "",
    ]
    _write(out / "inference_speed_tracking", info, lines)


if __name__ == "__main__":
    raise SystemExit(run_guarded(main))
