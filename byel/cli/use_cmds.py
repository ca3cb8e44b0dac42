"""`byel predict` and `byel serve`: a trained model on photos, videos and a web page."""

from __future__ import annotations

import os
from pathlib import Path

from byel.cli.args import MAX_WINDOW, batch_int, device_arg, int_range, positive_int, prob_float, smooth_arg
from byel.errors import ByelError


def add_predict(sub) -> None:
    """`byel predict`."""
    pr = sub.add_parser("predict", help="expressions of the faces in photos, folders or videos → CSV")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or video files")
    pr.add_argument("--checkpoint", help="a fine-tuned checkpoint (default: the model shipped with byel)")
    pr.add_argument("--out", default="predictions.csv",
                    help="CSV: file, frame, track, x, y, w, h, predicted, p_<class>… (frame and track empty "
                         "for images); an existing file is replaced only with --overwrite")
    pr.add_argument("--no-detect", action="store_true", help="inputs are already face crops")
    pr.add_argument("--annotate", metavar="DIR", help="save copies with boxes and labels drawn (under the inputs' "
                                                      "names) in DIR, a folder that neither holds nor lies in an input")
    pr.add_argument("--detector", default="auto", choices=("auto", "landmarker", "opencv-haar", "dlib-hog"),
                    help="face detector. auto: landmarker (MediaPipe's BlazeFace + face mesh, shipped with byel; crops "
                         "aligned on the eyes), or where its runtime has no wheel opencv-haar, else dlib-hog (both: "
                         "axis-aligned crops around the box)")
    pr.add_argument("--min-face", type=int_range(1, 100_000), default=24, metavar="PX",
                    help="report only faces whose box is at least PX pixels on its shorter side, in pixels of the "
                         "input image (every detector; values under 8 count as 8)")
    pr.add_argument("--video-stride", type=positive_int, default=1, metavar="K", help="use every k-th video frame")
    pr.add_argument("--uncertain", type=prob_float, metavar="P",
                    help="label a face `uncertain` when its top probability is below P (0 < P ≤ 1)")
    pr.add_argument("--smooth", type=smooth_arg, default="ema:0.5", metavar="SPEC",  # byel.track.DEFAULT_SMOOTH
                    help="videos: smooth each face track's probabilities (default ema:0.5; none: off): none | "
                         "ema:A (A = weight of the newest frame, 0 < A ≤ 1) | window:K (centred mean over K "
                         f"frames, 1 ≤ K ≤ {MAX_WINDOW}). Faces seen on one frame only of a video are left out")
    pr.add_argument("--no-track", action="store_true",
                    help="search every video frame for faces (default: follow each face from frame to frame "
                         "by its landmarks, searching every 30th frame and when a face is lost)")
    pr.add_argument("--no-mirror", action="store_true",
                    help="classify each face alone (default: the mean of the face's and its mirror image's "
                         "probabilities, so a face and its mirror image get the same label)")
    pr.add_argument("--face-details", action="store_true",
                    help="add the columns score (face detector's confidence), yaw, pitch, roll (head pose, degrees) "
                         "and bs_<name> (MediaPipe's 52 blendshapes), as byel.load's faces carry them; empty "
                         "without the landmarker's mesh (other detectors, --no-detect)")
    pr.add_argument("--landmarks", action="store_true",
                    help="add the 478 face-mesh points as columns lm_<i>_x, lm_<i>_y (956 columns, image pixels; "
                         "empty without the landmarker's mesh)")
    pr.add_argument("--batch-size", type=batch_int, default=64, metavar="N", help="faces per forward pass")
    pr.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda, cuda:N or mps")
    pr.add_argument("--json", action="store_true",
                    help="print the results as one JSON object (files, faces with box, label and probabilities, "
                         "and with --face-details / --landmarks those too, summary) instead of the table; the CSV is written as well")
    pr.add_argument("--overwrite", action="store_true",
                    help="replace an existing --out file and annotated files of the same names in --annotate")
    pr.add_argument("--no-progress", action="store_true")
    pr.set_defaults(func=cmd_predict, writes={"out": "table", "annotate": "folder"}, reads=("checkpoint", "inputs"))


def add_serve(sub) -> None:
    """`byel serve`."""
    se = sub.add_parser("serve", help="a local web page: a photo or webcam snapshot → a box, label and "
                                      "probability chart per face (needs byel[serve])")
    se.add_argument("--checkpoint", help="a fine-tuned checkpoint (default: the model shipped with byel)")
    se.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: the whole network)")
    se.add_argument("--port", type=int_range(0, 65535), default=8000, metavar="N", help="0: any free port")
    se.add_argument("--allow-host", action="append", metavar="NAME",
                    help="a host name the page may be opened by besides localhost and IP addresses (with --host "
                         "0.0.0.0: the machine's name on the network); repeatable. Other names are refused "
                         "(DNS rebinding)")
    se.add_argument("--queue", type=int_range(1, 32), default=4, metavar="N",
                    help="requests that may wait while the model runs; more get 503 (busy) at once")
    se.add_argument("--uncertain", type=prob_float, metavar="P", help="as for predict")
    se.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda, cuda:N or mps")
    se.set_defaults(func=cmd_serve, reads=("checkpoint",))


def cmd_predict(args) -> int:
    from byel.data.formats import IMAGE_EXTS
    from byel.errors import printable
    from byel.predict import (TABLE_MAX, annotated_files, format_result, format_table, predict, predictions_json,
                              read_predictions)

    if Path(args.out).suffix.lower() in IMAGE_EXTS:  # a CSV under a picture's name would mislead
        raise ByelError(f"--out {args.out}: predictions are a CSV table, give a .csv path "
                        "(pictures with boxes drawn: --annotate DIR)")
    if args.annotate and not args.overwrite:  # before the model loads; --out: byel.cli.paths
        taken = [p for p in annotated_files(args.inputs, args.annotate) if os.path.lexists(p)]
        if taken:
            more = f" and {len(taken) - 1} more annotated files" if len(taken) > 1 else ""
            raise ByelError(f"--annotate {printable(args.annotate)} already holds {printable(taken[0])}{more} of "
                            "this run; replace them with --overwrite or choose another --annotate folder")
    result = predict(args.checkpoint, args.inputs, args.out, detect=not args.no_detect, annotate_dir=args.annotate,
                     batch_size=args.batch_size, device=args.device, progress=not args.no_progress,
                     video_stride=args.video_stride, detector=args.detector, min_face=args.min_face,
                     uncertain=args.uncertain, smooth=args.smooth, mirror=not args.no_mirror,
                     face_details=args.face_details, landmarks=args.landmarks, track=not args.no_track)
    if args.json:
        print(predictions_json(result, read_predictions(result["csv"])))
        return 0
    rows = read_predictions(result["csv"], limit=TABLE_MAX + 1)
    if len(rows) <= TABLE_MAX:
        print(format_table(rows))
    print(format_result(result) + ("" if len(rows) <= TABLE_MAX else "\nmore than a screen of faces: see the CSV"))
    return 0


def cmd_serve(args) -> int:
    from byel.serve import serve

    serve(args.checkpoint, host=args.host, port=args.port, device=args.device, uncertain=args.uncertain,
          queue=args.queue, allow_hosts=args.allow_host or ())
    return 0
