"""RF-DETR's export-mode detector wrapped to the contract's one I/O signature (CONTRACTS.md "Exported models").

rfdetr's own export graph (`LWDETR.forward_export`, what `RFDETR.export(format="onnx")` traces) maps a
normalised image batch to (`dets` [N,Q,4] normalised cxcywh, `labels` [N,Q,C+1] logits) and leaves decoding
to numpy (rfdetr/export/_runtime/decode.py). The toolbox's exports carry post-processing in the graph, so
`DeployRFDETR` appends it as torch ops that trace to ONNX:

- the class head has num_classes + 1 slots; the last one is the background slot no target ever trains
  (the Data step's copy numbers the classes 0..N-1). rfdetr's own export decoder drops it
  (`_exclude_background_class`, default slot -1) so that every label names a class; so does this one,
  which keeps `labels` an index into label_list;
- then exactly rfdetr's `PostProcess`: per-class sigmoid, top-K over the flattened (query, class) grid
  (a query may yield several classes), cxcywh -> xyxy with rfdetr's box_ops (a negative regressed width
  or height counts as 0: a briefly trained model has such boxes), scaled to the original size and clamped.

The image sizes input is the contract's (width, height) order, where PostProcess takes (height, width).
"""
from __future__ import annotations

from typing import Any

NUM_TOP = 300  # K of the contract


def _torch():
    import torch

    return torch


def make_deploy_module(net: Any, num_classes: int, num_top: int = NUM_TOP, raw_outputs: bool = False):
    """`net` (an LWDETR, eval mode) wrapped: (images, orig_target_sizes) -> (labels, boxes, scores) and, with
    `raw_outputs`, also (pred_logits [N,Q,C+1], pred_boxes [N,Q,4]) of the same trace, for the raw check."""
    from torch import nn

    class DeployRFDETR(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.num_classes = int(num_classes)
            self.num_top = int(num_top)
            self.raw_outputs = raw_outputs

        def export(self) -> None:
            """rfdetr's exporter switches the traced module into export mode through `.export()`; pass it on
            to the detector (its guarded switch: the models' own export() is not idempotent)."""
            from rfdetr.export._backend import _switch_to_export_mode

            _switch_to_export_mode(self.net)

        def forward(self, images, orig_target_sizes):
            out = self.net(images)
            if isinstance(out, dict):          # eval forward (not switched): the same two tensors by name
                pred_boxes, pred_logits = out["pred_boxes"], out["pred_logits"]
            else:                              # forward_export: (boxes, logits[, masks])
                pred_boxes, pred_logits = out[0], out[1]
            labels, boxes, scores = postprocess(pred_logits, pred_boxes, orig_target_sizes, self.num_classes,
                                                self.num_top)
            if self.raw_outputs:
                return labels, boxes, scores, pred_logits, pred_boxes
            return labels, boxes, scores

    return DeployRFDETR().eval()


def make_raw_module(net: Any, num_classes: int):
    """`net` wrapped as images -> (pred_logits [N,Q,num_classes] foreground slots only, pred_boxes [N,Q,4]): the
    graph an NPU runs when post-processing is left to the CPU (toolbox/export/rtdetr_cpu.postprocess is
    exactly PostProcess on these; the background slot is cut here so that it never ranks)."""
    import torch
    from torch import nn

    class RawRFDETR(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.num_classes = int(num_classes)

        def export(self) -> None:
            from rfdetr.export._backend import _switch_to_export_mode

            _switch_to_export_mode(self.net)

        def forward(self, images):
            out = self.net(images)
            boxes, logits = (out["pred_boxes"], out["pred_logits"]) if isinstance(out, dict) else (out[0], out[1])
            # a regressed width/height may come out negative; rfdetr's box conversion counts it as 0, and the
            # CPU stage's plain one must see the same box
            boxes = torch.cat([boxes[..., :2], boxes[..., 2:].clamp(min=0.0)], dim=-1)
            return logits[..., :self.num_classes], boxes

    return RawRFDETR().eval()


def postprocess(pred_logits, pred_boxes, orig_target_sizes, num_classes: int, num_top: int = NUM_TOP):
    """rfdetr's PostProcess on the foreground slots, with sizes as (w, h): -> labels int64 [N,K], boxes
    float32 [N,K,4] xyxy pixels clamped, scores float32 [N,K]. Works on torch tensors (traced) and is what
    the PyTorch reference of the export check uses too (through `reference_detections`)."""
    torch = _torch()
    logits = pred_logits[..., :num_classes]
    prob = logits.sigmoid().flatten(1)                               # [N, Q*C]
    k = min(int(num_top), int(logits.shape[1]) * int(num_classes))
    scores, index = torch.topk(prob, k, dim=1)                       # sorted, descending
    query = torch.div(index, num_classes, rounding_mode="floor")
    labels = index - query * num_classes
    from rfdetr.utilities.box_ops import box_cxcywh_to_xyxy

    xyxy = box_cxcywh_to_xyxy(pred_boxes)      # rfdetr's own: a negative width/height counts as 0
    boxes = torch.gather(xyxy, 1, query.unsqueeze(-1).expand(-1, -1, 4))
    wh = orig_target_sizes.to(boxes.dtype)                           # (w, h)
    scale = torch.cat([wh, wh], dim=1).unsqueeze(1)                  # [N,1,4] = (w, h, w, h)
    boxes = torch.minimum(torch.clamp(boxes * scale, min=0.0), scale)
    return labels.to(torch.int64), boxes, scores


def reference_detections(net: Any, images, orig_target_sizes, num_classes: int, num_top: int = NUM_TOP):
    """The PyTorch reference: the eval-mode detector's own forward, then rfdetr's PostProcess (the class
    rfdetr's predict uses) on the foreground logits with (h, w) sizes. Returns numpy (labels, boxes, scores)
    and the raw (pred_logits, pred_boxes)."""
    torch = _torch()
    from rfdetr.models.postprocess import PostProcess

    with torch.no_grad():
        out = net(images)
        fg = {"pred_logits": out["pred_logits"][..., :num_classes], "pred_boxes": out["pred_boxes"]}
        res = PostProcess(num_select=num_top)(fg, orig_target_sizes[:, [1, 0]])
    labels = torch.stack([r["labels"] for r in res]).numpy().astype("int64")
    boxes = torch.stack([r["boxes"] for r in res]).numpy().astype("float32")
    scores = torch.stack([r["scores"] for r in res]).numpy().astype("float32")
    return (labels, boxes, scores), (out["pred_logits"].numpy(), out["pred_boxes"].numpy())
