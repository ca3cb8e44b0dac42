"""The benchmark scripts run end to end on a tiny budget and answer bad input with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # subprocess runs of the benchmark scripts

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_generate_speed_prints_a_row_per_measurement(tmp_path):
    p = _run("generate_speed.py", "--sizes", "16", "--workers", "1", "--per-class", "2",
             "--tones", "grey", "colour", "--repeats", "1", "--json", str(tmp_path / "speed.json"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = json.loads((tmp_path / "speed.json").read_text())["rows"]
    assert [(r["tone"], r["size"], r["workers"], r["images"]) for r in rows] == [("grey", 16, 1, 12), ("colour", 16, 1, 12)]
    assert all(r["images_per_s"] > 0 for r in rows)
    assert "| procedural | grey | 16 | 1 |" in p.stdout


def test_generate_speed_measures_the_mesh_backend_with_and_without_its_gate(tmp_path):
    p = _run("generate_speed.py", "--backends", "mesh", "--sources", str(ROOT / "tests" / "fixtures" / "neutral"),
             "--sizes", "48", "--workers", "1", "--per-class", "1", "--tones", "grey", "--repeats", "1",
             "--json", str(tmp_path / "speed.json"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads((tmp_path / "speed.json").read_text())["rows"]
    assert [(r["backend"], r["images"]) for r in rows] == [("mesh", 6), ("mesh, no gate", 6)]
    assert "| mesh, no gate | grey | 48 | 1 |" in p.stdout


def test_generator_transfer_trains_and_scores_with_the_chosen_normalisation(tmp_path):
    p = _run("generator_transfer.py", "--real", str(ROOT / "tests" / "fixtures" / "fer_sample"),
             "--backends", "procedural", "--per-class", "12", "--size", "32", "--epochs", "1",
             "--preset", "smoke", "--normalize", "equalize", "--workers", "1", "--out", "bench", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (r,) = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert (r["backend"], r["normalize"]) == ("procedural", "equalize")
    # 72 generated faces: the best epoch is chosen on a held-out split that training never sees
    (split,) = r["held_out"]
    assert r["n_train"] == split["n_train"] == 72 - split["n_held_out"] and split["n_held_out"] == 6
    md = (tmp_path / "bench" / "results.md").read_text()
    assert md.startswith("Command: `python benchmarks/generator_transfer.py --real ")  # the table names its command
    skm = pytest.importorskip("sklearn.metrics")
    for pre in ("", "adabn_"):  # the scores follow from the saved confusion matrix
        cm = np.array(r[pre + "confusion_matrix"])
        y, p_ = np.repeat(np.repeat(np.arange(6), 6), cm.flatten()), np.repeat(np.tile(np.arange(6), 6), cm.flatten())
        assert len(y) == 120
        assert r[pre + "macro_f1"] == pytest.approx(
            skm.f1_score(y, p_, labels=range(6), average="macro", zero_division=0), abs=1e-9)
        assert r[pre + "accuracy"] == pytest.approx(skm.accuracy_score(y, p_), abs=1e-9)
    # AdaBN adapted on exactly the 120 scored real images, not the folder's 20 neutral ones too
    assert r["adabn"] == {"data": "evaluated", "n_adapt_images": 120, "transductive": True,
                          "n_evaluated_among": 120}
    assert f"| procedural | {r['macro_f1']:.3f} | {r['adabn_macro_f1']:.3f} | {r['accuracy']:.3f} |" in p.stdout
    assert "normalize: equalize" in (tmp_path / "bench" / "procedural-s0" / "model" / "config.yaml").read_text()
    assert "| procedural |" in p.stdout


@pytest.mark.parametrize("script, args", [
    ("generator_transfer.py", ["--real", "nowhere", "--backends", "procedural"]),  # missing folder
    ("generator_transfer.py", ["--real", "nowhere", "--backends", "mix"]),  # mix without --sources
    ("generate_speed.py", ["--backends", "warp", "--sizes", "16"]),  # warp without --sources
    ("generate_speed.py", ["--repeats", "0", "--sizes", "16"]),
    ("stable_predictions.py", ["--real", "nowhere"]),  # missing folder
    ("third_view.py", ["--real", "nowhere", "--seeds", "0"]),  # missing folder
    ("class_prior.py", ["--real", "nowhere"]),  # missing folder
])
def test_benchmarks_answer_bad_input_with_one_line(tmp_path, script, args):
    p = _run(script, *args, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().startswith("byel: error:") and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("script, args", [
    ("generator_transfer.py", ["--real", "x", "--normalize", "bogus"]),
    ("generator_transfer.py", ["--real", "x", "--backends", "bogus"]),
    ("generate_speed.py", ["--bogus"]),
    ("stable_predictions.py", ["--bogus"]),
    ("third_view.py", ["--real", "x", "--pad", "5"]),  # out of range
    ("class_prior.py", ["--bogus"]),
])
def test_benchmarks_answer_a_wrong_option_with_one_line(tmp_path, script, args):
    p = _run(script, *args, cwd=tmp_path)
    assert p.returncode == 2
    assert f"{script}: error:" in p.stderr and len(p.stderr.strip().splitlines()) == 1
