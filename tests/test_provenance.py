"""byel.provenance: tiers, image fingerprints, the real faces behind generated ones, and the run
record (command, machine, versions, git commit) every results file keeps."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from byel import provenance
from byel.imageio import write_image
from byel.provenance import (LABELS, add_uses, face_hashes, fingerprint, overlaps, real_uses, run_record,
                             tier_block)

ROOT = Path(__file__).resolve().parents[1]
HEX40 = re.compile(r"[0-9a-f]{40}")


def _images(n: int, seed: int = 0, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- the run record


def test_run_record_names_command_machine_versions_and_commit():
    r = run_record("byel evaluate --checkpoint m.ckpt --data x")
    assert set(r) == {"command", "commit", "dirty", "machine", "versions"}
    assert r["command"] == "byel evaluate --checkpoint m.ckpt --data x"
    assert r["machine"]["cores"] == os.cpu_count() and r["machine"]["cpu"] and r["machine"]["os"]
    v = r["versions"]
    assert {"python", "byel", "torch", "lightning", "numpy", "opencv", "kornia", "torchmetrics"} <= set(v)
    assert v["torch"] == torch.__version__ and v["numpy"] == np.__version__
    import byel

    assert v["byel"] == byel.__version__
    # a 40-hex commit, or None where byel does not run from a git checkout
    assert r["commit"] is None or HEX40.fullmatch(r["commit"])
    if (ROOT / ".git").exists() and shutil.which("git"):  # this checkout: its own HEAD
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        assert r["commit"] == head and isinstance(r["dirty"], bool)
    else:
        assert r["commit"] is None and r["dirty"] is None


def test_run_record_defaults_to_this_process_command_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["byel", "benchmark", "ablation", "--eval", "a b"])
    assert run_record()["command"] == "byel benchmark ablation --eval 'a b'"


def test_run_record_without_git_or_outside_a_checkout_never_fails(monkeypatch, tmp_path):
    def no_git(*a, **k):
        raise FileNotFoundError("git")

    with monkeypatch.context() as m:
        m.setattr(provenance.subprocess, "run", no_git)
        r = run_record("x")
        assert (r["commit"], r["dirty"]) == (None, None) and r["versions"]["python"]
    # byel installed into a folder that is not a git checkout
    monkeypatch.setattr(provenance, "__file__", str(tmp_path / "site-packages" / "byel" / "provenance.py"))
    assert provenance.git_commit() == {"commit": None, "dirty": None}
    if shutil.which("git"):  # ... nor its top, e.g. a virtualenv's site-packages inside another repository
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
                       cwd=tmp_path, check=True)
        (tmp_path / "site-packages" / "byel").mkdir(parents=True)
        assert provenance.git_commit() == {"commit": None, "dirty": None}


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_and_overlaps_round_trip():
    a, b = _images(5, 0), _images(4, 1)
    prints = fingerprint(a)
    assert prints.dtype == torch.int64 and prints.shape == (5,) and torch.equal(prints, prints.sort().values)
    assert torch.equal(fingerprint(a[::-1]), prints)  # the set, not the order
    assert overlaps(prints, a) == 5 and overlaps(prints, b) == 0
    assert overlaps(prints, np.concatenate([b, a[:2]])) == 2
    assert overlaps(prints.tolist(), a[1:3]) == 2  # a list of hashes too (an ImageSet's real_uses)
    assert fingerprint(a[:0]).shape == (0,)


def test_face_hashes_read_the_files_as_the_loader_does(tmp_path):
    from byel.data.sources import decode_image

    img = _images(1, 3, size=40)[0]
    write_image(tmp_path / "a.png", img[..., ::-1])  # BGR on disk
    (tmp_path / "broken.png").write_bytes(b"not an image")
    hashes = face_hashes(tmp_path, ["a.png", "broken.png"], 24)
    assert list(hashes) == ["a.png"]  # an unusable source face gets no hash
    assert hashes["a.png"] == int(fingerprint(decode_image(str(tmp_path / "a.png"), 24)[None])[0])


# --------------------------------------------------------------------------- tiers


def test_tier_block_cases():
    scored = _images(6, 0)
    a = tier_block([])
    assert (a["name"], a["label"], a["unlabelled_real"], a["face_geometry"]) == ("A", LABELS["A"], [], None)
    geo = {"head": "fused", "n_mesh": 5}
    assert tier_block([], scored, geo)["name"] == "B"
    # a use that says itself whether it is transductive
    said = tier_block([{"stage": "evaluate", "method": "adabn", "data": "evaluated", "n_images": 6,
                        "transductive": True, "n_evaluated_among": 6}], scored)
    assert said["name"] == "C" and said["unlabelled_real"][0] == {
        "stage": "evaluate", "method": "adabn", "data": "evaluated", "n_images": 6, "transductive": True,
        "n_evaluated_among": 6}
    # decided image by image from the fingerprint: 2 of the scored images are among the use's
    use = {"stage": "pretrain", "data": "u", "n_images": 4, "fingerprint": fingerprint(np.concatenate([scored[:2], _images(2, 9)]))}
    (item,) = tier_block([use], scored)["unlabelled_real"]
    assert (item["transductive"], item["n_evaluated_among"]) == (True, 2) and "fingerprint" not in item
    assert tier_block([use], _images(3, 5))["unlabelled_real"][0]["transductive"] is False
    # unknown without a fingerprint (or without the evaluated images)
    for u, ev in (({**use, "fingerprint": None}, scored), (use, None)):
        (item,) = tier_block([u], ev)["unlabelled_real"]
        assert (item["transductive"], item["n_evaluated_among"]) == (None, None)
    # geometry and real images: B+C; co-train's CNN learned from the landmarker too
    assert tier_block([use], scored, geo)["name"] == "B+C"
    assert tier_block([{**use, "stage": "adapt", "method": "co-train", "face_geometry": geo}], scored)["name"] == "B+C"


def test_real_uses_and_add_uses():
    meta = {"generator_sources": [{"method": "warp", "data": "src", "n_images": 3, "fingerprint": [1, 2, 3]}],
            "unlabelled": {"data": "u", "n_images": 2}, "adaptations": [{"method": "tent", "n_images": 5}]}
    uses = real_uses(meta)
    assert [u["stage"] for u in uses] == ["generate", "pretrain", "adapt"]
    assert real_uses({}) == []
    # the same use but for its fingerprint adds nothing; another one is appended
    assert add_uses(uses, [{**uses[0], "fingerprint": None}]) == uses
    other = {"stage": "generate", "method": "mesh", "data": "src2", "n_images": 1}
    assert add_uses(uses, [other]) == [*uses, other]


# --------------------------------------------------------------------------- the benchmarks' helpers


def test_benchmarks_common_run_record_and_mean_std(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import common

    script = str(ROOT / "benchmarks" / "main_job.py")
    assert common.command_line(script, ["--real", "a b", "--seeds", "0"]) == \
        "python benchmarks/main_job.py --real 'a b' --seeds 0"
    r = common.run_record(script, ["--seeds", "0"])
    assert r["command"] == "python benchmarks/main_job.py --seeds 0" and "commit" in r
    assert common.machine(r) == (f"{r['machine']['cpu']}, {os.cpu_count()} cores, torch {torch.__version__}, "
                                 f"Python {r['versions']['python']}")
    assert common.commit({"commit": None}).startswith("unknown")
    assert common.commit({"commit": "ab" * 20, "dirty": True}) == "ab" * 20 + " (with uncommitted changes)"
    assert common.mean_std([0.25]) == "0.250"
    assert common.mean_std([0.1, 0.2]) == "0.150 ± 0.071"
