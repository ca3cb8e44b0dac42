"""byel.export: standalone TorchScript / ONNX models agree with the PyTorch model."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from byel import classifier
from byel.classes import CLASSES
from byel.config import NORMALIZERS
from byel.errors import ByelError, CheckpointError
from byel.export import export, onnx_available, run_onnx
from conftest import FER_SAMPLE, PHOTOS, make_checkpoints


@pytest.fixture(scope="module", params=NORMALIZERS)
def ckpts(request, tmp_path_factory):
    """Every input normalisation must travel inside the exported model."""
    return make_checkpoints(tmp_path_factory.mktemp("ckpt"), {"aug.normalize": request.param})


@pytest.fixture(scope="module")
def batch():
    """Float RGB faces in [0, 1] at the model's size (uint8 images / 255), plus random noise images."""
    from byel.data.sources import load

    faces = load(str(FER_SAMPLE), 32, progress=False, cache=False).images[::12]
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
    return torch.cat([x, torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))])


def reference(ckpt, x):
    model = classifier.load(ckpt)
    with torch.inference_mode():
        return model(model.preprocess(x)).softmax(-1)


def check_json(result, fmt, ckpt):
    meta = json.loads(open(result["json"]).read())
    assert result["json"] == result["path"] + ".json"
    assert meta["format"] == fmt and meta["classes"] == list(CLASSES)
    assert meta["input"]["shape"] == ["N", 3, 32, 32] and meta["input"]["channel_order"] == "RGB"
    assert meta["input"]["value_range"] == [0.0, 1.0] and meta["normalisation"]["applied_inside"] is True
    assert len(meta["normalisation"]["mean"]) == 3 and len(meta["normalisation"]["std"]) == 3
    assert meta["source_checkpoint"] == str(ckpt.resolve()) and meta["byel_version"]


def test_torchscript_matches_pytorch(tmp_path, ckpts, batch):
    r = export(ckpts[1], tmp_path / "model", "torchscript")
    assert r["path"].endswith("model.pt") and r["parity_max_abs_diff"] < 1e-5
    check_json(r, "torchscript", ckpts[1])
    scripted = torch.jit.load(r["path"])
    with torch.no_grad():
        got = scripted(batch)
    want = reference(ckpts[1], batch)
    assert got.shape == (len(batch), 6)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # the uint8 path byel itself uses (predict_images) gives the same probabilities
    uint8 = (batch * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    torch.testing.assert_close(scripted(uint8.permute(0, 3, 1, 2).float() / 255),
                               classifier.load(ckpts[1]).predict_images(uint8), atol=1e-5, rtol=0)


@pytest.mark.skipif(onnx_available() is not None, reason=str(onnx_available()))
def test_onnx_matches_pytorch(tmp_path, ckpts, batch):
    r = export(ckpts[1], tmp_path / "model.onnx", "onnx")
    assert r["parity_max_abs_diff"] < 1e-5
    check_json(r, "onnx", ckpts[1])
    got = run_onnx(r["path"], batch.numpy())  # batch size differs from the export example: dynamic axis
    np.testing.assert_allclose(got, reference(ckpts[1], batch).numpy(), atol=1e-5, rtol=0)


def test_export_refuses_bad_requests(tmp_path, ckpts):
    with pytest.raises(ByelError, match="unknown export format"):
        export(ckpts[1], tmp_path / "m", "tflite")
    with pytest.raises(CheckpointError, match="fine-tune it first"):
        export(ckpts[0], tmp_path / "m", "torchscript")
    with pytest.raises(CheckpointError, match="not found"):
        export(tmp_path / "missing.ckpt", tmp_path / "m", "torchscript")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_fused_model_exports_its_geometry_head_and_how_to_compute_its_features(tmp_path, fmt):
    import hashlib

    import cv2

    pytest.importorskip("ai_edge_litert")
    if fmt == "onnx" and onnx_available():
        pytest.skip(onnx_available())
    from byel.faces import FaceMesher, Meshes, geometry_features
    from byel.faces.model import DEFAULT_MODEL

    pixels = make_checkpoints(tmp_path / "pixels")[1]
    fused = make_checkpoints(tmp_path / "fused", {"finetune.head": "fused"})[1]
    ck = torch.load(fused, weights_only=False)
    gen = torch.Generator().manual_seed(0)
    ck["state_dict"]["geometry.mean"] = torch.randn(1008, generator=gen) * 0.1  # a fitted-looking head
    ck["state_dict"]["geometry.std"] = torch.rand(1008, generator=gen) + 0.5
    ck["state_dict"]["fusion_weight"] = torch.tensor(0.3)
    torch.save(ck, fused)
    r = export(fused, tmp_path / "out" / "model", fmt)
    path = tmp_path / "out" / f"model.geometry{'.pt' if fmt == 'torchscript' else '.onnx'}"
    assert r["geometry_path"] == str(path) and r["geometry_parity_max_abs_diff"] < 1e-5
    geo = json.loads(open(r["json"]).read())["geometry"]
    assert geo["file"] == path.name and geo["head"] == "fused" and geo["fusion_weight"] == 0.3
    assert geo["landmarker"]["sha256"] == hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    assert geo["input"]["shape"] == ["N", 1008] and geo["features"]["blendshapes"][:2] == ["_neutral", "browDownLeft"]
    assert "33" in geo["features"]["alignment"] and "263" in geo["features"]["alignment"] and "needs" in geo
    # the features of real faces, from the JSON's recipe alone, are byel's own ...
    faces = FaceMesher().find(cv2.cvtColor(cv2.imread(str(PHOTOS / "group.jpg")), cv2.COLOR_BGR2RGB))
    rows = []
    for f in faces:
        z = f.landmarks[:, 0].astype(np.float64) + 1j * f.landmarks[:, 1]
        w = (z - (z[33] + z[263]) / 2) / (z[263] - z[33])
        rows.append(np.concatenate([f.blendshapes, np.stack([w.real, w.imag], -1).ravel()]))
    feats = np.array(rows, np.float32)
    np.testing.assert_allclose(feats, geometry_features(Meshes.from_faces(faces))[0], atol=1e-5)
    # ... and the exported head turns them into GeometryHead's probabilities
    want = classifier.load(fused).geometry.probs(feats)
    got = torch.jit.load(str(path))(torch.from_numpy(feats)).numpy() if fmt == "torchscript" else run_onnx(path, feats)
    assert len(faces) == 5 and np.abs(want - 1 / 6).max() > 0.01  # not a flat head
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # a pixels-only model: one file, no geometry block
    r = export(pixels, tmp_path / "plain" / "model", fmt)
    assert "geometry_path" not in r and "geometry" not in json.loads(open(r["json"]).read())
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == sorted(Path(r[k]).name for k in ("path", "json"))
