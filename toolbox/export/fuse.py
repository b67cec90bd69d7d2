"""The export form of a model: RepVGG blocks re-parameterised and batch norms folded into convolutions.

Why: in eval mode a BatchNorm2D is a per-channel affine map, so it can be folded into the convolution
before it, and a RepVGG block (BN(conv3x3(x)) + BN(conv1x1(x)), hybrid_encoder.RepVggBlock) is then
one 3x3 convolution with bias (the 1x1 kernel sits at the 3x3 kernel's centre, biases add). The exported
graph then has fewer nodes and fewer passes over the feature maps (PaddleDetection's export does the
same for the RepVGG blocks). The training form of the model, whose parameter names must stay
PaddleDetection's, is never touched: `fuse_for_export` works on a deep copy.

Folding is computed in float64 and stored in float32, so the fused model differs from the unfused one
only by float32 reassociation (~1e-6 relative per layer; tests hold outputs to ~1e-5 relative).

What is folded (every pattern whose data flow is known, not guessed from registration order):
- `conv` + `bn` of hybrid_encoder.ConvBN and hgnetv2.ConvBNAct, `conv` + `norm` of layers.ConvNormLayer;
- consecutive Conv2D, BatchNorm2D children of an nn.Sequential (the input projections);
- every hybrid_encoder.RepVggBlock -> RepVggDeploy (one 3x3 conv with bias, then the activation).
A BatchNorm2D left over (a pattern not listed here) stays as it is, so the model stays right;
`fuse_for_export` reports how many were left.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.nn as nn


@dataclass
class FuseReport:
    """What fuse_for_export changed (counts), for the export report."""

    repvgg_blocks: int = 0
    batch_norms_folded: int = 0
    batch_norms_left: int = 0

    def to_dict(self) -> dict:
        return {"repvgg_blocks": self.repvgg_blocks, "batch_norms_folded": self.batch_norms_folded,
                "batch_norms_left": self.batch_norms_left}


class RepVggDeploy(nn.Layer):
    """act(conv3x3(x) + bias): a re-parameterised RepVggBlock (same input and output as the block)."""

    def __init__(self, conv: nn.Conv2D, act: nn.Layer):
        super().__init__()
        self.conv = conv
        self.act = act

    def forward(self, x):
        return self.act(self.conv(x))


def fuse_for_export(model: nn.Layer) -> tuple[nn.Layer, FuseReport]:
    """A deep copy of `model` in eval mode with every RepVGG block re-parameterised and every known
    Conv+BN pair folded (see the module docstring); `model` itself is left unchanged."""
    fused = copy.deepcopy(model)
    fused.eval()
    report = FuseReport()
    with paddle.no_grad():
        _reparam_repvgg(fused, report)
        _fold_pairs(fused, report)
    report.batch_norms_left = sum(isinstance(m, nn.BatchNorm2D) for m in fused.sublayers(include_self=True))
    fused.eval()
    return fused, report


# ---------------------------------------------------------------------------------------------- maths
def conv_bn_weights(conv: nn.Conv2D, bn: nn.BatchNorm2D) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) in float64 of the conv equal to bn(conv(x)) in eval mode:
    w' = w * g / sqrt(var + eps) per output channel, b' = beta + (b - mean) * g / sqrt(var + eps)."""
    _check_nchw(conv, bn)
    w = conv.weight.numpy().astype(np.float64)
    b = conv.bias.numpy().astype(np.float64) if conv.bias is not None else np.zeros(w.shape[0])
    mean = bn._mean.numpy().astype(np.float64)
    var = bn._variance.numpy().astype(np.float64)
    gamma = bn.weight.numpy().astype(np.float64) if bn.weight is not None else np.ones_like(mean)
    beta = bn.bias.numpy().astype(np.float64) if bn.bias is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + float(bn._epsilon))
    return w * scale.reshape(-1, 1, 1, 1), beta + (b - mean) * scale


def centre_1x1(w1: np.ndarray) -> np.ndarray:
    """A 1x1 kernel [O,I,1,1] as the 3x3 kernel [O,I,3,3] with the same output under padding 1 (the 1x1
    conv's padding is 0): the weight sits at the centre tap, zeros elsewhere."""
    out = np.zeros(w1.shape[:2] + (3, 3), w1.dtype)
    out[:, :, 1, 1] = w1[:, :, 0, 0]
    return out


def repvgg_weights(block) -> tuple[np.ndarray, np.ndarray]:
    """(weight [O,I,3,3], bias [O]) in float64 of the one 3x3 conv equal to a RepVggBlock before its activation."""
    w3, b3 = conv_bn_weights(block.conv1.conv, block.conv1.bn)
    w1, b1 = conv_bn_weights(block.conv2.conv, block.conv2.bn)
    c3, c1 = block.conv1.conv, block.conv2.conv
    if (w3.shape[2:] != (3, 3) or w1.shape[2:] != (1, 1) or list(c3._stride) != list(c1._stride)
            or c3._groups != 1 or c1._groups != 1):
        raise ValueError("fuse: a RepVggBlock must be a 3x3 + 1x1 pair of equal stride, no groups")
    return w3 + centre_1x1(w1), b3 + b1


def _check_nchw(conv: nn.Conv2D, bn: nn.BatchNorm2D) -> None:
    if getattr(conv, "_data_format", "NCHW") != "NCHW" or getattr(bn, "_data_format", "NCHW") != "NCHW":
        raise ValueError("fuse: only NCHW convolutions and batch norms can be folded")
    if conv.weight.shape[0] != bn._mean.shape[0]:
        raise ValueError(f"fuse: conv has {conv.weight.shape[0]} output channels, its batch norm "
                         f"{bn._mean.shape[0]}")


def biased_conv(conv: nn.Conv2D, weight: np.ndarray, bias: np.ndarray) -> nn.Conv2D:
    """A Conv2D with conv's geometry (stride, padding, dilation, groups) and the given weight and bias."""
    k = weight.shape[2:]
    new = nn.Conv2D(conv._in_channels, weight.shape[0], list(k), stride=conv._stride, padding=conv._padding,
                    dilation=conv._dilation, groups=conv._groups, padding_mode=conv._padding_mode,
                    data_format=conv._data_format)
    new.weight.set_value(weight.astype(np.float32))
    new.bias.set_value(bias.astype(np.float32))
    new.eval()
    return new


# ---------------------------------------------------------------------------------------------- rewrites
def _replace(parent: nn.Layer, name: str, new: nn.Layer) -> None:
    parent._sub_layers[name] = new
    if name in parent.__dict__:  # a plain attribute shadowing the sub-layer (not expected, but kept right)
        parent.__dict__[name] = new


def _reparam_repvgg(root: nn.Layer, report: FuseReport) -> None:
    from ..models.hybrid_encoder import RepVggBlock

    for parent in root.sublayers(include_self=True):
        for name, child in list(parent._sub_layers.items()):
            if not isinstance(child, RepVggBlock):
                continue
            w, b = repvgg_weights(child)
            _replace(parent, name, RepVggDeploy(biased_conv(child.conv1.conv, w, b), child.act))
            report.repvgg_blocks += 1


def _conv_norm_pairs(layer: nn.Layer) -> list[tuple[str, str]]:
    """(conv child name, norm child name) pairs of `layer` whose forward is norm(conv(x))."""
    from ..models.backbones.hgnetv2 import ConvBNAct
    from ..models.backbones.layers import ConvNormLayer
    from ..models.hybrid_encoder import ConvBN

    if isinstance(layer, (ConvBN, ConvBNAct)):
        return [("conv", "bn")]
    if isinstance(layer, ConvNormLayer):
        return [("conv", "norm")]
    if isinstance(layer, nn.Sequential):
        names = list(layer._sub_layers)
        return [(a, b) for a, b in zip(names, names[1:])
                if isinstance(layer._sub_layers[a], nn.Conv2D) and isinstance(layer._sub_layers[b], nn.BatchNorm2D)]
    return []


def _fold_pairs(root: nn.Layer, report: FuseReport) -> None:
    for layer in root.sublayers(include_self=True):
        for conv_name, bn_name in _conv_norm_pairs(layer):
            conv, bn = layer._sub_layers.get(conv_name), layer._sub_layers.get(bn_name)
            if not isinstance(conv, nn.Conv2D) or not isinstance(bn, nn.BatchNorm2D):
                continue  # already folded, or not the expected pair
            w, b = conv_bn_weights(conv, bn)
            _replace(layer, conv_name, biased_conv(conv, w, b))
            _replace(layer, bn_name, nn.Identity())
            report.batch_norms_folded += 1
