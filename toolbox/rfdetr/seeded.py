"""Informative RF-DETR weights without training, for the full-size export tests and benchmarks/bench_infer.py.

Why (as toolbox/export/seeded.py for RT-DETR): a freshly initialised RF-DETR scores every (query, class)
pair sigmoid(-4.6) ~ 0.01 (the focal-loss prior bias), below the checks' score tolerance, so a score check
on it would prove nothing and the SDK comparison would have no detection above any threshold.
`seed_class_head` re-draws the decoder's class head (class_embed) so that its logits on the check images
spread with a standard deviation of LOGIT_STD and zero mean: scores then range ~0.001..0.999 and differ
between queries and classes, while the backbone, encoder and box head stay as initialised (or trained),
so the graph exported is exactly the model's. The background slot (the last one) is left at its prior.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

LOGIT_STD = 3.0   # sigmoid(±3 sd = ±9) spans 1e-4..0.9999: top scores clearly above 0.5, many below 0.1


def seed_class_head(net, images: np.ndarray, *, seed: int = 0, logit_std: float = LOGIT_STD) -> dict:
    """Re-draw net.class_embed (foreground rows) in place so its logits on `images` (preprocessed [N,3,S,S])
    have mean 0 and standard deviation `logit_std`. Returns a summary (top score, spread)."""
    import torch

    head = net.class_embed
    fg = head.out_features - 1
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        captured = {}
        hook = head.register_forward_hook(lambda _m, inp, _out: captured.__setitem__("hs", inp[0]))
        try:
            net(torch.from_numpy(images))
        finally:
            hook.remove()
        hs = captured["hs"].reshape(-1, head.in_features)               # the decoder features the head reads
        w = torch.randn(fg, head.in_features, generator=gen)
        z = hs @ w.T
        scale = float(logit_std) / float(z.std().clamp_min(1e-12))
        head.weight[:fg] = w * scale
        head.bias[:fg] = -(z.mean(0) * scale)                            # zero mean per class
        logits = net(torch.from_numpy(images))["pred_logits"][..., :fg]
    prob = logits.sigmoid()
    return {"logit_std": float(logits.std()), "top_score": float(prob.max()),
            "share_above_0.5": float((prob > 0.5).float().mean())}


def write_seeded_checkpoint(model: str, out_dir: str | os.PathLike, *, num_classes: int = 3,
                            input_size: int | None = None, seed: int = 0, num_images: int = 4,
                            base: str | os.PathLike | None = None) -> tuple[Path, list[Path]]:
    """A model.pth of `model` (a pipelines/ RF-DETR name), random-initialised (nothing downloaded) or loaded from
    `base`, with its class head seeded on `num_images` demo images; returns (weights, images)."""
    import torch

    from ..data.demo import generate
    from ..export.paddle_static import preprocess_ops
    from ..export.runtime import load_image, normalize, resize
    from ..models.config import config_path, read_yaml
    from .export import INTERP_ALIASES
    from .model import build_rfdetr, load_checkpoint, torch_module

    out = Path(out_dir)
    cfg = read_yaml(config_path(model))
    size = int(input_size or cfg.get("input_size"))
    torch.manual_seed(seed)
    wrapper = (load_checkpoint(cfg, num_classes, base, input_size=size) if base else
               build_rfdetr(cfg, num_classes, pretrained="none", input_size=size))
    net = torch_module(wrapper)
    demo = generate(out / "images_src", num_train=0, num_val=num_images, image_size=size, seed=seed)
    samples = sorted((demo / "images").glob("*.jpg"))[:num_images]
    pre = cfg.get("preprocess") or {}
    norm, interp = pre.get("normalize") or {}, str((pre.get("resize") or {}).get("interp") or "linear")
    interp = INTERP_ALIASES.get(interp, interp)
    ops = {"preprocess": preprocess_ops(size, norm.get("mean"), norm.get("std"), interp)}
    x = np.stack([normalize(resize(load_image(p), size, interp), ops) for p in samples]).astype(np.float32)
    seed_class_head(net, x, seed=seed)
    path = out / f"{model}_seeded.pth"
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": net.state_dict()}, tmp)
    tmp.replace(path)
    return path, samples
