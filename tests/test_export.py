"""byel.export: standalone TorchScript / ONNX models agree with the PyTorch model."""

import json

import numpy as np
import pytest
import torch

from byel.classes import CLASSES
from byel.config import NORMALIZERS
from byel.errors import ByelError, CheckpointError
from byel.evaluate import load_classifier
from byel.export import export, onnx_available, run_onnx
from test_predict import make_checkpoints


@pytest.fixture(scope="module", params=NORMALIZERS)
def ckpts(request, tmp_path_factory):
    """Every input normalisation must travel inside the exported model."""
    return make_checkpoints(tmp_path_factory.mktemp("ckpt"), {"aug.normalize": request.param})


@pytest.fixture(scope="module")
def batch():
    """Float RGB faces in [0, 1] at the model's size (uint8 images / 255), plus random noise images."""
    from byel.data.sources import load
    from conftest import FER_SAMPLE

    faces = load(str(FER_SAMPLE), 32, progress=False, cache=False).images[::12]
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
    return torch.cat([x, torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))])


def reference(ckpt, x):
    model = load_classifier(ckpt)
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
                               load_classifier(ckpts[1]).predict_images(uint8), atol=1e-5, rtol=0)


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
