"""`--resume` checks everything before it writes anything: the whole resolved config (but where the
run runs and what it shows), the training data by fingerprint, and for the demo its own options.
A refused resume names each difference (old → new) in one line and leaves split.json, config.yaml,
demo.json and report.json byte for byte as they were. And a run that asks for classes its data
lacks (7 classes, no neutral images) is refused, by pretrain and by the ablation alike."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from byel.cli import main
from conftest import FER_SAMPLE, SMOKE, write_class_folders, write_image


@pytest.fixture(scope="module")
def runs(smoke_model):
    """A tiny data set and a finished smoke pre-training and fine-tuning on it: the session's smoke
    model (copied by each test that changes them)."""
    return {"data": smoke_model.data, "pre": smoke_model.pre, "ft": smoke_model.ft}


def _hashes(folder, names):
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


RUN_FILES = ("split.json", "config.yaml", "checkpoints/last.ckpt")


def test_refused_pretrain_resume_writes_nothing_and_names_each_key(runs, tmp_path, capsys):
    out = tmp_path / "pre"
    shutil.copytree(runs["pre"], out)
    before = _hashes(out, RUN_FILES)
    capsys.readouterr()
    rc = main(["pretrain", "--data", str(runs["data"]), "--out", str(out), "--resume", "--seed", "5",
               "--batch-size", "8", *SMOKE])
    line = _error(capsys)
    assert rc == 2 and "cannot resume" in line
    assert "seed 0 → 5" in line and "data.batch_size 16 → 8" in line  # each key, old → new
    assert _hashes(out, RUN_FILES) == before


def test_refused_finetune_resume_writes_nothing(runs, tmp_path, capsys):
    out = tmp_path / "ft"
    shutil.copytree(runs["ft"], out)
    before = _hashes(out, RUN_FILES)
    capsys.readouterr()
    rc = main(["finetune", "--checkpoint", str(runs["pre"] / "checkpoints" / "last.ckpt"), "--data",
               str(runs["data"]), "--out", str(out), "--resume", "--set", "finetune.lr=0.003",
               "--set", "finetune.dropout=0.5", *SMOKE])
    line = _error(capsys)
    assert rc == 2 and "finetune.lr 0.001 → 0.003" in line and "finetune.dropout 0.3 → 0.5" in line
    assert _hashes(out, RUN_FILES) == before


def test_resume_compares_the_data_not_its_path(runs, tmp_path, capsys):
    """The same images from another folder, on another logger and device count, resume; one changed
    image is refused before split.json or config.yaml is written."""
    data, out = tmp_path / "data", tmp_path / "pre"
    shutil.copytree(runs["data"], data)
    shutil.copytree(runs["pre"], out)
    assert main(["pretrain", "--data", str(data), "--out", str(out), "--resume", *SMOKE[:-2], "--logger", "csv",
                 "--devices", "1"]) == 0
    before = _hashes(out, RUN_FILES)
    write_image(data / "anger" / "0.png", value=200, size=32)  # one training image changes
    capsys.readouterr()
    rc = main(["pretrain", "--data", str(data), "--out", str(out), "--resume", *SMOKE])
    line = _error(capsys)
    assert rc == 2 and "training images" in line and "fingerprint" in line
    assert _hashes(out, RUN_FILES) == before


@pytest.mark.slow
def test_demo_resume_with_other_settings_is_refused_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    demo = ["demo", "--out", str(out), "--per-class", "6", *SMOKE]
    assert main(demo) == 0
    files = ("report.json", "pretrain/config.yaml", "pretrain/split.json", "finetune/config.yaml",
             "pretrain/checkpoints/last.ckpt", "finetune/checkpoints/last.ckpt")
    before = _hashes(out, files)
    settings = out / "demo.json"  # the demo's recorded settings
    record = settings.read_bytes() if settings.exists() else None
    for extra, said in ((["--seed", "5"], "seed 0 → 5"),
                        (["--per-class", "20"], "--per-class 6 → 20"),
                        (["--head", "fused"], "finetune.head 'pixels' → 'fused'"),
                        (["--epochs", "3"], "pretrain.epochs 1 → 3"),
                        (["--real", str(FER_SAMPLE)], "--real None → ")):
        capsys.readouterr()
        assert main([*demo, "--resume", *extra]) == 2, extra
        line = _error(capsys)
        assert "cannot resume the demo" in line and said in line, line
        assert _hashes(out, files) == before and record == settings.read_bytes(), extra
    # where it runs and what it shows may change: the finished stages are reused
    assert main([*demo[:-2], "--logger", "csv", "--devices", "1", "--resume"]) == 0
    after = _hashes(out, files)
    assert [after[k] for k in files[-2:]] == [before[k] for k in files[-2:]]  # no stage trained again
    before, record = after, settings.read_bytes()
    # its synthetic faces changed since: the pre-training stage refuses, before either stage writes
    write_image(out / "synthetic" / "anger" / "anger_000000.png", value=10, size=32)
    capsys.readouterr()
    assert main([*demo, "--resume"]) == 2
    assert "training images" in _error(capsys)
    assert _hashes(out, files) == before
    assert settings.read_bytes() == record


def test_ablation_and_pretrain_refuse_classes_the_data_lacks(tmp_path, capsys):
    """--classes 7 on 6-class data (no neutral image): refused in one line, by the ablation for its
    training data and for each evaluation set, and by pretrain alike — nothing trained."""
    six = write_class_folders(tmp_path / "six", 4)
    ablation = ["benchmark", "ablation", "--classes", "7", "--preset", "smoke", "--seeds", "1",
                "--methods", "supervised", "--no-progress"]
    for name, data, evals, said in (("a", six, FER_SAMPLE, f"the training data imagefolder:{six}"),
                                    ("b", FER_SAMPLE, six, f"the evaluation set --eval {six}")):
        capsys.readouterr()
        rc = main([*ablation, "--out", str(tmp_path / name), "--data", str(data), "--eval", str(evals)])
        line = _error(capsys)
        assert rc == 2 and said in line and "no images of neutral" in line and "--classes 6" in line, line
        assert not (tmp_path / name / "results.json").exists() and not (tmp_path / name / "runs").exists()
    capsys.readouterr()
    assert main(["pretrain", "--data", str(six), "--out", str(tmp_path / "pre"), "--classes", "7", *SMOKE]) == 2
    assert "no images of neutral" in _error(capsys)
    assert not (tmp_path / "pre" / "checkpoints").exists()


def test_a_key_recorded_before_it_existed_counts_as_its_default():
    from byel.config import load_config
    from byel.train import config_changes

    cfg = load_config("smoke")
    saved = cfg.to_dict()
    del saved["data"]["classes"], saved["finetune"]["head"]  # a run from before these keys
    assert config_changes(saved, cfg) == []
    cfg.trainer.devices, cfg.trainer.progress = "1", False  # where it runs, what it shows: free
    assert config_changes(saved, cfg) == []
    cfg.data.classes = 7
    assert config_changes(saved, cfg) == ["data.classes 6 → 7"]
