"""Stage 1 → stage 2 → evaluation through the CLI, on tiny data with the `smoke` preset."""

import json

import numpy as np
import pytest
import torch

from byel.cli import main
from byel.methods import METHODS
from conftest import SMOKE as TINY
from conftest import write_class_folders


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    """A small labelled 'synthetic' folder: 8 images per class with class-dependent brightness."""
    return write_class_folders(tmp_path_factory.mktemp("synth"), 8)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_pretrains_and_finetunes(tmp_path, synth_dir, fer_sample, method, monkeypatch):
    import byel.train

    start = {}

    class Spy(byel.train.FineTune):  # records the backbone fine-tuning starts from
        def on_fit_start(self):
            start.update({k: v.clone() for k, v in self.backbone.state_dict().items()})

    monkeypatch.setattr(byel.train, "FineTune", Spy)
    pre, ft = tmp_path / "pre", tmp_path / "ft"
    assert main(["pretrain", "--data", str(synth_dir), "--out", str(pre), "--method", method, *TINY]) == 0
    ckpt = torch.load(pre / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["byel"]["method"] == method and ckpt["global_step"] == 2  # 48 images, 42 after the held-out split / batch 16
    assert (pre / "config.yaml").exists()
    assert main(["finetune", "--checkpoint", str(pre / "checkpoints" / "last.ckpt"), "--data", str(synth_dir),
                 "--out", str(ft), *TINY]) == 0
    # fine-tuning started from exactly the stage-1 online backbone (weights and BatchNorm
    # statistics), not the EMA target, and then trained it
    weights = ckpt["state_dict"]
    online = {k[len("backbone."):]: v for k, v in weights.items() if k.startswith("backbone.")}
    assert start.keys() == online.keys() and all(torch.equal(start[k], online[k]) for k in online)
    if method != "supervised":
        assert not torch.equal(start["stem.0.weight"], weights["target_backbone.stem.0.weight"])
    best = torch.load(ft / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert not torch.equal(best["backbone.stem.0.weight"], online["stem.0.weight"])


def test_evaluate_report_and_skipped_classes(tmp_path, smoke_model, fer_sample, monkeypatch):
    import byel.evaluate
    from byel.adapt import adapt_batchnorm
    from byel.data.sources import load
    from byel import classifier

    report = tmp_path / "eval" / "real.json"
    best = smoke_model.finetuned
    seen = []  # the images AdaBN adapts on
    monkeypatch.setattr(byel.evaluate, "adapt_batchnorm",
                        lambda model, images, *a, **k: seen.append(images) or adapt_batchnorm(model, images, *a, **k))
    rc = main(["evaluate", "--checkpoint", str(best), "--data", str(fer_sample),
               "--report", str(report), "--adapt-bn", "--no-progress"])
    assert rc == 0
    r = json.loads(report.read_text())
    for key in ("macro_f1", "accuracy", "per_class_f1", "n_images", "skipped", "checkpoint", "data", "metric_definition"):
        assert key in r
    assert r["n_images"] == 120 and r["skipped"] == {"neutral": 20}
    assert set(r["per_class_f1"]) == {"anger", "disgust", "fear", "happiness", "sadness", "surprise"}
    assert report.with_suffix(".png").stat().st_size > 10_000
    # The numbers are the model's: predict again and score with scikit-learn.
    skm = pytest.importorskip("sklearn.metrics")
    model = classifier.load(best)
    test = load(str(fer_sample), model.cfg.data.image_size, progress=False)
    for name, m in (("plain", model), ("adabn", adapt_batchnorm(model, test.images))):
        s = r if name == "plain" else r["adabn"]
        pred = classifier.predict_probs(m, test.images).argmax(1)
        assert s["confusion_matrix"] == skm.confusion_matrix(test.labels, pred, labels=range(6)).tolist()
        assert s["macro_f1"] == pytest.approx(
            skm.f1_score(test.labels, pred, labels=range(6), average="macro", zero_division=0), abs=1e-9)
        assert s["accuracy"] == pytest.approx(skm.accuracy_score(test.labels, pred), abs=1e-9)
    # By default AdaBN adapts on exactly the scored images (not the 20 skipped neutral ones).
    (images,) = seen
    assert np.array_equal(images, test.images)
    assert {k: r["adabn"][k] for k in ("data", "n_adapt_images", "transductive")} == \
        {"data": "evaluated", "n_adapt_images": 120, "transductive": True}
    # An explicit spec: its unlabelled images (here the whole folder, neutral included).
    assert main(["evaluate", "--checkpoint", str(best), "--data", str(fer_sample), "--report", str(report),
          "--adapt-bn", str(fer_sample), "--no-progress"]) == 0
    r = json.loads(report.read_text())
    assert len(seen[1]) == r["adabn"]["n_adapt_images"] == 140
    assert r["adabn"]["data"] == str(fer_sample) and r["adabn"]["transductive"] is True


def test_resume_continues_and_refuses_another_model(tmp_path, synth_dir, capsys):
    out = tmp_path / "pre"
    assert main(["pretrain", "--data", str(synth_dir), "--out", str(out), *TINY]) == 0
    assert main(["pretrain", "--data", str(synth_dir), "--out", str(out), "--epochs", "2", "--resume", *TINY]) == 0
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    capsys.readouterr()
    assert main(["pretrain", "--data", str(synth_dir), "--out", str(out), "--epochs", "3", "--resume",
                 "--backbone", "resnet18", *TINY]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error:" in line]
    assert line.startswith(f"byel: error: cannot resume from {out / 'checkpoints' / 'last.ckpt'}: ") and \
        "model.backbone 'smallnet' → 'resnet18'" in line and "Traceback" not in err, err


def test_training_on_a_folder_with_corrupt_files_lists_them(tmp_path, imagefolder_tree, capsys):
    out = tmp_path / "pre"
    assert main(["pretrain", "--data", str(imagefolder_tree), "--out", str(out), *TINY, "--batch-size", "4"]) == 0
    err = capsys.readouterr().err
    assert "unusable file(s) skipped" in err and "neutral" in err
    log = (out / "data-problems.txt").read_text()
    for name in ("garbage.jpg", "truncated.jpg", "empty.png", "notes.txt"):
        assert name in log
    assert (out / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_same_seed_same_model_and_metrics(tmp_path, synth_dir, fer_sample):
    """Reproducibility on CPU: the same seed and config give identical weights and scores; the
    report records the seed, the versions and the config hash."""
    reports = []
    for run in ("a", "b"):
        pre, ft = tmp_path / run / "pre", tmp_path / run / "ft"
        assert main(["pretrain", "--data", str(synth_dir), "--out", str(pre), "--seed", "7", *TINY]) == 0
        assert main(["finetune", "--checkpoint", str(pre / "checkpoints" / "last.ckpt"), "--data", str(synth_dir),
                     "--out", str(ft), "--seed", "7", *TINY]) == 0
        report = tmp_path / run / "r.json"
        assert main(["evaluate", "--checkpoint", str(ft / "checkpoints" / "best.ckpt"), "--data", str(fer_sample),
                     "--report", str(report), "--no-progress"]) == 0
        reports.append(json.loads(report.read_text()))
    a = torch.load(tmp_path / "a" / "ft" / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "ft" / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = reports
    assert ra["macro_f1"] == rb["macro_f1"] and ra["per_class_f1"] == rb["per_class_f1"]
    prov = ra["provenance"]
    assert prov["seed"] == 7 and prov["config_digest"] == rb["provenance"]["config_digest"]
    assert prov["torch_version"] == torch.__version__ and prov["byel_version"]
