"""The seven-class mode (issue #20 item 3): the six emotions and neutral, chosen at training time
(data.classes / --classes 7), generated, trained, read, scored and predicted; 6-class runs and
models unchanged."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from byel.checkpoint import atomic_torch_save, load_checkpoint, read_checkpoint
from byel.classes import CLASSES, class_names
from byel.cli import main
from byel.config import load_config
from byel.data.sources import load
from byel.errors import CheckpointError, ConfigError
from byel.synth.generate import generate
from conftest import FER_SAMPLE, SMOKE, make_checkpoints, pretrain_and_finetune, write_image

SEVEN = [*CLASSES, "neutral"]


def test_class_names():
    assert class_names(6) == CLASSES and list(class_names(7)) == SEVEN
    with pytest.raises(ConfigError, match="6 .* or 7"):
        class_names(5)


def test_generate_seven_writes_neutral_and_keeps_the_six_byte_identical(tmp_path):
    six, seven = tmp_path / "six", tmp_path / "seven"
    generate(six, per_class=3, size=24, seed=5, progress=False)
    assert main(["generate", "--out", str(seven), "--per-class", "3", "--size", "24", "--seed", "5",
                 "--classes", "7", "--no-progress"]) == 0
    assert sorted(p.name for p in seven.iterdir() if p.is_dir()) == sorted(SEVEN)
    for c in CLASSES:
        files = sorted(p.name for p in (six / c).iterdir())
        assert files == sorted(p.name for p in (seven / c).iterdir()) and len(files) == 3
        assert all((six / c / f).read_bytes() == (seven / c / f).read_bytes() for f in files)
    with open(seven / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    neutral = [r for r in rows if r["class"] == "neutral"]
    assert len(neutral) == 3 and [r["file"] for r in rows[-3:]] == [r["file"] for r in neutral]
    assert all(float(v) == 0 for r in neutral for k, v in r.items() if k.startswith("au"))
    assert len({r["group"] for r in neutral}) == 3  # an identity of its own per image, as for the six
    with open(six / "manifest.csv", newline="") as f:
        assert list(csv.DictReader(f)) == rows[:-3]  # the six's rows unchanged
    # neutral alone (a subset by name) is the same faces as in the seven
    generate(tmp_path / "n", per_class=3, size=24, seed=5, classes=["Neutral"], progress=False)
    assert all((tmp_path / "n" / "neutral" / f.name).read_bytes() == f.read_bytes()
               for f in (seven / "neutral").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ["generate", "--out", "{tmp}/g", "--classes", "5"],
    ["pretrain", "--data", "{tmp}", "--out", "{tmp}/p", "--classes", "5"],
    ["finetune", "--data", "{tmp}", "--out", "{tmp}/f", "--classes", "5"],
    ["demo", "--out", "{tmp}/d", "--classes", "5"],
    ["benchmark", "ablation", "--out", "{tmp}/a", "--classes", "5"],
    ["pretrain", "--data", "{tmp}/data", "--out", "{tmp}/p", "--set", "data.classes=8"],  # --out beside --data
    ["generate", "--out", "{tmp}/g", "--classes", "7", "anger"],
])
def test_other_class_counts_are_one_line_errors(tmp_path, argv):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    (tmp_path / "data").mkdir()
    p = subprocess.run([sys.executable, "-m", "byel", *argv], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "classes" in p.stderr and "7" in p.stderr  # says what is accepted


def test_six_class_configs_keep_their_digest():
    """data.classes=6 leaves a config's digest (an ablation run's identity) as before the key."""
    import hashlib

    six, seven = load_config("smoke"), load_config("smoke", {"data.classes": 7})
    d = six.to_dict()
    assert d["data"].pop("classes") == 6
    assert d["pretrain"].pop("unlabelled_ratio") == 1  # the same rule (tests/test_unlabelled.py)
    assert six.digest() == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
    assert seven.digest() != six.digest()


def test_readers_keep_neutral_only_for_seven(fer_csv, affwild2_tree, imagefolder_tree):
    for spec, want in ((f"{fer_csv}:PublicTest", 1), (str(affwild2_tree), 1), (str(imagefolder_tree), 2)):
        six, seven = load(spec, 32, progress=False), load(spec, 32, progress=False, classes=7)
        assert six.skipped.get("neutral") == want and 6 not in six.labels and six.classes == CLASSES
        assert "neutral" not in seven.skipped and list(seven.classes) == SEVEN
        assert seven.counts()["neutral"] == (seven.labels == 6).sum() == want
        assert len(seven) == len(six) + want
        # the six's images and labels are those of the 6-class read
        keep = seven.labels < 6
        assert np.array_equal(seven.labels[keep], six.labels) and np.array_equal(seven.images[keep], six.images)


def _neutral_biased(root: Path, classes: int = 7) -> Path:
    """An untrained fine-tuned smoke checkpoint of `classes` classes whose last class wins."""
    ft = make_checkpoints(root, {"data.classes": classes})[1]
    ckpt = read_checkpoint(ft)
    ckpt["state_dict"]["head.1.bias"][-1] = 8.0
    atomic_torch_save(ckpt, ft)
    return ft


@pytest.mark.slow
def test_seven_class_training_evaluation_and_mismatch(tmp_path, capsys):
    synth = tmp_path / "synth"
    assert main(["generate", "--out", str(synth), "--per-class", "8", "--size", "32", "--classes", "7",
                 "--no-progress"]) == 0
    pre, ft = pretrain_and_finetune(synth, tmp_path, ("--classes", "7"))
    stage1 = torch.load(pre / "checkpoints" / "last.ckpt", weights_only=True)
    assert stage1["byel"]["classes"] == SEVEN and stage1["state_dict"]["classifier.W"].shape[1] == 7
    held = json.loads((pre / "split.json").read_text())["held_out_per_class"]
    assert list(held) == SEVEN and held["neutral"] >= 1  # the held-out split covers neutral
    best = ft / "checkpoints" / "best.ckpt"
    ckpt = load_checkpoint(best, kinds=("finetune",))
    assert ckpt["byel"]["classes"][-1] == "neutral" and ckpt["state_dict"]["head.1.weight"].shape[0] == 7
    assert ckpt["byel"]["config"]["data"]["classes"] == 7

    # a 7-class model scores the neutral folder: 140 faces, 7×7, macro-F1 over seven classes
    report = tmp_path / "eval7.json"
    assert main(["evaluate", "--checkpoint", str(best), "--data", str(FER_SAMPLE), "--report", str(report),
                 "--no-progress"]) == 0
    r = json.loads(report.read_text())
    assert r["classes"] == SEVEN and r["n_images"] == 140 and r["skipped"] == {}
    assert r["class_counts"]["neutral"] == 20 and list(r["per_class_f1"]) == SEVEN
    assert np.array(r["confusion_matrix"]).shape == (7, 7) and np.array(r["confusion_matrix"]).sum() == 140
    assert r["macro_f1"] == pytest.approx(np.mean(list(r["per_class_f1"].values())), abs=1e-12)
    assert "neut" in capsys.readouterr().out

    # a 6-class model skips it, as before
    six = make_checkpoints(tmp_path / "six")[1]
    report6 = tmp_path / "eval6.json"
    assert main(["evaluate", "--checkpoint", str(six), "--data", str(FER_SAMPLE), "--report", str(report6),
                 "--no-progress"]) == 0
    r6 = json.loads(report6.read_text())
    assert r6["classes"] == list(CLASSES) and r6["n_images"] == 120 and r6["skipped"] == {"neutral": 20}
    assert np.array(r6["confusion_matrix"]).shape == (6, 6)

    # fine-tuning the 7-class stage 1 as a 6-class run: one line
    capsys.readouterr()
    assert main(["finetune", "--checkpoint", str(pre / "checkpoints" / "last.ckpt"), "--data", str(synth),
                 "--out", str(tmp_path / "ft6"), *SMOKE]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "7 classes" in err and "--classes 7" in err


def test_checkpoint_with_another_class_list_is_refused(tmp_path):
    ft = make_checkpoints(tmp_path)[1]
    ckpt = read_checkpoint(ft)
    ckpt["byel"]["classes"] = [*CLASSES, "contempt"]
    atomic_torch_save(ckpt, ft)
    with pytest.raises(CheckpointError, match="contempt"):
        load_checkpoint(ft)


def test_predict_and_api_report_neutral(tmp_path):
    import byel
    from byel.predict import predict

    ft = _neutral_biased(tmp_path)
    faces = [str(FER_SAMPLE / "neutral"), str(FER_SAMPLE / "happy")]
    out = tmp_path / "pred.csv"
    r = predict(ft, faces, out, detect=False, progress=False)
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        rows, cols = list(reader), reader.fieldnames
    assert cols[-7:] == [f"p_{c}" for c in SEVEN] and len(rows) == 40
    assert {row["predicted"] for row in rows} == {"neutral"} and r["class_counts"]["neutral"] == 40
    assert all(abs(sum(float(row[f"p_{c}"]) for c in SEVEN) - 1) < 1e-4 for row in rows)
    # --uncertain still labels low-confidence faces
    predict(ft, faces, out, detect=False, progress=False, uncertain=1.0)
    with open(out, newline="") as f:
        assert {row["predicted"] for row in csv.DictReader(f)} == {"uncertain"}

    model = byel.load(ft, detect=False)
    assert model.classes == tuple(SEVEN)
    (face,) = model.predict(str(FER_SAMPLE / "neutral" / sorted(p.name for p in (FER_SAMPLE / "neutral").iterdir())[0]))
    assert face.label == "neutral" and list(face.probabilities) == SEVEN
    assert sum(face.probabilities.values()) == pytest.approx(1, abs=1e-5)


def test_export_and_submit_follow_the_checkpoint(tmp_path):
    from byel.export import export
    from byel.submit import submit

    ft = _neutral_biased(tmp_path)
    meta = json.loads(Path(export(ft, tmp_path / "m.pt")["json"]).read_text())
    assert meta["classes"] == SEVEN and meta["output"]["shape"] == ["N", 7]
    frames = tmp_path / "frames" / "v1"
    for n in (1, 2):
        write_image(frames / f"{n:05d}.jpg", 40 * n)
    r = submit(ft, tmp_path / "frames", tmp_path / "byel", progress=False)
    assert (tmp_path / "byel" / "v1.txt").read_text().splitlines() == [",".join(SEVEN), "6", "6"]
    submit(ft, tmp_path / "frames", tmp_path / "aw", progress=False, codes="affwild2")
    assert (tmp_path / "aw" / "v1.txt").read_text().splitlines()[1:] == ["0", "0"]  # Aff-Wild2's Neutral
    assert r["header"] == ",".join(SEVEN)


def test_serve_info_lists_neutral(tmp_path):
    from byel.errors import ByelError
    from byel.serve import create_app, require_extra

    try:
        require_extra()
    except ByelError as e:
        pytest.skip(str(e))
    import byel

    app = create_app(byel.load(_neutral_biased(tmp_path), detect=False))
    (info,) = [r.endpoint for r in app.routes if getattr(r, "path", "") == "/api/info"]
    assert info()["classes"] == SEVEN


def test_adaptation_counts_follow_the_model_classes():
    from byel.adapt.common import histogram
    from byel.adapt.self_train import pseudo_labels

    probs = np.full((4, 7), 0.05)
    probs[np.arange(4), [6, 6, 0, 3]] = 0.7
    assert histogram(probs.argmax(1), 7) == {**dict.fromkeys(SEVEN, 0), "anger": 1, "happiness": 1, "neutral": 2}
    _, labels = pseudo_labels(probs, 1)
    assert sorted(labels.tolist()) == [0, 3, 6]
