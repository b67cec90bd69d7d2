"""Can RT-DETR-R18 learn? Overfit 8 synthetic images from random init and watch mAP50 (pycocotools) rise.

A sanity benchmark for the model code (loss, matcher, denoising, box refinement): a correct DETR
memorises a handful of images; a subtle bug (wrong box order, detached paths, bad normalisation)
shows as a plateau. The network is the real RT-DETR-R18 (ResNet-18-vd, HybridEncoder, 3 decoder
layers) at a reduced input size and fewer queries, so it runs on a CPU in minutes.

    OMP_NUM_THREADS=1 python benchmarks/bench_overfit.py [--size 96] [--max-steps 400] [--target 0.9]

Prints one line per evaluation: step, wall seconds, CPU seconds, mean loss since the last line, mAP50,
mAP; stops once mAP50 >= target (exit 0) or after --max-steps (exit 1).

Measured 2026-11-21 on the shared 2-core machine (load average 7-10, so wall time is ~4x CPU time),
defaults: step 20 loss 24.3 mAP50 0.000; step 40 loss 13.8 mAP50 0.965 mAP 0.680 → target reached after
40 steps, 644 s wall, 141 s CPU (~3.5 s CPU per step of 8 images at 96 px).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import paddle  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from toolbox.models import build_model, postprocess  # noqa: E402

COLORS = np.array([[0.9, 0.15, 0.1], [0.1, 0.8, 0.2], [0.15, 0.3, 0.95]], dtype="float32")


def synthetic_images(n: int, size: int, seed: int = 0):
    """n images [n,3,size,size] in [0,1] and per image (labels [k], boxes [k,4] xyxy pixels):
    1-3 non-overlapping objects, class c = a filled shape (rectangle, ellipse, triangle) of colour c on a noisy background."""
    rng = np.random.default_rng(seed)
    images = np.empty([n, 3, size, size], dtype="float32")
    annots = []
    yy, xx = np.mgrid[0:size, 0:size].astype("float32") + 0.5
    for i in range(n):
        img = 0.35 + 0.1 * rng.standard_normal([3, size, size]).astype("float32")
        labels, boxes = [], []
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.integers(0, 3))
            for _try in range(50):  # objects do not overlap: every box is fully visible
                w, h = rng.uniform(0.2, 0.45, 2) * size
                x1, y1 = rng.uniform(0, size - w), rng.uniform(0, size - h)
                if all(x1 >= b[2] or x1 + w <= b[0] or y1 >= b[3] or y1 + h <= b[1] for b in boxes):
                    break
            else:
                continue
            inside_box = (xx >= x1) & (xx < x1 + w) & (yy >= y1) & (yy < y1 + h)
            if c == 0:
                mask = inside_box
            elif c == 1:
                mask = ((xx - x1 - w / 2) / (w / 2)) ** 2 + ((yy - y1 - h / 2) / (h / 2)) ** 2 <= 1
            else:  # triangle: apex at the top centre, base at the bottom
                frac = (yy - y1) / h
                mask = inside_box & (np.abs(xx - x1 - w / 2) <= frac * w / 2)
            img[:, mask] = COLORS[c][:, None]
            labels.append(c)
            boxes.append([x1, y1, x1 + w, y1 + h])
        images[i] = img.clip(0, 1)
        annots.append((np.array(labels, "int64"), np.array(boxes, "float32")))
    return images, annots


def to_targets(annots, size):
    targets = []
    for labels, boxes in annots:
        cxcywh = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                           boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], -1) / size
        targets.append({"labels": paddle.to_tensor(labels), "boxes": paddle.to_tensor(cxcywh.astype("float32"))})
    return targets


def coco_ground_truth(annots, size) -> COCO:
    images, anns = [], []
    for i, (labels, boxes) in enumerate(annots):
        images.append({"id": i + 1, "width": size, "height": size, "file_name": f"{i}.png"})
        for c, (x1, y1, x2, y2) in zip(labels, boxes):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1, "iscrowd": 0,
                         "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                         "area": float((x2 - x1) * (y2 - y1))})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c + 1, "name": str(c)} for c in range(3)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def evaluate(model, images, gt: COCO, size: int) -> tuple[float, float]:
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(images))
        wh = paddle.to_tensor([[size, size]] * len(images), dtype="int64")
        labels, boxes, scores = postprocess(out["pred_logits"], out["pred_boxes"], wh, num_top=100)
    model.train()
    dets = []
    for i in range(len(images)):
        for c, (x1, y1, x2, y2), s in zip(labels[i].numpy(), boxes[i].numpy(), scores[i].numpy()):
            dets.append({"image_id": i + 1, "category_id": int(c) + 1, "score": float(s),
                         "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]})
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1]), float(ev.stats[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=96, help="input size (multiple of 32)")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--num-queries", type=int, default=50)
    ap.add_argument("--num-denoising", type=int, default=30)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--clip", type=float, default=0.1, help="global gradient-norm clip (the recipe's 0.1)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--max-steps", type=int, default=400)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--target", type=float, default=0.9)
    ap.add_argument("--sampling", default="grid", choices=["grid", "discrete"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    paddle.seed(args.seed)
    images, annots = synthetic_images(args.images, args.size, args.seed)
    targets = to_targets(annots, args.size)
    gt = coco_ground_truth(annots, args.size)
    model = build_model("RT-DETR-R18", num_classes=3, input_size=args.size, num_queries=args.num_queries,
                        num_denoising=args.num_denoising, sampling=args.sampling)
    model.train()
    sched = paddle.optimizer.lr.LinearWarmup(args.lr, args.warmup, args.lr * 0.001, args.lr)
    opt = paddle.optimizer.AdamW(learning_rate=sched, parameters=model.parameters(), weight_decay=1e-4,
                                 grad_clip=paddle.nn.ClipGradByGlobalNorm(args.clip))
    x = paddle.to_tensor(images)
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    print(f"RT-DETR-R18 ({n_params / 1e6:.1f} M parameters), {args.images} synthetic images at {args.size} px, "
          f"{args.num_queries} queries, {args.num_denoising} denoising, lr {args.lr}, sampling {args.sampling}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", flush=True)
    print(f"{'step':>5} {'wall_s':>8} {'cpu_s':>8} {'loss':>8} {'mAP50':>6} {'mAP':>6}", flush=True)
    t0, c0 = time.time(), time.process_time()
    window = []
    for step in range(1, args.max_steps + 1):
        losses = model(x, targets)
        losses["loss"].backward()
        opt.step()
        opt.clear_grad()
        sched.step()
        window.append(float(losses["loss"]))
        if step % args.eval_every == 0 or step == args.max_steps:
            ap50, ap = evaluate(model, images, gt, args.size)
            print(f"{step:5d} {time.time() - t0:8.1f} {time.process_time() - c0:8.1f} {np.mean(window):8.3f} "
                  f"{ap50:6.3f} {ap:6.3f}", flush=True)
            window = []
            if ap50 >= args.target:
                print(f"reached mAP50 {ap50:.3f} >= {args.target} after {step} steps, "
                      f"{time.time() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU")
                return 0
    print(f"did not reach mAP50 {args.target} in {args.max_steps} steps")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
