"""PP-HGNetV2 (arch L, X, H), the backbone of RT-DETR-L/-X/-H.

A stem that mixes a strided conv path with a max-pool path, then four stages of HG blocks: each block runs
`layer_num` convs in sequence (plain 3x3 in stages 1-2; "light" 1x1 + depthwise 5x5 in stages 3-4),
concatenates the input with every intermediate output, and squeezes/excites the concatenation back with
two 1x1 convs; blocks after the first of a stage add their input back (identity). Stages 2-4 start with a
depthwise stride-2 conv. Sub-layer names are PaddleDetection's (stem.stem1…stem4,
stages.N.downsample, stages.N.blocks.M.layers.K[.conv1/.conv2], aggregation_squeeze_conv,
aggregation_excitation_conv; each unit holds `conv` and `bn`).

Shapes: image [B, 3, H, W] → stem [B, C0, H/4, W/4] → stage1 (stride 4), stage2 (8), stage3 (16),
stage4 (32) with 128 / 512 / 1024 / 2048 channels (L, X) or 192 / 512 / 1024 / 2048 (H); `return_idx`
picks the returned stages (0 = stage1).
"""
from __future__ import annotations

from collections.abc import Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Constant, KaimingNormal
from paddle.regularizer import L2Decay

from toolbox.errors import UsageError

from .layers import StagedBackbone, batch_norm

# stem (in, mid, out); stages: in, mid, out, blocks, downsample, light block, kernel, layers per block
ARCHS = {
    "L": {"stem": (3, 32, 48), "stages": [
        (48, 48, 128, 1, False, False, 3, 6),
        (128, 96, 512, 1, True, False, 3, 6),
        (512, 192, 1024, 3, True, True, 5, 6),
        (1024, 384, 2048, 1, True, True, 5, 6)]},
    "X": {"stem": (3, 32, 64), "stages": [
        (64, 64, 128, 1, False, False, 3, 6),
        (128, 128, 512, 2, True, False, 3, 6),
        (512, 256, 1024, 5, True, True, 5, 6),
        (1024, 512, 2048, 2, True, True, 5, 6)]},
    "H": {"stem": (3, 48, 96), "stages": [
        (96, 96, 192, 2, False, False, 3, 6),
        (192, 192, 512, 3, True, False, 3, 6),
        (512, 384, 1024, 6, True, True, 5, 6),
        (1024, 768, 2048, 3, True, True, 5, 6)]},
}


class ConvBNAct(nn.Layer):
    """conv (no bias) → BatchNorm (`bn`, frozen when `freeze_norm`) → optional ReLU. Padding (k - 1) // 2;
    the stem's 2x2 convs pad one pixel right and bottom instead (see StemBlock).

    As in PaddleDetection, `lr_mult` scales the BatchNorm parameters' learning rate only (which
    RT-DETR-L/X freeze anyway); the convolutions learn at the base rate."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, use_act: bool = True, lr_mult: float = 1.0, padding: int | list[int] | None = None,
                 freeze_norm: bool = False):
        super().__init__()
        self.use_act = use_act
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride,
                              padding=(kernel_size - 1) // 2 if padding is None else padding,
                              groups=groups, weight_attr=ParamAttr(initializer=KaimingNormal()), bias_attr=False)
        if freeze_norm:
            self.bn = batch_norm(out_channels, frozen=True)
        else:
            attr = dict(regularizer=L2Decay(0.0), learning_rate=lr_mult)
            self.bn = nn.BatchNorm2D(out_channels, weight_attr=ParamAttr(initializer=Constant(1.0), **attr),
                                     bias_attr=ParamAttr(initializer=Constant(0.0), **attr))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.use_act else x


class LightConvBNAct(nn.Layer):
    """1x1 conv + BN (no activation) → depthwise k x k conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **kw):
        super().__init__()
        self.conv1 = ConvBNAct(in_channels, out_channels, 1, use_act=False, **kw)
        self.conv2 = ConvBNAct(out_channels, out_channels, kernel_size, groups=out_channels, **kw)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv2(self.conv1(x))


class StemBlock(nn.Layer):
    """x [B, 3, H, W] → [B, out, H/4, W/4]: stem1 (3x3 s2), then two paths concatenated — a 2x2 max
    pool (stride 1) and stem2a → stem2b (2x2 convs) — each padded by one pixel right/bottom ("SAME"
    for an even kernel), then stem3 (3x3 s2) and stem4 (1x1).

    PaddleDetection writes the padding as F.pad(x, [0, 1, 0, 1]) before a pool and convs without
    padding. Here the convs and the pool pad asymmetrically themselves ([top, bottom, left, right] =
    [0, 1, 0, 1]): the same numbers, and no pad3d op in the program, because paddle2onnx 2.1.0 converts
    a PIR pad3d to an ONNX Pad whose fill value is uninitialised memory (seen: 3.0e32), which made
    every RT-DETR-L/X ONNX export wrong. The pool's padding is ignored by the max (Paddle and ONNX both
    pad a max pool with -inf), which equals F.pad's zeros because the pool's input is a ReLU output
    (>= 0) and every window holds at least one real pixel."""

    PAD_RIGHT_BOTTOM = [0, 1, 0, 1]  # [top, bottom, left, right], Paddle's 4-value conv/pool padding

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, **kw):
        super().__init__()
        same = self.PAD_RIGHT_BOTTOM
        self.stem1 = ConvBNAct(in_channels, mid_channels, 3, stride=2, **kw)
        self.stem2a = ConvBNAct(mid_channels, mid_channels // 2, 2, padding=same, **kw)
        self.stem2b = ConvBNAct(mid_channels // 2, mid_channels, 2, padding=same, **kw)
        self.stem3 = ConvBNAct(mid_channels * 2, mid_channels, 3, stride=2, **kw)
        self.stem4 = ConvBNAct(mid_channels, out_channels, 1, **kw)
        self.pool = nn.MaxPool2D(kernel_size=2, stride=1, padding=same, ceil_mode=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem1(x)
        x = paddle.concat([self.pool(x), self.stem2b(self.stem2a(x))], axis=1)
        return self.stem4(self.stem3(x))


class HGBlock(nn.Layer):
    """x [B, in, H, W] → [B, out, H, W]: `layer_num` convs in sequence, concat of the input and all
    outputs (in + layer_num * mid channels) → 1x1 squeeze to out/2 → 1x1 excite to out (+ x if identity)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, kernel_size: int = 3,
                 layer_num: int = 6, identity: bool = False, light_block: bool = True, **kw):
        super().__init__()
        self.identity = identity
        self.layers = nn.LayerList()
        for i in range(layer_num):
            c_in = in_channels if i == 0 else mid_channels
            if light_block:
                self.layers.append(LightConvBNAct(c_in, mid_channels, kernel_size, **kw))
            else:
                self.layers.append(ConvBNAct(c_in, mid_channels, kernel_size, **kw))
        total = in_channels + layer_num * mid_channels
        self.aggregation_squeeze_conv = ConvBNAct(total, out_channels // 2, 1, **kw)
        self.aggregation_excitation_conv = ConvBNAct(out_channels // 2, out_channels, 1, **kw)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        outputs = [x]
        y = x
        for layer in self.layers:
            y = layer(y)
            outputs.append(y)
        y = self.aggregation_excitation_conv(self.aggregation_squeeze_conv(paddle.concat(outputs, axis=1)))
        return y + x if self.identity else y


class HGStage(nn.Layer):
    """Optional depthwise 3x3 stride-2 downsample (no activation), then `block_num` HG blocks."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, block_num: int,
                 downsample: bool, light_block: bool, kernel_size: int, layer_num: int, **kw):
        super().__init__()
        self.downsample = (ConvBNAct(in_channels, in_channels, 3, stride=2, groups=in_channels, use_act=False,
                                     **kw) if downsample else None)
        self.blocks = nn.Sequential(*[
            HGBlock(in_channels if i == 0 else out_channels, mid_channels, out_channels, kernel_size, layer_num,
                    identity=i > 0, light_block=light_block, **kw)
            for i in range(block_num)])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        return self.blocks(x)


class PPHGNetV2(StagedBackbone):
    """PP-HGNetV2 backbone with PaddleDetection's options (use_lab is not supported: RT-DETR's L/X/H
    do not use it).

    freeze_at >= 0 freezes the stem and, unless `freeze_stem_only`, stages 0..freeze_at;
    freeze_norm freezes every BatchNorm; lr_mult_list: stem, stage1..stage4.
    """

    def __init__(self, arch: str = "L", return_idx: Sequence[int] = (1, 2, 3), freeze_at: int = 0,
                 freeze_stem_only: bool = True, freeze_norm: bool = True,
                 lr_mult_list: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0), use_lab: bool = False):
        super().__init__()
        if arch not in ARCHS:
            raise UsageError(f"backbone.arch={arch!r} is not a PP-HGNetV2 size; use one of {sorted(ARCHS)}")
        if use_lab:
            raise UsageError("backbone.use_lab=true (PP-HGNetV2 B0-B6) is not supported; RT-DETR's L/X/H use false")
        if len(lr_mult_list) != 5:
            raise UsageError(f"backbone.lr_mult_list needs 5 values (stem, stage1..4), got {list(lr_mult_list)}")
        return_idx = [return_idx] if isinstance(return_idx, int) else list(return_idx)
        if not return_idx or max(return_idx) > 3 or min(return_idx) < 0:
            raise UsageError(f"backbone.return_idx={return_idx} must index the 4 stages (0 = stage1)")
        cfg = ARCHS[arch]
        self.arch = arch
        self.return_idx = return_idx
        self._out_channels = [s[2] for s in cfg["stages"]]
        self.stem = StemBlock(*cfg["stem"], lr_mult=float(lr_mult_list[0]), freeze_norm=freeze_norm)
        self.stages = nn.LayerList([HGStage(*s, lr_mult=float(lr_mult_list[i + 1]), freeze_norm=freeze_norm)
                                    for i, s in enumerate(cfg["stages"])])
        self.freeze(self.stem, self.stages, freeze_at, freeze_stem_only)

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        return self.run_stages(self.stem(x), self.stages)
