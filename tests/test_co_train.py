"""`byel adapt --method co-train`: a fused head's pixel CNN and face-geometry head label real
faces for each other. Both heads change, the fusion weight stays, no real label is read, a
pixels-only model or a collapsed view stops with one line, the record says tier B+C, and the
checkpoint is one that evaluate and predict load."""

import csv
import json

import numpy as np
import pytest
import torch

from byel.cli import main
from conftest import FER_SAMPLE

pytest.importorskip("ai_edge_litert")

SIZE = 48  # the landmarker finds a mesh on most FER faces and procedural faces at 48 px
TINY = ["--preset", "smoke", "--no-progress", "--logger", "none", "--set", f"data.image_size={SIZE}"]
PER_CLASS = 8  # real faces per class: 48 unlabelled faces


def _write_csv(path, images: np.ndarray, emotions) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerows([e, " ".join(map(str, im[..., 0].ravel())), "PublicTest"] for e, im in zip(emotions, images))


def _adapt(world, data, out, *more) -> int:
    return main(["adapt", "--checkpoint", str(world["ckpt"]), "--data", str(data), "--method", "co-train",
                 "--out", str(out), "--synthetic", str(world["synth"]), "--max-class-share", "1", "--no-progress", *more])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A fused fine-tune from scratch on procedural faces, FER-style CSVs of the same real faces
    with their labels and with the labels shuffled, and a co-train run on each."""
    from byel.data.sources import load
    from byel.synth.generate import generate

    root = tmp_path_factory.mktemp("co-train")
    with pytest.MonkeyPatch.context() as mp:  # one private data cache (face meshes) for the module
        mp.setenv("BYEL_CACHE_DIR", str(root / "cache"))
        synth = root / "synth"
        generate(synth, per_class=PER_CLASS, size=SIZE, seed=0, workers=1, progress=False)
        ft = root / "ft"
        assert main(["finetune", "--data", str(synth), "--out", str(ft), "--head", "fused", *TINY]) == 0
        real = load(str(FER_SAMPLE), SIZE, progress=False)
        keep = np.concatenate([np.flatnonzero(real.labels == c)[:PER_CLASS] for c in range(6)])
        images, labels = real.images[keep], real.labels[keep]
        csvs = {"true": root / "true.csv", "shuffled": root / "shuffled.csv"}
        _write_csv(csvs["true"], images, labels)
        _write_csv(csvs["shuffled"], images, np.random.default_rng(0).permutation(labels))
        world = {"root": root, "synth": synth, "ckpt": ft / "checkpoints" / "best.ckpt", "csvs": csvs}
        for name, path in csvs.items():
            assert _adapt(world, path, root / name) == 0
    return world


def _state(out):
    return torch.load(out / "checkpoints" / "adapted.ckpt", weights_only=True)


def test_both_heads_learn_the_fusion_weight_stays(world):
    src, new = torch.load(world["ckpt"], weights_only=True), _state(world["root"] / "true")
    a, b = src["state_dict"], new["state_dict"]
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert any(k.startswith("backbone.") for k in changed) and any(k.startswith("head.") for k in changed)
    assert {"geometry.linear.weight", "geometry.mean"} <= changed  # refitted, on more faces
    assert torch.equal(a["fusion_weight"], b["fusion_weight"]) and new["byel"]["fusion"] == src["byel"]["fusion"]


def test_no_real_label_is_read(world):
    a, b = _state(world["root"] / "true")["state_dict"], _state(world["root"] / "shuffled")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_record_rounds_and_tier(world):
    r = json.loads((world["root"] / "true" / "adapt.json").read_text())
    assert r["method"] == "co-train" and r["data"] == str(world["csvs"]["true"]) and r["n_images"] == 6 * PER_CLASS
    assert r["n_synthetic"] == 6 * PER_CLASS and r["options"]["rounds"] == 2
    g = r["face_geometry"]
    assert g["model"].startswith("MediaPipe Face Landmarker") and g["head"] == "fused"
    assert 0.6 * r["n_images"] < g["n_mesh"] <= r["n_images"]
    assert r["tier"]["name"] == "B+C" and r["tier"]["unlabelled_real"][0]["method"] == "co-train"
    assert r["tier"]["unlabelled_real"][0]["face_geometry"]["n_mesh"] == g["n_mesh"]
    assert [x["round"] for x in r["rounds"]] == [0, 1, 2]
    for x in r["rounds"]:
        assert sum(x["histogram"].values()) == r["n_images"]  # the pixel view's predictions
        assert sum(x["geometry_histogram"].values()) == x["n_mesh"] == g["n_mesh"]
        assert 0 <= x["agreement"] <= 1
    for x in r["rounds"][1:]:
        assert set(x["learned"]) == {"pixels", "geometry"} and r["views"] == ["pixels", "geometry"]
        for view, got in x["learned"].items():  # class-balanced: at most k a class
            assert 0 < got["n"] == sum(got["histogram"].values())
            assert max(got["histogram"].values()) <= got["k_per_class"] == x["k_per_class"]
        assert x["pseudo_agreement"]["n_same"] <= x["pseudo_agreement"]["n_both"]
    assert r["rounds"][2]["k_per_class"] >= r["rounds"][1]["k_per_class"]
    meta = _state(world["root"] / "true")["byel"]
    (a,) = meta["adaptations"]
    assert a["method"] == "co-train" and a["n_images"] == 6 * PER_CLASS and a["fingerprint"].shape == (6 * PER_CLASS,)


def test_evaluate_and_predict_load_it(world, tmp_path):
    adapted = world["root"] / "true" / "checkpoints" / "adapted.ckpt"
    report = tmp_path / "ev.json"
    assert main(["evaluate", "--checkpoint", str(adapted), "--data", str(world["csvs"]["true"]), "--report",
                 str(report), "--no-progress"]) == 0
    r = json.loads(report.read_text())
    assert r["tier"]["name"] == "B+C" and r["tier"]["face_geometry"]["head"] == "fused"
    assert r["tier"]["unlabelled_real"][0]["transductive"] is True
    assert r["pixels_only"]["tier"]["name"] == "B+C"  # the CNN alone learned the geometry view's labels too
    from byel.data.sources import decode_image
    from byel import classifier

    faces = sorted((FER_SAMPLE / "happy").glob("*"))[:2]
    out = tmp_path / "p.csv"
    assert main(["predict", *map(str, faces), "--checkpoint", str(adapted), "--no-detect", "--no-mirror", "--out", str(out),
                 "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out)))
    model = classifier.load(adapted)
    crops = np.stack([decode_image(str(f), SIZE) for f in faces])
    want = classifier.measure(model, crops).fuse(classifier.predict_probs(model, crops))
    got = np.array([[float(row[f"p_{c}"]) for c in r["classes"]] for row in rows])
    assert np.allclose(got, want, atol=1e-4)


def _one_error(capsys, argv) -> str:
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert rc == 2 and len(errors) == 1 and errors[0].startswith("byel: error: ") and "Traceback" not in err, err
    return errors[0]


def _edited(world, tmp_path, edit) -> str:
    from byel.checkpoint import atomic_torch_save, read_checkpoint

    ckpt = read_checkpoint(world["ckpt"])
    edit(ckpt)
    path = tmp_path / "edited.ckpt"
    atomic_torch_save(ckpt, path)
    return str(path)


def _pixels_only(ckpt):
    ckpt["byel"]["config"]["finetune"]["head"] = "pixels"
    for k in ("head", "face_geometry", "fusion"):
        ckpt["byel"].pop(k, None)
    for k in [k for k in ckpt["state_dict"] if k.startswith("geometry.") or k == "fusion_weight"]:
        del ckpt["state_dict"][k]


def test_pixels_only_or_no_synthetic_is_one_line(world, tmp_path, capsys):
    pixels = _edited(world, tmp_path, _pixels_only)
    argv = ["adapt", "--data", str(world["csvs"]["true"]), "--method", "co-train", "--out", str(tmp_path / "a"),
            "--synthetic", str(world["synth"]), "--no-progress"]
    err = _one_error(capsys, [*argv, "--checkpoint", pixels])
    assert err == "byel: error: co-train needs a geometry or fused head: fine-tune with --head fused"
    err = _one_error(capsys, [*argv[:-3], "--no-progress", "--checkpoint", str(world["ckpt"])])
    assert "co-train mixes the pseudo-labelled images" in err and "give --synthetic SPEC" in err
    assert not (tmp_path / "a" / "checkpoints").exists()
    # the ablation refuses co-train on pixels-only models before training anything
    err = _one_error(capsys, ["benchmark", "ablation", "--out", str(tmp_path / "ab"), "--eval", str(FER_SAMPLE),
                              "--preset", "smoke", "--seeds", "1", "--adapt", "co-train", "--no-progress"])
    assert "co-train needs a geometry or fused head" in err and "finetune.head=fused" in err
    assert not (tmp_path / "ab").exists()


@pytest.mark.parametrize("view,key", [("the geometry view's predictions", "geometry.linear.bias"),
                                      ("stopped: the predictions", "head.1.bias")])
def test_collapse_guard_stops_with_one_line(world, tmp_path, capsys, view, key):
    def degenerate(ckpt):  # one class wins everywhere in one view
        ckpt["state_dict"][key][0] = 1e4

    path = _edited(world, tmp_path, degenerate)
    out = tmp_path / "out"
    err = _one_error(capsys, ["adapt", "--checkpoint", path, "--data", str(world["csvs"]["true"]), "--method",
                              "co-train", "--out", str(out), "--synthetic", str(world["synth"]), "--no-progress",
                              "--max-class-share", "0.99"])
    assert "collapsed onto one class (anger:" in err and view in err
    assert not (out / "checkpoints" / "adapted.ckpt").exists()


@pytest.fixture(scope="module")
def third(world, tmp_path_factory):
    """The same synthetic faces fine-tuned with the activation head (finetune.no_mesh=activations),
    co-trained with its three views (the default) and with two (--views 2)."""
    root = tmp_path_factory.mktemp("co-train-3")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BYEL_CACHE_DIR", str(world["root"] / "cache"))
        ft = root / "ft"
        assert main(["finetune", "--data", str(world["synth"]), "--out", str(ft), "--head", "fused", *TINY,
                     "--set", "finetune.no_mesh=activations"]) == 0
        third = {"root": root, "ckpt": ft / "checkpoints" / "best.ckpt", "synth": world["synth"]}
        for name, more in (("three", []), ("two", ["--views", "2"])):
            assert _adapt(third, world["csvs"]["true"], root / name, *more) == 0
    return third


def test_three_views_each_learn_from_the_other_two(third):
    src = torch.load(third["ckpt"], weights_only=True)["state_dict"]
    r = json.loads((third["root"] / "three" / "adapt.json").read_text())
    assert r["views"] == ["pixels", "geometry", "activations"] and r["tier"]["name"] == "B+C"
    n, n_mesh = r["n_images"], r["face_geometry"]["n_mesh"]
    for x in r["rounds"]:
        assert sum(x["activations_histogram"].values()) == n  # the activation view reads every face
    for x in r["rounds"][1:]:
        got = x["learned"]
        assert set(got) == {"pixels", "geometry", "activations"}
        # the pixel CNN and the activation head learn any face (another view reads each); the
        # geometry head only faces with a mesh
        assert got["pixels"]["k_per_class"] == got["activations"]["k_per_class"] >= got["geometry"]["k_per_class"]
        assert got["geometry"]["n"] <= n_mesh and got["pixels"]["n"] <= n
        for rec in got.values():
            assert 0 < rec["n"] == sum(rec["histogram"].values()) and max(rec["histogram"].values()) <= rec["k_per_class"]
    three = _state(third["root"] / "three")["state_dict"]
    two = _state(third["root"] / "two")["state_dict"]
    assert not torch.equal(three["activation_head.linear.weight"], src["activation_head.linear.weight"])
    # two views: the activation head stays as fine-tuned; its record names the two views
    assert torch.equal(two["activation_head.linear.weight"], src["activation_head.linear.weight"])
    assert json.loads((third["root"] / "two" / "adapt.json").read_text())["views"] == ["pixels", "geometry"]


def test_three_views_on_a_model_without_the_third_is_one_line(world, tmp_path, capsys):
    err = _one_error(capsys, ["adapt", "--checkpoint", str(world["ckpt"]), "--data", str(world["csvs"]["true"]),
                              "--method", "co-train", "--out", str(tmp_path / "a"), "--synthetic", str(world["synth"]),
                              "--views", "3", "--no-progress"])
    assert "--views 3 needs a model with an activation head" in err and "finetune.no_mesh=activations" in err
    assert not (tmp_path / "a").exists()
