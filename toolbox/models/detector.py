"""The RT-DETR detector: backbone → neck (HybridEncoder) → transformer → loss / post-processing.

Attribute names ``backbone``, ``neck`` and ``transformer`` are the state-dict prefixes of
PaddleDetection's checkpoints; the loss holds no parameters, so checkpoints carry nothing else.

Training: ``model.train(); losses = model(images [B,3,H,W] float32 RGB in [0,1], targets)`` with targets a
list (len B) of {"labels": int64 [n], "boxes": float32 [n,4] normalised cxcywh} → dict of scalar losses
including the total "loss".
Eval: ``model.eval(); out = model(images)`` → {"pred_logits": [B,Q,C], "pred_boxes": [B,Q,4] normalised
cxcywh} from decoder layer eval_idx.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn

from .decoder import RTDETRTransformer
from .hybrid_encoder import HybridEncoder
from .losses import DINOLoss
from .postprocessing import postprocess


class RTDETR(nn.Layer):
    """Holds the three sub-networks and the (parameter-free) loss. ``backbone(images)`` must return the
    list of feature maps the neck expects (fine → coarse)."""

    def __init__(self, backbone: nn.Layer, neck: HybridEncoder, transformer: RTDETRTransformer,
                 criterion: DINOLoss | None = None, num_top_queries: int = 300):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.transformer = transformer
        self.criterion = criterion if criterion is not None else DINOLoss(num_classes=transformer.num_classes)
        self.num_top_queries = num_top_queries

    @property
    def num_classes(self) -> int:
        return self.transformer.num_classes

    def extract(self, images: paddle.Tensor) -> list:
        """images → the neck's feature maps (the input of transformer.encode)."""
        feats = self.backbone(images)
        if isinstance(feats, dict):  # tolerate PaddleDetection-style outputs
            feats = list(feats.values())
        return self.neck(list(feats))

    def forward(self, images: paddle.Tensor, targets: list | None = None):
        feats = self.extract(images)
        if self.training:
            if targets is None:
                raise ValueError("RTDETR in training mode needs targets: model(images, targets)")
            return self.criterion(self.transformer(feats, targets), targets)
        logits, boxes = self.transformer(feats)
        return {"pred_logits": logits, "pred_boxes": boxes}

    def postprocess(self, out: dict, orig_target_sizes: paddle.Tensor, num_top: int | None = None):
        """Eval output + original (w, h) [B,2] → (labels [B,K], boxes [B,K,4] xyxy pixels, scores [B,K])."""
        return postprocess(out["pred_logits"], out["pred_boxes"], orig_target_sizes,
                           self.num_top_queries if num_top is None else num_top)


class DeployModel(nn.Layer):
    """The exported signature (CONTRACTS.md): forward(images float32 [N,3,S,S], orig_target_sizes int64
    [N,2] (w, h)) → (labels int64 [N,K], boxes float32 [N,K,4] x1y1x2y2 original pixels clipped,
    scores float32 [N,K]), K = min(num_top, Q·C). Always runs the model in eval mode."""

    def __init__(self, model: RTDETR, num_top: int | None = None):
        super().__init__()
        self.model = model
        self.num_top = model.num_top_queries if num_top is None else num_top
        self.eval()

    def forward(self, images, orig_target_sizes):
        logits, boxes = self.model.transformer(self.model.extract(images))
        return postprocess(logits, boxes, orig_target_sizes, self.num_top)
