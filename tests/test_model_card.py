"""The shipped model card (byel/assets/default_model/MODEL_CARD.md, written by
benchmarks/default_model.py): uses, datasets by name, per-class precision and recall, the
confusion picture, and limits derived from the code rather than typed. Fast: it reads the shipped
files; tests/test_default_model.py checks a freshly written card with the same check_card_text."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "default_model.py"


def _script():
    spec = importlib.util.spec_from_file_location("default_model", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_card_text(md: str, card: dict) -> None:
    """What every card says, whoever wrote it: uses, datasets by name, per-class precision and
    recall, the confusion picture, and limits that follow the code."""
    from byel.choices import DETECTORS

    mod = _script()
    assert "## Intended use" in md and "## Out of scope" in md
    assert md.index("## Intended use") < md.index("## Out of scope") < md.index("## Model")
    assert "EU AI Act" in md and "hiring" in md
    assert "../" not in md
    for e in card["evaluations"]:
        assert f"**{e['dataset']}**" in md and "/" not in e["dataset"]
        cm = np.array(e["confusion_matrix"])
        for i, c in enumerate(e["classes"]):  # precision: column-normalised; recall: row-normalised
            assert e["precision_recall"][c]["precision"] == pytest.approx(cm[i, i] / max(cm[:, i].sum(), 1), abs=1e-4)
            assert e["precision_recall"][c]["recall"] == pytest.approx(cm[i, i] / max(cm[i].sum(), 1), abs=1e-4)
        assert "| precision | " + " | ".join(f"{e['precision_recall'][c]['precision']:.2f}" for c in e["classes"]) in md
        assert "| recall | " in md
    assert f"]({card['confusion_matrix_png']})" in md and card["confusion_matrix_png"] == "confusion_matrix.png"
    # no typed claim that contradicts the code: the detector and export sentences are derived
    (detector,) = [x for x in card["limits"] if "`byel predict` finds faces" in x]
    assert f"with the `{mod.default_detector()}` detector by default" in detector
    assert all(f"`{d}`" in detector for d in DETECTORS)
    assert "Haar or dlib HOG)" not in md and "writes the pixel CNN only" not in md
    (export,) = [x for x in card["limits"] if "`byel export" in x]
    assert ("model.geometry.onnx" in export) == (card["model"]["head"] != "pixels")


def test_shipped_card_is_generated_from_facts():
    """The card in the package (written by --card-only from the shipped checkpoint)."""
    from byel.classifier import DEFAULT_MODEL_DIR

    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    check_card_text((DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text(), card)
    png = DEFAULT_MODEL_DIR / "confusion_matrix.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size < 200_000
    assert card["model"]["sha256"] == hashlib.sha256((DEFAULT_MODEL_DIR / "model.ckpt").read_bytes()).hexdigest()
    assert "FER2013 PublicTest (2,982 faces of 6 classes)" in [e["dataset"] for e in card["evaluations"]]


def test_every_detector_has_a_meaning_and_precision_recall_reads_the_matrix():
    from byel.choices import DETECTORS

    mod = _script()
    assert set(mod.DETECTOR_MEANING) == set(DETECTORS) and mod.default_detector() in DETECTORS
    pr = mod.precision_recall([[1, 3], [0, 4]], ["a", "b"])  # rows true, columns predicted
    assert pr["a"] == {"precision": 1.0, "recall": 0.25, "n_true": 4, "n_predicted": 1}
    assert pr["b"] == {"precision": 0.5714, "recall": 1.0, "n_true": 4, "n_predicted": 7}
    assert mod.over_predicted(pr) == ["b"]
