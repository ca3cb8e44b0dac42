import pytest

from byel.config import from_dict, load_config, presets
from byel.errors import ConfigError


def test_presets_load_and_paper_matches_the_paper():
    assert {"cpu-demo", "paper", "smoke"} <= set(presets())
    p = load_config("paper")
    assert (p.model.backbone, p.data.image_size, p.data.batch_size, p.pretrain.epochs) == ("resnet50", 128, 256, 100)
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
