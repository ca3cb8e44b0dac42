"""Warp faces are made of real unlabelled faces: `byel generate` records its sources
(OUT/generate.json), loading its folder says so (ImageSet.real_uses), and a model trained on them
is tier C in every report, with the sources folder and how many faces; procedural stays tier A."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("dlib")

from byel.provenance import fingerprint  # noqa: E402
from byel.cli import main  # noqa: E402
from byel.data.sources import decode_image, load  # noqa: E402
from byel.synth import landmarks as lm  # noqa: E402
from byel.synth.generate import generate  # noqa: E402

from conftest import FER_SAMPLE, SMOKE, pretrain_and_finetune  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NEUTRAL = ROOT / "tests" / "fixtures" / "neutral"  # 12 FER2013 training neutrals

try:
    lm.predictor_path()
except Exception:  # noqa: BLE001 - the landmark model is not installed
    pytest.skip("face-recognition-models not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def warp_dir(tmp_path_factory) -> Path:
    mp = pytest.MonkeyPatch()
    mp.setenv("BYEL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    out = tmp_path_factory.mktemp("warp") / "data"
    generate(out, backend="warp", sources=str(NEUTRAL), per_class=5, size=32, seed=0, progress=False)
    mp.undo()
    return out


def _groups(root: Path) -> list[str]:
    with open(root / "manifest.csv", newline="") as f:
        return sorted({r["group"] for r in csv.DictReader(f)})


def _hashes(names, size: int) -> list[int]:
    return sorted(int(fingerprint(decode_image(str(NEUTRAL / n), size)[None])[0]) for n in names)


def test_generate_records_its_warp_sources(warp_dir):
    info = json.loads((warp_dir / "generate.json").read_text())
    faces = _groups(warp_dir)
    assert (info["backend"], info["seed"], info["size"], info["n_images"]) == ("warp", 0, 32, 30)
    assert info["per_class"] == dict.fromkeys(["anger", "disgust", "fear", "happiness", "sadness", "surprise"], 5)
    src = info["sources"]
    assert src["path"] == str(NEUTRAL.resolve()) and src["n_files"] == 12 and src["n_used"] >= 11
    assert src["n_faces_shown"] == len(faces) > 1 and sorted(src["hashes"]) == faces
    assert sorted(src["hashes"].values()) == _hashes(faces, 32)
    # not an image of the data set, labelled or not
    assert len(load(str(warp_dir), 32, progress=False)) == 30
    assert len(load(str(warp_dir), 32, progress=False, unlabelled=True)) == 30


def test_loading_warp_faces_names_their_sources(warp_dir, tmp_path):
    faces = _groups(warp_dir)
    (use,) = load(str(warp_dir), 32, progress=False).real_uses
    assert use == {"stage": "generate", "method": "warp", "data": str(NEUTRAL.resolve()), "n_images": len(faces),
                   "generated": str(warp_dir), "fingerprint": _hashes(faces, 32)}
    # read at another size: the hashes follow (read again from the sources folder)
    assert load(str(warp_dir), 40, progress=False).real_uses[0]["fingerprint"] == _hashes(faces, 40)
    # older data, no generate.json: still warp faces, from the manifest's backend and group columns
    old = tmp_path / "old"
    shutil.copytree(warp_dir, old)
    (old / "generate.json").unlink()
    (use,) = load(str(old), 32, progress=False).real_uses
    assert (use["data"], use["n_images"], use["fingerprint"]) == ("unknown (warp sources)", len(faces), None)


def test_procedural_faces_use_no_real_image(tmp_path):
    generate(tmp_path / "p", per_class=2, size=32, progress=False)
    assert "sources" not in json.loads((tmp_path / "p" / "generate.json").read_text())
    assert load(str(tmp_path / "p"), 32, progress=False).real_uses == []


def _evaluate(ckpt: Path, data: Path, report: Path) -> dict:
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--report", str(report),
                 "--no-progress"]) == 0
    return json.loads(report.read_text())


@pytest.mark.slow
def test_a_model_trained_on_warp_faces_is_tier_c(warp_dir, tmp_path, capsys):
    faces = _groups(warp_dir)
    pre, ft = pretrain_and_finetune(warp_dir, tmp_path)
    # scored on real faces, one of them a source face: tier C, which set, how many, transductive
    real = tmp_path / "real"
    for d in sorted(p for p in FER_SAMPLE.iterdir() if p.name != "neutral"):
        (real / d.name).mkdir(parents=True)
        for f in sorted(d.iterdir())[:3]:
            shutil.copy(f, real / d.name)
    shutil.copy(NEUTRAL / faces[0], real / "angry")
    capsys.readouterr()
    r = _evaluate(ft / "checkpoints" / "best.ckpt", real, tmp_path / "ev.json")
    assert r["tier"]["name"] == "C" and r["tier"]["label"] == "tier C (+ unlabelled real images)"
    assert r["tier"]["unlabelled_real"] == [{"stage": "generate", "method": "warp", "data": str(NEUTRAL.resolve()),
                                             "n_images": len(faces), "generated": str(warp_dir),
                                             "transductive": True, "n_evaluated_among": 1}]
    assert f"learned from {len(faces)} unlabelled real faces ({NEUTRAL.resolve()})" in capsys.readouterr().out
    for ckpt in (pre / "checkpoints" / "last.ckpt", ft / "checkpoints" / "best.ckpt"):
        (g,) = torch.load(ckpt, weights_only=True)["byel"]["generator_sources"]  # fine-tuning adds no duplicate
        assert (g["data"], g["n_images"]) == (str(NEUTRAL.resolve()), len(faces))


@pytest.mark.slow
def test_a_model_trained_on_procedural_faces_stays_tier_a(tmp_path):
    data = tmp_path / "p"
    generate(data, per_class=12, size=32, progress=False)
    _, ft = pretrain_and_finetune(data, tmp_path)
    assert "generator_sources" not in torch.load(ft / "checkpoints" / "best.ckpt", weights_only=True)["byel"]
    r = _evaluate(ft / "checkpoints" / "best.ckpt", FER_SAMPLE, tmp_path / "ev.json")
    assert r["tier"]["name"] == "A" and r["tier"]["unlabelled_real"] == []


def test_ablation_table_says_tier_c_for_warp_training_faces(tmp_path):
    from byel.experiments import write_table

    use = {"stage": "generate", "method": "warp", "data": "/src", "n_images": 7, "transductive": False}
    results = [{"method": m, "seed": 0, "preset": "smoke", "overrides": [],
                "eval": {"real": {"macro_f1": 0.3, "tier": {"name": "C", "unlabelled_real": [use]},
                                  "adabn": {"macro_f1": 0.3, "data": "evaluated"}}}} for m in ("supervised", "byel")]
    md = write_table(results, tmp_path, ["real"]).read_text()
    assert "Tier C in every column: the synthetic training faces are warped from 7 source faces of /src" in md
    assert "Tier A" not in md and "Trained on faces warped from unlabelled real faces: not transductive" in md


def test_geometry_transfer_tier_follows_warp_and_mesh_per_class(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import geometry_transfer as gt

    args = gt.argparse.Namespace(out=str(tmp_path), size=32, seed=0, workers=1, sources=str(NEUTRAL),
                                 warp_strength=2.0, warp_per_class=0, procedural_per_class=2)
    assert gt.tier_label(gt.synthetic(args)[-1]) == gt.TIER == "tier B (+ pretrained face-geometry model)"
    args.warp_per_class = 2
    uses = gt.synthetic(args)[-1]
    label = gt.tier_label(uses)
    n = len(_groups(tmp_path / "data-warp"))
    assert label == ("tier B+C (+ pretrained face-geometry model, + unlabelled real images: the warp and mesh "
                     f"faces' sources, {n} faces of {NEUTRAL.resolve()})")
    args.warp_per_class, args.mesh_per_class = 0, 2  # mesh faces are made of real faces too
    mesh_label = gt.tier_label(gt.synthetic(args)[-1])
    assert mesh_label.startswith("tier B+C") and str(NEUTRAL.resolve()) in mesh_label
    r = {"tier": label, "real": "r", "n_real": 1, "n_synthetic": 24, "generate_commands": [], "classifier": "c",
         "modes": [], "speed_images": 1, "workers": 1, "seconds": {"total": 1, "generate": 1}}
    md = gt.markdown(r, "python benchmarks/geometry_transfer.py")
    assert md.startswith(f"# Geometry transfer — {label}\n") and "| tier B+C | mesh mode |" in md
    assert "| tier B |" not in md
    del sys.modules["geometry_transfer"]


@pytest.mark.slow
def test_generator_transfer_labels_warp_rows_tier_c(tmp_path):
    import subprocess

    cmd = [sys.executable, str(ROOT / "benchmarks" / "generator_transfer.py"), "--real", str(FER_SAMPLE),
           "--backends", "warp", "--sources", str(NEUTRAL), "--per-class", "6", "--size", "32",
           "--epochs", "1", "--preset", "smoke", "--workers", "1", "--out", "bench"]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    # the same call again reads the finished run back (how seeds are added later) ...
    first = (tmp_path / "bench" / "results.json").read_text()
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "read back from bench/warp-s0/result.json" in again.stdout
    assert (tmp_path / "bench" / "results.json").read_text() == first
    # ... but not under other settings
    other = subprocess.run(cmd[:-2] + ["--lr", "0.01", "--out", "bench"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert other.returncode == 0 and "read back" not in other.stdout
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)  # the first settings again
    assert p.returncode == 0, p.stderr[-2000:]
    (r,) = json.loads((tmp_path / "bench" / "results.json").read_text())
    (use,) = r["tier"]["unlabelled_real"]
    assert r["tier"]["name"] == "C" and (use["stage"], use["data"]) == ("generate", str(NEUTRAL.resolve()))
    assert use["n_images"] == len(_groups(tmp_path / "bench" / "warp-s0" / "data")) and use["transductive"] is False
    assert r["adabn_tier"]["name"] == "C" and [u["stage"] for u in r["adabn_tier"]["unlabelled_real"]] == ["generate", "evaluate"]
    assert f"made from {use['n_images']} faces of {NEUTRAL.resolve()}" in p.stdout
    assert "| C | " in p.stdout.rstrip().splitlines()[-1]  # the tier column, then minutes per run


@pytest.mark.slow
def test_demo_on_warp_faces_reports_tier_c(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--backend", "warp", "--sources", str(NEUTRAL), "--per-class", "6",
                 "--real", str(FER_SAMPLE), *SMOKE]) == 0
    (use,) = json.loads((out / "report.json").read_text())["evaluation"]["tier"]["unlabelled_real"]
    assert (use["stage"], use["data"], use["n_images"]) == ("generate", str(NEUTRAL.resolve()),
                                                            len(_groups(out / "synthetic")))


def test_generator_transfer_note_names_each_source_folder_once(monkeypatch):
    """Runs over several seeds and backends draw different numbers of source faces from one
    folder: the note gives the folder once, with the range."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import generator_transfer as gt

    run = lambda n: {"tier": {"name": "C", "unlabelled_real": [{"stage": "generate", "data": "/src", "n_images": n}]}}  # noqa: E731
    assert "made from 2448–2605 faces (per run) of /src)" in gt.tier_note([run(2605), run(2448), run(2500)])
    assert "made from 7 faces of /src)" in gt.tier_note([run(7), run(7)])
    del sys.modules["generator_transfer"]
