"""Informative seeded weights: a randomly initialised detector whose detections score over ~0.1-0.9.

Why: a freshly initialised RT-DETR (or one trained a few steps) scores every detection about 0.01-0.03,
below the export checks' score tolerance (0.05), so a score check on it proves nothing, and its top
detections are near-ties that any runtime may reorder. Tests and benchmarks of the export therefore use
weights whose readout is re-drawn so the top detections are well separated and spread over the score
range, the recipe ../shared/reference/conformance_r18_320_c3 used for PaddleDetection's own outputs:

    W' = s*dW,  b' = offset - mean_q(h) @ (s*dW)

on the decoder's evaluated score head (h = its input on the calibration images), dW ~ N(0, 1) drawn from
a seeded generator, s chosen so the 1st and 20th best score of each image are ``top_score`` and
``twentieth_score`` on average, offset so the best logit is logit(top_score). Of ``tries`` draws the one
with the widest minimum gap between neighbouring top-20 scores is kept. Everything before the head is left
as initialised (paddle.seed makes it reproducible), so every operator of the graph carries real signal.

One exception needs its own step, ``spread_sampling_points``: as initialised, the layers that move the
deformable attention's sampling points are zero (the sampling offsets' weights, the last layer of every
box head), so every point sits on a lattice: reference boxes on the anchors' pixel centres, offsets in
multiples of half a pixel. Discrete sampling (``int(loc * W + 0.5)``) then reads every value exactly at a
rounding boundary, where any runtime's last-bit error picks the neighbouring pixel: measured on R18 at 640,
the rknn-toolkit2 FP16 simulator read another pixel than onnxruntime for 27 % of the finest level's
samples (3 % once the points are spread), which no trained model, whose points lie anywhere, does.
Call it before ``seed_informative_weights`` (the score head is fitted to the features it then gives).

A deep randomly initialised backbone needs one more step, ``recalibrate_norms``: its BatchNorms hold the
initial statistics (mean 0, variance 1), so in eval mode they normalise nothing and activations grow layer
after layer (RT-DETR-X at 640: ~1.8e5 at the encoder), until every query's feature is the same. Setting
each BatchNorm's statistics to those of its own input on the calibration images, as a trained model's
are to its data, keeps every layer's output near unit scale; ``write_seeded_weights`` does it only when
the plain seeding finds no variance to spread (the other configs keep their weights as initialised).
"""
from __future__ import annotations

import math

import numpy as np
import paddle

from .detector import RTDETR

TOP = 20  # detections whose scores are spread and separated


class DegenerateFeatures(ValueError):
    """The decoder's output does not vary over the queries on the given images: no score head can spread
    their scores (the caller may recalibrate the norms and try again, see ``recalibrate_norms``)."""


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _readout_inputs(model: RTDETR, images: np.ndarray) -> np.ndarray:
    """Input of the evaluated decoder score head on ``images`` [B,3,S,S] → h [B,Q,D] (float64)."""
    head = model.transformer.dec_score_head[model.transformer.decoder.eval_idx]
    captured: list[np.ndarray] = []

    def keep_input(layer, inputs):
        captured.append(inputs[0].numpy().astype(np.float64))

    handle = head.register_forward_pre_hook(keep_input)
    try:
        model.eval()
        with paddle.no_grad():
            model(paddle.to_tensor(images.astype(np.float32)))
    finally:
        handle.remove()
    return captured[-1]


def _top_sorted(z: np.ndarray) -> np.ndarray:
    """Logits [B,Q,C] → each image's TOP+1 best logits, descending [B,TOP+1]."""
    flat = z.reshape(z.shape[0], -1)
    part = -np.partition(-flat, TOP, axis=1)[:, :TOP + 1]
    return -np.sort(-part, axis=1)


def spread_sampling_points(model: RTDETR, seed: int = 0, offset_std: float = 1.0,
                           box_std: float = 0.2) -> dict:
    """Draw the zero-initialised weights that place the deformable attention's sampling points (see the
    module docstring), in place, from a seeded generator; biases stay as initialised.

    offset_std: spread of the sampling offsets, in the layer's units (1/points of the reference box size
    x offset_scale 0.5): 1.0 moves a point by an eighth of its box at 4 points a level, about 4 px for a
    finest-level anchor at 640, so points land anywhere between pixel centres. box_std: spread of the box
    heads' deltas in logit space: 0.2 moves reference boxes by a few % of their size, off the anchor grid,
    while boxes stay near their anchors. Each weight is N(0, (std)^2 / fan_in), so a unit-variance input
    gives outputs of about that std. Returns how many tensors of each kind were drawn."""
    from .deformable_attention import MSDeformableAttention

    rng = np.random.default_rng([seed, 8191])
    tr = model.transformer
    weights = [m.sampling_offsets.weight for m in model.sublayers() if isinstance(m, MSDeformableAttention)]
    drawn = {"sampling_offsets": 0, "box_heads": 0}
    for w in weights:
        w.set_value(paddle.to_tensor((offset_std * rng.standard_normal(w.shape) / math.sqrt(w.shape[0])).astype(np.float32)))
        drawn["sampling_offsets"] += 1
    for head in [tr.enc_bbox_head, *tr.dec_bbox_head]:
        w = head.layers[-1].weight
        w.set_value(paddle.to_tensor((box_std * rng.standard_normal(w.shape) / math.sqrt(w.shape[0])).astype(np.float32)))
        drawn["box_heads"] += 1
    return drawn


def recalibrate_norms(model: paddle.nn.Layer, images: np.ndarray) -> int:
    """Set every BatchNorm2D's running mean and variance, in place, to the per-channel statistics of its
    own input on ``images`` (float32 [B,3,S,S]), in one eval-mode pass: a forward pre-hook sets a layer's
    statistics just before it normalises, so each layer sees its inputs as already recalibrated upstream.
    Afterwards every BatchNorm's output on these images has per-channel mean = its bias and standard
    deviation = its weight (see the module docstring for why). Returns how many layers were set."""
    layers = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]

    def set_statistics(layer, inputs):
        x = inputs[0].astype("float64")
        layer._mean.set_value(x.mean(axis=[0, 2, 3]).astype(layer._mean.dtype))
        layer._variance.set_value(x.var(axis=[0, 2, 3], unbiased=False).astype(layer._variance.dtype))

    handles = [m.register_forward_pre_hook(set_statistics) for m in layers]
    try:
        model.eval()
        with paddle.no_grad():
            model(paddle.to_tensor(images.astype(np.float32)))
    finally:
        for h in handles:
            h.remove()
    return len(layers)


def seed_informative_weights(model: RTDETR, images: np.ndarray, seed: int = 0, top_score: float = 0.9,
                             twentieth_score: float = 0.1, tries: int = 16, directions: int | None = 8) -> dict:
    """Re-draw the evaluated score head of ``model`` in place so that, on ``images`` (float32 [B,3,S,S]
    RGB in [0,1], the size the model will be checked at), each image's top-20 detections score from about
    ``top_score`` down to about ``twentieth_score`` and are well separated. Returns a summary (chosen
    draw, scale, per-image top-20 score range and minimum gap) for the caller's log.

    ``directions``: each class's weight vector is drawn in the span of the query features' ``directions``
    leading principal components (None: in the whole feature space). Why: a head drawn in all D
    dimensions reads mostly low-variance directions and needs a large scale to spread the scores, which
    multiplies rounding noise of the features (FP16: ~1e-3 relative) into score errors past the FP16
    tolerance; along the leading components the same spread needs the smallest weights, as a trained
    head, which reads the features that vary, has."""
    h = _readout_inputs(model, images)                              # [B,Q,D]
    head = model.transformer.dec_score_head[model.transformer.decoder.eval_idx]
    w_shape = tuple(head.weight.shape)                              # [D,C] (paddle Linear: in x out)
    h_mean = h.reshape(-1, h.shape[-1]).mean(0)                     # [D]
    # remove from each draw the directions along which the images' mean features differ, so the change
    # of logits is centred on every image alone and each image's best scores land near top_score
    img_dirs = h.mean(1) - h_mean                                   # [B,D]
    basis = np.linalg.svd(img_dirs, full_matrices=False)[2] if len(images) > 1 else np.zeros((0, h.shape[-1]))
    flat = (h - h_mean).reshape(-1, h.shape[-1])
    flat = flat - (flat @ basis.T) @ basis                           # what is left after removing img_dirs
    pcs = np.linalg.svd(flat, full_matrices=False)[2][:directions] if directions else None   # [k,D]
    want_span = _logit(top_score) - _logit(twentieth_score)
    best = None
    for attempt in range(tries):
        rng = np.random.default_rng([seed, attempt])
        if pcs is not None:
            dw = pcs.T @ rng.standard_normal((len(pcs), w_shape[1]))  # [D,C] in the leading components
        else:
            dw = rng.standard_normal(w_shape)
        dw -= basis.T @ (basis @ dw)
        z = (h - h_mean) @ dw                                       # [B,Q,C] centred change of logits
        top = _top_sorted(z)
        span = float(np.mean(top[:, 0] - top[:, TOP - 1]))
        if not np.isfinite(span) or span <= 0:
            # every query's readout input is the same (seen: RT-DETR-X at 640, whose randomly initialised
            # frozen-norm backbone reaches ~1e5 and saturates the encoder): no head can spread its scores
            raise DegenerateFeatures(f"cannot seed informative weights: the decoder's output does not vary over the "
                             f"queries on these images (top-{TOP} logit span {span}); the model's initial "
                             f"activations are degenerate at this input size")
        scale = want_span / span
        logits = scale * z                                          # the new draw replaces the readout
        top = _top_sorted(logits)
        offset = _logit(top_score) - float(np.mean(top[:, 0]))
        scores = 1.0 / (1.0 + np.exp(-(top + offset)))
        min_gap = float(np.min(scores[:, :-1] - scores[:, 1:]))
        if best is None or min_gap > best["min_gap"]:
            best = {"attempt": attempt, "scale": scale, "offset": offset, "dw": dw, "min_gap": min_gap,
                    "scores": scores}
    assert best is not None
    new_w = best["scale"] * best["dw"]
    # logits' = h @ new_w + new_b must equal scale*(h - h_mean) @ dw + offset
    new_b = best["offset"] - best["scale"] * (h_mean @ best["dw"])
    head.weight.set_value(paddle.to_tensor(new_w.astype(np.float32)))
    head.bias.set_value(paddle.to_tensor(new_b.astype(np.float32)))
    s = best["scores"]
    return {"attempt": best["attempt"], "scale": best["scale"], "min_gap": best["min_gap"],
            "top1": [round(float(v), 4) for v in s[:, 0]], "top20": [round(float(v), 4) for v in s[:, TOP - 1]]}
