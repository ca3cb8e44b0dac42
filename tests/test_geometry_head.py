"""finetune.head pixels | geometry | fused end to end on a tiny procedural set at 96 px (the face
landmarker finds a mesh on nearly all of them): the geometry head and the fusion weight live in
the checkpoint, the weight is the grid's best on the synthetic held-out split, evaluate reports
tier B with the mesh detection rate and the pixel CNN's own scores beside, predict fuses; a
default (pixels) run has no geometry anywhere."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from byel.cli import main

pytest.importorskip("ai_edge_litert")

SIZE = 96
TINY = ["--preset", "smoke", "--no-progress", "--logger", "none", "--set", f"data.image_size={SIZE}"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    from byel.synth.generate import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, per_class=6, size=SIZE, seed=0, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def fused(faces, tmp_path_factory):
    """A fused fine-tune from scratch (no stage 1) with its held-out split file."""
    out = tmp_path_factory.mktemp("ft-fused")
    assert main(["finetune", "--data", str(faces), "--out", str(out), "--head", "fused", *TINY]) == 0
    return out


def test_fused_checkpoint_holds_the_geometry_head_and_the_grid_best_weight(fused, faces):
    from byel.config import load_config
    from byel.data.sources import load
    from byel.data.split import holdout_split
    from byel import classifier
    from byel.metrics import scores

    ckpt = torch.load(fused / "checkpoints" / "best.ckpt", weights_only=True)
    sd, meta = ckpt["state_dict"], ckpt["byel"]
    assert {"geometry.mean", "geometry.std", "geometry.linear.weight", "fusion_weight"} <= sd.keys()
    assert meta["head"] == "fused" and meta["face_geometry"]["sha256"].startswith("64184e22")
    assert sd["geometry.std"].min() > 0 and sd["geometry.linear.weight"].abs().sum() > 0  # fitted
    rec = meta["fusion"]
    assert rec["chosen_on"] == "synthetic held-out split" and float(sd["fusion_weight"]) == pytest.approx(rec["weight"])
    assert set(rec["macro_f1_by_weight"]) == {f"{w / 10:.1f}" for w in range(11)}
    # recomputed on the split the CLI held out (the images fine-tuning did not train on)
    data = load(f"imagefolder:{faces}", SIZE, progress=False)
    _, va, _ = holdout_split(data, load_config("smoke").data.val_fraction, 0)
    model = classifier.load(fused / "checkpoints" / "best.ckpt")
    images, labels = data.images[va], data.labels[va]
    geo = classifier.measure(model, images)
    assert geo.found.mean() > 0.8  # 96 px procedural faces: a mesh on (nearly) all
    pixels = classifier.predict_probs(model, images)
    grid = [scores(classifier.fuse(pixels, geo.probs, w / 10), labels)["macro_f1"] for w in range(11)]
    assert rec["weight"] == int(np.argmax(grid)) / 10
    assert [round(f, 6) for f in grid] == list(rec["macro_f1_by_weight"].values())


def test_evaluate_reports_tier_b_detection_rate_and_pixels_only(fused, faces, tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(fused / "checkpoints" / "best.ckpt"), "--data", str(faces),
                 "--report", str(report), "--adapt-bn", "--no-progress"]) == 0
    r = json.loads(report.read_text())
    g = r["tier"]["face_geometry"]
    assert r["tier"]["name"] == "B" and g["head"] == "fused" and 0.8 < g["detection_rate"] <= 1
    assert g["n_images"] == r["n_images"] == 36 and g["fusion_weight"] in [w / 10 for w in range(11)]
    assert r["pixels_only"]["tier"]["name"] == "A" and "macro_f1" in r["pixels_only"]
    assert r["adabn"]["tier"]["name"] == "B+C" and r["adabn"]["pixels_only"]["tier"]["name"] == "C"
    # the geometry head alone (the CNN where no mesh): tier B, weight 1
    for part, name in ((r, "B"), (r["adabn"], "B+C")):
        g1 = part["geometry_only"]["tier"]
        assert g1["name"] == name and (g1["face_geometry"]["head"], g1["face_geometry"]["fusion_weight"]) == ("geometry", 1.0)
    if g["fusion_weight"] == 1.0:
        assert r["geometry_only"]["macro_f1"] == r["macro_f1"]
    out = capsys.readouterr().out
    assert "pixels only" in out and "geometry only" in out and "face mesh on" in out


def test_predict_fuses_on_a_fused_checkpoint(fused, faces, tmp_path):
    import byel
    from byel.data.sources import load
    from byel import classifier

    data = load(f"imagefolder:{faces}", SIZE, progress=False)
    crops = data.images[::6]
    ckpt = fused / "checkpoints" / "best.ckpt"
    got = byel.load(ckpt, detect=False, mirror=False).predict(list(crops))
    probs = np.array([[f[0].probabilities[c] for c in f.classes] for f in got])
    model = classifier.load(ckpt)
    want = classifier.measure(model, crops).fuse(classifier.predict_probs(model, crops))
    np.testing.assert_allclose(probs, want, atol=1e-5)
    csv, folder = tmp_path / "p.csv", tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(crops[0], cv2.COLOR_RGB2BGR))
    assert main(["predict", str(folder), "--checkpoint", str(ckpt), "--no-detect", "--out", str(csv),
                 "--no-progress"]) == 0
    assert csv.read_text().count("\n") == 2


def test_submit_fuses_on_a_fused_checkpoint(fused, faces, tmp_path, capsys):
    """byel submit with a fused model: each frame's label is the fused prediction, and the summary
    counts the frames with a face mesh."""
    from byel.data.sources import load
    from byel import classifier
    from byel.submit import submit

    data = load(f"imagefolder:{faces}", SIZE, progress=False)
    crops = data.images[::4]
    video = tmp_path / "frames" / "video1"
    video.mkdir(parents=True)
    for k, img in enumerate(crops, 1):
        cv2.imwrite(str(video / f"{k:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    ckpt = fused / "checkpoints" / "best.ckpt"
    r = submit(ckpt, tmp_path / "frames", tmp_path / "sub", batch_size=4, progress=False)
    model = classifier.load(ckpt)
    geo = classifier.measure(model, crops, cache=False)
    want = geo.fuse(classifier.predict_probs(model, crops)).argmax(1)
    assert (tmp_path / "sub" / "video1.txt").read_text().splitlines()[1:] == [str(int(v)) for v in want]
    g = r["face_geometry"]
    assert g["head"] == "fused" and g["n_frames"] == len(crops) and g["n_mesh"] == int(geo.found.sum()) > 0
    assert main(["submit", "--checkpoint", str(ckpt), "--frames", str(tmp_path / "frames"), "--out",
                 str(tmp_path / "sub2"), "--no-progress"]) == 0
    assert f"face mesh found on {g['n_mesh']} of {len(crops)} frames" in capsys.readouterr().out


def test_pixels_default_is_unchanged(faces, tmp_path):
    out = tmp_path / "ft"
    assert main(["finetune", "--data", str(faces), "--out", str(out), *TINY]) == 0
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert not [k for k in ckpt["state_dict"] if k.startswith("geometry.") or k == "fusion_weight"]
    assert not {"head", "face_geometry", "fusion"} & ckpt["byel"].keys()
    assert ckpt["byel"]["config"]["finetune"]["head"] == "pixels"
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(out / "checkpoints" / "best.ckpt"), "--data", str(faces),
                 "--report", str(report), "--no-progress"]) == 0
    r = json.loads(report.read_text())
    assert r["tier"]["name"] == "A" and r["tier"]["face_geometry"] is None and "pixels_only" not in r


def test_head_choice_is_checked(faces, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["finetune", "--data", str(faces), "--out", str(tmp_path / "x"), "--head", "mesh", *TINY])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert main(["finetune", "--data", str(faces), "--out", str(tmp_path / "y"), *TINY,
                 "--set", "finetune.head=both"]) == 2
