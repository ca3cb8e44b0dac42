"""`byel adapt` (byel.adapt): each method changes only what it should, reads no label, stops on a
collapse, and writes a fine-tuned checkpoint that evaluate, predict and export use unchanged."""

import csv
import json

import numpy as np
import pytest
import torch

from byel import classifier
from byel.adapt.common import Options
from byel.adapt.run import adapt_model
from byel.cli import main
from byel.data.sources import load
from conftest import write_image

METHODS = ("adabn", "tent", "shot-im", "self-train")


@pytest.fixture(scope="module")
def world(tmp_path_factory, smoke_model):
    """The session's fine-tuned smoke model (read only: every output goes under `root`), its
    synthetic data, and unlabelled FER-style CSVs: the same pixels with their labels, with the
    labels shuffled, and with no valid label at all."""
    root = tmp_path_factory.mktemp("adapt")
    rng = np.random.default_rng(0)
    n = 48
    labels = np.arange(n) % 6
    base = rng.integers(0, 120, (n, 1)) + np.linspace(0, 100, 48 * 48)[None, :] * rng.random((n, 1))
    pixels = [" ".join(str(int(v) % 256) for v in row) for row in base + rng.integers(0, 30, (n, 48 * 48))]
    csvs = {}
    for name, emotions in (("true", labels), ("shuffled", rng.permutation(labels)), ("invalid", ["x"] * n)):
        path = root / f"faces-{name}.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["emotion", "pixels", "Usage"])
            w.writerows([e, p, "PublicTest"] for e, p in zip(emotions, pixels))
        csvs[name] = path
    (root / "same").mkdir()
    for i in range(8):  # eight identical faces: every prediction is the same class
        write_image(root / "same" / f"{i}.png", 100)
    return {"root": root, "synth": smoke_model.data, "pre": smoke_model.pretrained,
            "ckpt": smoke_model.finetuned, "csvs": csvs, "same": root / "same"}


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("method", METHODS)
def test_each_method_changes_only_what_it_should(world, fer_sample, method):
    model = classifier.load(world["ckpt"])
    before, buffers = _params(model), {k: v.clone() for k, v in model.state_dict().items()}
    images = load(str(fer_sample), model.cfg.data.image_size, unlabelled=True, progress=False).images
    syn = load(str(world["synth"]), model.cfg.data.image_size, progress=False)
    adapted, record = adapt_model(model, images, method, Options(max_class_share=1.0), synthetic=(syn.images, syn.labels))
    after = _params(adapted)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    bn_affine = {k for k, m in adapted.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                 for k in (f"{k}.weight", f"{k}.bias")}
    if method == "adabn":
        assert changed == set()
    elif method == "tent":
        assert changed and changed <= bn_affine  # BatchNorm γ, β only
    elif method == "shot-im":
        assert changed - bn_affine and all(k.startswith("backbone.") for k in changed)  # head frozen
        assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("head."))
    else:  # self-train fine-tunes the whole network
        assert any(k.startswith("head.") for k in changed) and any(k.startswith("backbone.") for k in changed)
    # every method ends with the AdaBN statistics of its own weights on the images
    from byel.adapt import adapt_batchnorm

    ref = adapt_batchnorm(adapted, images)
    for k, v in ref.state_dict().items():
        if k.endswith(("running_mean", "running_var")):
            assert torch.allclose(adapted.state_dict()[k], v, atol=1e-5), k
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())  # the input model is untouched
    assert [r["round"] for r in record["rounds"]] == list(range(len(record["rounds"])))
    assert all(sum(r["histogram"].values()) == len(images) for r in record["rounds"])
    assert len(record["rounds"]) == {"adabn": 1, "tent": 2, "shot-im": 3, "self-train": 3}[method]


@pytest.mark.parametrize("method", METHODS)
def test_no_label_is_read(world, method):
    """Adapting on the same images with shuffled labels, or with no valid label at all, gives
    the very same checkpoint."""
    states = {}
    for name, path in world["csvs"].items():
        out = world["root"] / f"labels-{method}-{name}"
        argv = ["adapt", "--checkpoint", str(world["ckpt"]), "--data", str(path), "--method", method,
                "--out", str(out), "--max-class-share", "1", "--no-progress"]
        assert main(argv + (["--synthetic", str(world["synth"])] if method == "self-train" else [])) == 0
        ckpt = torch.load(out / "checkpoints" / "adapted.ckpt", weights_only=True)
        states[name] = ckpt["state_dict"]
        (a,) = ckpt["byel"]["adaptations"]
        assert a["n_images"] == 48 and a["method"] == method
    ref = states["true"]
    for name in ("shuffled", "invalid"):
        assert states[name].keys() == ref.keys() and all(torch.equal(states[name][k], ref[k]) for k in ref), name
    if method != "adabn":  # and it did adapt
        assert not all(torch.equal(ref[k], v) for k, v in torch.load(world["ckpt"], weights_only=True)["state_dict"].items())


@pytest.mark.parametrize("method", METHODS)
def test_collapse_guard_stops_with_one_line(world, method, capsys):
    out = world["root"] / f"collapse-{method}"
    argv = ["adapt", "--checkpoint", str(world["ckpt"]), "--data", str(world["same"]), "--method", method,
            "--out", str(out), "--no-progress", "--synthetic", str(world["synth"])]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("byel: error: ") and "collapsed onto one class" in errors[0]
    assert "8 of 8 images" in errors[0] and "Traceback" not in err
    assert "predicted anger" in err  # the histogram of the round, on stderr
    assert not (out / "checkpoints" / "adapted.ckpt").exists()


@pytest.mark.slow
def test_adapted_checkpoint_round_trips(world, fer_sample, tmp_path, capsys):
    out = tmp_path / "tent"
    assert main(["adapt", "--checkpoint", str(world["ckpt"]), "--data", str(fer_sample), "--method", "tent",
                 "--out", str(out), "--max-class-share", "1", "--no-progress"]) == 0
    adapted = out / "checkpoints" / "adapted.ckpt"
    report = json.loads((out / "adapt.json").read_text())
    assert report["method"] == "tent" and report["n_images"] == 140 and report["tier"]["name"] == "C"
    assert [r["round"] for r in report["rounds"]] == [0, 1] and report["options"]["lr"] == 1e-3
    meta = torch.load(adapted, weights_only=True)["byel"]
    assert meta["kind"] == "finetune" and meta["adaptations"][0]["fingerprint"].shape == (140,)

    # evaluate: tier C, transductive (the evaluated images are among those adapted on)
    assert main(["evaluate", "--checkpoint", str(adapted), "--data", str(fer_sample), "--report",
                 str(tmp_path / "ev.json"), "--adapt-bn", "--no-progress"]) == 0
    r = json.loads((tmp_path / "ev.json").read_text())
    assert r["tier"]["name"] == "C" and r["tier"]["face_geometry"] is None
    assert r["tier"]["unlabelled_real"] == [{"stage": "adapt", "method": "tent", "data": str(fer_sample),
                                             "n_images": 140, "transductive": True, "n_evaluated_among": 120}]
    assert r["adabn"]["tier"]["name"] == "C" and len(r["adabn"]["tier"]["unlabelled_real"]) == 2
    model = classifier.load(adapted)
    test = load(str(fer_sample), model.cfg.data.image_size, progress=False)
    assert r["macro_f1"] == pytest.approx(
        __import__("byel.metrics", fromlist=["scores"]).scores(classifier.predict_probs(model, test.images), test.labels)["macro_f1"])
    # the unadapted model: tier A; its AdaBN score: tier C
    assert main(["evaluate", "--checkpoint", str(world["ckpt"]), "--data", str(fer_sample), "--report",
                 str(tmp_path / "ev0.json"), "--adapt-bn", "--no-progress"]) == 0
    r0 = json.loads((tmp_path / "ev0.json").read_text())
    assert r0["tier"] == {"name": "A", "label": "tier A (synthetic pixels only)", "unlabelled_real": [],
                          "face_geometry": None}
    assert r0["adabn"]["tier"]["name"] == "C" and r0["adabn"]["tier"]["unlabelled_real"][0]["transductive"] is True
    # adapted on other images: not transductive
    assert main(["evaluate", "--checkpoint", str(adapted), "--data", str(world["synth"]), "--report",
                 str(tmp_path / "ev2.json"), "--no-progress"]) == 0
    other = json.loads((tmp_path / "ev2.json").read_text())["tier"]["unlabelled_real"][0]
    assert other["transductive"] is False and other["n_evaluated_among"] == 0

    # predict --no-detect: the adapted model's probabilities
    faces = sorted((fer_sample / "happy").glob("*"))[:3]
    assert main(["predict", *map(str, faces), "--checkpoint", str(adapted), "--no-detect", "--no-mirror", "--out",
                 str(tmp_path / "p.csv"), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    from byel.data.sources import decode_image

    probs = classifier.predict_probs(model, np.stack([decode_image(str(f), model.cfg.data.image_size) for f in faces]))
    got = np.array([[float(row[f"p_{c}"]) for c in r["classes"]] for row in rows])
    assert np.allclose(got, probs, atol=1e-4)
    # export
    assert main(["export", "--checkpoint", str(adapted), "--out", str(tmp_path / "m.pt")]) == 0
    assert "max |exported − PyTorch|" in capsys.readouterr().out
    # and adapting it again records both adaptations, in order
    assert main(["adapt", "--checkpoint", str(adapted), "--data", str(world["synth"]), "--method", "adabn",
                 "--out", str(tmp_path / "twice"), "--max-class-share", "1", "--no-progress"]) == 0
    twice = torch.load(tmp_path / "twice" / "checkpoints" / "adapted.ckpt", weights_only=True)["byel"]["adaptations"]
    assert [a["method"] for a in twice] == ["tent", "adabn"]


@pytest.mark.parametrize("argv,needle", [
    (["--data", "{root}/nope", "--method", "tent"], "not found"),
    (["--data", "{root}/same", "--method", "tent", "--checkpoint", "{pre}"], "is a pretrain checkpoint"),
    (["--data", "{root}/same", "--method", "self-train"], "give --synthetic SPEC"),
    (["--data", "{root}/same", "--method", "bogus"], "unknown adaptation method 'bogus'; choose one of: adabn, tent, shot-im, self-train, co-train"),
    (["--data", "{root}/same", "--method", "tent", "--lr", "0"], "--lr"),
    (["--data", "{root}/same", "--method", "tent", "--out", "{root}/adapt-twice"], "already holds a run"),
])
def test_bad_input_is_one_line(world, argv, needle, capsys):
    twice = world["root"] / "adapt-twice" / "checkpoints"
    twice.mkdir(parents=True, exist_ok=True)
    (twice / "adapted.ckpt").write_bytes(b"an earlier adaptation")
    fill = {"root": world["root"], "pre": world["pre"]}
    argv = [a.format(**fill) for a in argv]
    if "--checkpoint" not in argv:
        argv += ["--checkpoint", str(world["ckpt"])]
    if "--out" not in argv:
        argv += ["--out", str(world["root"] / "bad")]
    capsys.readouterr()
    try:
        rc = main(["adapt", *argv, "--no-progress"])
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert rc == 2 and len(errors) == 1 and errors[0].startswith("byel") and "Traceback" not in err, err
    assert needle in errors[0], errors[0]
    assert not (world["root"] / "bad" / "checkpoints").exists()
    assert (twice / "adapted.ckpt").read_bytes() == b"an earlier adaptation"
