import torch

from byel.config import AugConfig
from byel.data.augment import EvalTransform, TrainAugment


def test_augmentation_is_drawn_per_sample():
    """The reference code used one random draw per batch; every image must get its own."""
    torch.manual_seed(0)
    x = torch.randint(0, 256, (1, 32, 32, 3), dtype=torch.uint8).repeat(16, 1, 1, 1)  # 16 equal images
    out = TrainAugment(AugConfig(), 32)(x)
    assert out.shape == (16, 3, 32, 32)
    distinct = {tuple(o.flatten()[:64].tolist()) for o in out}
    assert len(distinct) == 16


def test_two_views_differ_and_eval_is_deterministic():
    x = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    aug = TrainAugment(AugConfig(), 32)
    assert not torch.equal(aug(x), aug(x))
    ev = EvalTransform(AugConfig(), 24)
    assert torch.equal(ev(x), ev(x)) and ev(x).shape == (4, 3, 24, 24)
