"""RT-DETR's training loss (PaddleDetection's DINOLoss with use_vfl, use_focal_loss).

For every set of predictions — the selected encoder proposals, each decoder layer, and each
decoder layer's denoising queries — predictions are assigned to ground truth (Hungarian matching, or
the known assignment for denoising queries) and scored with:
- varifocal loss (VFL) for classes: BCE against target score q = IoU(pred, gt) for the matched class
  (0 elsewhere), weighted by q on positives and α·p^γ on negatives (p = sigmoid(logit), not detached,
  α = 0.75, γ = 2), summed and divided by the number of boxes;
- L1 on normalised cxcywh and 1 - GIoU, summed over matched pairs and divided by the number of boxes.
The number of boxes is the batch total (averaged over processes when distributed, at least 1);
denoising losses divide by it times the number of denoising groups.

Output names: loss_class / loss_bbox / loss_giou (last decoder layer); *_aux (sum over the encoder
proposals and the other decoder layers); *_dn and *_aux_dn (the same for denoising queries), and
``loss``, their sum. All sets are stacked and computed in one pass (no Python loop over queries).
"""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .box_ops import box_iou_pairwise, cxcywh_to_xyxy, generalized_iou_pairwise
from .matcher import HungarianMatcher

_PARTS = ("class", "bbox", "giou")


def varifocal_loss_with_logits(logits, target_score, target_label, alpha: float = 0.75, gamma: float = 2.0):
    """Elementwise VFL (no reduction). logits, target_score, target_label: same shape."""
    weight = alpha * F.sigmoid(logits).pow(gamma) * (1.0 - target_label) + target_score * target_label
    return F.binary_cross_entropy_with_logits(logits, target_score, reduction="none") * weight


class DINOLoss(nn.Layer):
    """forward(outputs, targets) → dict of scalar losses (see the module docstring).

    outputs: RTDETRTransformer's training dict ('boxes'/'logits' [L,B,Q,.], 'enc_boxes'/'enc_logits'
    [B,Q,.], 'dn_boxes'/'dn_logits' [L,B,Nd,.] or None, 'dn_meta'); targets: list (len B) of
    {"labels": int64 [n], "boxes": float32 [n,4] normalised cxcywh}. Holds no parameters.
    """

    def __init__(self, num_classes: int = 80, matcher: dict | HungarianMatcher | None = None,
                 loss_coeff: dict | None = None, aux_loss: bool = True, use_vfl: bool = True,
                 use_focal_loss: bool = True, vfl_alpha: float = 0.75, vfl_gamma: float = 2.0,
                 matcher_coeff: dict | None = None, name: str | None = None):
        super().__init__()
        if not use_focal_loss or not use_vfl:
            raise ValueError("only the RT-DETR recipe is implemented: use_focal_loss=True, use_vfl=True")
        self.num_classes = num_classes
        if isinstance(matcher, HungarianMatcher):
            self.matcher = matcher
        else:
            cfg = {k: v for k, v in dict(matcher or {}).items() if k != "name"}
            if matcher_coeff is not None:
                cfg["matcher_coeff"] = matcher_coeff
            cfg.setdefault("use_focal_loss", use_focal_loss)
            self.matcher = HungarianMatcher(**cfg)
        coeff = {"class": 1.0, "bbox": 5.0, "giou": 2.0}
        coeff.update(loss_coeff or {})
        self.loss_coeff = coeff
        self.aux_loss = aux_loss
        self.vfl_alpha = vfl_alpha
        self.vfl_gamma = vfl_gamma

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _num_boxes(total: int) -> float:
        n = paddle.to_tensor([float(total)])
        if paddle.distributed.get_world_size() > 1:
            paddle.distributed.all_reduce(n)
            n = n / paddle.distributed.get_world_size()
        return max(float(n.item()), 1.0)

    def _set_losses(self, boxes, logits, matches, gt_boxes, gt_labels, gt_offsets, num_boxes):
        """boxes [M,B,Q,4], logits [M,B,Q,C]; matches[m][b] = (query_idx, gt_idx) → dict part → [M]."""
        m_sets, bs, nq, nc = logits.shape
        lm, lp, lg = [], [], []
        for m in range(m_sets):
            for b in range(bs):
                qi, gi = matches[m][b]
                if len(qi):
                    lm.append(np.full(len(qi), m, "int64"))
                    lp.append((m * bs + b) * nq + np.asarray(qi, "int64"))
                    lg.append(gt_offsets[b] + np.asarray(gi, "int64"))
        zeros = paddle.zeros([m_sets], dtype="float32")
        if not lm:
            target = paddle.zeros_like(logits)
            cls = varifocal_loss_with_logits(logits, target, target, self.vfl_alpha, self.vfl_gamma)
            cls = cls.reshape([m_sets, -1]).sum(-1) / num_boxes
            return {"class": self.loss_coeff["class"] * cls, "bbox": zeros, "giou": zeros}
        lm, lp, lg = np.concatenate(lm), np.concatenate(lp), np.concatenate(lg)
        # Per-set sums as a [M, T] one-hot product: differentiable, no scatter-add needed.
        onehot = paddle.to_tensor(np.eye(m_sets, dtype="float32")[:, lm])
        p_t = paddle.to_tensor(lp)
        src = paddle.gather(boxes.reshape([-1, 4]), p_t)
        tgt = paddle.gather(gt_boxes, paddle.to_tensor(lg))
        src_xyxy, tgt_xyxy = cxcywh_to_xyxy(src), cxcywh_to_xyxy(tgt)
        l1 = paddle.matmul(onehot, (src - tgt).abs().sum(-1))
        giou = paddle.matmul(onehot, 1.0 - generalized_iou_pairwise(src_xyxy, tgt_xyxy))

        iou = box_iou_pairwise(src_xyxy.detach(), tgt_xyxy).detach()
        cls_index = paddle.to_tensor(lp * nc + gt_labels[lg])
        flat = m_sets * bs * nq * nc
        label = paddle.scatter(paddle.zeros([flat]), cls_index, paddle.ones([len(lp)]))
        score = paddle.scatter(paddle.zeros([flat]), cls_index, iou)
        vfl = varifocal_loss_with_logits(logits.reshape([-1]), score, label, self.vfl_alpha, self.vfl_gamma)
        cls = vfl.reshape([m_sets, -1]).sum(-1)
        c = self.loss_coeff
        return {"class": c["class"] * cls / num_boxes, "bbox": c["bbox"] * l1 / num_boxes,
                "giou": c["giou"] * giou / num_boxes}

    # ------------------------------------------------------------------ forward
    def forward(self, outputs: dict, targets: list) -> dict:
        counts = [int(t["labels"].shape[0]) for t in targets]
        gt_offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype("int64")
        gt_labels_t = paddle.concat([t["labels"].reshape([-1]).astype("int64") for t in targets])
        gt_boxes = paddle.concat([t["boxes"].reshape([-1, 4]).astype("float32") for t in targets])
        gt_labels = gt_labels_t.numpy()
        gt_boxes_np = gt_boxes.numpy()
        labels_per = np.split(gt_labels, np.cumsum(counts)[:-1])
        boxes_per = np.split(gt_boxes_np, np.cumsum(counts)[:-1])
        num_boxes = self._num_boxes(sum(counts))

        # Matching sets: [encoder proposals, decoder layer 0 … L-1]; the last one is the main loss.
        boxes = paddle.concat([outputs["enc_boxes"].unsqueeze(0), outputs["boxes"]])
        logits = paddle.concat([outputs["enc_logits"].unsqueeze(0), outputs["logits"]])
        if not self.aux_loss:
            boxes, logits = boxes[-1:], logits[-1:]
        b_np, l_np = boxes.detach().numpy(), logits.detach().numpy()
        matches = [self.matcher.match(l_np[m], b_np[m], labels_per, boxes_per) for m in range(boxes.shape[0])]
        parts = self._set_losses(boxes, logits, matches, gt_boxes, gt_labels, gt_offsets, num_boxes)
        losses = {}
        for p in _PARTS:
            losses[f"loss_{p}"] = parts[p][-1]
            if self.aux_loss:
                losses[f"loss_{p}_aux"] = parts[p][:-1].sum()

        meta = outputs.get("dn_meta")
        if meta is not None and outputs.get("dn_boxes") is not None:
            dn_boxes, dn_logits = outputs["dn_boxes"], outputs["dn_logits"]
            if not self.aux_loss:
                dn_boxes, dn_logits = dn_boxes[-1:], dn_logits[-1:]
            dn_match = [(meta.positive_idx[b], np.tile(np.arange(counts[b], dtype="int64"), meta.num_group))
                        for b in range(len(targets))]
            dn_parts = self._set_losses(dn_boxes, dn_logits, [dn_match] * dn_boxes.shape[0], gt_boxes, gt_labels,
                                        gt_offsets, num_boxes * meta.num_group)
            for p in _PARTS:
                losses[f"loss_{p}_dn"] = dn_parts[p][-1]
                if self.aux_loss:
                    losses[f"loss_{p}_aux_dn"] = dn_parts[p][:-1].sum()
        else:
            for k in list(losses):
                losses[k + "_dn"] = paddle.zeros([], dtype="float32")
        losses["loss"] = paddle.add_n([v for v in losses.values()])
        return losses
