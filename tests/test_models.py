from types import SimpleNamespace

import pytest
import torch

from byel.errors import ConfigError
from byel.models import create_backbone
from byel.optim import LARS, ema_schedule, lr_schedule


@pytest.mark.parametrize("name,size,dim", [("smallnet", 32, 256), ("resnet18", 32, 512), ("resnet50", 64, 2048)])
def test_backbones_output_pooled_features(name, size, dim):
    net = create_backbone(name, small_input=True).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, dim) and net.out_dim == dim


def test_resnet50_imagenet_stem_at_128px():
    net = create_backbone("resnet50", small_input=False).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 128, 128)).shape == (1, 2048)
    assert sum(p.numel() for p in net.parameters()) == 23_508_032  # torchvision's ResNet-50 less its fc


@pytest.mark.parametrize("name,dim", [("smallnet", 256), ("resnet18", 512), ("resnet50", 2048)])
def test_width_none_or_0_is_the_architectures_own(name, dim):
    for width in (None, 0):
        assert create_backbone(name, width=width).out_dim == dim
    assert create_backbone(name, width=16).out_dim == dim * 16 // (32 if name == "smallnet" else 64)


@pytest.mark.parametrize("name", ["smallnet", "resnet18", "resnet50"])
def test_backbones_refuse_options_they_do_not_take(name):
    with pytest.raises(TypeError):
        create_backbone(name, depth=3)


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="resnet18"):
        create_backbone("vgg16")


def test_warmup_cosine_schedule():
    optim = SimpleNamespace(lr=1.0, lr_scaling="none", warmup_epochs=1, min_lr_ratio=0.0)
    f = lr_schedule(optim, total_steps=100, epochs=10)  # 10 warm-up steps
    assert len(f) == 101
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[55] == pytest.approx(0.5) and f[100] == pytest.approx(0.0)


def test_ema_schedules():
    def tau(schedule, base=0.996):
        return ema_schedule(SimpleNamespace(ema_base=base, ema_schedule=schedule), 100)

    assert tau("fixed", 0.99)[50] == 0.99
    assert tau("cosine")[0] == pytest.approx(0.996)
    assert tau("cosine")[50] == pytest.approx(0.998)
    assert tau("cosine")[100] == pytest.approx(1.0)


def test_lars_scales_weight_step_by_trust_ratio():
    w = torch.nn.Parameter(torch.full((2, 2), 3.0))  # ‖w‖ = 6
    b = torch.nn.Parameter(torch.ones(2))
    opt = LARS([w, b], lr=1.0, momentum=0.0, weight_decay=0.0, eta=0.5)
    w.grad, b.grad = torch.full((2, 2), 1.0), torch.full((2,), 1.0)  # ‖g‖ = 2
    opt.step()
    # weight: step = lr · η‖w‖/‖g‖ · g = 0.5·6/2 = 1.5 per entry; bias (1-D) is not adapted: 1
    assert torch.allclose(w, torch.full((2, 2), 1.5)) and torch.allclose(b, torch.zeros(2))


@pytest.mark.parametrize("name,size", [("smallnet", 32), ("resnet18", 32), ("resnet50", 64)])
def test_folded_copy_computes_the_same_without_batch_norms(name, size):
    from byel.models.backbones import folded_copy

    torch.manual_seed(0)
    net = create_backbone(name, small_input=True)
    net.train()(torch.randn(8, 3, size, size))  # batch-norm statistics that are not the identity
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)  # (zero-initialised last BNs would hide a wrong fold)
    net.eval()
    fast = folded_copy(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), atol=1e-4, rtol=1e-4)
