"""The third view (issue 28, item 3): the landmark model's 4x4x128 activation map, read for every
face crop, and the opt-in activation head (finetune.no_mesh activations) that scores the faces
without a mesh in a geometry | fused model; older checkpoints predict exactly as before."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from byel import classifier, imageio
from byel.config import check_no_mesh, load_config
from byel.errors import ByelError, ConfigError
from byel.faces import geometry_features, measure_images
from byel.faces.activations import (ACTIVATION_SHAPE, ACTIVATION_TENSOR, N_ACTIVATIONS, ActivationReader,
                                    activation_features, activation_tensor)
from byel.faces.head import fit_activations, fit_geometry_head
from byel.faces.model import interpreter, read_models
from conftest import FER_SAMPLE, make_checkpoints

pytest.importorskip("ai_edge_litert")

MESH = FER_SAMPLE / "happy" / "PublicTest_10130075.jpg"
NO_MESH = FER_SAMPLE / "angry" / "PublicTest_11521746.jpg"  # the landmarker finds no face mesh on it


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return np.stack([imageio.read(MESH), imageio.read(NO_MESH)])


def test_the_map_is_found_by_name_and_shape_and_feeds_the_last_stage():
    it = interpreter(read_models()["face_landmarks_detector.tflite"], preserve_all_tensors=True)
    index = activation_tensor(it)
    detail = next(d for d in it.get_tensor_details() if d["index"] == index)
    assert detail["name"].startswith(ACTIVATION_TENSOR)
    assert tuple(detail["shape"]) == (1, *ACTIVATION_SHAPE) and N_ACTIVATIONS == 2048
    # it is the last 4x4x128 map: no later tensor has that shape
    later = [d for d in it.get_tensor_details() if d["index"] > index and tuple(d["shape"]) == (1, *ACTIVATION_SHAPE)]
    assert not later


def test_features_exist_for_a_face_without_a_mesh(crops):
    found = measure_images(crops, cache=False, workers=1).found
    assert found.tolist() == [True, False]  # the premise: the second crop has no mesh
    feats, meta = activation_features(crops, cache=False, workers=1)
    assert feats.shape == (2, N_ACTIVATIONS) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and feats.std(1).min() > 0.1
    assert not np.allclose(feats[0], feats[1])
    one = ActivationReader().read(crops[1])  # the reader alone gives the same row
    np.testing.assert_array_equal(one, feats[1])


def test_bad_bundle_and_a_model_without_the_map_are_one_line(tmp_path):
    blend = interpreter(read_models()["face_blendshapes.tflite"], preserve_all_tensors=True)
    with pytest.raises(ByelError) as e:
        activation_tensor(blend)
    assert "4x4x128 activation map" in str(e.value) and "\n" not in str(e.value)
    bad = tmp_path / "face_landmarker.task"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("face_landmarks_detector.tflite", b"not a model")
    with pytest.raises(ByelError) as e:
        ActivationReader(model=str(bad))
    assert "\n" not in str(e.value)


def test_no_mesh_activations_needs_a_geometry_head(tmp_path, capsys):
    from byel.cli import main

    with pytest.raises(ConfigError, match="finetune.no_mesh=activations needs a face-geometry head"):
        check_no_mesh(load_config("smoke", {"finetune.no_mesh": "activations"}))
    check_no_mesh(load_config("smoke", {"finetune.head": "fused", "finetune.no_mesh": "activations"}))
    with pytest.raises(ConfigError):
        load_config("smoke", {"finetune.no_mesh": "pixel"})  # not one of NO_MESH
    # on the command line, refused before any work, in one line
    code = main(["finetune", "--data", str(FER_SAMPLE), "--out", str(tmp_path / "ft"), "--preset", "smoke",
                 "--set", "finetune.no_mesh=activations"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.count("\n") == 0 and "needs a face-geometry head" in err
    assert not (tmp_path / "ft").exists()


def test_the_shipped_fused_model_predicts_exactly_as_before(crops):
    """Without finetune.no_mesh in its config, a fused checkpoint has no activation head and its
    faces without a mesh get the pixel CNN's probabilities, bit for bit (the formula of before)."""
    model = classifier.load()
    assert model.head_kind == "fused" and not classifier.uses_activations(model)
    assert not any(k.startswith("activation_head") for k in model.state_dict())
    pixels = classifier.predict_probs(model, crops)
    feats, found = geometry_features(measure_images(crops, cache=False))
    geo = model.geometry.probs(feats)
    w = float(model.fusion_weight)
    want = pixels.astype(np.float64)
    want[found] = (1 - w) * want[found] + w * geo[found].astype(np.float64)
    got = classifier.face_probs(model, crops)
    assert got.tobytes() == want.astype(np.float32).tobytes()
    assert got[1].tobytes() == pixels[1].tobytes()  # no mesh: the pixel CNN's own row
    assert classifier.measure(model, crops, cache=False).record()["no_mesh"] == classifier.BY_PIXELS


def test_an_old_checkpoint_without_the_key_loads_as_before(tmp_path):
    _, ft = make_checkpoints(tmp_path, {"finetune.head": "fused"})
    ckpt = torch.load(ft, weights_only=False)
    del ckpt["byel"]["config"]["finetune"]["no_mesh"]  # as written before the option existed
    torch.save(ckpt, ft)
    model = classifier.load(ft)
    assert model.no_mesh == "pixels" and not classifier.uses_activations(model)
    assert set(model.state_dict()) == set(ckpt["state_dict"])


def test_the_activation_head_scores_the_faces_without_a_mesh(tmp_path, crops):
    _, ft = make_checkpoints(tmp_path, {"finetune.head": "fused", "finetune.no_mesh": "activations"})
    model = classifier.load(ft)
    assert classifier.uses_activations(model)
    # fit both heads on a tiny labelled set (the crops and their mirror images, two classes)
    images = np.concatenate([crops, crops[:, :, ::-1]])
    labels = np.array([3, 0, 3, 0])
    head = fit_activations(images, labels, n_classes=len(model.classes))
    feats, found = geometry_features(measure_images(crops, cache=False))
    model.activation_head.load_state_dict(head.state_dict())
    model.geometry.load_state_dict(fit_geometry_head(np.stack([feats[0], feats[0] + 0.01]), np.array([3, 0])).state_dict())
    model.fusion_weight.fill_(0.5)
    ckpt = torch.load(ft, weights_only=False)
    ckpt["state_dict"] = model.state_dict()
    torch.save(ckpt, ft)

    loaded = classifier.load(ft)
    geo = classifier.measure(loaded, crops, cache=False)
    assert geo.found.tolist() == [True, False] and geo.activations.tolist() == [False, True]
    assert np.isfinite(geo.probs).all()
    acts, _ = activation_features(crops[1:], cache=False)
    np.testing.assert_allclose(geo.probs[1], head.probs(acts)[0], rtol=1e-6)
    assert geo.probs[1].argmax() == 0  # it learned the no-mesh face's label
    pixels = classifier.predict_probs(loaded, crops)
    got = classifier.face_probs(loaded, crops)
    np.testing.assert_allclose(got[1], 0.5 * pixels[1] + 0.5 * geo.probs[1], rtol=1e-5)
    assert geo.record()["no_mesh"] == classifier.BY_ACTIVATIONS and geo.record()["n_activations"] == 1


def test_finetune_fits_the_activation_head_end_to_end(tmp_path, crops):
    """`byel finetune --head fused --set finetune.no_mesh=activations` on a tiny procedural set:
    the checkpoint holds a fitted activation head and its config records the choice."""
    from byel.cli import main
    from byel.synth.generate import generate

    faces = tmp_path / "faces"
    generate(faces, per_class=6, size=96, seed=0, workers=1, progress=False)
    out = tmp_path / "ft"
    assert main(["finetune", "--data", str(faces), "--out", str(out), "--head", "fused", "--preset", "smoke",
                 "--no-progress", "--logger", "none", "--set", "data.image_size=96",
                 "--set", "finetune.no_mesh=activations"]) == 0
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", weights_only=False)
    assert ckpt["byel"]["config"]["finetune"]["no_mesh"] == "activations"
    assert ckpt["state_dict"]["activation_head.linear.weight"].shape == (6, N_ACTIVATIONS)
    assert ckpt["state_dict"]["activation_head.linear.weight"].abs().sum() > 0  # fitted, not the zeros of a new head
    assert "n_activations" in ckpt["byel"]["fusion"]
    geo = classifier.measure(classifier.load(out / "checkpoints" / "best.ckpt"), crops, cache=False)
    assert np.isfinite(geo.probs).all() and geo.activations.tolist() == [False, True]
