"""Config → model: the backbone from `backbone:`, HybridEncoder(**neck), the transformer(**transformer),
DINOLoss(**loss), assembled into RTDETR. Plain explicit code; the YAML keys are the constructors'
keyword names (PaddleDetection's config names).

What the config does not repeat is wired here, as PaddleDetection's `from_config` does: the neck takes
the backbone's output channels and strides, the transformer the neck's output channels, and both the
transformer and the loss the config's `num_classes`.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toolbox.errors import UsageError

from .backbones import build_backbone
from .config import load_config
from .decoder import RTDETRTransformer, RTDETRTransformerv2
from .detector import RTDETR
from .hybrid_encoder import HybridEncoder
from .losses import DINOLoss


def _construct(section: str, cls: type, **kwargs: Any):
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # unknown or inconsistent keys in that section
        raise UsageError(f"model config, section {section}: {exc}") from None


def transformer_kwargs(cfg: Mapping[str, Any]) -> dict:
    """The `transformer:` section as constructor arguments. PaddleDetection's RT-DETRv2 key
    `cross_attn_sampling_method` (default | discrete) is passed as the transformer's `sampling`."""
    kwargs = dict(cfg["transformer"])
    method = kwargs.pop("cross_attn_sampling_method", None)
    if method is not None:
        kwargs["sampling"] = "grid" if method == "default" else method
    return kwargs


def build_from_config(cfg: Mapping[str, Any]) -> RTDETR:
    """A resolved config (see load_config) → RTDETR with fresh weights; `model.config` keeps `cfg`."""
    num_classes = int(cfg["num_classes"])
    backbone = build_backbone(cfg["backbone"])
    neck = _construct("neck", HybridEncoder, in_channels=backbone.out_channels, feat_strides=backbone.out_strides,
                      **cfg["neck"])
    transformer_cls = RTDETRTransformerv2 if cfg.get("arch") == "RT-DETRv2" else RTDETRTransformer
    transformer = _construct("transformer", transformer_cls, num_classes=num_classes,
                             backbone_feat_channels=neck.out_channels, **transformer_kwargs(cfg))
    criterion = _construct("loss", DINOLoss, num_classes=num_classes, **cfg.get("loss", {}))
    num_top = int(cfg.get("postprocess", {}).get("num_top_queries", 300))
    model = RTDETR(backbone, neck, transformer, criterion=criterion, num_top_queries=num_top)
    model.config = dict(cfg)
    return model


def build_model(name_or_yaml: str | Path | Mapping[str, Any], num_classes: int | None = None,
                **overrides: Any) -> RTDETR:
    """Build a model by name (pipelines/<name>.yaml), YAML path or config dict.

    num_classes replaces the config's (80 for the COCO configs); overrides are flat shortcuts
    (input_size, sampling, eval_idx, num_decoder_layers, num_queries, ...) or dotted keys given as
    a dict, e.g. build_model("RT-DETR-R18", 3, eval_idx=1, **{"transformer.num_denoising": 50}).
    The resolved config is `model.config`. Weights are fresh; see load_weights / load_pretrained.
    """
    if num_classes is not None:
        overrides = {**overrides, "num_classes": num_classes}
    return build_from_config(load_config(name_or_yaml, overrides))
