"""Paddle Layers cut from an RT-DETR model, one per exported graph.

- RawModel: images -> (pred_logits [N,Q,C], pred_boxes [N,Q,4] cxcywh 0..1): the raw outputs that
  the ONNX parity check compares before any top-k.
- EncoderStage / DecoderStage: the two NPU graphs of the RK3588 split (see rtdetr_cpu.py for the
  whole pipeline). They call the transformer's own stage methods (`encode`, `decode`), the same code
  `forward` chains, so the split computes what the model computes; the CPU stages between and after
  them are numpy (rtdetr_cpu.select_queries / postprocess).

Tensor names used in infer_cfg's stages:
  encoder: images [1,3,S,S] -> memory [1,L,D], enc_memory [1,L,D], enc_logits [1,L,C], enc_boxes_unact [1,L,4]
  decoder: target [1,Q,D], ref_unact [1,Q,4], memory [1,L,D] -> pred_logits [1,Q,C], pred_boxes [1,Q,4]
  (a model with learnt_init_query has no `target` input: its query contents are weights of the graph).
"""
from __future__ import annotations

import paddle
import paddle.nn as nn

ENCODER_OUTPUTS = ("memory", "enc_memory", "enc_logits", "enc_boxes_unact")
DECODER_OUTPUTS = ("pred_logits", "pred_boxes")


def features(model, images):
    """Backbone + neck feature maps (fine -> coarse): the input of transformer.encode."""
    return model.extract(images)


class RawModel(nn.Layer):
    """images [N,3,S,S] -> (pred_logits [N,Q,C], pred_boxes [N,Q,4])."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        out = self.model(images)
        return out["pred_logits"], out["pred_boxes"]


class EncoderStage(nn.Layer):
    """images [1,3,S,S] float -> memory, enc_memory, enc_logits, enc_boxes_unact (see module doc)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        memory, output_memory, enc_logits, enc_coords_unact, _ = self.model.transformer.encode(features(self.model, images))
        return memory, output_memory, enc_logits, enc_coords_unact


class DecoderStage(nn.Layer):
    """(target [1,Q,D],) ref_unact [1,Q,4], memory [1,L,D] -> pred_logits [1,Q,C], pred_boxes [1,Q,4].

    spatial_shapes (the feature map sizes) are fixed by the input size, so they are Python constants
    of the graph, computed once here with a dummy image.
    """

    def __init__(self, model, input_size: int):
        super().__init__()
        self.model = model
        with paddle.no_grad():
            dummy = paddle.zeros([1, 3, int(input_size), int(input_size)], "float32")
            *_, shapes = model.transformer.encode(features(model, dummy))
        self.spatial_shapes = [(int(h), int(w)) for h, w in shapes]

    def forward(self, target, ref_unact, memory):
        boxes, logits = self.model.transformer.decode(target, ref_unact, memory, self.spatial_shapes)
        return logits[-1], boxes[-1]

    def input_names(self) -> list[str]:
        return ["target", "ref_unact", "memory"]


class LearntQueryDecoderStage(DecoderStage):
    """The decoder of a model with learnt_init_query: query contents are its own weights (tgt_embed),
    so the graph takes ref_unact [1,Q,4] and memory [1,L,D] only."""

    def forward(self, ref_unact, memory):
        target = self.model.transformer.tgt_embed.weight.unsqueeze(0)
        boxes, logits = self.model.transformer.decode(target, ref_unact, memory, self.spatial_shapes)
        return logits[-1], boxes[-1]

    def input_names(self) -> list[str]:
        return ["ref_unact", "memory"]


def decoder_stage(model, input_size: int) -> DecoderStage:
    """The decoder graph's Layer for this model (see DecoderStage / LearntQueryDecoderStage)."""
    learnt = bool(getattr(model.transformer, "learnt_init_query", False))
    return (LearntQueryDecoderStage if learnt else DecoderStage)(model, input_size)


def save_static(layer: nn.Layer, prefix: str, specs: list) -> None:
    """paddle.jit.save in eval mode (the program writes prefix.json + prefix.pdiparams)."""
    import warnings

    layer.eval()
    with warnings.catch_warnings():  # dy2static's "Tensor do not have 'place' interface" notices
        warnings.simplefilter("ignore", UserWarning)
        paddle.jit.save(layer, prefix, input_spec=specs)
