"""ResNet-vd (depth 18, 34, 50, 101), the "d" variant of "Bag of Tricks" used by RT-DETR's R* models.

Compared with the original ResNet: the 7x7 stem is three 3x3 convs (conv1_1 stride 2, conv1_2, conv1_3),
and a strided block's projection shortcut average-pools 2x2 before its 1x1 conv, so the shortcut sees
every pixel instead of one in four. Sub-layer names are PaddleDetection's (conv1.conv1_1, res2.res2a,
branch2a/b/c, short, short.pool + short.conv; res4b1..b22 for depth 101), so its checkpoints load as is.

Shapes: image [B, 3, H, W] → list of feature maps, one per `return_idx` entry (0 = res2 … 3 = res5):
res2 [B, 64e, H/4, W/4], res3 [B, 128e, H/8, W/8], res4 [B, 256e, H/16, W/16], res5 [B, 512e, H/32, W/32]
with e = 1 (BasicBlock, depth < 50) or 4 (BottleNeck).
"""
from __future__ import annotations

from collections.abc import Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from toolbox.errors import UsageError

from .layers import ConvNormLayer, StagedBackbone

BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


class _Shortcut(nn.Layer):
    """Projection shortcut of a strided ResNet-vd block: 2x2 average pool (ceil mode) → 1x1 conv + norm.
    A Layer with sub-layers `pool` and `conv`, to keep PaddleDetection's names (short.conv.conv.weight)."""

    def __init__(self, ch_in: int, ch_out: int, **conv_kw):
        super().__init__()
        self.pool = nn.AvgPool2D(kernel_size=2, stride=2, padding=0, ceil_mode=True)
        self.conv = ConvNormLayer(ch_in, ch_out, 1, 1, **conv_kw)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv(self.pool(x))


def _shortcut(ch_in: int, ch_out: int, stride: int, variant: str, **conv_kw) -> nn.Layer:
    if variant == "d" and stride == 2:
        return _Shortcut(ch_in, ch_out, **conv_kw)
    return ConvNormLayer(ch_in, ch_out, 1, stride, **conv_kw)


class BasicBlock(nn.Layer):
    """Two 3x3 convs + shortcut (ResNet-18/34). x [B, ch_in, H, W] → [B, ch_out, H/stride, W/stride]."""

    expansion = 1

    def __init__(self, ch_in: int, ch_out: int, stride: int, shortcut: bool, variant: str = "d", **conv_kw):
        super().__init__()
        self.shortcut = shortcut
        if not shortcut:
            self.short = _shortcut(ch_in, ch_out, stride, variant, **conv_kw)
        self.branch2a = ConvNormLayer(ch_in, ch_out, 3, stride, act="relu", **conv_kw)
        self.branch2b = ConvNormLayer(ch_out, ch_out, 3, 1, **conv_kw)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.branch2b(self.branch2a(x))
        short = x if self.shortcut else self.short(x)
        return F.relu(out + short)


class BottleNeck(nn.Layer):
    """1x1 → 3x3 (strided, "b"/"d" style) → 1x1 (x4 channels) + shortcut (ResNet-50/101).
    x [B, ch_in, H, W] → [B, 4 ch_out, H/stride, W/stride]."""

    expansion = 4

    def __init__(self, ch_in: int, ch_out: int, stride: int, shortcut: bool, variant: str = "d", **conv_kw):
        super().__init__()
        stride1, stride2 = (stride, 1) if variant == "a" else (1, stride)
        self.shortcut = shortcut
        # (upstream registers the branches before the shortcut here, unlike BasicBlock: same order kept)
        self.branch2a = ConvNormLayer(ch_in, ch_out, 1, stride1, act="relu", **conv_kw)
        self.branch2b = ConvNormLayer(ch_out, ch_out, 3, stride2, act="relu", **conv_kw)
        self.branch2c = ConvNormLayer(ch_out, ch_out * self.expansion, 1, 1, **conv_kw)
        if not shortcut:
            self.short = _shortcut(ch_in, ch_out * self.expansion, stride, variant, **conv_kw)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.branch2c(self.branch2b(self.branch2a(x)))
        short = x if self.shortcut else self.short(x)
        return F.relu(out + short)


def block_name(stage_num: int, count: int, i: int) -> str:
    """PaddleDetection's block names: res4a, res4b1 … res4b22 for the long stage of ResNet-101/152,
    res2a, res2b, … elsewhere."""
    if count > 10 and stage_num == 4:
        return f"res{stage_num}a" if i == 0 else f"res{stage_num}b{i}"
    return f"res{stage_num}{chr(ord('a') + i)}"


class _Stage(nn.Layer):
    """`count` blocks, the first one strided (except res2) with a projection shortcut."""

    def __init__(self, block: type, ch_in: int, ch_out: int, count: int, stage_num: int, variant: str, **conv_kw):
        super().__init__()
        self.blocks = []
        for i in range(count):
            layer = block(ch_in, ch_out, stride=2 if i == 0 and stage_num != 2 else 1, shortcut=i > 0,
                          variant=variant, **conv_kw)
            self.blocks.append(self.add_sublayer(block_name(stage_num, count, i), layer))
            ch_in = ch_out * block.expansion

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class ResNet(StagedBackbone):
    """ResNet-vd backbone with PaddleDetection's options.

    freeze_at: -1 trains everything; k >= 0 freezes the stem and, unless `freeze_stem_only`, stages
    res2 … res(2+k). freeze_norm: every BatchNorm is frozen (running statistics, no gradient).
    lr_mult_list: learning-rate multiplier of each stage's convs (the stem keeps 1.0, as upstream).
    width_mult: scales every width (a toolbox extension for tiny test models; 1.0 = the real network).
    `out_channels` / `out_strides` describe the returned maps (the neck's input).
    """

    def __init__(self, depth: int = 50, variant: str = "d", norm_type: str = "bn", ch_in: int = 64,
                 return_idx: Sequence[int] = (0, 1, 2, 3), num_stages: int = 4, freeze_at: int = 0,
                 freeze_stem_only: bool = False, freeze_norm: bool = True, norm_decay: float = 0.0,
                 lr_mult_list: Sequence[float] = (1.0, 1.0, 1.0, 1.0), width_mult: float = 1.0):
        super().__init__()
        if depth not in BLOCKS_PER_STAGE:
            raise UsageError(f"backbone.depth={depth} is not a ResNet depth; use one of {sorted(BLOCKS_PER_STAGE)}")
        if norm_type not in ("bn", "sync_bn"):
            raise UsageError(f"backbone.norm_type={norm_type!r} is not supported; use bn (sync_bn is applied by the trainer)")
        if not 1 <= num_stages <= 4:
            raise UsageError(f"backbone.num_stages={num_stages} must be between 1 and 4")
        return_idx = [return_idx] if isinstance(return_idx, int) else list(return_idx)
        if not return_idx or max(return_idx) >= num_stages or min(return_idx) < 0:
            raise UsageError(f"backbone.return_idx={return_idx} must index the {num_stages} stages (0 = res2)")
        if len(lr_mult_list) != 4:
            raise UsageError(f"backbone.lr_mult_list needs 4 values (res2..res5), got {list(lr_mult_list)}")
        self.depth = depth
        self.return_idx = return_idx
        self.num_stages = num_stages

        ch_in = int(round(ch_in * width_mult))
        ch_out_list = [int(round(c * width_mult)) for c in (64, 128, 256, 512)]
        norm_kw = dict(norm_decay=norm_decay, freeze_norm=freeze_norm)

        if variant in ("c", "d"):
            stem = [(3, ch_in // 2, 3, 2, "conv1_1"), (ch_in // 2, ch_in // 2, 3, 1, "conv1_2"),
                    (ch_in // 2, ch_in, 3, 1, "conv1_3")]
        else:
            stem = [(3, ch_in, 7, 2, "conv1")]
        self.conv1 = nn.Sequential()
        for c_in, c_out, k, s, name in stem:
            self.conv1.add_sublayer(name, ConvNormLayer(c_in, c_out, k, s, act="relu", lr=1.0, **norm_kw))

        block = BottleNeck if depth >= 50 else BasicBlock
        self._out_channels = [block.expansion * c for c in ch_out_list]
        self.res_layers = []
        for i in range(num_stages):
            stage = _Stage(block, ch_in, ch_out_list[i], BLOCKS_PER_STAGE[depth][i], stage_num=i + 2,
                           variant=variant, lr=float(lr_mult_list[i]), **norm_kw)
            self.res_layers.append(self.add_sublayer(f"res{i + 2}", stage))
            ch_in = self._out_channels[i]

        self.freeze(self.conv1, self.res_layers, freeze_at, freeze_stem_only)

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        x = F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)
        return self.run_stages(x, self.res_layers)
