"""Where commands write: no output may be, hold or lie inside one of the command's inputs (a table
such as predictions.csv may go beside them), and no two outputs of one command, the files named
after an option included (evaluate's confusion matrix, export's JSON and geometry model, inspect's
problem list), may share a path. All of it is checked before any work, so a refused command
leaves every file as it was and creates nothing; outputs are written whole (a full disk leaves no
empty or half file); evaluate's default report never lands beside a stray checkpoint or inside
the installed package."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from byel.cli import build_parser, main
from byel.cli.paths import check_paths
from conftest import FER_SAMPLE

PHOTOS = Path(__file__).parent / "fixtures" / "photos"
SHIPPED = Path(__file__).parent.parent / "byel" / "assets" / "default_model" / "model.ckpt"


def _tree(root: Path) -> dict[str, str]:
    """Every file and folder under root: files by their SHA-256, folders as 'dir'."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _refused(argv: list[str], capsys, needle: str) -> str:
    """main(argv) ends as one `byel: error:` line containing needle, exit code 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("byel: error: ") and "Traceback" not in err, err
    assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def photos(tmp_path) -> Path:
    """tmp_path/a1/group.jpg and tmp_path/a2/photos/ with real faces (copies)."""
    (tmp_path / "a1").mkdir()
    shutil.copy(PHOTOS / "group.jpg", tmp_path / "a1" / "group.jpg")
    (tmp_path / "a2" / "photos").mkdir(parents=True)
    for f in sorted((FER_SAMPLE / "happy").glob("*.jpg"))[:5]:
        shutil.copy(f, tmp_path / "a2" / "photos" / f.name)
    return tmp_path


@pytest.fixture
def faces(tmp_path) -> Path:
    """A small labelled copy of the real faces: two per class."""
    root = tmp_path / "faces"
    for cls in ("angry", "disgust", "fear", "happy", "sad", "surprise"):
        (root / cls).mkdir(parents=True)
        for f in sorted((FER_SAMPLE / cls).glob("*.jpg"))[:2]:
            shutil.copy(f, root / cls / f.name)
    return root


# --- an output folder around an input --------------------------------------------------------------
def test_annotated_copies_into_the_folder_of_the_input_photo_are_refused(photos, capsys):
    """Was: the photo replaced by its annotated copy, exit 0."""
    before = _tree(photos)
    _refused(["predict", str(photos / "a1" / "group.jpg"), "--annotate", str(photos / "a1"),
              "--out", str(photos / "p.csv")], capsys, "lies inside the output --annotate")
    assert _tree(photos) == before


def test_annotated_copies_into_the_parent_of_the_input_folder_are_refused(photos, capsys, monkeypatch):
    """Was: every input photo replaced (relative names under the parent are the inputs' own)."""
    monkeypatch.chdir(photos)
    before = _tree(photos)
    _refused(["predict", "a2/photos", "--annotate", "a2"], capsys, "the input INPUT a2/photos lies inside")
    assert _tree(photos) == before  # and no predictions.csv


def _make(root: Path) -> dict[str, str]:
    (root / "out" / "in").mkdir(parents=True)
    shutil.copy(PHOTOS / "group.jpg", root / "out" / "in" / "group.jpg")
    (root / "m.ckpt").write_bytes(b"never loaded: the paths are refused first")
    return {"root": str(root), "ckpt": str(root / "m.ckpt")}


# Each command with its output folder around one of its input folders (was: accepted; only an input
# FILE inside a training run's folder was refused).
AROUND = {
    "generate --sources": ["generate", "--out", "{root}/out", "--backend", "warp", "--sources", "{root}/out/in"],
    "pretrain --data": ["pretrain", "--data", "{root}/out/in", "--out", "{root}/out"],
    "finetune --data": ["finetune", "--data", "{root}/out/in", "--out", "{root}/out"],
    "adapt --data": ["adapt", "--checkpoint", "{ckpt}", "--data", "{root}/out/in", "--method", "adabn",
                     "--out", "{root}/out"],
    "submit --frames": ["submit", "--checkpoint", "{ckpt}", "--frames", "{root}/out/in", "--out", "{root}/out"],
    "demo --real": ["demo", "--out", "{root}/out", "--real", "{root}/out/in"],
    "demo --sources": ["demo", "--out", "{root}/out", "--backend", "warp", "--sources", "{root}/out/in"],
    "demo --unlabelled": ["demo", "--out", "{root}/out", "--unlabelled", "{root}/out/in"],
    "predict --annotate": ["predict", "{root}/out/in", "--checkpoint", "{ckpt}", "--annotate", "{root}/out",
                           "--out", "{root}/p.csv"],
}


@pytest.mark.parametrize("case", sorted(AROUND))
def test_an_output_folder_that_holds_an_input_is_refused_by_every_command(case, tmp_path, capsys):
    world = _make(tmp_path)
    before = _tree(tmp_path)
    _refused([a.format(**world) for a in AROUND[case]], capsys, "lies inside the output --out"
             if "--annotate" not in AROUND[case] else "lies inside the output --annotate")
    assert _tree(tmp_path) == before


def test_a_table_may_go_beside_its_inputs_but_never_over_one(photos, capsys):
    ok = build_parser().parse_args(["predict", str(photos / "a2" / "photos"), "--out", str(photos / "a2" / "photos" / "p.csv")])
    check_paths(ok)  # predictions.csv in the photos' folder: never read as a photo
    (photos / "a2" / "photos" / "clip.mp4").write_bytes(b"a video the folder holds")
    before = _tree(photos)
    for victim in ("clip.mp4", sorted(os.listdir(photos / "a2" / "photos"))[0]):  # was: the video replaced by the CSV
        _refused(["predict", str(photos / "a2" / "photos"), "--out", str(photos / "a2" / "photos" / victim)], capsys,
                 "is one of the images or videos of the input INPUT")
    _refused(["predict", str(photos / "a1" / "group.jpg"), "--out", str(photos / "a1" / "group.jpg")], capsys,
             "is also this command's input INPUT")
    assert _tree(photos) == before


# --- two outputs on one path ------------------------------------------------------------------------
def test_evaluate_report_under_its_pictures_name_is_refused(faces, tmp_path, capsys):
    """Was: the JSON written as one.png, the confusion matrix lost, exit 0."""
    before = _tree(tmp_path)
    _refused(["evaluate", "--checkpoint", str(SHIPPED), "--data", str(faces), "--report", str(tmp_path / "one.png")],
             capsys, f"--report {tmp_path / 'one.png'} and the confusion matrix {tmp_path / 'one.png'} are the same path")
    assert _tree(tmp_path) == before


def test_inspect_contact_sheet_and_log_on_one_path_are_refused(faces, tmp_path, capsys):
    before = _tree(tmp_path)
    x = str(tmp_path / "x.png")
    _refused(["data", "inspect", str(faces), "--out", x, "--log", x], capsys, f"--out {x} and --log {x} are the same path")
    assert _tree(tmp_path) == before


def test_predict_csv_and_annotated_folder_on_one_path_are_refused_before_the_work(photos, capsys):
    """Was: the whole job ran, then failed and left a folder p.csv/."""
    before = _tree(photos)
    p = str(photos / "p.csv")
    _refused(["predict", str(photos / "a1" / "group.jpg"), "--out", p, "--annotate", p], capsys,
             f"--out {p} and --annotate {p} are the same path")
    assert _tree(photos) == before


def test_latents_and_emotion_vectors_on_one_path_are_refused(faces, tmp_path, capsys):
    a = str(tmp_path / "a.png")
    _refused(["plot", "latents", "--checkpoint", str(SHIPPED), "--data", str(faces), "--out", a,
              "--emotion-vectors", a], capsys, "are the same path")
    assert not Path(a).exists()


@pytest.mark.parametrize("earlier", ["c.pt", "c.pt.json", "c.geometry.pt"])
def test_export_never_replaces_an_earlier_exports_file_without_overwrite(earlier, tmp_path, capsys):
    """Was: a second export to c.pt silently replaced the first's c.pt, c.pt.json and c.geometry.pt."""
    (tmp_path / earlier).write_bytes(b"an earlier export")
    before = _tree(tmp_path)
    _refused(["export", "--checkpoint", str(SHIPPED), "--out", str(tmp_path / "c.pt")], capsys,
             f"{tmp_path / earlier} already exists")
    _refused(["export", "--checkpoint", str(SHIPPED), "--out", str(tmp_path / "c")], capsys, "--overwrite")
    assert _tree(tmp_path) == before


def test_export_writes_exactly_the_files_it_checked_and_overwrite_replaces_them(tmp_path, capsys):
    from byel.outputs import export_files

    out = tmp_path / "c.pt"
    assert main(["export", "--checkpoint", str(SHIPPED), "--out", str(out)]) == 0
    planned = {p.name for p in export_files(out, "torchscript").values()}
    assert {p.name for p in tmp_path.iterdir()} == planned == {"c.pt", "c.pt.json", "c.geometry.pt"}  # a fused model
    first = _tree(tmp_path)
    capsys.readouterr()
    _refused(["export", "--checkpoint", str(SHIPPED), "--out", str(out)], capsys, "--overwrite")
    assert _tree(tmp_path) == first
    assert main(["export", "--checkpoint", str(SHIPPED), "--out", str(out), "--overwrite"]) == 0
    assert {p.name for p in tmp_path.iterdir()} == planned


def test_an_export_over_its_own_checkpoint_by_a_derived_name_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "m.geometry.pt"
    shutil.copy(SHIPPED, ckpt)
    _refused(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.pt")], capsys,
             "is also this command's input --checkpoint")


# --- evaluate's default report --------------------------------------------------------------------
def test_default_report_lies_in_the_run_or_the_current_folder(tmp_path):
    from byel.outputs import default_report

    run = tmp_path / "runs" / "ft"
    assert default_report(run / "checkpoints" / "best.ckpt", "imagefolder:/d/fer2013-publictest/") == \
        (run / "checkpoints").resolve().parent / "eval" / "fer2013-publictest.json"
    assert default_report(tmp_path / "model.ckpt", "faces.csv:PublicTest") == Path("eval-model/faces.csv_PublicTest.json")
    assert default_report(SHIPPED, str(FER_SAMPLE)) == Path("eval-model/fer_sample.json")  # never in the package


def test_evaluate_a_stray_checkpoint_reports_into_the_current_folder(faces, tmp_path, monkeypatch, capsys):
    """Was: ~/model.ckpt -> /home/eval/ (the checkpoint's grandparent)."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(SHIPPED, home / "model.ckpt")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["evaluate", "--checkpoint", str(home / "model.ckpt"), "--data", str(faces), "--no-progress"]) == 0
    assert "report: eval-model/faces.json" in capsys.readouterr().out
    assert (work / "eval-model" / "faces.json").is_file() and (work / "eval-model" / "faces.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces", "home", "work"]


# --- written whole ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_inspect_on_a_full_disk_leaves_no_empty_or_half_file(faces, tmp_path):
    """A real failing write (a file-size limit, as a full disk): one line naming the file, and no
    contact sheet, no empty file, no temporary file left. Was: a 0-byte or half file."""
    out = tmp_path / "sheets"
    out.mkdir()
    code = ("import resource, sys; from byel.cli import main; "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (3000, resource.getrlimit(resource.RLIMIT_FSIZE)[1])); "
            "sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "data", "inspect", str(faces), "--out", str(out / "x.png")],
                       capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert errors == [f"byel: error: cannot write {out / 'x.png'}: file too large (over this system's or this "
                      "shell's file-size limit, ulimit -f)"], r.stderr[-2000:]
    assert list(out.iterdir()) == []
