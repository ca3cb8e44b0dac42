"""benchmarks/default_model.py: the shipped model's recipe end to end on the smoke preset (seven
classes, fused head) into temporary folders — the slim checkpoint, its model card whose figures are
the run's own, and byel.load / predict / evaluate / export / serve picking the shipped model up."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from byel.classes import class_names
from byel.errors import ByelError
from conftest import FER_SAMPLE
from test_model_card import check_card_text

pytestmark = pytest.mark.slow  # every test reads the run of benchmarks/default_model.py (a subprocess)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "default_model.py"
RECIPE = ["--preset", "smoke", "--set", "finetune.head=fused", "--set", "data.classes=7",
          "--set", "trainer.logger=none", "--no-progress"]
SEVEN, SIX = list(class_names(7)), list(class_names(6))
pytest.importorskip("ai_edge_litert")


def _run(*args: str, cache: Path) -> subprocess.CompletedProcess:
    # this checkout's byel, whatever the environment has installed; a private data cache
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "BYEL_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("default-model")
    args = [*RECIPE, "--out", str(root / "run"), "--real", str(FER_SAMPLE), "--ship", str(root / "ship"),
            "--results", str(root / "res")]
    p = _run(*args, cache=root / "cache")
    assert p.returncode == 0, p.stderr[-3000:]
    run = root / "run"
    return SimpleNamespace(root=root, run=run, ship=root / "ship", res=root / "res", args=args,
                           slim=root / "ship" / "model.ckpt", best=run / "finetune" / "checkpoints" / "best.ckpt",
                           card=json.loads((root / "ship" / "model_card.json").read_text()))


def _crops(per_class: int = 2) -> np.ndarray:
    from byel.data.sources import load

    data = load(str(FER_SAMPLE), 32, progress=False, classes=7)
    keep = np.concatenate([np.flatnonzero(data.labels == c)[:per_class] for c in range(7)])
    return data.images[keep]


def test_ships_the_checkpoint_and_card_only_and_writes_results(made):
    assert sorted(p.name for p in made.ship.iterdir()) == ["MODEL_CARD.md", "confusion_matrix.png", "model.ckpt",
                                                          "model_card.json"]
    assert made.card["command"] == "python benchmarks/default_model.py " + shlex.join(made.args)
    results = json.loads((made.res / "results.json").read_text())
    assert {k: v for k, v in results.items() if k not in ("evaluation_reports", "run")} == made.card
    assert [r["data_resolved"] for r in results["evaluation_reports"]] == [e["data_resolved"] for e in made.card["evaluations"]]
    assert made.card["command"] in (made.res / "results.md").read_text()


def test_card_figures_are_the_runs_own(made):
    card = made.card
    # one six-class and one seven-class score of fer_sample (it has a neutral/ folder)
    assert [e["classes"] for e in card["evaluations"]] == [SIX, SEVEN]
    for e in card["evaluations"]:
        report = json.loads(Path(e["report"]).read_text())
        for k in ("classes", "n_images", "class_counts", "data_resolved"):
            assert e[k] == report[k], k
        pixels, fused = e["rows"]
        assert (pixels["tier"], fused["tier"]) == ("A", "B")
        for row, r in ((pixels, report["pixels_only"]), (fused, report)):
            assert (row["macro_f1"], row["accuracy"], row["per_class_f1"]) == (r["macro_f1"], r["accuracy"], r["per_class_f1"])
            assert row["tier_label"] == r["tier"]["label"]
        assert fused["detection_rate"] == report["tier"]["face_geometry"]["detection_rate"]
    assert card["evaluations"][1]["n_images"] == 140 and card["evaluations"][0]["n_images"] == 120

    # training data, recipe and time: from the run's manifest, config, report and ledger
    with open(made.run / "synthetic" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    gen = card["training_data"]["generator"]
    assert gen["images_per_class"] == {c: sum(r["class"] == c for r in rows) for c in sorted(SEVEN)}
    assert gen["n_images"] == len(rows) == 7 * 12 and gen["backend"] == ["procedural"] and gen["image_size"] == 32
    assert card["training_data"]["synthetic_only"] and card["training_data"]["real_images"] == []
    assert card["training_data"]["held_out"] == json.loads((made.run / "report.json").read_text())["held_out"]
    (geometry,) = card["training_data"]["pretrained_components"]
    from byel.faces.model import DEFAULT_MODEL
    from byel.landmarker import SHA256

    assert geometry["sha256"] == SHA256 == hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest() and geometry["tier"] == "B"
    ledger = json.loads((made.run / "default-model.json").read_text())["invocations"]
    assert card["time"]["training_s"] == round(sum(r["seconds"] for r in ledger), 1) and ledger[0]["completed"]
    slim = torch.load(made.slim, weights_only=True)["byel"]
    assert card["model"]["fusion"] == slim["fusion"] and card["model"]["classes"] == SEVEN
    assert card["model"]["sha256"] == hashlib.sha256(made.slim.read_bytes()).hexdigest()
    assert card["model"]["bytes"] == made.slim.stat().st_size
    assert "neutral" in " ".join(card["limits"]).lower()
    md = (made.ship / "MODEL_CARD.md").read_text()  # the card's text names its command and its model
    assert card["command"] in md and card["model"]["sha256"] in md


def test_slim_checkpoint_is_weights_only_small_and_predicts_like_best(made):
    import byel
    from byel.checkpoint import load_checkpoint

    raw = torch.load(made.slim, weights_only=True)
    assert set(raw) == {"state_dict", "byel"}  # no optimiser, loops, callbacks, RNG, hyper-parameters
    full = torch.load(made.best, weights_only=True)
    assert {"optimizer_states", "rng", "loops"} <= set(full)
    assert made.slim.stat().st_size <= 20 * 2**20 and made.slim.stat().st_size < made.best.stat().st_size / 2
    assert load_checkpoint(made.slim, kinds=("finetune",))["byel"]["classes"] == SEVEN
    images = _crops()
    slim, best = byel.load(made.slim, detect=False), byel.load(made.best, detect=False)
    got, want = slim.predict(list(images)), best.predict(list(images))
    assert len(got) == len(images)
    for a, b in zip(got, want):  # fused probabilities, face by face
        assert [f.probabilities for f in a] == [f.probabilities for f in b]


def test_six_class_score_uses_the_models_six_emotion_outputs(made):
    """A 7-class model's six-class score: both heads' softmax over the six emotions, i.e. its
    probabilities with neutral dropped and renormalised."""
    from byel import classifier

    view, best = classifier.load(made.run / "eval" / "six-class-view.ckpt"), classifier.load(made.best)
    images = _crops()
    p7, p6 = classifier.predict_probs(best, images), classifier.predict_probs(view, images)
    np.testing.assert_allclose(p6, p7[:, :6] / p7[:, :6].sum(1, keepdims=True), atol=1e-6)
    g7, g6 = classifier.measure(best, images, cache=False), classifier.measure(view, images, cache=False)
    assert g6.found.any() and (g6.found == g7.found).all() and g6.weight == g7.weight
    f = g7.found
    np.testing.assert_allclose(g6.probs[f], g7.probs[f][:, :6] / g7.probs[f][:, :6].sum(1, keepdims=True), atol=1e-6)


def test_shipped_model_is_what_byel_uses_without_a_checkpoint(made, monkeypatch, tmp_path, capsys):
    import byel
    import byel.classifier
    from byel.cli import main

    monkeypatch.setattr(byel.classifier, "DEFAULT_MODEL_DIR", made.ship)
    model = byel.load(detect=False)
    assert model.checkpoint == made.slim and list(model.classes) == SEVEN

    out = tmp_path / "pred.csv"
    assert main(["predict", str(FER_SAMPLE / "happy"), "--no-detect", "--out", str(out), "--no-progress"]) == 0
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert len(rows) == 20 and reader.fieldnames[-1] == "p_neutral"

    # evaluate on the slim checkpoint: the card's seven-class fused score, to the digit
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(made.slim), "--data", str(FER_SAMPLE), "--report", str(report),
                 "--no-progress"]) == 0
    assert json.loads(report.read_text())["macro_f1"] == made.card["evaluations"][1]["rows"][1]["macro_f1"]
    assert main(["export", "--checkpoint", str(made.slim), "--out", str(tmp_path / "m.pt")]) == 0
    assert json.loads((tmp_path / "m.pt.json").read_text())["classes"] == SEVEN

    from byel.serve import require_extra, serve

    try:
        require_extra()
    except ByelError as e:
        pytest.skip(str(e))
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)  # load, bind, don't block
    capsys.readouterr()
    serve(None, port=0)
    assert f"(model {made.slim};" in capsys.readouterr().out


def test_rerun_reuses_the_run_and_other_recipes_or_models_are_refused(made, tmp_path):
    before = json.loads((made.run / "default-model.json").read_text())
    p = _run(*made.args, cache=made.root / "cache")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "[byel demo]" not in p.stderr  # not trained again
    assert json.loads((made.run / "default-model.json").read_text()) == before
    again = json.loads((made.ship / "model_card.json").read_text())
    assert again["model"]["sha256"] == made.card["model"]["sha256"] and again["evaluations"] == made.card["evaluations"]

    other = [a if a != "finetune.head=fused" else "finetune.head=pixels" for a in made.args]
    p = _run(*other, cache=made.root / "cache")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "another recipe (it differs in finetune.head)" in p.stderr

    ship = tmp_path / "ship"
    ship.mkdir()
    (ship / "old.ckpt").write_bytes(b"x")
    out = tmp_path / "run"
    p = _run(*RECIPE, "--out", str(out), "--real", str(FER_SAMPLE), "--ship", str(ship), "--results",
             str(tmp_path / "res"), cache=made.root / "cache")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "old.ckpt" in p.stderr
    assert not out.exists()  # refused before any training


def test_oversized_slim_checkpoint_is_not_shipped(made, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("default_model", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "MAX_BYTES", 1000)
    with pytest.raises(ByelError, match="over the"):
        mod.write_slim(made.best, tmp_path / "model.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_card_has_uses_named_datasets_precision_recall_and_derived_limits(made):
    md = (made.ship / "MODEL_CARD.md").read_text()
    check_card_text(md, made.card)
    assert "a FER2013 sample (byel's test fixture)" in md
    assert (made.ship / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



def test_card_only_rewrites_the_card_from_the_shipped_checkpoint_without_changing_it(made, tmp_path):
    import shutil

    ship = tmp_path / "ship"
    shutil.copytree(made.ship, ship)
    (ship / "MODEL_CARD.md").unlink()
    before = hashlib.sha256((ship / "model.ckpt").read_bytes()).hexdigest()
    p = _run("--card-only", "--out", str(tmp_path / "run"), "--real", str(FER_SAMPLE), "--ship", str(ship),
             "--results", str(tmp_path / "res"), "--no-progress", cache=made.root / "cache")
    assert p.returncode == 0, p.stderr[-3000:]
    assert hashlib.sha256((ship / "model.ckpt").read_bytes()).hexdigest() == before
    assert not (tmp_path / "run" / "finetune").exists()  # nothing trained
    card = json.loads((ship / "model_card.json").read_text())
    for k in ("model", "training_data", "recipe", "command", "limits", "intended_use", "out_of_scope"):
        assert card[k] == made.card[k], k  # the training facts kept, the rest derived alike
    assert card["card_command"].startswith("python benchmarks/default_model.py --card-only")
    for got, want in zip(card["evaluations"], made.card["evaluations"], strict=True):
        assert {k: v for k, v in got.items() if k != "report"} == {k: v for k, v in want.items() if k != "report"}
    check_card_text((ship / "MODEL_CARD.md").read_text(), card)
    assert (tmp_path / "res" / "results.md").exists()
