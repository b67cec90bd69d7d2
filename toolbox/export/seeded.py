"""Seeded informative weights for a named config, written as a `.pdparams`, with the images to check on.

Why: the full-size export tests and benchmarks/bench_export.py export real-size models (RT-DETR-L at 640,
80 classes...) without official weights on the machine. A freshly initialised model scores every
detection about 0.01, below the export checks' score tolerance, so its score checks would prove
nothing. `write_seeded_weights` builds the model (paddle.seed fixed), re-draws its score head with
`toolbox.models.seeding.seed_informative_weights` on the very images the export is then checked on
(demo-generator images at the model's input size, preprocessed as the export preprocesses them), and
saves the state dict with PaddleDetection's names, so `export(model=NAME, weights=path,
num_classes=N, samples=images)` runs exactly as with weights trained elsewhere.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NUM_IMAGES = 4  # the export checks' default sample count (NUM_SAMPLES in the export driver)


@dataclass
class SeededWeights:
    """What write_seeded_weights made: the weights file, the check images, and the seeding summary."""

    weights: Path
    samples: list[Path]
    input_size: int
    summary: dict = field(default_factory=dict)


def write_seeded_weights(model: str, out_dir: str | os.PathLike, *, num_classes: int = 80,
                         input_size: int | None = None, seed: int = 0,
                         num_images: int = NUM_IMAGES, spread_points: bool = False) -> SeededWeights:
    """Build `model` (a pipelines/ name or YAML), seed informative weights on `num_images` demo images at
    its input size (the config's, or `input_size`), and write out_dir/<model>_seeded.pdparams plus the
    images (out_dir/images/*.jpg). The same arguments give the same weights. `spread_points`: first draw the
    zero-initialised sampling-offset and box-head weights (seeding.spread_sampling_points), which the
    discrete-sampling (RKNN) checks need: as initialised, sampling points sit on pixel-rounding boundaries.
    When the model as initialised is degenerate on the images (seeding finds no spread over queries; seen:
    RT-DETR-X at 640), its BatchNorms are recalibrated on them first (seeding.recalibrate_norms), and the
    summary says so (`norms_recalibrated`)."""
    import paddle

    from ..data.demo import generate
    from ..models import build_model, load_config
    from ..models.seeding import (DegenerateFeatures, recalibrate_norms, seed_informative_weights,
                                  spread_sampling_points)
    from ..models.weights import save_weights
    from .paddle_static import preprocess_ops
    from .runtime import load_image, normalize, resize

    out = Path(out_dir)
    cfg = load_config(model)
    size = int(input_size or cfg.get("input_size") or 640)
    pre = cfg.get("preprocess") or {}
    norm, interp = pre.get("normalize") or {}, (pre.get("resize") or {}).get("interp")
    demo = generate(out / "images_src", num_train=0, num_val=num_images, image_size=size, seed=seed)
    samples = sorted((demo / "images").glob("*.jpg"))[:num_images]
    ops = {"preprocess": preprocess_ops(size, norm.get("mean"), norm.get("std"), interp)}
    x = np.stack([normalize(resize(load_image(p), size, interp), ops) for p in samples]).astype(np.float32)
    paddle.set_device("cpu")
    paddle.seed(seed)
    net = build_model(model, num_classes, input_size=size)
    net.eval()
    if spread_points:
        spread_sampling_points(net, seed=seed)
    try:
        summary = {**seed_informative_weights(net, x, seed=seed), "norms_recalibrated": 0}
    except DegenerateFeatures:
        layers = recalibrate_norms(net, x)
        summary = {**seed_informative_weights(net, x, seed=seed), "norms_recalibrated": layers}
    name = Path(str(model)).stem
    weights = save_weights(net, out / f"{name}_seeded.pdparams")
    return SeededWeights(weights=weights, samples=samples, input_size=size, summary=summary)
