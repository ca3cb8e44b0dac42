"""`byel pretrain --unlabelled`: unlabelled real images join the BYOL term only, with the same
steps and the same synthetic batches; the checkpoints and reports say so (tier C); and the
ablation's runs with and without them never mix."""

import json
import warnings

import pytest
import torch

import byel.methods.byel as byel_module
from byel.cli import main
from byel.config import load_config
from byel.methods import create_method
from conftest import write_class_folders

TINY = ["--preset", "smoke", "--no-progress", "--logger", "none"]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    return write_class_folders(tmp_path_factory.mktemp("synth"), 8)


@pytest.mark.parametrize("method", ["byel", "byol-cls", "byol"])
def test_unlabelled_images_reach_the_byol_term_only(method, monkeypatch):
    """One step on 4 labelled and 6 unlabelled images: the classifier, orthogonality and EVS see
    the labelled batch only; the BYOL term gets both views of each batch."""
    cfg = load_config("smoke")
    cfg.method.name = method
    model = create_method(cfg.to_dict())
    seen = {"augment": [], "byol": [], "ce": [], "evs": []}
    real = {n: getattr(byel_module, n) for n in ("byol_loss", "classification_loss", "emotion_vector_subtraction")}
    monkeypatch.setattr(byel_module, "byol_loss", lambda p, z: seen["byol"].append((len(p), len(z))) or real["byol_loss"](p, z))
    monkeypatch.setattr(byel_module, "classification_loss",
                        lambda logits, y: seen["ce"].append(y.clone()) or real["classification_loss"](logits, y))
    monkeypatch.setattr(byel_module, "emotion_vector_subtraction",
                        lambda p, W, y, s: seen["evs"].append(y.clone()) or real["emotion_vector_subtraction"](p, W, y, s))
    model.augment.register_forward_pre_hook(lambda mod, args: seen["augment"].append(args[0]))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8, generator=g)
    y = torch.tensor([0, 1, 2, 3])
    u = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8, generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer
        loss = model.training_step({"labelled": (x, y), "unlabelled": (u, torch.full((6,), -1))}, 0)
    assert torch.isfinite(loss)
    assert [a is x for a in seen["augment"]] == [True, True, False, False] and all(a is u for a in seen["augment"][2:])
    assert seen["byol"] == [(4, 4), (4, 4), (6, 6), (6, 6)]  # labelled views, then the unlabelled views
    if method == "byol":
        assert seen["ce"] == [] and seen["evs"] == []
    else:
        assert len(seen["ce"]) == 2 and all(torch.equal(t, y) for t in seen["ce"])
        assert len(seen["evs"]) == (2 if method == "byel" else 0) and all(torch.equal(t, y) for t in seen["evs"])


def _spy_batches(monkeypatch):
    """The labelled batches (and unlabelled batch sizes) every BYEL training step receives."""
    from byel.methods.byel import BYEL

    seen = []
    step = BYEL.training_step

    def spy(self, batch, batch_idx):
        lab, unl = (batch["labelled"], batch["unlabelled"][0]) if isinstance(batch, dict) else (batch, None)
        seen.append((lab[0].clone(), None if unl is None else len(unl)))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(BYEL, "training_step", spy)
    return seen


@pytest.mark.slow
def test_pretrain_with_unlabelled_same_steps_same_synthetic_batches(tmp_path, synth_dir, fer_sample, monkeypatch):
    seen = _spy_batches(monkeypatch)
    assert main(["pretrain", "--data", str(synth_dir), "--out", str(tmp_path / "plain"), *TINY]) == 0
    plain = list(seen)
    seen.clear()
    assert main(["pretrain", "--data", str(synth_dir), "--out", str(tmp_path / "unl"), "--unlabelled", str(fer_sample),
                 *TINY]) == 0
    a = torch.load(tmp_path / "plain" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "unl" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == len(plain) == len(seen) == 2
    # the same synthetic batches, each with a batch of unlabelled images as large
    assert all(torch.equal(p[0], s[0]) for p, s in zip(plain, seen))
    assert [s[1] for s in seen] == [len(s[0]) for s in seen] and all(p[1] is None for p in plain)
    assert "unlabelled" not in a["byel"]
    u = b["byel"]["unlabelled"]
    assert u["n_images"] == 140 and u["data"].endswith(fer_sample.name) and u["fingerprint"].shape == (140,)

    # fine-tuning keeps the record, and evaluation reports tier C, transductive on these images
    ft = tmp_path / "ft"
    assert main(["finetune", "--checkpoint", str(tmp_path / "unl" / "checkpoints" / "last.ckpt"),
                 "--data", str(synth_dir), "--out", str(ft), *TINY]) == 0
    assert torch.load(ft / "checkpoints" / "best.ckpt", weights_only=True)["byel"]["unlabelled"]["n_images"] == 140
    assert main(["evaluate", "--checkpoint", str(ft / "checkpoints" / "best.ckpt"), "--data", str(fer_sample),
                 "--report", str(tmp_path / "ev.json"), "--no-progress"]) == 0
    tier = json.loads((tmp_path / "ev.json").read_text())["tier"]
    assert tier["name"] == "C" and tier["unlabelled_real"] == [
        {"stage": "pretrain", "data": u["data"], "n_images": 140, "transductive": True, "n_evaluated_among": 120}]

    # resuming with other unlabelled images (or none) is refused
    capsys_err = []
    monkeypatch.setattr("sys.stderr", type("E", (), {"write": lambda s, t: capsys_err.append(t), "flush": lambda s: 0})())
    assert main(["pretrain", "--data", str(synth_dir), "--out", str(tmp_path / "unl"), "--resume", "--epochs", "2",
                 *TINY]) == 2
    assert "cannot resume" in "".join(capsys_err) and "unlabelled" in "".join(capsys_err)


def test_supervised_refuses_unlabelled(tmp_path, synth_dir, fer_sample, capsys):
    for cmd in (["pretrain", "--data", str(synth_dir)], ["demo"]):
        out = tmp_path / cmd[0]
        assert main([*cmd, "--out", str(out), "--method", "supervised", "--unlabelled", str(fer_sample), *TINY]) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1].startswith("byel: error: method supervised has no term for unlabelled")
        assert not (out / "checkpoints").exists() and not (out / "synthetic").exists()


@pytest.mark.slow
def test_demo_passes_unlabelled_through(tmp_path, fer_sample, capsys):
    """demo --unlabelled: the images reach stage 1's BYOL term, then a self-training of the
    model (the default adaptation) whose model is scored beside the
    fine-tuned one; both say tier C; --resume reuses the adaptation."""
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--unlabelled", str(fer_sample), "--real", str(fer_sample), *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    meta = torch.load(out / "pretrain" / "checkpoints" / "last.ckpt", weights_only=True)["byel"]
    assert meta["unlabelled"]["n_images"] == 140
    assert torch.load(out / "finetune" / "checkpoints" / "best.ckpt", weights_only=True)["byel"]["unlabelled"]["n_images"] == 140
    report = json.loads((out / "report.json").read_text())
    ada = report["adaptation"]
    assert ada["method"] == "self-train" and ada["n_images"] == 140
    adapted = torch.load(ada["checkpoint"], weights_only=True)["byel"]
    assert [a["method"] for a in adapted["adaptations"]] == ["self-train"]
    assert adapted["adaptations"][0]["n_images"] == 140 and "training split" in adapted["adaptations"][0]["synthetic"]
    split = json.loads((out / "pretrain" / "split.json").read_text())
    assert adapted["adaptations"][0]["n_synthetic"] == split["n_train"]  # the held-out faces stay out
    assert report["evaluation"]["tier"]["name"] == "C" and ada["evaluation"]["tier"]["name"] == "C"
    assert (out / "eval" / "real-adapted.json").is_file()
    assert "after self-train on 140 unlabelled real images" in printed and "5/5" not in printed
    before = (out / "adapt" / "checkpoints" / "adapted.ckpt").stat().st_mtime_ns
    assert main([*argv, "--resume"]) == 0
    assert "reusing the self-train adaptation" in capsys.readouterr().err
    assert (out / "adapt" / "checkpoints" / "adapted.ckpt").stat().st_mtime_ns == before
    # another adaptation is another demo: refused on resume, naming the option
    assert main([*argv, "--resume", "--adapt", "none"]) == 2
    assert "--adapt 'self-train' → None" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--adapt", "self-train"], "--adapt self-train adapts on unlabelled real images: give --unlabelled DIR"),
    (["--unlabelled", "FER", "--adapt", "co-train"], "--adapt co-train needs a face-geometry head"),
    (["--unlabelled", "FER", "--adapt", "magic"], "argument --adapt: invalid choice: 'magic'"),
])
def test_demo_adaptation_refused_in_one_line_before_any_work(tmp_path, fer_sample, capsys, extra, message):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), *[str(fer_sample) if a == "FER" else a for a in extra], *TINY]
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own refusal
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and not (out / "synthetic").exists()


def test_demo_adaptation_choice():
    from byel.pipeline import demo_adaptation

    assert demo_adaptation(None, None, "fused") is None
    assert demo_adaptation(None, "DIR", "fused") == "self-train"
    assert demo_adaptation(None, "DIR", "pixels") == "self-train"
    # a model with the activation head: co-training of its three views
    assert demo_adaptation(None, "DIR", "fused", "activations") == "co-train"
    assert demo_adaptation(None, "DIR", "geometry", "activations") == "co-train"
    assert demo_adaptation("self-train", "DIR", "fused", "activations") == "self-train"
    assert demo_adaptation("co-train", "DIR", "geometry") == "co-train"
    assert demo_adaptation("none", "DIR", "fused") is None
    assert demo_adaptation("adabn", "DIR", "pixels") == "adabn"


@pytest.mark.slow
def test_ablation_with_unlabelled_and_adaptation(tmp_path, fer_sample, monkeypatch):
    out = tmp_path / "abl"
    argv = ["benchmark", "ablation", "--out", str(out), "--eval", str(fer_sample), "--preset", "smoke", "--seeds", "1",
            "--methods", "supervised", "byel", "--set", "generate.per_class=8", "--no-progress",
            "--unlabelled", str(fer_sample), "--adapt", "tent"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert [(r["method"], bool(r["unlabelled"])) for r in results] == [("supervised", False), ("byel", False),
                                                                       ("byel", True)]
    assert len({r["run_id"] for r in results}) == 3 and results[1]["config_digest"] == results[2]["config_digest"]
    assert results[1]["steps"] == results[2]["steps"] == results[0]["steps"]
    spec = str(fer_sample)
    for r in results:
        ev = r["eval"][spec]
        assert ev["tier"]["name"] == ("C" if r["unlabelled"] else "A")
        assert ev["adabn"]["tier"]["name"] == ev["adapt"]["tier"]["name"] == "C"
        assert [u["stage"] for u in ev["adapt"]["tier"]["unlabelled_real"]] == ["pretrain"] * bool(r["unlabelled"]) + ["adapt"]
        assert all(u["transductive"] is True for u in ev["adapt"]["tier"]["unlabelled_real"])
        assert ev["adapt"]["method"] == "tent" and ("macro_f1" in ev["adapt"] or "collapsed" in ev["adapt"])
    assert [(r["unlabelled"], r["n_unlabelled"]) for r in results] == [(None, 0), (None, 0), (f"imagefolder:{spec}", 140)]
    pre = results[2]["eval"][spec]["tier"]["unlabelled_real"]
    assert [(u["stage"], u["n_images"], u["transductive"], u["n_evaluated_among"]) for u in pre] == \
        [("pretrain", 140, True, 120)]
    assert (out / "results.md").read_text().startswith("Command: `byel benchmark ablation --out ")

    # the same command again trains nothing; another adaptation rescores without training
    import byel.train

    monkeypatch.setattr(byel.train, "pretrain", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text()) == results
    assert main(argv[:-1] + ["adabn"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert [r["run_id"] for r in again] == [r["run_id"] for r in results]
    assert all(r["eval"][spec]["adapt"]["method"] == "adabn" for r in again)
    assert all(r["eval"][spec]["adapt"]["macro_f1"] == r["eval"][spec]["adabn"]["macro_f1"] for r in again)


def test_cycled_sampler_reshuffles_each_epoch_without_the_global_stream():
    from byel.data.datamodule import CycledSampler

    s = CycledSampler(5, 12, seed=3)
    state = torch.get_rng_state()
    first = list(s)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn from the global stream
    assert len(first) == len(s) == 12 and sorted(first[:5]) == sorted(first[5:10]) == list(range(5))
    assert list(s) == first  # the same epoch, the same order (a resumed run continues alike)
    s.set_epoch(1)
    assert list(s) != first


@pytest.mark.parametrize("ratio", [1, 3])
def test_unlabelled_ratio_sets_the_real_batch_not_the_steps(ratio):
    """pretrain.unlabelled_ratio = r: each step gets r × the labelled batch of unlabelled images
    (the pool seen r times as often), in the same number of steps with the same labelled batches."""
    import numpy as np

    from byel.data.datamodule import ArrayDataModule

    rng = np.random.default_rng(0)
    labelled = (rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8), np.arange(40) % 6)
    pool = rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    plain = ArrayDataModule(labelled, batch_size=8)
    dm = ArrayDataModule(labelled, batch_size=8, unlabelled=pool, unlabelled_ratio=ratio)
    torch.manual_seed(0)
    steps = [batch for batch, _, _ in dm.train_dataloader()]  # CombinedLoader: (batch, index, loader)
    torch.manual_seed(0)
    alone = list(iter(plain.train_dataloader()))
    assert len(steps) == len(alone) == 5
    for step, lab in zip(steps, alone):
        assert len(step["unlabelled"][0]) == 8 * ratio
        assert torch.equal(step["labelled"][0], lab[0])
    drawn = torch.cat([s["unlabelled"][0].reshape(len(s["unlabelled"][0]), -1) for s in steps])
    assert len(torch.unique(drawn, dim=0)) == min(50, 40 * ratio)  # whole passes before any repeat


def test_unlabelled_ratio_is_a_checked_option_that_keeps_old_digests():
    from byel.errors import ConfigError

    assert load_config("smoke", ["pretrain.unlabelled_ratio=1"]).digest() == load_config("smoke").digest()
    assert load_config("smoke", ["pretrain.unlabelled_ratio=4"]).digest() != load_config("smoke").digest()
    with pytest.raises(ConfigError, match="unlabelled_ratio"):
        load_config("smoke", ["pretrain.unlabelled_ratio=0"])


def test_ablation_ratio_sweep_reuses_the_runs_without_a_pool(tmp_path, fer_sample, monkeypatch):
    """--set pretrain.unlabelled_ratio=N changes only the runs that have unlabelled images: a
    second ablation at another ratio trains the pool run again and reuses the others."""
    import byel.train

    out = tmp_path / "abl"
    argv = ["benchmark", "ablation", "--out", str(out), "--eval", str(fer_sample), "--preset", "smoke", "--seeds", "1",
            "--methods", "supervised", "byel", "--set", "generate.per_class=8", "--no-progress",
            "--unlabelled", str(fer_sample)]
    assert main(argv) == 0
    first = json.loads((out / "results.json").read_text())
    trained = []
    real = byel.train.pretrain
    monkeypatch.setattr(byel.train, "pretrain", lambda *a, **k: trained.append(k.get("unlabelled")) or real(*a, **k))
    assert main([*argv, "--set", "pretrain.unlabelled_ratio=2"]) == 0
    assert len(trained) == 1 and trained[0] is not None  # the pool run only
    results = json.loads((out / "results.json").read_text())
    assert [r["run_id"] for r in results[:3]] == [r["run_id"] for r in first] and len(results) == 4
    assert results[3]["unlabelled"] and results[3]["run_id"] != first[2]["run_id"]
