"""Convolution + batch-norm building blocks shared by the backbones, and frozen batch norm.

Frozen batch norm is what PaddleDetection's `freeze_norm` means: the layer normalises with its stored
running statistics in training as in evaluation (`use_global_stats=True`), never updates them, and its
scale and shift take no gradient. Detection batches are small (4 images a GPU), so statistics learnt on
ImageNet are better than ones re-estimated per batch. Names stay those of a plain BatchNorm2D
(`weight`, `bias`, `_mean`, `_variance`), so checkpoints are unaffected.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.regularizer import L2Decay


def batch_norm(channels: int, *, lr: float = 1.0, decay: float | None = 0.0, frozen: bool = False) -> nn.BatchNorm2D:
    """A BatchNorm2D whose scale/shift learn at `lr` x base rate with L2 `decay` (None: the optimizer's),
    or a frozen one (running statistics only, no gradient) when `frozen`."""
    regularizer = L2Decay(decay) if decay is not None else None
    if frozen:
        attr = dict(learning_rate=0.0, regularizer=regularizer, trainable=False)
        norm = nn.BatchNorm2D(channels, weight_attr=ParamAttr(**attr), bias_attr=ParamAttr(**attr),
                              use_global_stats=True)
        for p in norm.parameters():
            p.stop_gradient = True
        return norm
    attr = dict(learning_rate=lr, regularizer=regularizer)
    return nn.BatchNorm2D(channels, weight_attr=ParamAttr(**attr), bias_attr=ParamAttr(**attr))


def freeze_batch_norms(layer: nn.Layer) -> nn.Layer:
    """Replace every BatchNorm2D under `layer` (in place) by a frozen one with the same statistics and
    affine parameters; returns `layer` (or the replacement when `layer` itself is a BatchNorm2D)."""
    if isinstance(layer, nn.BatchNorm2D):
        frozen = batch_norm(layer._num_features, frozen=True)
        frozen.weight.set_value(layer.weight)
        frozen.bias.set_value(layer.bias)
        frozen._mean.set_value(layer._mean)
        frozen._variance.set_value(layer._variance)
        return frozen
    for name, child in layer.named_children():
        replaced = freeze_batch_norms(child)
        if replaced is not child:
            setattr(layer, name, replaced)
    return layer


def freeze_parameters(layer: nn.Layer) -> None:
    """Stop gradients to every parameter of `layer` (a frozen stage: it still runs, it no longer learns)."""
    for p in layer.parameters():
        p.stop_gradient = True


class StagedBackbone(nn.Layer):
    """What both backbones share: a stem, then four stages at strides 4, 8, 16, 32, of which the stages
    in `return_idx` are returned as feature maps [B, C_i, H / stride_i, W / stride_i].

    Subclasses set `return_idx` and `_out_channels` (every stage's channels) and call `run_stages` and
    `freeze` with their own sub-layers, whose names are PaddleDetection's checkpoint names.
    """

    STAGE_STRIDES = (4, 8, 16, 32)
    return_idx: list[int]
    _out_channels: list[int]

    @property
    def out_channels(self) -> list[int]:
        return [self._out_channels[i] for i in self.return_idx]

    @property
    def out_strides(self) -> list[int]:
        return [self.STAGE_STRIDES[i] for i in self.return_idx]

    @staticmethod
    def freeze(stem: nn.Layer, stages, freeze_at: int, freeze_stem_only: bool) -> None:
        """Stop gradients of the stem and, unless stem-only, of stages 0..freeze_at (-1: nothing)."""
        if freeze_at < 0:
            return
        freeze_parameters(stem)
        if not freeze_stem_only:
            for i in range(min(freeze_at + 1, len(stages))):
                freeze_parameters(stages[i])

    def run_stages(self, x: paddle.Tensor, stages) -> list[paddle.Tensor]:
        outs = []
        for idx, stage in enumerate(stages):
            x = stage(x)
            if idx in self.return_idx:
                outs.append(x)
        return outs


def is_frozen_norm(layer: nn.Layer) -> bool:
    """True for a BatchNorm2D made by `batch_norm(frozen=True)` / `freeze_batch_norms`."""
    return isinstance(layer, nn.BatchNorm2D) and bool(getattr(layer, "_use_global_stats", False))


class ConvNormLayer(nn.Layer):
    """conv (no bias) → batch norm → optional activation; ResNet's unit, named `conv` and `norm`.

    x [B, ch_in, H, W] → [B, ch_out, H / stride, W / stride]; padding (k - 1) // 2 keeps 'same' sizes.
    `lr` scales the conv's learning rate (PaddleDetection's lr_mult_list); frozen norms learn at 0.
    """

    def __init__(self, ch_in: int, ch_out: int, filter_size: int, stride: int, *, groups: int = 1,
                 act: str | None = None, lr: float = 1.0, norm_decay: float | None = 0.0,
                 freeze_norm: bool = False):
        super().__init__()
        self.act = act
        self.conv = nn.Conv2D(ch_in, ch_out, filter_size, stride=stride, padding=(filter_size - 1) // 2,
                              groups=groups, weight_attr=ParamAttr(learning_rate=lr), bias_attr=False)
        self.norm = batch_norm(ch_out, lr=lr, decay=norm_decay, frozen=freeze_norm)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.norm(self.conv(x))
        if self.act == "relu":
            x = F.relu(x)
        elif self.act is not None:
            x = getattr(F, self.act)(x)
        return x
