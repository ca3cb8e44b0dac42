import importlib.util
import subprocess
import sys

import pytest

from byel.cli import build_parser
from byel.cli.settings import resolve_config
from byel.config import from_dict, load_config, presets
from byel.errors import ConfigError
from byel.methods.base import backbone_from_config


def built(cfg):
    """(feature dimension, parameter count) of the backbone a config builds."""
    net = backbone_from_config(cfg)
    return net.out_dim, sum(p.numel() for p in net.parameters())


def test_presets_load_and_paper_matches_the_paper():
    assert {"cpu-demo", "paper", "smoke"} <= set(presets())
    p = load_config("paper")
    assert (p.model.backbone, p.data.image_size, p.data.batch_size, p.pretrain.epochs) == ("resnet50", 128, 256, 100)
    # the standard ResNet-50 (torchvision's 25,557,032 less its 1000-way fc), not a half-width one
    assert built(p) == (2048, 23_508_032)
    assert (p.optim.optimizer, p.optim.lr, p.optim.weight_decay) == ("lars", 0.2, 1.5e-6)
    assert (p.aug.jitter, p.aug.jitter_p, p.aug.grayscale_p, p.aug.blur_p) == ((0.8, 0.8, 0.8, 0.2), 0.3, 0.2, 0.2)
    assert (p.finetune.lr, p.finetune.dropout) == (1e-4, 0.3)


def test_overrides_are_typed_and_round_trip():
    cfg = load_config("cpu-demo", ["optim.lr=0.5", "aug.crop_scale=0.3,1", "trainer.progress=false"])
    assert cfg.optim.lr == 0.5 and cfg.aug.crop_scale == (0.3, 1.0) and cfg.trainer.progress is False
    assert from_dict(cfg.to_dict()) == cfg and from_dict(cfg.to_dict()).digest() == cfg.digest()


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["optim.lrr=1"], "did you mean 'optim.lr'"),
        (["optim.lr=abc"], "invalid value"),
        (["method.name=simclr"], "byel, byol, byol-cls, supervised"),
        (["data.image_size=0"], "image_size"),
        (["pretrain.epochs=-1"], "epochs"),
        (["optim.lr"], "section.key=value"),
    ],
)
def test_bad_config_is_one_clear_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("cpu-demo", overrides)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="cpu-demo"):
        load_config("nope")


def test_each_backbone_keeps_its_own_width():
    assert built(load_config("cpu-demo")) == (256, 1_226_400)  # smallnet at 32, as before
    assert built(load_config("smoke")) == (64, 77_352)  # the tiny one: an explicit model.width=8
    assert built(load_config("cpu-demo", ["model.backbone=resnet18"]))[0] == 512
    assert built(load_config("cpu-demo", ["model.backbone=resnet18", "model.width=32"]))[0] == 256


def test_a_checkpoint_config_with_an_explicit_width_rebuilds_that_width():
    old = load_config("paper").to_dict()
    old["model"]["width"] = 32  # what byel wrote before widths were per architecture
    assert built(from_dict(old)) == (1024, 5_892_640)


def parse(*argv):
    return resolve_config(build_parser().parse_args([*argv, "--data", "d", "--out", "o"]))


def test_training_flags_set_the_stage_they_belong_to():
    ft = parse("finetune", "--lr", "0.003", "--batch-size", "8", "--optimizer", "sgd")
    assert (ft.finetune.lr, ft.finetune.batch_size, ft.finetune.optimizer) == (0.003, 8, "sgd")
    demo = load_config("cpu-demo")
    assert (ft.optim.lr, ft.data.batch_size, ft.optim.optimizer) == (demo.optim.lr, demo.data.batch_size, "adamw")
    pre = parse("pretrain", "--lr", "0.003", "--batch-size", "8", "--optimizer", "sgd")
    assert (pre.optim.lr, pre.data.batch_size, pre.optim.optimizer) == (0.003, 8, "sgd")
    assert (pre.finetune.lr, pre.finetune.optimizer) == (demo.finetune.lr, "adam")


@pytest.mark.parametrize("overrides,match", [
    (["finetune.optimizer=rmsprop"], "finetune.optimizer"),
    (["optim.lr_scaling=sqrt"], "none, linear"),
    (["model.width=-1"], "model.width"),
    (["model.backbone=vgg"], "resnet50"),
])
def test_new_keys_are_checked(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("cpu-demo", overrides)


def test_tensorboard_logger_without_tensorboard_is_one_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if "tensorboard" in name.lower() else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'byel\[tensorboard\]'"):
        load_config("cpu-demo", ["trainer.logger=tensorboard"])
    assert load_config("cpu-demo").trainer.logger == "csv"  # the default needs nothing


@pytest.mark.slow
def test_config_and_methods_import_without_a_cycle():
    """byel.config imports the method names only; the methods (and torch) load on first use."""
    code = ("import sys, byel.config, byel.methods; "
            "assert 'byel.methods.base' not in sys.modules and 'torch' not in sys.modules; "
            "import byel.methods.byel")
    subprocess.run([sys.executable, "-c", code], check=True)
