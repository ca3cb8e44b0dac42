"""Shared test helpers: small trees of every supported format, built on the fly in tmp_path;
checkpoints of the smoke model (untrained: `make_checkpoints`; trained once per session:
`smoke_model`); and skip marks for optional parts (a face detector, byel[serve]). Test files import
the plain helpers with `from conftest import ...`; a test file never imports another test file.

``fer_sample`` is real: 20 FER2013 PublicTest faces per class (folders angry, disgust, fear,
happy, sad, surprise, neutral), usable as a tiny real evaluation set.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

# Tiny models run fastest (and most predictably on a shared 2-core machine) on one thread.
torch.set_num_threads(1)

FER_SAMPLE = Path(__file__).parent / "fixtures" / "fer_sample"
PHOTOS = Path(__file__).parent / "fixtures" / "photos"  # group.jpg: five pasted faces (see its README.md)
AFFWILD2_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"


@pytest.fixture(autouse=True)
def _private_data_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty data cache, never the user's ~/.cache."""
    monkeypatch.setenv("BYEL_CACHE_DIR", str(tmp_path_factory.mktemp("byel-cache")))


def write_image(path: Path, value: int = 128, size: int = 40, channels: int = 3) -> Path:
    """A small image file whose format follows the suffix; pixels are `value` plus a gradient."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 40, size, dtype=np.float32)[None, :]
    grey = np.clip(value + ramp + ramp.T, 0, 255).astype(np.uint8)
    img = grey if channels == 1 else np.repeat(grey[..., None], channels, axis=-1)
    ok, buf = cv2.imencode(path.suffix, img)
    assert ok, path
    buf.tofile(str(path))  # tofile, not cv2.imwrite: works for non-ASCII paths
    return path


SIX = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")


def write_class_folders(root: Path, per_class: int, size: int = 32) -> Path:
    """A small labelled folder root/<class>/<i>.png with class-dependent brightness."""
    for ci, name in enumerate(SIX):
        for i in range(per_class):
            write_image(root / name / f"{i}.png", value=(20 + 35 * ci + 7 * i) % 220, size=size)
    return root


SMOKE = ["--preset", "smoke", "--no-progress", "--logger", "none"]


def pretrain_and_finetune(data: Path, root: Path, extra: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A smoke stage-1 run in root/pre and its fine-tuning in root/ft, through the CLI; `extra`:
    more options for both (e.g. ("--classes", "7"))."""
    from byel.cli import main

    pre, ft = root / "pre", root / "ft"
    assert main(["pretrain", "--data", str(data), "--out", str(pre), *SMOKE, *extra]) == 0
    assert main(["finetune", "--checkpoint", str(pre / "checkpoints" / "last.ckpt"), "--data", str(data),
                 "--out", str(ft), *SMOKE, *extra]) == 0
    return pre, ft


@dataclass(frozen=True)
class SmokeModel:
    """A finished smoke pre-training (run folder `pre`) and its fine-tuning (`ft`) on `data`."""

    data: Path
    pre: Path
    ft: Path

    @property
    def pretrained(self) -> Path:
        return self.pre / "checkpoints" / "last.ckpt"

    @property
    def finetuned(self) -> Path:
        return self.ft / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="session")
def smoke_model(tmp_path_factory) -> SmokeModel:
    """The trained smoke model, shared by the whole session: `pretrain_and_finetune` on 4 images
    per class of `write_class_folders`, once. Read it, never write into it: a test that writes a run
    folder, resumes or overwrites copies it first (shutil.copytree)."""
    root = tmp_path_factory.mktemp("smoke-model")
    with pytest.MonkeyPatch.context() as mp:  # a private data cache, as for every test
        mp.setenv("BYEL_CACHE_DIR", str(root / "cache"))
        data = write_class_folders(root / "data", 4)
        pre, ft = pretrain_and_finetune(data, root)
    return SmokeModel(data, pre, ft)


def make_checkpoints(root: Path, overrides: dict | None = None) -> tuple[Path, Path]:
    """A stage-1 and a fine-tuned checkpoint of the smoke model in byel's checkpoint format,
    untrained (seconds faster than training, and loaded by exactly the same code)."""
    from byel.checkpoint import atomic_torch_save, metadata
    from byel.config import load_config
    from byel.methods import FineTune, create_method

    cfg = load_config("smoke", overrides or {})
    torch.manual_seed(0)
    pre, ft = root / "pre.ckpt", root / "ft.ckpt"
    atomic_torch_save({"state_dict": create_method(cfg.to_dict()).state_dict(), "byel": metadata("pretrain", cfg)}, pre)
    model = FineTune(cfg.to_dict())
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    atomic_torch_save({"state_dict": model.state_dict(), "byel": metadata("finetune", cfg)}, ft)
    return pre, ft


def read_rows(path) -> tuple[list[str], list[dict]]:
    """(column names, rows) of a CSV file such as predict's."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@functools.cache
def have_detector() -> bool:
    """Whether a face detector is installed (OpenCV cascade or dlib)."""
    from byel.errors import ByelError
    from byel.detect import FaceDetector

    try:
        FaceDetector()
        return True
    except ByelError:
        return False


@functools.cache
def have_serve_extra() -> bool:
    """Whether byel[serve] is installed (fastapi, uvicorn, python-multipart)."""
    from byel.errors import ByelError
    from byel.serve import require_extra

    try:
        require_extra()
        return True
    except ByelError:
        return False


needs_detector = pytest.mark.skipif(not have_detector(), reason="no face detector installed (OpenCV cascade or dlib)")
needs_serve = pytest.mark.skipif(not have_serve_extra(), reason="byel[serve] not installed (fastapi, uvicorn, python-multipart)")


@pytest.fixture
def fer_sample() -> Path:
    return FER_SAMPLE


@pytest.fixture
def imagefolder_tree(tmp_path) -> Path:
    """Alias-named class folders plus everything that must be skipped or dropped.

    Usable: anger 3 (one nested), disgust 1, fear 1, happiness 2, sadness 1, surprise 1.
    Skipped: neutral 2, contempt 1, misc 1 (unknown name). Dropped: corrupt 2 (garbage,
    truncated JPEG), zero_byte 1, unsupported 1 (.txt). Ignored: .DS_Store, README.md.
    """
    root = tmp_path / "faces"
    write_image(root / "Angry" / "a1.jpg", 60)
    write_image(root / "Angry" / "a2.jpeg", 70)
    write_image(root / "Angry" / "session 2" / "ü-a3.jpg", 80)  # nested, non-ASCII
    write_image(root / "disgusted" / "d1.bmp", 90)
    write_image(root / "FEARFUL" / "f1.tif", 100)
    write_image(root / "HAPPY" / "h1.png", 110, channels=1)
    write_image(root / "HAPPY" / "h2.png", 120, channels=4)
    write_image(root / "sad" / "s1.webp", 130)
    write_image(root / "surprised" / "u1.jpg", 140)
    write_image(root / "neutral" / "n1.jpg")
    write_image(root / "neutral" / "n2.jpg")
    write_image(root / "Contempt" / "c1.jpg")
    write_image(root / "misc" / "m1.jpg")
    (root / "Angry" / "garbage.jpg").write_bytes(b"this is not a jpeg" * 10)
    good = (root / "surprised" / "u1.jpg").read_bytes()
    (root / "surprised" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "HAPPY" / "empty.png").write_bytes(b"")
    (root / "HAPPY" / "notes.txt").write_text("labels by hand\n")
    (root / "sad" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "README.md").write_text("faces\n")
    return root


def write_affwild2_annotation(path: Path, labels: list, header: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([AFFWILD2_HEADER] if header else []) + [str(v) for v in labels]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def affwild2_tree(tmp_path) -> Path:
    """tmp/affwild2/{cropped_aligned,annotations/Validation_Set}: two videos.

    videoA labels 1 2 0 7 -1 9 3 4, frame 8 missing -> anger, disgust, fear kept; neutral 1,
    other 1 skipped; invalid_label 1, label_out_of_range 1, missing_frame 1 dropped.
    videoB labels 5 6 6 x -> sadness, surprise, surprise kept; malformed_label 1 dropped.
    """
    root = tmp_path / "affwild2"
    frames = root / "cropped_aligned"
    ann = root / "annotations" / "Validation_Set"
    write_affwild2_annotation(ann / "videoA.txt", [1, 2, 0, 7, -1, 9, 3, 4])
    write_affwild2_annotation(ann / "videoB.txt", [5, 6, 6, "x"])
    for n in range(1, 8):
        write_image(frames / "videoA" / f"{n:05d}.jpg", 20 * n)
    for n in range(1, 5):
        write_image(frames / "videoB" / f"{n:05d}.jpg", 30 * n)
    return root


def fer_pixels(value: int, n: int = 48 * 48) -> str:
    return " ".join(str((value + i) % 256) for i in range(n))


@pytest.fixture
def fer_csv(tmp_path) -> Path:
    """FER2013-style CSV. PublicTest: happy, surprise usable; neutral skipped; 2 malformed
    rows (short pixels, non-numeric emotion) and 1 emotion out of range dropped.
    Training: 1 angry; PrivateTest: 1 fear."""
    rows = [
        ("0", fer_pixels(10), "Training"),
        ("3", fer_pixels(20), "PublicTest"),
        ("6", fer_pixels(30), "PublicTest"),
        ("5", fer_pixels(40), "PublicTest"),
        ("4", fer_pixels(50, n=100), "PublicTest"),
        ("x", fer_pixels(60), "PublicTest"),
        ("9", fer_pixels(70), "PublicTest"),
        ("2", fer_pixels(80), "PrivateTest"),
    ]
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + "".join(f"{e},{p},{u}\n" for e, p, u in rows))
    return path
