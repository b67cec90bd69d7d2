"""Box helpers shared by the decoder, the loss, the matcher and post-processing.

Boxes travel through RT-DETR as normalised (cx, cy, w, h) in [0, 1]; the losses and the matcher
compare them as corners (x1, y1, x2, y2). Paddle versions feed the differentiable losses; numpy
versions feed the matcher, which runs on the host (scipy's Hungarian solver needs numpy anyway).
"""
from __future__ import annotations

import numpy as np
import paddle

def inverse_sigmoid(x: paddle.Tensor, eps: float = 1e-5) -> paddle.Tensor:
    """log(x / (1 - x)) with x clipped to [0, 1] and both terms floored at eps (finite at 0 and 1).

    eps = 1e-5 as PaddleDetection: every decoder layer's reference box goes through it, so the value
    decides whether official weights reproduce. (A literal default: dy2static export cannot resolve a
    module constant used as a default.)"""
    x = x.clip(min=0.0, max=1.0)
    return paddle.log(x.clip(min=eps) / (1.0 - x).clip(min=eps))


def cxcywh_to_xyxy(boxes: paddle.Tensor) -> paddle.Tensor:
    """[..., 4] centre-size → corners."""
    cx, cy, w, h = paddle.unbind(boxes, axis=-1)
    return paddle.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def xyxy_to_cxcywh(boxes: paddle.Tensor) -> paddle.Tensor:
    """[..., 4] corners → centre-size."""
    x1, y1, x2, y2 = paddle.unbind(boxes, axis=-1)
    return paddle.stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1], axis=-1)


def box_iou_pairwise(a: paddle.Tensor, b: paddle.Tensor, eps: float = 1e-9) -> paddle.Tensor:
    """IoU of matched pairs: a, b [M, 4] xyxy → [M]. Areas of inverted boxes count as 0."""
    ix1 = paddle.maximum(a[:, 0], b[:, 0])
    iy1 = paddle.maximum(a[:, 1], b[:, 1])
    ix2 = paddle.minimum(a[:, 2], b[:, 2])
    iy2 = paddle.minimum(a[:, 3], b[:, 3])
    inter = (ix2 - ix1).clip(min=0) * (iy2 - iy1).clip(min=0)
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])).clip(min=0)
    area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).clip(min=0)
    return inter / (area_a + area_b - inter + eps)


def generalized_iou_pairwise(a: paddle.Tensor, b: paddle.Tensor, eps: float = 1e-10) -> paddle.Tensor:
    """GIoU of matched pairs: a, b [M, 4] xyxy → [M] in [-1, 1] (the GIoU loss is 1 - this)."""
    ix1 = paddle.maximum(a[:, 0], b[:, 0])
    iy1 = paddle.maximum(a[:, 1], b[:, 1])
    ix2 = paddle.minimum(a[:, 2], b[:, 2])
    iy2 = paddle.minimum(a[:, 3], b[:, 3])
    inter = (ix2 - ix1).clip(min=0) * (iy2 - iy1).clip(min=0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter + eps
    iou = inter / union
    ex1 = paddle.minimum(a[:, 0], b[:, 0])
    ey1 = paddle.minimum(a[:, 1], b[:, 1])
    ex2 = paddle.maximum(a[:, 2], b[:, 2])
    ey2 = paddle.maximum(a[:, 3], b[:, 3])
    enclose = (ex2 - ex1) * (ey2 - ey1) + eps
    return iou - (enclose - union) / enclose


def np_cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    cx, cy, w, h = np.moveaxis(boxes, -1, 0)
    return np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def np_generalized_iou_matrix(a: np.ndarray, b: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """GIoU of every pair: a [N, 4], b [M, 4] xyxy → [N, M]."""
    a = a[:, None, :]
    b = b[None, :, :]
    inter = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(min=0) * (
        np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    ).clip(min=0)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter + eps
    enclose = (np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])) * (
        np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])
    ) + eps
    return inter / union - (enclose - union) / enclose
