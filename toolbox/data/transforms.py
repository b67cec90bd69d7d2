"""RT-DETR's data augmentation and resizing, on numpy arrays (cv2 for pixels, vectorised box maths).

A sample is a dict: `image` uint8 [H,W,3] RGB, `boxes` float32 [n,4] x1,y1,x2,y2 in pixels, `labels`
int64 [n], plus bookkeeping (`image_id`, `orig_size` (w,h), `idx`). Every random choice comes from the
`numpy.random.Generator` passed in, which the loader derives from (seed, epoch, index): the same run
sees the same augmented images, and a resumed run continues with exactly the images it would have seen.

Training pipeline (PaddleDetection's RT-DETR reader): photometric distortion (p 0.8) → zoom-out/expand
(p 0.5, ratio ≤ 4, mean fill) → SSD IoU crop (p 0.8, "no crop" among its choices) → horizontal flip (p 0.5); then, per batch, a
resize to one size drawn from the multi-scale list with a random interpolation; boxes become normalised
cx,cy,w,h. Evaluation and inference: resize to SxS (no aspect kept) with the model's `preprocess` interpolation
(RT-DETR bicubic, RT-DETRv2 bilinear), /255 (CONTRACTS.md "Exported models").
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)
# infer_cfg.yml / pipelines `preprocess.resize.interp` names (PaddleDetection's interp 0..4) → OpenCV flags
INTERP_BY_NAME = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA,
                  "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}


def interpolation(name: str | int | None) -> int:
    """An interp name (or PaddleDetection's number) → the OpenCV flag; None → cubic (RT-DETR's)."""
    if name is None:
        return cv2.INTER_CUBIC
    if isinstance(name, int) and not isinstance(name, bool) and 0 <= name < len(INTERPOLATIONS):
        return INTERPOLATIONS[name]
    if str(name).lower() not in INTERP_BY_NAME:
        raise ValueError(f"unknown resize interpolation {name!r} (use one of {', '.join(INTERP_BY_NAME)})")
    return INTERP_BY_NAME[str(name).lower()]


def model_interpolation(model: Any) -> int:
    """The resize its config's `preprocess` names (RT-DETR: cubic, RT-DETRv2: linear, as PaddleDetection)."""
    layer = getattr(model, "_layers", model)  # a DataParallel wrapper's module
    cfg = getattr(layer, "config", None) or {}
    return interpolation(((cfg.get("preprocess") or {}).get("resize") or {}).get("interp"))
MIN_BOX_PIXELS = 1.0


DISTORT_RANGES = {"brightness": (0.5, 1.5), "contrast": (0.5, 1.5), "saturation": (0.5, 1.5),
                  "hue": (-18.0, 18.0)}  # hue: PIL HSV units, 256 to the circle (±18 ≈ ±25°)


def photometric_distort(image: np.ndarray, rng: np.random.Generator, prob: float = 0.8,
                        op_prob: float = 0.5) -> np.ndarray:
    """PaddleDetection's RandomDistort as its RT-DETR reader uses it: with probability `prob`, the four
    distortions in random order, each applied with probability `op_prob`: brightness, contrast and
    saturation through Pillow's ImageEnhance (factor in [0.5, 1.5]; each result rounded to uint8 like
    upstream's PIL pipeline), hue shifted in Pillow's 8-bit HSV (wrapping around the circle)."""
    if rng.random() >= prob:
        return image
    from PIL import Image, ImageEnhance

    img = Image.fromarray(np.ascontiguousarray(image))
    names = tuple(DISTORT_RANGES)
    for i in rng.permutation(len(names)):
        name = names[i]
        value = rng.uniform(*DISTORT_RANGES[name])
        if rng.random() >= op_prob:
            continue
        if name == "brightness":
            img = ImageEnhance.Brightness(img).enhance(value)
        elif name == "contrast":
            img = ImageEnhance.Contrast(img).enhance(value)
        elif name == "saturation":
            img = ImageEnhance.Color(img).enhance(value)
        else:
            hsv = np.asarray(img.convert("HSV")).copy()
            hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(value))) % 256
            img = Image.frombytes("HSV", img.size, hsv.tobytes()).convert("RGB")
    return np.asarray(img)


def zoom_out(sample: dict, rng: np.random.Generator, prob: float = 0.5, max_ratio: float = 4.0,
             fill: Sequence[float] = (123.675, 116.28, 103.53)) -> dict:
    """Place the image at a random spot of a canvas up to `max_ratio` times larger (small objects)."""
    if rng.random() >= prob or max_ratio <= 1:
        return sample
    img = sample["image"]
    h, w = img.shape[:2]
    ratio = rng.uniform(1.0, max_ratio)
    nh, nw = int(h * ratio), int(w * ratio)
    top, left = int(rng.integers(0, nh - h + 1)), int(rng.integers(0, nw - w + 1))
    canvas = np.empty((nh, nw, 3), np.uint8)
    canvas[:] = np.asarray(fill, np.float32).round().astype(np.uint8)
    canvas[top:top + h, left:left + w] = img
    out = dict(sample, image=canvas)
    out["boxes"] = sample["boxes"] + np.array([left, top, left, top], np.float32)
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [n,4] against b [m,4] (xyxy) → [n,m]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def iou_crop(sample: dict, rng: np.random.Generator, prob: float = 0.8,
             thresholds: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9), scale: tuple = (0.3, 1.0),
             aspect: tuple = (0.5, 2.0), attempts: int = 50, allow_no_crop: bool = True) -> dict:
    """SSD-style crop (PaddleDetection's RandomCrop): the thresholds, plus "no crop" when `allow_no_crop`
    (upstream's default), are tried in random order; "no crop" returns the image as it is, a threshold
    looks for a random window whose IoU with some box reaches it. Boxes whose centre falls inside are kept
    and clipped. Images without boxes, or no window found, stay uncropped."""
    boxes = sample["boxes"]
    if rng.random() >= prob or len(boxes) == 0:
        return sample
    h, w = sample["image"].shape[:2]
    choices = list(thresholds) + ([None] if allow_no_crop else [])
    for ti in rng.permutation(len(choices)):
        thr = choices[ti]
        if thr is None:
            return sample
        for _ in range(attempts):
            s = rng.uniform(*scale)
            ar = rng.uniform(max(aspect[0], s * s), min(aspect[1], 1.0 / (s * s)))
            ch, cw = int(h * s / np.sqrt(ar)), int(w * s * np.sqrt(ar))
            if ch < 2 or cw < 2 or ch > h or cw > w:
                continue
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = np.array([[x0, y0, x0 + cw, y0 + ch]], np.float32)
            if box_iou(crop, boxes).max() < thr:
                continue
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            inside = ((centres >= crop[0, :2]) & (centres <= crop[0, 2:])).all(axis=1)
            if not inside.any():
                continue
            kept = boxes[inside].copy()
            kept[:, :2] = np.maximum(kept[:, :2], crop[0, :2])
            kept[:, 2:] = np.minimum(kept[:, 2:], crop[0, 2:])
            kept -= np.array([x0, y0, x0, y0], np.float32)
            out = dict(sample, image=sample["image"][y0:y0 + ch, x0:x0 + cw], boxes=kept,
                       labels=sample["labels"][inside])
            return out
    return sample


def hflip(sample: dict, rng: np.random.Generator, prob: float = 0.5) -> dict:
    if rng.random() >= prob:
        return sample
    img = sample["image"][:, ::-1]
    w = img.shape[1]
    boxes = sample["boxes"].copy()
    boxes[:, [0, 2]] = w - sample["boxes"][:, [2, 0]]
    return dict(sample, image=img, boxes=boxes)


def augment(sample: dict, rng: np.random.Generator, cfg: dict, strong: bool = True) -> dict:
    """The per-image training transforms; `strong=False` is RT-DETRv2's last-epochs setting (flip only)."""
    if strong:
        sample = dict(sample, image=photometric_distort(sample["image"], rng, cfg.get("distort_prob", 0.8)))
        sample = zoom_out(sample, rng, cfg.get("expand_prob", 0.5), cfg.get("expand_max_ratio", 4.0),
                          cfg.get("fill_value", (123.675, 116.28, 103.53)))
        sample = iou_crop(sample, rng, cfg.get("crop_prob", 0.8))
    return hflip(sample, rng, cfg.get("flip_prob", 0.5))


def resize_image(image: np.ndarray, size: int, interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """SxS resize without keeping the aspect ratio; returns float32 [3,S,S] RGB in [0,1]."""
    out = cv2.resize(image, (size, size), interpolation=interpolation)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32) * np.float32(1.0 / 255.0)


def to_normalised_cxcywh(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """xyxy pixels → (cx,cy,w,h in [0,1], keep mask) dropping boxes under a pixel wide or high."""
    boxes = boxes.copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    wh = boxes[:, 2:] - boxes[:, :2]
    keep = (wh >= MIN_BOX_PIXELS).all(axis=1)
    boxes, wh = boxes[keep], wh[keep]
    scale = np.array([width, height, width, height], np.float32)
    out = np.concatenate([boxes[:, :2] + wh / 2, wh], axis=1) / scale
    return out.astype(np.float32), keep


def collate_train(samples: list[dict], size: int, rng: np.random.Generator,
                  random_interp: bool = True,
                  interpolation: int = cv2.INTER_CUBIC) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Resize a batch to one size (multi-scale), → images [B,3,S,S] float32 and target dicts (numpy);
    a random interpolation per image, or `interpolation` (the model's) when `random_interp` is off."""
    images, targets = [], []
    for s in samples:
        h, w = s["image"].shape[:2]
        interp = INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))] if random_interp else interpolation
        images.append(resize_image(s["image"], size, interp))
        boxes, keep = to_normalised_cxcywh(s["boxes"], w, h)
        targets.append({"boxes": boxes, "labels": s["labels"][keep].astype(np.int64),
                        "image_id": s["image_id"]})
    return np.stack(images), targets


def collate_eval(samples: list[dict], size: int,
                 interpolation: int = cv2.INTER_CUBIC) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """SxS batch for evaluation (the model's interpolation) → images [B,3,S,S], orig sizes [B,2] (w,h)
    int64, image ids."""
    images = np.stack([resize_image(s["image"], size, interpolation) for s in samples])
    sizes = np.array([s["orig_size"] for s in samples], np.int64)
    return images, sizes, [s["image_id"] for s in samples]
