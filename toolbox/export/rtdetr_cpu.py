"""The CPU-side stages of a split RT-DETR graph, in plain numpy (no Paddle, no onnxruntime).

Why this exists: the RK3588 NPU runs neither TopK nor GridSample, so the RKNN export cuts RT-DETR in
four stages (see `infer_cfg.yml` -> `stages`, format `rknn`):

    1. encoder   (NPU)  image uint8 [1,S,S,3] -> memory [1,L,D], enc_memory [1,L,D],
                        enc_logits [1,L,C], enc_boxes_unact [1,L,4]
    2. select_queries (CPU, here)  top-k of the encoder scores -> target [1,Q,D], ref_unact [1,Q,4]
    3. decoder   (NPU)  target, ref_unact, memory -> logits [1,Q,C], boxes [1,Q,4] (cx,cy,w,h in 0..1)
    4. postprocess (CPU, here)  top-K over queries x classes -> labels [1,K], boxes [1,K,4] xyxy pixels,
                        scores [1,K]

This file is copied as is into the export folder (rknn/rtdetr_cpu.py) and into the SDKs, so it depends
on numpy only. It mirrors toolbox.models' query selection and post-processing exactly (the export tests
compare the two).
"""
from __future__ import annotations

import numpy as np

__all__ = ["sigmoid", "topk", "select_queries", "postprocess"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function in float32."""
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def topk(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k along the last axis, largest first: (values [..., k], indices [..., k] int64).

    argpartition then a sort of the k survivors: O(n) instead of a full sort of L x C scores.
    """
    k = min(int(k), values.shape[-1])
    part = np.argpartition(-values, k - 1, axis=-1)[..., :k]
    part_vals = np.take_along_axis(values, part, axis=-1)
    order = np.argsort(-part_vals, axis=-1, kind="stable")
    idx = np.take_along_axis(part, order, axis=-1).astype(np.int64)
    return np.take_along_axis(values, idx, axis=-1), idx


def select_queries(enc_memory: np.ndarray, enc_logits: np.ndarray, enc_boxes_unact: np.ndarray,
                   num_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """RT-DETR's query selection: the `num_queries` encoder positions with the highest class logit.

    enc_memory [B,L,D], enc_logits [B,L,C], enc_boxes_unact [B,L,4] (box logits, before sigmoid)
    -> target [B,Q,D] (decoder content queries), ref_unact [B,Q,4] (reference boxes, before sigmoid).
    The max of raw logits ranks like the max of sigmoid scores, so no sigmoid is needed here.
    """
    _, idx = topk(np.asarray(enc_logits, np.float32).max(axis=-1), num_queries)  # [B,Q]
    target = np.take_along_axis(np.asarray(enc_memory, np.float32), idx[..., None], axis=1)
    ref_unact = np.take_along_axis(np.asarray(enc_boxes_unact, np.float32), idx[..., None], axis=1)
    return target, ref_unact


def postprocess(logits: np.ndarray, boxes: np.ndarray, orig_target_sizes: np.ndarray,
                num_top: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoder outputs -> final detections, no NMS (DETR predicts one box per object).

    logits [B,Q,C] (before sigmoid), boxes [B,Q,4] normalised cx,cy,w,h, orig_target_sizes [B,2] as
    (width, height) -> labels int64 [B,K], boxes float32 [B,K,4] x1,y1,x2,y2 in original pixels clipped
    to the image, scores float32 [B,K] (sigmoid), K = min(num_top, Q*C), best first.
    """
    logits = np.asarray(logits, np.float32)
    b, q, c = logits.shape
    scores, idx = topk(sigmoid(logits).reshape(b, q * c), num_top)
    labels = idx % c
    query = idx // c
    sel = np.take_along_axis(np.asarray(boxes, np.float32), query[..., None], axis=1)  # [B,K,4]
    cx, cy, w, h = sel[..., 0], sel[..., 1], sel[..., 2], sel[..., 3]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    size = np.asarray(orig_target_sizes, np.float32).reshape(b, 1, 2)
    scale = np.concatenate([size, size], axis=-1)  # w, h, w, h
    xyxy = np.clip(xyxy * scale, 0.0, scale).astype(np.float32)
    return labels.astype(np.int64), xyxy, scores.astype(np.float32)
