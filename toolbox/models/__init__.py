"""RT-DETR and RT-DETRv2 on Paddle 3, built from pipelines/ configs, loading PaddleDetection checkpoints.

    from toolbox.models import build_model, load_weights, postprocess
    model = build_model("RT-DETR-R18", num_classes=80)        # a paddle.nn.Layer (RTDETR)
    report = load_weights(model, "rtdetr_r18vd_dec3_6x_coco.pdparams")   # or a URL (cached)
    model.eval(); out = model(images)                          # pred_logits [B,Q,C], pred_boxes [B,Q,4]
    labels, boxes, scores = postprocess(out["pred_logits"], out["pred_boxes"], orig_sizes_wh)

Config helpers (list_models, load_config) import no Paddle; the rest is imported on first use.
"""
from __future__ import annotations

import importlib

from .config import list_models, load_config, model_names

_LAZY = {
    "build_model": "toolbox.models.build",
    "build_from_config": "toolbox.models.build",
    "load_weights": "toolbox.models.weights",
    "load_pretrained": "toolbox.models.weights",
    "save_weights": "toolbox.models.weights",
    "read_state_dict": "toolbox.models.weights",
    "postprocess": "toolbox.models.postprocessing",
    "RTDETR": "toolbox.models.detector",
    "DeployModel": "toolbox.models.detector",
}

__all__ = ["list_models", "load_config", "model_names", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'toolbox.models' has no attribute {name!r}")
