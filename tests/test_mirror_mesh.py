"""A mirrored face's mesh derived from the face's own (byel.faces.mirror), not measured again: the
left-right correspondence of the 478 points, mirroring twice, and the shipped model's predictions
with the derived mesh against those with the mirrored crop measured again (byel.classifier)."""

from __future__ import annotations

import numpy as np
import pytest

from byel import classifier, imageio
from byel.detect import FaceFinder
from byel.faces.batch import measure_crop
from byel.faces.mesher import EYE_CORNERS, N_LANDMARKS, FaceMesher
from byel.faces.mirror import mirror_landmarks, mirror_meshes, mirror_pairs
from conftest import PHOTOS


@pytest.fixture(scope="module")
def group():
    """The fixture group photo's five faces as the landmarker finds them (crops for the shipped model)."""
    faces = FaceFinder(48)(imageio.read(PHOTOS / "group.jpg"))
    assert len(faces) == 5
    return faces


def test_the_correspondence_is_an_involution_pairing_left_with_right():
    pairs = mirror_pairs()
    assert pairs.shape == (N_LANDMARKS,) and sorted(pairs) == list(range(N_LANDMARKS))
    assert (pairs[pairs] == np.arange(N_LANDMARKS)).all()
    assert pairs[EYE_CORNERS[0]] == EYE_CORNERS[1] and pairs[468] == 473  # eye corners, iris centres
    assert pairs[1] == 1 and pairs[152] == 152  # nose tip and chin lie on the midline
    assert 0 < (pairs == np.arange(N_LANDMARKS)).sum() < 50


def test_mirroring_twice_returns_the_mesh(group):
    pts = group[0].mesh.landmarks
    for width in (None, 640.0):
        once = mirror_landmarks(pts, width)
        assert not np.allclose(once, pts)
        np.testing.assert_allclose(mirror_landmarks(once, width), pts, atol=1e-3)
    batch = np.stack([f.mesh.landmarks for f in group])  # (N, 478, 3): each face in its place
    np.testing.assert_allclose(mirror_landmarks(batch), np.stack([mirror_landmarks(p) for p in batch]))


def test_the_derived_mesh_lies_where_the_mirror_image_is_measured():
    """A fixture face crop and its mirror image, each measured: the first's mesh mirrored lies on
    the second's, point for point (irises included), within 3 % of the face's width."""
    mesher = FaceMesher("detect", max_faces=1)
    crop = imageio.read(sorted((PHOTOS.parent / "fer_sample" / "happy").iterdir())[0])
    crop = np.repeat(crop[..., None], 3, -1) if crop.ndim == 2 else crop
    face, seen = measure_crop(mesher, crop), measure_crop(mesher, np.ascontiguousarray(crop[:, ::-1]))
    derived = mirror_landmarks(face.landmarks, crop.shape[1])
    width = np.ptp(seen.landmarks[:, 0])
    err = np.linalg.norm(derived[:, :2] - seen.landmarks[:, :2], axis=1) / width
    assert err.mean() < 0.03 and err[468:].mean() < 0.03
    unpaired = face.landmarks.copy()  # mirrored without renumbering: far off
    unpaired[:, 0] = crop.shape[1] - unpaired[:, 0]
    assert (np.linalg.norm(unpaired[:, :2] - seen.landmarks[:, :2], axis=1) / width).mean() > 3 * err.mean()


def test_predictions_with_the_derived_mesh_match_the_measured_one(group):
    """The shipped model (fused head) on the group photo's faces, mirrored: the derived mirrored
    mesh against the mirrored crop measured again gives probabilities within 0.1 and the same
    label wherever the top probability is >= 0.5."""
    model = classifier.load()
    assert classifier.uses_geometry(model)
    crops, meshes = np.stack([f.crop for f in group]), [f.mesh for f in group]
    derived = classifier.face_probs(model, crops, meshes, mirror=True)
    flipped = classifier.mirrored(crops)
    alone = classifier.measure(model, crops, cache=False, meshes=meshes).fuse(classifier.predict_probs(model, crops))
    measured = classifier.measure(model, flipped, cache=False)
    assert measured.found.all()
    other = measured.fuse(classifier.predict_probs(model, flipped))
    remeasured = (alone.astype(np.float64) + other) / 2
    np.testing.assert_allclose(derived, remeasured, atol=0.1)
    sure = np.maximum(derived.max(1), remeasured.max(1)) >= 0.5
    assert (derived.argmax(1) == remeasured.argmax(1))[sure].all()


def test_a_face_and_its_mirror_image_get_the_same_probabilities(group):
    """With the derived mesh the mirror average is symmetric: the mirrored crop with its mirrored
    mesh is predicted as the crop with its own."""
    from byel.faces.batch import Meshes
    from byel.faces.mesher import Face

    model = classifier.load()
    crops, meshes = np.stack([f.crop for f in group]), [f.mesh for f in group]
    m = mirror_meshes(Meshes.from_faces(meshes), FaceMesher("crop"))
    mirrored = [Face(tuple(m.boxes[i]), f.score, f.presence, m.landmarks[i], m.blendshapes[i])
                for i, f in enumerate(meshes)]
    np.testing.assert_allclose(classifier.face_probs(model, classifier.mirrored(crops), mirrored, mirror=True),
                               classifier.face_probs(model, crops, meshes, mirror=True), atol=1e-3)


def test_prediction_runs_a_folded_copy_remade_when_the_weights_change(group):
    """byel.classifier predicts with the batch norms folded (byel.models.backbones.folded_copy):
    the probabilities of the model itself, also after its weights changed in place."""
    import torch

    model = classifier.load()
    crops = np.stack([f.crop for f in group])
    for step in range(2):
        with torch.inference_mode():
            want = model.predict_images(torch.from_numpy(crops)).numpy()
        np.testing.assert_allclose(classifier.predict_probs(model, crops), want, atol=1e-5)
        with torch.no_grad():
            model.head[-1].bias[0] += 5.0  # an in-place change, as a training step or AdaBN makes
