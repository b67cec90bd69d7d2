"""Plain multi-head attention with PaddleDetection's parameter layout, and the small MLP head.

Paddle's own ``nn.MultiHeadAttention`` keeps separate q/k/v projections; PaddleDetection's checkpoints
store one packed ``in_proj_weight`` [D, 3D] (Paddle Linear layout: [in, out], columns q | k | v) and
``in_proj_bias`` [3D], plus ``out_proj``. This layer keeps that layout so checkpoints load unchanged.
"""
from __future__ import annotations

import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F


class MultiHeadAttention(nn.Layer):
    """Scaled dot-product attention over ``num_heads`` heads.

    forward(query [B, Lq, D], key [B, Lk, D], value [B, Lk, D], attn_mask [Lq, Lk] additive float
    (0 = attend, -inf = blocked) or None) → [B, Lq, D].
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.in_proj_weight = self.create_parameter(
            [embed_dim, 3 * embed_dim], default_initializer=nn.initializer.XavierUniform()
        )
        self.in_proj_bias = self.create_parameter(
            [3 * embed_dim], is_bias=True, default_initializer=nn.initializer.Constant(0.0)
        )
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def _project(self, x: paddle.Tensor, index: int) -> paddle.Tensor:
        d = self.embed_dim
        y = F.linear(x, self.in_proj_weight[:, index * d:(index + 1) * d], self.in_proj_bias[index * d:(index + 1) * d])
        # [B, L, D] -> [B, heads, L, head_dim]
        return y.reshape([0, 0, self.num_heads, self.head_dim]).transpose([0, 2, 1, 3])

    def forward(self, query, key=None, value=None, attn_mask=None):
        key = query if key is None else key
        value = query if value is None else value
        q = self._project(query, 0)
        k = self._project(key, 1)
        v = self._project(value, 2)
        # Scale after the product, as PaddleDetection does (keeps results bit-close to it).
        product = paddle.matmul(q, k, transpose_y=True) * (float(self.head_dim) ** -0.5)
        if attn_mask is not None:
            product = product + attn_mask
        weights = F.softmax(product, axis=-1)
        if self.dropout > 0 and self.training:
            weights = F.dropout(weights, self.dropout, training=True)
        out = paddle.matmul(weights, v).transpose([0, 2, 1, 3])
        out = out.reshape([0, 0, self.embed_dim])
        return self.out_proj(out)


class MLP(nn.Layer):
    """``num_layers`` Linear layers with ReLU between them (none after the last): the box heads and
    the query position head. Parameters are ``layers.{i}.weight/bias``."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.LayerList([nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])

    def forward(self, x):
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


def linear_init_(layer: nn.Linear) -> None:
    """PyTorch-style uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias (the DETR heads)."""
    bound = 1.0 / math.sqrt(layer.weight.shape[0])
    nn.initializer.Uniform(-bound, bound)(layer.weight)
    if layer.bias is not None:
        nn.initializer.Uniform(-bound, bound)(layer.bias)


def bias_init_with_prob(prior_prob: float = 0.01) -> float:
    """Bias giving sigmoid(bias) = prior_prob: class heads start predicting 'background'."""
    return float(-math.log((1 - prior_prob) / prior_prob))


def get_activation(name):
    """'relu' | 'gelu' | 'silu' | None → a callable (identity for None)."""
    if name is None or name == "identity":
        return lambda x: x
    if callable(name):
        return name
    fn = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "swish": F.silu}.get(str(name).lower())
    if fn is None:
        raise ValueError(f"unknown activation {name!r} (use relu, gelu or silu)")
    return fn
