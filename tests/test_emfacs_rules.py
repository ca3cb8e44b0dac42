"""The EMFACS rule baseline (byel.faces.rules) and its benchmark (benchmarks/emfacs_rules.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from byel.classes import CLASSES
from byel.faces.mesher import BLENDSHAPES
from byel.faces.rules import (AU_BLENDSHAPES, AUS, PROTOTYPES, au_intensities, predict, probabilities, prototype_scores,
                              rest_level)

ROOT = Path(__file__).resolve().parents[1]
FER_SAMPLE = ROOT / "tests" / "fixtures" / "fer_sample"


def face(**shapes: float) -> np.ndarray:
    """One face's 52 blendshapes: the named ones set, every other 0."""
    b = np.zeros(len(BLENDSHAPES), np.float32)
    for name, v in shapes.items():
        b[BLENDSHAPES.index(name)] = v
    return b


def test_the_mapping_covers_exactly_the_six_prototypes_with_real_blendshapes():
    assert set(PROTOTYPES) == set(CLASSES)
    assert PROTOTYPES == {"happiness": (6, 12), "sadness": (1, 4, 15), "surprise": (1, 2, 5, 26),
                          "fear": (1, 2, 4, 5, 7, 20, 26), "anger": (4, 5, 7, 23), "disgust": (9, 15, 16)}
    assert set(AUS) == {au for aus in PROTOTYPES.values() for au in aus}  # no AU unused, none missing
    for au, (name, shapes, why) in AU_BLENDSHAPES.items():
        assert shapes and name and why
        assert all(s in BLENDSHAPES for s in shapes), (au, shapes)


def test_a_smile_scores_happiness():
    b = face(mouthSmileLeft=0.9, mouthSmileRight=0.8, cheekSquintLeft=0.3, cheekSquintRight=0.3, eyeSquintLeft=0.2)
    assert CLASSES[predict(b)[0]] == "happiness"
    assert au_intensities(b)[0, AUS.index(12)] == pytest.approx(0.85)  # left and right averaged


def test_jaw_open_raised_brows_and_wide_eyes_score_surprise():
    b = face(jawOpen=0.7, browInnerUp=0.8, browOuterUpLeft=0.6, browOuterUpRight=0.6, eyeWideLeft=0.5,
             eyeWideRight=0.5)
    s = prototype_scores(b)[0]
    assert CLASSES[int(s.argmax())] == "surprise"
    assert s[CLASSES.index("surprise")] == pytest.approx((0.8 + 0.6 + 0.5 + 0.7) / 4)  # the mean of its AUs
    assert s[CLASSES.index("fear")] < s[CLASSES.index("surprise")]  # fear also needs 4, 7, 20


def test_other_prototypes_and_the_order_of_the_classes():
    frown = face(browInnerUp=0.6, browDownLeft=0.5, browDownRight=0.5, mouthFrownLeft=0.6, mouthFrownRight=0.6)
    sneer = face(noseSneerLeft=0.7, noseSneerRight=0.7, mouthFrownLeft=0.4, mouthFrownRight=0.4,
                 mouthLowerDownLeft=0.4, mouthLowerDownRight=0.4)
    assert [CLASSES[k] for k in predict(np.stack([frown, sneer]))] == ["sadness", "disgust"]


def test_faces_without_a_mesh_are_misses_with_chance_probabilities():
    b = np.stack([face(mouthSmileLeft=1.0, mouthSmileRight=1.0), np.full(len(BLENDSHAPES), np.nan), face()])
    assert predict(b)[1] == -1 and predict(b)[0] == CLASSES.index("happiness")
    assert np.isnan(prototype_scores(b)[1]).all()
    p = probabilities(b)
    assert p.shape == (3, 6) and np.allclose(p.sum(1), 1)
    assert np.allclose(p[1], 1 / 6) and np.allclose(p[2], 1 / 6)  # no mesh; every score 0
    assert p[0].argmax() == CLASSES.index("happiness")
    with pytest.raises(ValueError, match="52"):
        prototype_scores(np.zeros((2, 51)))


def test_the_rest_level_is_taken_away_and_clipped_at_zero():
    resting = np.stack([face(eyeSquintLeft=0.55, eyeSquintRight=0.55, browInnerUp=0.1),
                        face(eyeSquintLeft=0.65, eyeSquintRight=0.65, browInnerUp=0.1), np.full(len(BLENDSHAPES), np.nan)])
    rest = rest_level(resting)  # the median over the faces with a mesh
    assert rest[AUS.index(7)] == pytest.approx(0.6) and rest[AUS.index(1)] == pytest.approx(0.1)
    # a sad face whose resting squint outscores its frown as anger, until the rest is taken away
    b = face(eyeSquintLeft=0.6, eyeSquintRight=0.6, browInnerUp=0.3, browDownLeft=0.15, browDownRight=0.15,
             mouthFrownLeft=0.15, mouthFrownRight=0.15, eyeWideLeft=0.1, eyeWideRight=0.1)
    assert CLASSES[predict(b)[0]] == "anger" and CLASSES[predict(b, rest)[0]] == "sadness"
    assert prototype_scores(b, rest)[0, CLASSES.index("sadness")] == pytest.approx((0.2 + 0.15 + 0.15) / 3)
    assert prototype_scores(b, rest).min() >= 0
    assert np.isnan(prototype_scores(np.full((1, len(BLENDSHAPES)), np.nan), rest)).all()


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "emfacs_rules.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_benchmark_scores_the_fixture_faces(tmp_path):
    p = _bench("--real", str(FER_SAMPLE), "--synthetic", "procedural", "--synthetic-per-class", "2", "--size", "64",
               "--rest-faces", "3", "--workers", "1", "--out", "bench", "--results", str(tmp_path / "res"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads((tmp_path / "res.json").read_text())
    assert r["n_real"] == 120 and r["skipped"] == {"neutral": 20}  # the six classes, 20 faces each
    cm = np.array(r["misses_as_errors"]["confusion_matrix"])
    assert cm.shape == (6, 7) and cm.sum() == 120 and cm.sum(1).tolist() == [20] * 6
    assert cm[:, 6].sum() == 120 - r["n_with_mesh"] == r["predicted"]["no mesh"]  # misses: the last column
    assert r["mesh_found"]["n"] == r["n_with_mesh"] > 60
    assert r["misses_as_errors"]["accuracy"] == pytest.approx(np.trace(cm[:, :6]) / 120, abs=1e-4)
    assert r["misses_as_errors"]["macro_f1"] <= r["mesh_found"]["macro_f1"]
    rest = r["rest"]  # the second row: less the AUs read on procedural neutral faces
    assert rest["backend"] == "procedural" and rest["n"] == 3 and set(rest["level"]) == {str(a) for a in AUS}
    assert np.array(rest["misses_as_errors"]["confusion_matrix"])[:, 6].sum() == 120 - r["n_with_mesh"]
    (s,) = r["synthetic"]
    assert s["backend"] == "procedural" and s["n"] == 12 and set(s["au"]) == {str(a) for a in AUS}
    md = (tmp_path / "res.md").read_text()
    assert "Command: `python benchmarks/emfacs_rules.py --real " in md
    assert "| EMFACS rules, faces with a mesh |" in md and "tier B" in md
    # the same input gives the same figures: nothing random
    p2 = _bench("--real", str(FER_SAMPLE), "--synthetic-per-class", "0", "--rest", "none", "--workers", "1",
                "--results", str(tmp_path / "again"), cwd=tmp_path)
    assert p2.returncode == 0, p2.stderr[-2000:]
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["misses_as_errors"] == r["misses_as_errors"] and again["synthetic"] == [] and "rest" not in again


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--real", "nowhere"],
                                  ["--real", str(FER_SAMPLE), "--synthetic", "mesh"],  # mesh without --sources
                                  ["--real", str(FER_SAMPLE), "--rest", "warp"]])
def test_the_benchmark_answers_bad_input_with_one_line(tmp_path, args):
    p = _bench(*args, cwd=tmp_path)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert not list(tmp_path.iterdir())  # nothing written
