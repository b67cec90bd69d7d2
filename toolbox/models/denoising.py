"""Contrastive denoising queries (DINO), used by RT-DETR in training only.

Ground-truth boxes and labels are copied into ``num_group`` groups of 2·max_gt queries: the first
half of a group are positives (box jittered by less than half its size, the model must reconstruct
the box), the second half negatives (jittered by one to two half-sizes, the model must call them
background). Labels of either are flipped to a random class with probability label_noise_ratio/2.
The attention mask keeps matching queries from seeing denoising ones and groups from seeing each other.

Index bookkeeping is done with numpy (it depends only on box counts); the noise uses Paddle's
random generator, so ``paddle.seed`` makes a run reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import paddle

from .box_ops import cxcywh_to_xyxy, inverse_sigmoid, xyxy_to_cxcywh


@dataclass
class DenoisingMeta:
    """What the loss needs to score the denoising queries.

    positive_idx[i]: int64 [num_gt_i * num_group], query index (within the denoising block) of each
    positive copy, group-major; matched to ground truth ``arange(num_gt_i)`` tiled num_group times.
    """
    positive_idx: list = field(default_factory=list)
    num_group: int = 1
    num_split: tuple = (0, 0)  # (denoising queries, matching queries)


def build_denoising_queries(targets, num_classes: int, num_queries: int, class_embed: paddle.Tensor,
                            num_denoising: int = 100, label_noise_ratio: float = 0.5, box_noise_scale: float = 1.0):
    """targets: list (len B) of {"labels": int64 [n], "boxes": float32 [n, 4] cxcywh}.

    Returns (dn_embed [B, Nd, D], dn_ref_unact [B, Nd, 4], attn_mask [Nd+Q, Nd+Q] float additive
    (0 attend, -inf blocked), DenoisingMeta) or (None, None, None, None) when there is nothing to denoise.
    """
    if num_denoising <= 0:
        return None, None, None, None
    counts = [int(t["labels"].shape[0]) for t in targets]
    max_gt = max(counts) if counts else 0
    if max_gt == 0:
        return None, None, None, None
    bs = len(targets)
    num_group = max(num_denoising // max_gt, 1)
    num_dn = 2 * max_gt * num_group

    # Scatter every image's boxes into a [B, max_gt] padded layout (padding: class num_classes, box 0).
    slots = np.concatenate([i * max_gt + np.arange(n) for i, n in enumerate(counts)]).astype("int64")
    slots_t = paddle.to_tensor(slots)
    labels = paddle.concat([t["labels"].reshape([-1]).astype("int64") for t in targets])
    boxes = paddle.concat([t["boxes"].reshape([-1, 4]).astype("float32") for t in targets])
    pad_class = paddle.scatter(paddle.full([bs * max_gt], num_classes, dtype="int64"), slots_t, labels)
    pad_box = paddle.scatter(paddle.zeros([bs * max_gt, 4], dtype="float32"), slots_t, boxes)
    valid = np.zeros([bs, max_gt], dtype="float32")
    valid.reshape(-1)[slots] = 1.0

    # Tile into groups: [pos copy | neg copy] x num_group along the query axis.
    dn_class = pad_class.reshape([bs, max_gt]).tile([1, 2 * num_group])
    dn_box = pad_box.reshape([bs, max_gt, 4]).tile([1, 2 * num_group, 1])
    valid = np.tile(valid, [1, 2 * num_group])
    negative = np.tile(np.repeat(np.array([0.0, 1.0], dtype="float32"), max_gt), num_group)  # [Nd]
    positive_idx = [(np.arange(num_group)[:, None] * 2 * max_gt + np.arange(n)[None, :]).reshape(-1).astype("int64")
                    for n in counts]

    if label_noise_ratio > 0:
        flip = (paddle.rand(dn_class.shape) < label_noise_ratio * 0.5) & paddle.to_tensor(valid > 0)
        new_class = paddle.randint(0, num_classes, dn_class.shape, dtype="int64")
        dn_class = paddle.where(flip, new_class, dn_class)

    if box_noise_scale > 0:
        corners = cxcywh_to_xyxy(dn_box)
        half = paddle.tile(dn_box[..., 2:] * 0.5, [1, 1, 2]) * box_noise_scale
        sign = paddle.randint(0, 2, dn_box.shape).astype("float32") * 2.0 - 1.0
        part = paddle.rand(dn_box.shape)
        neg = paddle.to_tensor(negative).reshape([1, -1, 1])
        part = (part + 1.0) * neg + part * (1.0 - neg)
        corners = (corners + part * sign * half).clip(min=0.0, max=1.0)
        dn_box = xyxy_to_cxcywh(corners)
    dn_ref_unact = inverse_sigmoid(dn_box)

    # Class num_classes (padding) reads an all-zero row.
    table = paddle.concat([class_embed, paddle.zeros([1, class_embed.shape[-1]], dtype=class_embed.dtype)])
    dn_embed = paddle.gather(table, dn_class.flatten(), axis=0).reshape([bs, num_dn, -1])

    size = num_dn + num_queries
    blocked = np.zeros([size, size], dtype=bool)
    blocked[num_dn:, :num_dn] = True  # matching queries cannot see the reconstruction task
    group = np.arange(num_dn) // (2 * max_gt)
    blocked[:num_dn, :num_dn] = group[:, None] != group[None, :]  # groups cannot see each other
    mask = paddle.to_tensor(np.where(blocked, -np.inf, 0.0).astype("float32"))
    meta = DenoisingMeta(positive_idx=positive_idx, num_group=num_group, num_split=(num_dn, num_queries))
    return dn_embed, dn_ref_unact, mask, meta
