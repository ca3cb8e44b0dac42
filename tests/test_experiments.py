"""`byel benchmark ablation` on a tiny budget: the numbers in the result files, and resuming
keyed on the resolved config."""

import json
import re

import numpy as np
import pytest

from byel.cli import main
from byel.experiments import write_table


def _rows(md: str, spec: str) -> dict[str, list[str]]:
    """The table rows of one evaluation set in results.md: method -> cells."""
    block = md.split(f"**{spec}**", 1)[1].split("\n\n", 2)[1]
    return {cells[0]: cells[1:] for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()[2:])}


def _from_confusion(cm):
    skm = pytest.importorskip("sklearn.metrics")
    cm = np.array(cm)
    y = np.repeat(np.repeat(np.arange(6), 6), cm.flatten())  # true class of every image
    p = np.repeat(np.tile(np.arange(6), 6), cm.flatten())  # predicted class
    return (skm.f1_score(y, p, labels=range(6), average="macro", zero_division=0),
            skm.accuracy_score(y, p), skm.f1_score(y, p, labels=range(6), average=None, zero_division=0))


@pytest.mark.slow
def test_ablation_numbers_and_resume_by_config(tmp_path, fer_sample, monkeypatch):
    out = tmp_path / "abl"
    argv = ["benchmark", "ablation", "--out", str(out), "--eval", str(fer_sample), "--preset", "smoke",
            "--seeds", "1", "--methods", "supervised", "byel", "--set", "generate.per_class=8", "--no-progress"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["seed"]) for r in results] == [("supervised", 0), ("byel", 0)]
    for r in results:
        assert (r["preset"], r["overrides"], r["unlabelled"], r["n_unlabelled"]) == ("smoke", ["generate.per_class=8"], None, 0)
        assert r["steps"] == results[0]["steps"] > 0  # same budget for every method
        ev = r["eval"][str(fer_sample)]
        assert ev["n_images"] == 120
        # AdaBN adapted on exactly the scored images
        assert (ev["adabn"]["data"], ev["adabn"]["n_adapt_images"], ev["adabn"]["transductive"]) == ("evaluated", 120, True)
        for s in (ev, ev["adabn"]):  # every reported number follows from the confusion matrix
            assert np.array(s["confusion_matrix"]).sum() == 120
            f1, acc, per = _from_confusion(s["confusion_matrix"])
            assert s["macro_f1"] == pytest.approx(f1, abs=1e-9) and s["accuracy"] == pytest.approx(acc, abs=1e-9)
            assert list(s["per_class_f1"].values()) == pytest.approx(per, abs=1e-9)
    assert (out / "results.md").read_text().startswith("Command: `byel benchmark ablation --out ")  # the command behind the table
    assert (out / "results.png").stat().st_size > 5000

    import byel.train

    real_pretrain = byel.train.pretrain
    trained = []

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    # The same settings again: both runs are found and nothing is trained.
    monkeypatch.setattr(byel.train, "pretrain", no_training)
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text()) == results

    # Other settings into the same folder: a new run, in a new folder; the table shows only it.
    monkeypatch.setattr(byel.train, "pretrain", lambda *a, **k: trained.append(a[3]) or real_pretrain(*a, **k))
    other = [a for a in argv if a != "byel"] + ["--set", "finetune.lr=0.003"]
    assert main(other) == 0
    after = json.loads((out / "results.json").read_text())
    assert len(after) == 3 and after[:2] == results
    new = after[2]
    assert new["method"] == "supervised" and new["config_digest"] != results[0]["config_digest"]
    assert len(trained) == 1 and new["config_digest"] in str(trained[0])
    assert len(list((out / "runs").iterdir())) == 3
    assert set(_rows((out / "results.md").read_text(), str(fer_sample))) == {"supervised"}  # only this setting's runs


def test_table_is_mean_and_std_of_the_results(tmp_path):
    """results.md: mean ± sample std over seeds, and the difference of means to supervised."""
    spec = "real"
    f1 = {"supervised": [0.20, 0.25, 0.30], "byel": [0.31, 0.22, 0.40]}
    ada = {"supervised": [0.24, 0.26, 0.19], "byel": [0.33, 0.35, 0.29]}
    results = [{"method": m, "seed": s, "preset": "smoke", "overrides": [],
                "eval": {spec: {"macro_f1": f1[m][s], "adabn": {"macro_f1": ada[m][s], "data": "evaluated"}}}}
               for m in f1 for s in range(3)]
    rows = _rows(write_table(results, tmp_path, [spec]).read_text(), spec)
    for m in f1:
        cells = rows[m]
        for k, v in ((0, f1[m]), (2, ada[m])):
            mean, std = re.fullmatch(r"(\S+) ± (\S+)", cells[k]).groups()
            assert (float(mean), float(std)) == (round(np.mean(v), 3), round(np.std(v, ddof=1), 3))
        assert float(cells[1]) == pytest.approx(np.mean(f1[m]) - np.mean(f1["supervised"]), abs=6e-4)
        assert float(cells[3]) == pytest.approx(np.mean(ada[m]) - np.mean(ada["supervised"]), abs=6e-4)
        assert cells[4] == "3"


def test_the_table_counts_the_scored_images_among_the_pretraining_ones(tmp_path):
    """FER2013's training neutrals share a few pictures with PublicTest: the table says how many,
    not a bare 'transductive'."""
    from byel.experiments import write_table

    def record(method, unl, among):
        pre = [{"stage": "pretrain", "data": "neutral", "n_images": 50, "transductive": among > 0,
                "n_evaluated_among": among}] if unl else []
        ev = {"macro_f1": 0.2, "per_class_f1": {c: 0.2 for c in "abcdef"}, "n_images": 120,
              "tier": {"unlabelled_real": pre}, "adabn": {"macro_f1": 0.25, "data": "evaluated"}}
        return {"method": method, "seed": 0, "preset": "smoke", "overrides": [], "unlabelled": "neutral" if unl else None,
                "n_unlabelled": 50 if unl else 0, "eval": {"real": ev}}

    md = write_table([record("supervised", False, 0), record("byel", True, 4)], tmp_path, ["real"]).read_text()
    assert "Pre-trained with unlabelled real images: 4 of the 120 scored images are among them" in md
    md = write_table([record("supervised", False, 0), record("byel", True, 120)], tmp_path, ["real"]).read_text()
    assert "Pre-trained with unlabelled real images: transductive (the scored images are among them)." in md
    md = write_table([record("supervised", False, 0), record("byel", True, 0)], tmp_path, ["real"]).read_text()
    assert "not transductive (none of the scored images is among them)" in md
