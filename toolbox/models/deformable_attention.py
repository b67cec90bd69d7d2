"""Multi-scale deformable cross attention (Deformable DETR, as used by RT-DETR and RT-DETRv2).

Each query looks at a few points per feature level around its reference box: the point offsets and
their softmax weights are predicted from the query, the values are sampled from the projected memory.

Two ways to read a value at a fractional location (``method``):
- ``grid`` (RT-DETR, PaddleDetection's 'default'): bilinear ``F.grid_sample`` with
  align_corners=False and zero padding;
- ``discrete`` (RT-DETRv2): no grid_sample, which NPUs like the RK3588's lack: the location is turned
  into an integer pixel index, ``int(loc * [W, H] + 0.5)`` clamped to the map, and the value is read
  with a gather. This is RT-DETRv2's definition (its ``dsp`` checkpoints were fine-tuned with it); note
  it reads the pixel whose top-left corner is nearest, i.e. half a pixel right/down of bilinear
  sampling: discrete(loc) equals grid(loc + 0.5/[W, H]) whenever the latter lands on a pixel centre.

Shapes: query [B, Lq, D]; reference_points [B, Lq, 1, 4] normalised cxcywh; value (memory)
[B, Lv, D] with Lv = Σ H_l·W_l; spatial_shapes list of (H_l, W_l) Python ints → [B, Lq, D].
Parameters: sampling_offsets, attention_weights, value_proj, output_proj (PaddleDetection's names);
RT-DETRv2 checkpoints also carry the buffer ``num_points_scale`` [Σ points] (= 1/points of each level).
"""
from __future__ import annotations

import math
from typing import Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

SAMPLING_METHODS = ("grid", "discrete")


def normalize_sampling(method: str) -> str:
    """'grid' | 'default' | 'bilinear' → 'grid'; 'discrete' → 'discrete'."""
    m = str(method).lower()
    if m in ("grid", "default", "bilinear", "grid_sample"):
        return "grid"
    if m == "discrete":
        return "discrete"
    raise ValueError(f"unknown sampling method {method!r}: use 'grid' or 'discrete'")


def sample_values(value_l: paddle.Tensor, loc_l: paddle.Tensor, method: str) -> paddle.Tensor:
    """Read one level. value_l [N, C, H, W]; loc_l [N, Lq, P, 2] normalised (x, y) in [0, 1]
    → [N, C, Lq, P]."""
    if method == "grid":
        return F.grid_sample(value_l, 2.0 * loc_l - 1.0, mode="bilinear", padding_mode="zeros", align_corners=False)
    c, h, w = value_l.shape[1], value_l.shape[2], value_l.shape[3]
    lq, p = loc_l.shape[1], loc_l.shape[2]
    # int() truncation toward zero, then clamp (RT-DETRv2's discrete operator).
    x = paddle.cast(loc_l[..., 0] * float(w) + 0.5, "int64").clip(0, w - 1)
    y = paddle.cast(loc_l[..., 1] * float(h) + 0.5, "int64").clip(0, h - 1)
    # Index products are int64 x int64 tensors, not int64 x Python int: paddle2onnx exports the latter
    # (a `scale` op) as Cast->float Mul->Cast, which an FP16 NPU computes in FP16, exact only up to 2048
    # (multiples of 8 up to 16384): in rknn-toolkit2's RK3588 FP16 build, y*100 (a 100-wide level, input
    # 800) came out up to 4 off and the gather read out of bounds, while an int64 Mul stays exact. The
    # values are the same in Paddle either way.
    width = paddle.full([1], w, dtype="int64")
    index = (y * width + x).reshape([-1, lq * p])  # [N, Lq*P]
    # One flat gather over N*H*W rows: an ONNX Gather, which every runtime (and NPU) supports.
    # paddle.shape keeps the batch dynamic in an exported graph.
    base = (paddle.arange(paddle.shape(index)[0], dtype="int64") * paddle.full([1], h * w, dtype="int64")).unsqueeze(-1)
    flat = value_l.reshape([-1, c, h * w]).transpose([0, 2, 1]).reshape([-1, c])
    picked = paddle.gather(flat, (index + base).flatten(), axis=0)  # [N*Lq*P, C]
    return picked.reshape([-1, lq, p, c]).transpose([0, 3, 1, 2])


class MSDeformableAttention(nn.Layer):
    """See the module docstring. ``num_points`` is an int (same for every level) or a list per level
    (RT-DETRv2); ``version=2`` registers the ``num_points_scale`` buffer RT-DETRv2 checkpoints hold."""

    def __init__(self, embed_dim: int = 256, num_heads: int = 8, num_levels: int = 3,
                 num_points: int | Sequence[int] = 4, method: str = "grid", offset_scale: float = 0.5,
                 version: int = 1):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        points = list(num_points) if isinstance(num_points, (list, tuple)) else [int(num_points)] * num_levels
        if len(points) != num_levels:
            raise ValueError(f"num_points {points} must give one count per level ({num_levels})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points_list = points
        self.head_dim = embed_dim // num_heads
        self._method = normalize_sampling(method)
        self.offset_scale = offset_scale
        total = sum(points)

        self.sampling_offsets = nn.Linear(embed_dim, num_heads * total * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * total)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        scale = paddle.to_tensor([1.0 / n for n in points for _ in range(n)], dtype="float32")
        if version >= 2:
            self.register_buffer("num_points_scale", scale, persistable=True)
        else:
            self.register_buffer("num_points_scale", scale, persistable=False)
        self._reset_parameters()
        self.method = self._method  # freezes the offsets when discrete (see the setter)

    @property
    def method(self) -> str:
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        """Set the sampling method; discrete sampling gives the sampling offsets no gradient (locations
        are rounded to pixels), so they are frozen then, as RT-DETRv2 does, and trainable again on grid."""
        self._method = normalize_sampling(value)
        for p in self.sampling_offsets.parameters():
            p.stop_gradient = self._method == "discrete"

    def _reset_parameters(self):
        nn.initializer.Constant(0.0)(self.sampling_offsets.weight)
        thetas = paddle.arange(self.num_heads, dtype="float32") * (2.0 * math.pi / self.num_heads)
        grid = paddle.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)
        # Head h points in direction θ_h; point k of a level sits k+1 steps out.
        steps = paddle.concat([paddle.arange(1, n + 1, dtype="float32") for n in self.num_points_list])
        bias = grid.reshape([self.num_heads, 1, 2]) * steps.reshape([1, -1, 1])
        self.sampling_offsets.bias.set_value(bias.flatten())
        nn.initializer.Constant(0.0)(self.attention_weights.weight)
        nn.initializer.Constant(0.0)(self.attention_weights.bias)
        nn.initializer.XavierUniform()(self.value_proj.weight)
        nn.initializer.Constant(0.0)(self.value_proj.bias)
        nn.initializer.XavierUniform()(self.output_proj.weight)
        nn.initializer.Constant(0.0)(self.output_proj.bias)

    def forward(self, query, reference_points, value, spatial_shapes, method: str | None = None):
        method = self.method if method is None else normalize_sampling(method)
        # The batch size is never used as a number, so an exported graph keeps it dynamic.
        lq = query.shape[1]
        total = sum(self.num_points_list)
        nh = self.num_heads
        sizes = [int(h) * int(w) for h, w in spatial_shapes]
        value = self.value_proj(value)  # [B, Lv, D]
        offsets = self.sampling_offsets(query).reshape([-1, lq, nh, total, 2])
        weights = F.softmax(self.attention_weights(query).reshape([-1, lq, nh, total]), axis=-1)
        # Offsets are in units of (box size / points of that level), scaled by offset_scale (0.5).
        scale = self.num_points_scale.unsqueeze(-1)  # [total, 1]
        ref = reference_points  # [B, Lq, 1, 4]
        loc = ref[:, :, None, :, :2] + offsets * scale * ref[:, :, None, :, 2:] * self.offset_scale

        # Heads become part of the batch: values [B*heads, head_dim, Lv], locations [B*heads, Lq, total, 2].
        v = value.reshape([-1, sum(sizes), nh, self.head_dim]).transpose([0, 2, 3, 1])
        v = v.reshape([-1, self.head_dim, sum(sizes)])
        loc = loc.transpose([0, 2, 1, 3, 4]).reshape([-1, lq, total, 2])
        v_levels = paddle.split(v, sizes, axis=-1)
        loc_levels = paddle.split(loc, self.num_points_list, axis=2)
        w_levels = paddle.split(weights.transpose([0, 2, 1, 3]).reshape([-1, 1, lq, total]), self.num_points_list, axis=-1)
        # Weighted sum level by level (no concat of all samples: ~15% faster forward+backward on CPU).
        out = None
        for v_l, l_l, w_l, (h, w) in zip(v_levels, loc_levels, w_levels, spatial_shapes):
            sampled = sample_values(v_l.reshape([-1, self.head_dim, int(h), int(w)]), l_l, method)  # [B*heads, hd, Lq, P_l]
            part = (sampled * w_l).sum(-1)
            out = part if out is None else out + part
        out = out.reshape([-1, self.embed_dim, lq]).transpose([0, 2, 1])
        return self.output_proj(out)
