"""`byel benchmark ablation` on a tiny budget: the result files' schema and the resume-skip logic."""

import json

import byel.experiments as experiments
from byel.cli import main


def test_ablation_schema_and_resume(tmp_path, fer_sample, monkeypatch, capsys):
    out = tmp_path / "abl"
    argv = ["benchmark", "ablation", "--out", str(out), "--eval", str(fer_sample), "--preset", "smoke",
            "--seeds", "1", "--methods", "supervised", "byel", "--set", "generate.per_class=8", "--no-progress"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["seed"]) for r in results] == [("supervised", 0), ("byel", 0)]
    for r in results:
        assert r["steps"] == results[0]["steps"] > 0  # same budget for every method
        ev = r["eval"][str(fer_sample)]
        assert {"macro_f1", "accuracy", "per_class_f1", "adabn", "n_images"} <= set(ev) and ev["n_images"] == 120
        assert 0 <= ev["adabn"]["macro_f1"] <= 1 and r["wall_s"] > 0
    md = (out / "results.md").read_text()
    assert "| byel |" in md and "Δ vs supervised" in md and "chance" in md
    assert (out / "results.png").stat().st_size > 5000

    # A second call finds both runs done and trains nothing.
    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    import byel.train

    monkeypatch.setattr(byel.train, "pretrain", no_training)
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text()) == results
    assert experiments.ABLATION_METHODS == ("supervised", "byol", "byol-cls", "byel")
