"""Backbones: output shapes and strides, the ResNet-vd structure, and that freeze_at / freeze_norm /
lr_mult_list really change what trains (small inputs, no big forward passes)."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from toolbox.errors import UsageError
from toolbox.models.backbones import PPHGNetV2, ResNet, build_backbone, is_frozen_norm
from toolbox.models.backbones.resnet_vd import block_name


@pytest.fixture(autouse=True)
def _seed():
    paddle.seed(0)


@pytest.mark.parametrize("depth, channels", [(18, [128, 256, 512]), (50, [512, 1024, 2048])])
def test_resnet_vd_shapes_and_strides(depth, channels):
    net = ResNet(depth=depth, return_idx=[1, 2, 3], freeze_at=-1, freeze_norm=False)
    net.eval()
    feats = net(paddle.rand([2, 3, 64, 96]))
    assert net.out_channels == channels and net.out_strides == [8, 16, 32]
    assert [list(f.shape) for f in feats] == [[2, c, 64 // s, 96 // s] for c, s in zip(channels, [8, 16, 32])]


def test_resnet_vd_stem_and_avgpool_shortcut():
    net = ResNet(depth=50, return_idx=[0, 1, 2, 3])
    assert [name for name, _ in net.conv1.named_children()] == ["conv1_1", "conv1_2", "conv1_3"]
    assert net.conv1.conv1_1.conv._stride == [2, 2]
    short = net.res3.res3a.short  # strided block: 2x2 average pool, then a stride-1 1x1 conv
    assert isinstance(short.pool, paddle.nn.AvgPool2D) and short.conv.conv._stride == [1, 1]
    assert net.res2.res2a.short.conv._stride == [1, 1]  # res2 is not strided: plain projection
    assert net.res3.res3a.branch2b.conv._stride == [2, 2]  # "b"/"d": the 3x3 conv strides, not the 1x1
    assert [block_name(4, 23, i) for i in (0, 1, 22)] == ["res4a", "res4b1", "res4b22"]


def test_hgnetv2_shapes():
    net = PPHGNetV2(arch="L")
    net.eval()
    feats = net(paddle.rand([1, 3, 64, 64]))
    assert [list(f.shape) for f in feats] == [[1, 512, 8, 8], [1, 1024, 4, 4], [1, 2048, 2, 2]]
    assert net.out_strides == [8, 16, 32]


def _trainable(layer):
    """Trainable flags of the learnable parameters (Paddle lists BN running stats as parameters too)."""
    return [not p.stop_gradient for n, p in layer.named_parameters() if not n.endswith(("_mean", "_variance"))]


def test_freeze_at_stem_only_and_stages():
    net = ResNet(depth=18, return_idx=[1, 2, 3], freeze_at=0, freeze_stem_only=True, freeze_norm=False)
    assert not any(_trainable(net.conv1)) and all(_trainable(net.res2))
    net = ResNet(depth=18, return_idx=[1, 2, 3], freeze_at=1, freeze_stem_only=False, freeze_norm=False)
    assert not any(_trainable(net.conv1)) and not any(_trainable(net.res2)) and not any(_trainable(net.res3))
    assert all(_trainable(net.res4))
    net = ResNet(depth=18, return_idx=[1, 2, 3], freeze_at=-1, freeze_norm=False)
    assert all(_trainable(net))
    hg = PPHGNetV2(arch="L", freeze_at=0, freeze_stem_only=True, freeze_norm=False)
    assert not any(_trainable(hg.stem)) and all(_trainable(hg.stages))


def test_frozen_stage_gets_no_gradient_and_trained_one_does():
    net = ResNet(depth=18, return_idx=[1, 2, 3], freeze_at=0, freeze_stem_only=False, freeze_norm=False)
    net.train()
    loss = sum(f.mean() for f in net(paddle.rand([2, 3, 64, 64])))
    loss.backward()
    assert net.res2.res2a.branch2a.conv.weight.grad is None
    grad = net.res3.res3a.branch2a.conv.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0


@pytest.mark.parametrize("make", [
    lambda: ResNet(depth=18, return_idx=[1, 2, 3], freeze_at=-1, freeze_norm=True),
    lambda: PPHGNetV2(arch="L", freeze_at=-1, freeze_norm=True),
])
def test_frozen_norm_uses_running_statistics_in_training(make):
    net = make()
    norms = [m for m in net.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    assert norms and all(is_frozen_norm(m) for m in norms)
    assert all(p.stop_gradient for m in norms for p in m.parameters())
    for m in norms:  # non-trivial statistics, so "uses the running stats" is visible in the output
        m._mean.set_value(paddle.rand(m._mean.shape) * 0.1)
        m._variance.set_value(paddle.rand(m._variance.shape) + 0.5)
    before = {id(m): (m._mean.numpy().copy(), m._variance.numpy().copy()) for m in norms}
    x = paddle.rand([2, 3, 64, 64])
    net.eval()
    ref = [f.numpy() for f in net(x)]
    net.train()
    out = [f.numpy() for f in net(x)]
    for a, b in zip(ref, out):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    for m in norms:
        np.testing.assert_array_equal(m._mean.numpy(), before[id(m)][0])
        np.testing.assert_array_equal(m._variance.numpy(), before[id(m)][1])


def test_trainable_norm_updates_running_statistics():
    net = ResNet(depth=18, return_idx=[1, 2, 3], freeze_at=-1, freeze_norm=False)
    bn = net.conv1.conv1_1.norm
    assert not is_frozen_norm(bn) and not bn.weight.stop_gradient
    before = bn._mean.numpy().copy()
    net.train()
    net(paddle.rand([2, 3, 64, 64]) + 1.0)
    assert not np.allclose(bn._mean.numpy(), before)


def test_lr_mult_list_scales_stage_learning_rates():
    net = ResNet(depth=18, return_idx=[1, 2, 3], freeze_at=-1, freeze_norm=False, lr_mult_list=[0.1, 0.2, 0.3, 0.4])
    assert net.conv1.conv1_1.conv.weight.optimize_attr["learning_rate"] == 1.0  # the stem keeps 1.0, as upstream
    assert net.res2.res2a.branch2a.conv.weight.optimize_attr["learning_rate"] == pytest.approx(0.1)
    assert net.res5.res5b.branch2b.conv.weight.optimize_attr["learning_rate"] == pytest.approx(0.4)


def test_width_mult_shrinks_every_stage():
    net = ResNet(depth=18, return_idx=[1, 2, 3], freeze_at=-1, freeze_norm=False, width_mult=0.25)
    assert net.out_channels == [32, 64, 128]
    assert list(net.conv1.conv1_1.conv.weight.shape) == [8, 3, 3, 3]


def test_build_backbone_errors_are_usage_errors():
    with pytest.raises(UsageError, match="backbone.type"):
        build_backbone({"type": "VGG"})
    with pytest.raises(UsageError, match="backbone"):
        build_backbone({"type": "ResNet", "depth": 18, "colour": "blue"})
    with pytest.raises(UsageError, match="depth"):
        build_backbone({"type": "ResNet", "depth": 19})
    with pytest.raises(UsageError, match="arch"):
        build_backbone({"type": "PPHGNetV2", "arch": "Q"})


def test_hgnetv2_stem_padding_equals_paddle_same_padding():
    """The stem pads its 2x2 conv and pool paths right/bottom by hand; PaddleDetection uses Paddle's
    padding="SAME". Recompute the stem with "SAME" from the same weights (eval mode) and compare."""
    import paddle.nn.functional as F

    from toolbox.models.backbones.hgnetv2 import StemBlock

    stem = StemBlock(3, 32, 48)
    stem.eval()
    x = paddle.rand([1, 3, 70, 66])  # odd sizes after stride 2 exercise the padding

    def unit(layer, inp, padding):
        y = layer.bn(F.conv2d(inp, layer.conv.weight, stride=layer.conv._stride, padding=padding))
        return F.relu(y)

    y = unit(stem.stem1, x, 1)
    y2 = unit(stem.stem2b, unit(stem.stem2a, y, "SAME"), "SAME")
    y1 = F.max_pool2d(y, kernel_size=2, stride=1, padding="SAME", ceil_mode=True)
    ref = unit(stem.stem4, unit(stem.stem3, paddle.concat([y1, y2], axis=1), 1), 0)
    np.testing.assert_allclose(stem(x).numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
