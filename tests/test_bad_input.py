"""Bad input, all in one place: every case ends as exactly one `byel: error:` line on stderr, a
non-zero exit code, no traceback — and leaves earlier outputs intact."""

import os
from pathlib import Path

import pytest
import torch

from byel.cli import main
from conftest import write_class_folders, write_image

TINY = ["--preset", "smoke", "--no-progress", "--logger", "none"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny data set, a trained stage-1 and stage-2 run, and broken inputs of every kind."""
    root = tmp_path_factory.mktemp("world")
    data = write_class_folders(root / "data", 4)
    pre, ft = root / "pre", root / "ft"
    assert main(["pretrain", "--data", str(data), "--out", str(pre), *TINY]) == 0
    assert main(["finetune", "--checkpoint", str(pre / "checkpoints" / "last.ckpt"), "--data", str(data),
                 "--out", str(ft), *TINY]) == 0
    (root / "empty").mkdir()
    write_image(root / "only_neutral" / "neutral" / "n.jpg")
    broken = root / "broken"
    for cls in ("anger", "happy"):
        (broken / cls).mkdir(parents=True)
        (broken / cls / "zero.jpg").write_bytes(b"")
        (broken / cls / "text.png").write_text("I am not a PNG\n")
        good = write_image(broken / cls / "tmp.jpg").read_bytes()
        (broken / cls / "tmp.jpg").write_bytes(good[: len(good) // 3])  # truncated
    ckpt = pre / "checkpoints" / "last.ckpt"
    (root / "truncated.ckpt").write_bytes(ckpt.read_bytes()[:4000])
    torch.save({"state_dict": {}, "epoch": 1}, root / "foreign.ckpt")
    (root / "text.ckpt").write_text("not a checkpoint")
    return {"root": root, "data": data, "pre": ckpt, "ft": ft / "checkpoints" / "best.ckpt"}


CASES = {
    "missing data path": (["pretrain", "--data", "{root}/nope", "--out", "{root}/o"], "not found"),
    "empty folder": (["pretrain", "--data", "{root}/empty", "--out", "{root}/o"], "{root}/empty"),
    "only classes outside the six": (["pretrain", "--data", "{root}/only_neutral", "--out", "{root}/o"], "neutral"),
    "corrupt, zero-byte, truncated, text-as-PNG images only": (["pretrain", "--data", "{root}/broken", "--out", "{root}/o"], "no usable images"),
    "unknown data kind": (["pretrain", "--data", "lmdb:{root}/data", "--out", "{root}/o"], "lmdb"),
    "unknown config key": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "optim.lrr=1"], "did you mean 'optim.lr'"),
    "unknown method": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--method", "simclr"], "method.name"),
    "unknown preset": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--preset", "huge"], "cpu-demo"),
    "zero image size": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--image-size", "0"], "image_size"),
    "negative epochs": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--epochs", "-1"], "epochs"),
    "bad value type": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "optim.lr=fast"], "invalid value"),
    "unknown option": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--learning-rate", "1"], "unrecognized arguments"),
    "nothing to resume": (["pretrain", "--data", "{data}", "--out", "{root}/fresh", "--resume"], "nothing to resume"),
    "resume another model": (["pretrain", "--data", "{data}", "--out", "{root}/pre", "--resume", "--backbone", "resnet18"], "model"),
    "missing checkpoint": (["evaluate", "--checkpoint", "{root}/none.ckpt", "--data", "{data}"], "not found"),
    "truncated checkpoint": (["evaluate", "--checkpoint", "{root}/truncated.ckpt", "--data", "{data}"], "truncated"),
    "text as checkpoint": (["evaluate", "--checkpoint", "{root}/text.ckpt", "--data", "{data}"], "cannot read checkpoint"),
    "foreign checkpoint": (["evaluate", "--checkpoint", "{root}/foreign.ckpt", "--data", "{data}"], "not a byel checkpoint"),
    "stage-1 checkpoint to evaluate": (["evaluate", "--checkpoint", "{pre}", "--data", "{data}"], "fine-tune it first"),
    "generate zero per class": (["generate", "--out", "{root}/g", "--per-class", "0"], "per-class"),
    "generate negative size": (["generate", "--out", "{root}/g", "--size", "-5"], "size"),
    "generate unknown backend": (["generate", "--out", "{root}/g", "--backend", "gan"], "procedural"),
    "generate unknown class": (["generate", "--out", "{root}/g", "--classes", "contempt"], "contempt"),
    "warp without sources": (["generate", "--out", "{root}/g", "--backend", "warp"], "--sources"),
    "warp with empty sources": (["generate", "--out", "{root}/g", "--backend", "warp", "--sources", "{root}/empty"], "{root}/empty"),
    "predict on a missing input": (["predict", "--checkpoint", "{ft}", "{root}/nope.jpg", "--out", "{root}/p.csv", "--no-detect"], "nope.jpg"),
}


def _fill(argv, world):
    return [a.format(**{k: str(v) for k, v in world.items()}) for a in argv]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_line(case, world, capsys):
    argv, needle = CASES[case]
    argv = _fill(argv, world)
    extra = TINY if argv[0] == "pretrain" and "--preset" not in argv else []
    if argv[0] == "pretrain" and "--preset" in argv:
        extra = ["--no-progress", "--logger", "none"]
    before = world["pre"].read_bytes()
    capsys.readouterr()
    try:
        rc = main(argv + extra)
    except SystemExit as e:  # argparse errors exit through SystemExit, with one line too
        rc = e.code
    err = capsys.readouterr().err
    errors = [line for line in err.strip().splitlines() if "error:" in line]
    assert rc not in (0, None), case
    assert len(errors) == 1 and "Traceback" not in err, err
    assert needle.format(root=world["root"]) in errors[0], (needle, errors[0])
    assert world["pre"].read_bytes() == before  # earlier outputs intact


def test_read_only_output_folder(world, tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    if os.access(ro, os.W_OK):  # root ignores permissions: make the folder refuse writes by hand
        real_mkdir = Path.mkdir

        def refuse(self, *a, **k):
            if str(self).startswith(str(ro)):
                raise PermissionError(13, "Permission denied", str(self))
            return real_mkdir(self, *a, **k)

        monkeypatch.setattr(Path, "mkdir", refuse)
    try:
        rc = main(["pretrain", "--data", str(world["data"]), "--out", str(ro / "run"), *TINY])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and err[-1].startswith("byel: error: Permission denied") and str(ro) in err[-1]
    finally:
        os.chmod(ro, 0o700)


def test_full_disk_keeps_the_previous_checkpoint(world, tmp_path, monkeypatch, capsys):
    """A write error (ENOSPC) while saving: one line, exit 1, and the last good checkpoint intact."""
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(world["data"]), "--out", str(out), *TINY]) == 0
    last = out / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    def full_disk(obj, f, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    rc = main(["pretrain", "--data", str(world["data"]), "--out", str(out), "--epochs", "2", "--resume", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1] == "byel: error: No space left on device"
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]
