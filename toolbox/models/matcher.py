"""Hungarian matching of predictions to ground truth (DETR), with RT-DETR's costs.

cost = w_class · focal_class_cost + w_bbox · L1(cxcywh) + w_giou · (1 - GIoU), where the focal class
cost of predicting class c with probability p is α(1-p)^γ(-log p) - (1-α)p^γ(-log(1-p)).
Runs in numpy on the host: the cost matrices are small (Q x n per image) and scipy's
linear_sum_assignment needs numpy anyway; one device→host copy per call.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from .box_ops import np_cxcywh_to_xyxy, np_generalized_iou_matrix


class HungarianMatcher:
    """match(logits [B, Q, C], boxes [B, Q, 4], gt_labels list of int [n_i], gt_boxes list of [n_i, 4])
    → list (len B) of (query_index int64 [m_i], gt_index int64 [m_i]), m_i = min(Q, n_i)."""

    def __init__(self, matcher_coeff: dict | None = None, use_focal_loss: bool = True, alpha: float = 0.25,
                 gamma: float = 2.0):
        coeff = {"class": 2.0, "bbox": 5.0, "giou": 2.0}
        coeff.update(matcher_coeff or {})
        self.coeff = coeff
        self.use_focal_loss = use_focal_loss
        self.alpha = alpha
        self.gamma = gamma

    def cost_matrix(self, logits: np.ndarray, boxes: np.ndarray, gt_labels: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
        """One image: logits [Q, C], boxes [Q, 4], gt_labels [n], gt_boxes [n, 4] → cost [Q, n]."""
        logits = logits.astype(np.float64)
        if self.use_focal_loss:
            prob = 1.0 / (1.0 + np.exp(-logits[:, gt_labels]))
            neg = (1 - self.alpha) * prob ** self.gamma * -np.log(1 - prob + 1e-8)
            pos = self.alpha * (1 - prob) ** self.gamma * -np.log(prob + 1e-8)
            cost_class = pos - neg
        else:
            z = np.exp(logits - logits.max(-1, keepdims=True))
            cost_class = -(z / z.sum(-1, keepdims=True))[:, gt_labels]
        cost_bbox = np.abs(boxes[:, None, :].astype(np.float64) - gt_boxes[None, :, :]).sum(-1)
        cost_giou = 1.0 - np_generalized_iou_matrix(np_cxcywh_to_xyxy(boxes.astype(np.float64)),
                                                    np_cxcywh_to_xyxy(gt_boxes.astype(np.float64)))
        return self.coeff["class"] * cost_class + self.coeff["bbox"] * cost_bbox + self.coeff["giou"] * cost_giou

    def match(self, logits: np.ndarray, boxes: np.ndarray, gt_labels: Sequence[np.ndarray],
              gt_boxes: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for i in range(len(gt_labels)):
            if len(gt_labels[i]) == 0:
                out.append((np.zeros([0], "int64"), np.zeros([0], "int64")))
                continue
            cost = self.cost_matrix(logits[i], boxes[i], np.asarray(gt_labels[i], "int64"), np.asarray(gt_boxes[i]))
            rows, cols = linear_sum_assignment(np.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8))
            out.append((rows.astype("int64"), cols.astype("int64")))
        return out
