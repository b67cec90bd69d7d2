"""Backbones: ResNet-vd (RT-DETR-R*) and PP-HGNetV2 (RT-DETR-L/X/H), PaddleDetection's names and options.

`build_backbone(cfg)` turns a config's `backbone:` section into the Layer; every backbone exposes
`out_channels` and `out_strides` of the maps it returns (the neck's input).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import paddle.nn as nn

from toolbox.errors import UsageError

from .hgnetv2 import PPHGNetV2
from .layers import ConvNormLayer, batch_norm, freeze_batch_norms, is_frozen_norm
from .resnet_vd import ResNet

__all__ = ["ResNet", "PPHGNetV2", "ConvNormLayer", "batch_norm", "freeze_batch_norms", "is_frozen_norm",
           "build_backbone"]


def build_backbone(cfg: Mapping[str, Any]) -> nn.Layer:
    """`backbone:` section → ResNet or PPHGNetV2 (keys other than `type` are constructor arguments)."""
    kwargs = dict(cfg)
    kind = kwargs.pop("type", None)
    if kind == "ResNet":
        cls = ResNet
    elif kind == "PPHGNetV2":
        cls = PPHGNetV2
    else:
        raise UsageError(f"backbone.type={kind!r} is not supported; use ResNet or PPHGNetV2")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # an unknown key in the config
        raise UsageError(f"backbone ({kind}): {exc}; check the keys of the config's backbone section") from None
