"""RT-DETR's HybridEncoder (PaddleDetection's ``neck``).

Two jobs, as in the RT-DETR paper:
- AIFI: one transformer encoder layer (intra-scale interaction) over the last, smallest feature map
  (stride 32), with a fixed 2D sine-cosine position embedding;
- CCFM: cross-scale fusion, a top-down FPN then a bottom-up PAN whose fusion blocks are CSP layers
  of RepVGG-style blocks (3x3 conv+BN in parallel with 1x1 conv+BN, then the activation).

Shapes: forward(feats: list of [B, C_i, H_i, W_i], strides feat_strides) → list of
[B, hidden_dim, H_i, W_i], same count and order (fine to coarse).
Parameter names equal PaddleDetection's (``input_proj.{i}.0/1``, ``encoder.{i}.layers.{j}``,
``lateral_convs``, ``fpn_blocks``, ``downsample_convs``, ``pan_blocks``).
"""
from __future__ import annotations

from typing import Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .attention import MultiHeadAttention, get_activation


class ConvBN(nn.Layer):
    """Conv (no bias) + BatchNorm + activation; sub-layers named ``conv`` and ``bn``
    (PaddleDetection's BaseConv and, with act=None, the ConvBNLayer inside RepVggBlock)."""

    def __init__(self, ch_in: int, ch_out: int, kernel_size: int, stride: int = 1, act="silu"):
        super().__init__()
        self.conv = nn.Conv2D(ch_in, ch_out, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias_attr=False)
        self.bn = nn.BatchNorm2D(ch_out)
        self.act = get_activation(act)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class RepVggBlock(nn.Layer):
    """act(BN(conv3x3(x)) + BN(conv1x1(x))): the training-time form of a RepVGG block."""

    def __init__(self, ch_in: int, ch_out: int, act="silu"):
        super().__init__()
        self.conv1 = ConvBN(ch_in, ch_out, 3, act=None)
        self.conv2 = ConvBN(ch_in, ch_out, 1, act=None)
        self.act = get_activation(act)

    def forward(self, x):
        return self.act(self.conv1(x) + self.conv2(x))


class CSPRepLayer(nn.Layer):
    """CSP block: conv1 → RepVGG blocks, in parallel with conv2; sum; conv3 (1x1) when the hidden
    width (out_channels * expansion) differs from out_channels, else identity."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int = 3, expansion: float = 1.0, act="silu"):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvBN(in_channels, hidden, 1, act=act)
        self.conv2 = ConvBN(in_channels, hidden, 1, act=act)
        self.bottlenecks = nn.Sequential(*[RepVggBlock(hidden, hidden, act=act) for _ in range(num_blocks)])
        self.conv3 = ConvBN(hidden, out_channels, 1, act=act) if hidden != out_channels else nn.Identity()

    def forward(self, x):
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class TransformerLayer(nn.Layer):
    """Post-norm transformer encoder layer (AIFI): self-attention with the position embedding added to
    queries and keys only, then a feed-forward block. src [B, L, D], pos_embed [1, L, D] → [B, L, D]."""

    def __init__(self, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 1024, dropout: float = 0.0,
                 activation: str = "relu", attn_dropout: float | None = None, act_dropout: float | None = None,
                 normalize_before: bool = False):
        super().__init__()
        attn_dropout = dropout if attn_dropout is None else attn_dropout
        act_dropout = dropout if act_dropout is None else act_dropout
        self.normalize_before = normalize_before
        self.self_attn = MultiHeadAttention(d_model, nhead, attn_dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(act_dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = get_activation(activation)

    def forward(self, src, src_mask=None, pos_embed=None):
        residual = src
        if self.normalize_before:
            src = self.norm1(src)
        q = k = src if pos_embed is None else src + pos_embed
        src = residual + self.dropout1(self.self_attn(q, k, value=src, attn_mask=src_mask))
        if not self.normalize_before:
            src = self.norm1(src)
        residual = src
        if self.normalize_before:
            src = self.norm2(src)
        src = residual + self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(src)))))
        if not self.normalize_before:
            src = self.norm2(src)
        return src


class TransformerEncoder(nn.Layer):
    """A stack of TransformerLayer (``layers.{j}``)."""

    def __init__(self, layer_kwargs: dict, num_layers: int):
        super().__init__()
        self.layers = nn.LayerList([TransformerLayer(**layer_kwargs) for _ in range(num_layers)])

    def forward(self, src, src_mask=None, pos_embed=None):
        for layer in self.layers:
            src = layer(src, src_mask=src_mask, pos_embed=pos_embed)
        return src


def sincos_position_embedding_2d(w: int, h: int, embed_dim: int = 256, temperature: float = 10000.0) -> paddle.Tensor:
    """Fixed 2D sine-cosine embedding [1, w*h, embed_dim]: [sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)]
    with ω_k = temperature^(-k / (embed_dim/4)).

    Computed in float32 with the same operations and the same (w, h) meshgrid order as PaddleDetection
    (its grid is indexed [w, h] and flattened, so on a square map the first half encodes the row);
    official weights were trained with exactly this table."""
    if embed_dim % 4:
        raise ValueError(f"embed_dim {embed_dim} must be divisible by 4 for the 2D sine embedding")
    grid_w, grid_h = paddle.meshgrid(paddle.arange(int(w), dtype="float32"), paddle.arange(int(h), dtype="float32"))
    pos_dim = embed_dim // 4
    omega = paddle.arange(pos_dim, dtype="float32") / pos_dim
    omega = 1.0 / (temperature ** omega)
    out_w = grid_w.flatten()[:, None] @ omega[None]
    out_h = grid_h.flatten()[:, None] @ omega[None]
    return paddle.concat([paddle.sin(out_w), paddle.cos(out_w), paddle.sin(out_h), paddle.cos(out_h)], axis=1)[None]


_ENCODER_LAYER_KEYS = ("d_model", "nhead", "dim_feedforward", "dropout", "activation", "attn_dropout",
                       "act_dropout", "normalize_before")


class HybridEncoder(nn.Layer):
    """AIFI + CCFM neck. See the module docstring for the data flow.

    Keyword names are PaddleDetection's config keys. ``encoder_layer`` is a dict of TransformerLayer
    arguments (its ``name`` key is ignored); the same keys may also be given flat.
    """

    def __init__(self, in_channels: Sequence[int] = (512, 1024, 2048), feat_strides: Sequence[int] = (8, 16, 32),
                 hidden_dim: int = 256, use_encoder_idx: Sequence[int] = (2,), num_encoder_layers: int = 1,
                 encoder_layer: dict | str | None = None, pe_temperature: float = 10000.0, expansion: float = 1.0,
                 depth_mult: float = 1.0, act: str = "silu", trt: bool = False, eval_size=None, **flat_layer_kwargs):
        super().__init__()
        unknown = set(flat_layer_kwargs) - set(_ENCODER_LAYER_KEYS)
        if unknown:
            raise TypeError(f"HybridEncoder got unexpected keys: {sorted(unknown)}")
        layer_kwargs = {"d_model": hidden_dim, "nhead": 8, "dim_feedforward": 1024, "dropout": 0.0, "activation": "gelu"}
        if isinstance(encoder_layer, dict):
            layer_kwargs.update({k: v for k, v in encoder_layer.items() if k != "name"})
        layer_kwargs.update(flat_layer_kwargs)
        if layer_kwargs["d_model"] != hidden_dim:
            raise ValueError(f"encoder_layer.d_model {layer_kwargs['d_model']} != hidden_dim {hidden_dim}")

        self.in_channels = list(in_channels)
        self.feat_strides = list(feat_strides)
        self.hidden_dim = hidden_dim
        self.use_encoder_idx = list(use_encoder_idx)
        self.num_encoder_layers = num_encoder_layers
        self.pe_temperature = pe_temperature
        self.out_channels = [hidden_dim] * len(self.in_channels)
        self.out_strides = list(feat_strides)

        self.input_proj = nn.LayerList([
            nn.Sequential(nn.Conv2D(c, hidden_dim, 1, bias_attr=False), nn.BatchNorm2D(hidden_dim))
            for c in self.in_channels
        ])
        self.encoder = nn.LayerList([TransformerEncoder(layer_kwargs, num_encoder_layers) for _ in self.use_encoder_idx])

        num_blocks = round(3 * depth_mult)
        n = len(self.in_channels)
        self.lateral_convs = nn.LayerList([ConvBN(hidden_dim, hidden_dim, 1, act=act) for _ in range(n - 1)])
        self.fpn_blocks = nn.LayerList([
            CSPRepLayer(hidden_dim * 2, hidden_dim, num_blocks, expansion=expansion, act=act) for _ in range(n - 1)
        ])
        self.downsample_convs = nn.LayerList([ConvBN(hidden_dim, hidden_dim, 3, stride=2, act=act) for _ in range(n - 1)])
        self.pan_blocks = nn.LayerList([
            CSPRepLayer(hidden_dim * 2, hidden_dim, num_blocks, expansion=expansion, act=act) for _ in range(n - 1)
        ])
        self._reset_parameters()

    def _reset_parameters(self):
        for layer in self.sublayers():
            if isinstance(layer, nn.Conv2D):
                nn.initializer.KaimingUniform(nonlinearity="leaky_relu", negative_slope=5 ** 0.5)(layer.weight)

    def forward(self, feats):
        if len(feats) != len(self.in_channels):
            raise ValueError(f"HybridEncoder expects {len(self.in_channels)} feature maps, got {len(feats)}")
        proj = [self.input_proj[i](f) for i, f in enumerate(feats)]
        if self.num_encoder_layers > 0:
            for i, idx in enumerate(self.use_encoder_idx):
                h, w = proj[idx].shape[2], proj[idx].shape[3]
                src = proj[idx].flatten(2).transpose([0, 2, 1])  # [B, H*W, D]
                pos = sincos_position_embedding_2d(w, h, self.hidden_dim, self.pe_temperature)
                memory = self.encoder[i](src, pos_embed=pos)
                proj[idx] = memory.transpose([0, 2, 1]).reshape([-1, self.hidden_dim, h, w])

        n = len(self.in_channels)
        # Top-down: start from the coarsest map, lateral 1x1, upsample x2, fuse with the finer map.
        inner = [proj[-1]]
        for k, idx in enumerate(range(n - 1, 0, -1)):
            high = self.lateral_convs[k](inner[0])
            inner[0] = high
            # Nearest x2 upsample written as an explicit output size (the finer map's, which is twice the
            # coarser one): a float64 `scale` attribute breaks paddle2onnx 2.1.0.
            low = proj[idx - 1]
            up = F.interpolate(high, size=[low.shape[2], low.shape[3]], mode="nearest")
            inner.insert(0, self.fpn_blocks[k](paddle.concat([up, low], axis=1)))
        # Bottom-up: stride-2 conv of the finer output, fuse with the next top-down map.
        outs = [inner[0]]
        for k in range(n - 1):
            down = self.downsample_convs[k](outs[-1])
            outs.append(self.pan_blocks[k](paddle.concat([down, inner[k + 1]], axis=1)))
        return outs
