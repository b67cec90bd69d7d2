"""RT-DETR post-processing: no NMS, just the K best (query, class) pairs.

(The module is named postprocessing so that ``toolbox.models.postprocess`` stays the function: a
submodule of the same name would replace the package attribute once imported.)

Scores are sigmoid(logits) (each class is an independent binary classifier, as trained by the
varifocal loss); the top K over queries x classes are kept, so one query may appear with several
classes. Boxes go from normalised cxcywh to x1y1x2y2 pixels of the original image (w, h) and are
clipped to it (PaddleDetection does not clip; the exported contract does).
"""
from __future__ import annotations

import paddle
import paddle.nn.functional as F


def postprocess(pred_logits: paddle.Tensor, pred_boxes: paddle.Tensor, orig_target_sizes: paddle.Tensor,
                num_top: int = 300, clip: bool = True):
    """pred_logits [B, Q, C], pred_boxes [B, Q, 4] normalised cxcywh, orig_target_sizes [B, 2] (w, h)
    → (labels int64 [B, K], boxes float32 [B, K, 4] x1y1x2y2 pixels, scores float32 [B, K]),
    K = min(num_top, Q·C), sorted by score, highest first."""
    num_classes = int(pred_logits.shape[-1])
    k = min(int(num_top), int(pred_logits.shape[1]) * num_classes)
    wh = orig_target_sizes.astype("float32")
    cx, cy, w, h = paddle.unbind(pred_boxes, axis=-1)
    xyxy = paddle.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)
    xyxy = xyxy * paddle.tile(wh, [1, 2]).unsqueeze(1)
    if clip:
        limit = paddle.tile(wh, [1, 2]).unsqueeze(1)
        xyxy = paddle.minimum(paddle.maximum(xyxy, paddle.zeros_like(xyxy)), limit)
    scores = F.sigmoid(pred_logits).flatten(1)  # [B, Q*C]
    top_scores, index = paddle.topk(scores, k, axis=-1)
    labels = index % num_classes
    query = index // num_classes
    boxes = paddle.take_along_axis(xyxy, query.unsqueeze(-1), axis=1, broadcast=True)
    return labels.astype("int64"), boxes.astype("float32"), top_scores

