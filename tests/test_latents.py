"""byel.latents: PCA pictures of backbone features and the emotion-vector heat-map."""

import importlib.util

import numpy as np
import pytest
import torch

from byel.errors import ByelError, DataError
from byel.latents import cosine_matrix, plot_emotion_vectors, plot_latents
from conftest import FER_SAMPLE, make_checkpoints, write_class_folders, write_image


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    return write_class_folders(tmp_path_factory.mktemp("synth"), 5)


def test_latent_plot_synthetic_and_real(tmp_path, ckpts, synth_dir):
    unlabelled = tmp_path / "frames"
    for i in range(6):
        write_image(unlabelled / f"{i}.jpg", 40 * i, size=48)
    r = plot_latents(ckpts[1], [str(synth_dir), str(FER_SAMPLE), str(unlabelled)], tmp_path / "lat.png",
                     max_per_set=40)
    png = tmp_path / "lat.png"
    assert png.stat().st_size > 20_000 and r["png"] == str(png)
    assert [v["n"] for v in r["sets"].values()] == [30, 40, 6]
    assert [v["labelled"] for v in r["sets"].values()] == [True, True, False]
    assert len(r["pca_explained_variance"]) == 2 and sum(r["pca_explained_variance"]) <= 1 + 1e-9
    assert set(r["centroid_gap"]) == {"fer_sample", "frames"}
    assert r["tsne"] == (importlib.util.find_spec("sklearn") is not None)  # scripts/setup.sh installs it
    # a stage-1 checkpoint works too (its online backbone)
    r = plot_latents(ckpts[0], [str(synth_dir)], tmp_path / "pre.png")
    assert [v["n"] for v in r["sets"].values()] == [30] and r["centroid_gap"] == {}


def test_latent_plot_bad_input(tmp_path, ckpts):
    with pytest.raises(DataError, match="not found"):
        plot_latents(ckpts[1], [str(tmp_path / "nope")], tmp_path / "x.png")
    with pytest.raises(DataError):
        plot_latents(ckpts[1], [], tmp_path / "x.png")


def test_emotion_vector_heatmap(tmp_path, ckpts):
    cos = plot_emotion_vectors(ckpts[0], tmp_path / "w.png")
    assert cos.shape == (6, 6) and (tmp_path / "w.png").stat().st_size > 10_000
    np.testing.assert_allclose(cos, cos.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(cos), 1, atol=1e-6)
    assert np.abs(cos).max() <= 1 + 1e-9
    W = torch.load(ckpts[0], weights_only=True)["state_dict"]["classifier.W"].double().numpy()
    np.testing.assert_allclose(cos, cosine_matrix(W), atol=1e-12)
    W2 = np.random.default_rng(0).normal(size=(16, 6))
    c2 = cosine_matrix(W2)
    assert c2[0, 1] == pytest.approx(W2[:, 0] @ W2[:, 1] / np.linalg.norm(W2[:, 0]) / np.linalg.norm(W2[:, 1]))


def test_no_emotion_vectors_is_one_line_error(tmp_path, ckpts):
    with pytest.raises(ByelError, match="no emotion classifier") as e:
        plot_emotion_vectors(ckpts[1], tmp_path / "w.png")  # fine-tuned: no W
    assert "\n" not in str(e.value)
    byol, _ = make_checkpoints(tmp_path, {"method.name": "byol"})
    with pytest.raises(ByelError, match="method byol"):
        plot_emotion_vectors(byol, tmp_path / "w.png")
