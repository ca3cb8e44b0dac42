"""The class-prior correction (byel.adapt.prior, `byel adapt --method prior|prior-em`): the
estimates on synthetic posteriors, the adapted checkpoint (weights untouched, tier C, its
predictions re-weighted through byel.classifier's one door), old checkpoints unchanged."""

import json

import numpy as np
import pytest
import torch

import byel
from byel import classifier
from byel.adapt.prior import MAX_RATIO, balance, em
from byel.cli import main
from byel.data.sources import load
from byel.provenance import real_uses, tier_block
from conftest import make_checkpoints


def _posteriors(target: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Exact posteriors under a uniform training prior of a 1-D Gaussian class model (class c:
    N(2c, 1)), for n samples whose classes are drawn with the prior `target`."""
    rng = np.random.default_rng(seed)
    k = len(target)
    y = rng.choice(k, n, p=target)
    x = rng.normal(2.0 * y, 1.0)
    loglik = -0.5 * (x[:, None] - 2.0 * np.arange(k)[None, :]) ** 2
    p = np.exp(loglik - loglik.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def test_em_recovers_a_known_shift():
    target = np.array([0.4, 0.05, 0.1, 0.25, 0.05, 0.1, 0.05])
    q, r, iterations = em(_posteriors(target, 20000))
    assert np.abs(q - target).max() < 0.02, q
    np.testing.assert_allclose(r, np.log(q * 7))
    assert 1 < iterations < 100
    # the mean posterior itself is far off: the EM did the work
    assert np.abs(_posteriors(target, 20000).mean(0) - target).max() > 0.05


def test_a_uniform_target_is_the_identity():
    uniform = np.full(7, 1 / 7)
    q, r, _ = em(_posteriors(uniform, 20000))
    assert np.abs(q - uniform).max() < 0.02 and np.abs(r).max() < 0.15
    p = np.random.default_rng(1).dirichlet(np.ones(6), 50)
    p = np.concatenate([np.roll(p, k, axis=1) for k in range(6)])  # the mean of each class is 1/6
    r, iterations = balance(p)
    assert iterations == 0 and not r.any()
    np.testing.assert_allclose(classifier.apply_prior(p, r), p, atol=1e-7)
    assert classifier.apply_prior(p, None) is p  # no correction: the very same array


def test_balance_removes_a_known_bias_and_is_bounded():
    """A model biased towards some classes (its log posteriors shifted by b) on images with the
    training prior: the balancing ratio is about -b, and the corrected mean prediction is uniform."""
    b = np.array([0, 1.0, 0, 0.6, -0.5, 0.2, -0.8])
    b -= b.mean()
    biased = classifier.apply_prior(_posteriors(np.full(7, 1 / 7), 5000), b)
    r, iterations = balance(biased)
    assert 0 < iterations < 100 and abs(r.mean()) < 1e-9
    assert np.abs(r + b).max() < 0.1, (r, -b)
    np.testing.assert_allclose(classifier.apply_prior(biased, r).mean(0), np.full(7, 1 / 7), atol=2e-4)
    dead = np.full((10, 6), 0.2)
    dead[:, 5] = 0.0  # a class the model never predicts: its ratio is capped, not infinite
    r, _ = balance(dead)
    assert np.isfinite(r).all() and np.abs(r).max() <= np.log(MAX_RATIO) + 1e-9
    q, r, iterations = em(dead)  # EM's floor: the class is not switched off entirely
    assert q[5] >= 1 / 6 / MAX_RATIO - 1e-9 and iterations <= 100


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """An untrained pixels-only smoke checkpoint and its `byel adapt --method prior` on the 140
    fixture faces."""
    root = tmp_path_factory.mktemp("prior")
    _, ft = make_checkpoints(root)
    from conftest import FER_SAMPLE

    out = root / "adapted"
    assert main(["adapt", "--checkpoint", str(ft), "--data", str(FER_SAMPLE), "--method", "prior",
                 "--out", str(out), "--no-progress"]) == 0
    return ft, out / "checkpoints" / "adapted.ckpt", out / "adapt.json"


def test_the_adapted_checkpoint_says_tier_c_and_changes_only_the_outputs(adapted, fer_sample):
    src, ckpt, report = adapted
    meta = torch.load(ckpt, weights_only=True)
    (a,) = meta["byel"]["adaptations"]
    assert a["method"] == "prior" and a["n_images"] == 140 and len(a["log_prior_ratio"]) == len(meta["byel"]["classes"])
    block = tier_block(real_uses(meta["byel"]))
    assert block["name"] == "C" and block["unlabelled_real"][0]["n_images"] == 140
    assert json.loads(report.read_text())["tier"]["name"] == "C"
    old = torch.load(src, weights_only=True)["state_dict"]
    assert all(torch.equal(v, old[k]) for k, v in meta["state_dict"].items())  # no weight changed

    before, after = classifier.load(src), classifier.load(ckpt)
    images = load(str(fer_sample), before.cfg.data.image_size, unlabelled=True, progress=False).images
    p0, p1 = classifier.predict_probs(before, images), classifier.predict_probs(after, images)
    r = np.asarray(a["log_prior_ratio"])
    np.testing.assert_allclose(p1, classifier.apply_prior(p0, r), atol=1e-6)
    assert not np.allclose(p0, p1)
    spread = lambda p: np.bincount(p.argmax(1), minlength=p.shape[1]).max()  # noqa: E731
    assert spread(p1) < spread(p0)  # the most predicted class is predicted less often
    assert a["rounds"][-1]["histogram"] == dict(zip(after.classes, np.bincount(p1.argmax(1), minlength=6).tolist()))
    # the same through face_probs (mirror averaging first) and the API
    f0, f1 = classifier.face_probs(before, images[:5], mirror=True), classifier.face_probs(after, images[:5], mirror=True)
    np.testing.assert_allclose(f1, classifier.apply_prior(f0, r), atol=1e-6)
    path = next(p for p in sorted(fer_sample.rglob("*")) if p.is_file())
    (face,) = byel.load(ckpt, detect=False).predict(str(path))
    (face0,) = byel.load(src, detect=False).predict(str(path))
    want = classifier.apply_prior(np.array([list(face0.probabilities.values())]), r)[0]
    np.testing.assert_allclose(list(face.probabilities.values()), want, atol=1e-5)


def test_an_old_checkpoint_gives_the_same_numbers(adapted, fer_sample):
    """No correction: the model's own probabilities (up to the folded CNN's float rounding)."""
    src, _, _ = adapted
    model = classifier.load(src)
    assert classifier.prior_log_ratio(model) is None
    images = load(str(fer_sample), model.cfg.data.image_size, unlabelled=True, progress=False).images[:8]
    with torch.inference_mode():
        raw = model.predict_images(torch.from_numpy(images)).float().numpy()
        flip = model.predict_images(torch.from_numpy(np.ascontiguousarray(images[:, :, ::-1]))).float().numpy()
    np.testing.assert_allclose(classifier.predict_probs(model, images), raw, rtol=0, atol=1e-6)
    want = ((np.asarray(raw, np.float64) + flip) / 2).astype(np.float32)
    np.testing.assert_allclose(classifier.face_probs(model, images, mirror=True), want, rtol=0, atol=1e-6)


def test_a_fused_model_is_corrected_after_fusion(fer_sample):
    """The shipped (fused) model: no correction, the fused probabilities as before, byte for
    byte; with a correction in its metadata, the fused ones re-weighted (Geometry.fuse, face_probs)."""
    model = classifier.load()
    images = load(str(fer_sample), 48, unlabelled=True, progress=False).images[::20]
    pixels = classifier.predict_probs(model, images)
    geo = classifier.measure(model, images, cache=False)
    fused = classifier.fuse(pixels, geo.probs, geo.weight)
    assert geo.fuse(pixels).tobytes() == fused.tobytes()
    assert classifier.face_probs(model, images).tobytes() == fused.tobytes()
    r = np.linspace(-1, 1, 7)
    model.checkpoint_meta = {**model.checkpoint_meta, "adaptations": [{"method": "prior", "log_prior_ratio": r.tolist()}]}
    assert classifier.predict_probs(model, images).tobytes() == pixels.tobytes()  # the pixel CNN's own
    np.testing.assert_allclose(classifier.face_probs(model, images), classifier.apply_prior(fused, r), atol=1e-6)
    np.testing.assert_allclose(classifier.measure(model, images, cache=False).fuse(pixels),
                               classifier.apply_prior(fused, r), atol=1e-6)
    model.checkpoint_meta["adaptations"][0]["log_prior_ratio"] = [0.0] * 6  # not one number a class
    with pytest.raises(byel.ByelError, match="6 number"):
        classifier.face_probs(model, images)


def test_prior_on_an_empty_folder_is_one_line(adapted, tmp_path, capsys):
    src, _, _ = adapted
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    assert main(["adapt", "--checkpoint", str(src), "--data", str(tmp_path / "empty"), "--method", "prior",
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.strip()] == [line for line in err.splitlines() if "error:" in line]
    assert err.count("byel: error: ") == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / "checkpoints" / "adapted.ckpt").exists()


def test_no_label_is_read_and_export_says_the_correction(adapted, fer_sample, tmp_path):
    """The same faces without their class folders give the same correction; an export's JSON
    carries it (the exported files output the uncorrected probabilities)."""
    import shutil

    from byel.export import export

    src, ckpt, _ = adapted
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, p in enumerate(sorted(q for q in fer_sample.rglob("*") if q.is_file())):
        shutil.copy(p, flat / f"{i:03d}{p.suffix}")
    assert main(["adapt", "--checkpoint", str(src), "--data", str(flat), "--method", "prior",
                 "--out", str(tmp_path / "flat-out"), "--no-progress"]) == 0
    ours = torch.load(tmp_path / "flat-out" / "checkpoints" / "adapted.ckpt", weights_only=True)["byel"]["adaptations"][0]
    ref = torch.load(ckpt, weights_only=True)["byel"]["adaptations"][0]
    np.testing.assert_allclose(ours["log_prior_ratio"], ref["log_prior_ratio"], atol=1e-5)
    out = export(ckpt, tmp_path / "model.pt")
    block = json.loads(open(out["json"]).read())["class_prior"]
    np.testing.assert_allclose(block["log_prior_ratio"], ref["log_prior_ratio"], atol=1e-6)
    assert "class_prior" not in json.loads(open(export(src, tmp_path / "old.pt")["json"]).read())
