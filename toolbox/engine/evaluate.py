"""COCO evaluation of a detector on a dataset split (pycocotools COCOeval), used by `eval` and by training.

`run_eval` predicts every image of the split (SxS resize with the model's `preprocess` interpolation,
/255, like export and predict),
converts all K detections of each image to COCO results in original pixels (category ids restored from
class indices), and runs COCOeval. All K are submitted, as PaddleDetection does: COCOeval's maxDets=100
applies per image *and per category*, so cutting to the 100 best across classes before COCOeval would
drop detections COCOeval itself keeps and lower multi-class AP and AR100. It returns the contract's `eval` content: the 12-number table under `metrics`
(AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl; null where the split has no object of
that size), `per_class` [{class_id, name, AP, AP50}], and, when `out_dir` is given, per-class PR
curves (`pr_curves/*.png`) and predictions drawn on a few images (`vis/*.jpg`). Under distributed
training each rank predicts its share and rank 0 scores the union.
"""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.loader import CocoDetection, eval_batches
from . import distributed as D

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def predict_batch(model, images: np.ndarray, sizes: np.ndarray, num_top: int = 300):
    """Run the model in eval mode on a batch → (labels [B,K], boxes [B,K,4] xyxy px, scores [B,K]) numpy."""
    import paddle

    from ..models import postprocess

    layer = getattr(model, "_layers", model)  # a DataParallel wrapper's module
    with paddle.no_grad():
        out = layer(paddle.to_tensor(images))
        labels, boxes, scores = postprocess(out["pred_logits"], out["pred_boxes"],
                                            paddle.to_tensor(sizes, dtype="int64"), num_top=num_top)
    return labels.numpy(), boxes.numpy(), scores.numpy()


def coco_results(image_ids: Sequence[int], labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                 cat_ids: Sequence[int], keep: int | None = None) -> list[dict]:
    """Detections of a batch as COCO result dicts (xywh, category id), best first; `keep` (None: all K)
    caps them per image (COCOeval applies its own maxDets per image and category)."""
    out = []
    for b, image_id in enumerate(image_ids):
        order = np.argsort(-scores[b], kind="stable")[:keep]
        for k in order:
            x1, y1, x2, y2 = (float(v) for v in boxes[b, k])
            out.append({"image_id": int(image_id), "category_id": int(cat_ids[int(labels[b, k])]),
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(scores[b, k])})
    return out


def run_eval(model, dataset: CocoDetection, label_list: Sequence[str], input_size: int, *, batch_size: int = 4,
             num_workers: int = 0, out_dir: str | Path | None = None, vis_count: int = 8,
             draw_threshold: float = 0.5, limit: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Evaluate `model` on `dataset`; every rank calls it, rank 0's result is complete (others get {})."""
    was_training = getattr(model, "training", False)
    model.eval()
    results: list[dict] = []
    n = len(dataset) if limit is None else min(limit, len(dataset))
    from ..data.transforms import model_interpolation

    it = eval_batches(dataset, input_size, batch_size, num_workers, D.rank(), D.world_size(), limit=limit,
                      interpolation=model_interpolation(model))
    bar = None
    if progress and D.is_main():
        from tqdm import tqdm

        bar = tqdm(total=n, desc="eval", unit="img", leave=False, dynamic_ncols=True)
    for images, sizes, ids in it:
        labels, boxes, scores = predict_batch(model, images, sizes)
        results.extend(coco_results(ids, labels, boxes, scores, dataset.cat_ids))
        if bar:
            bar.update(len(ids) * D.world_size())
    if bar:
        bar.close()
    if was_training:
        model.train()
    gathered = D.gather(results)
    if not D.is_main():
        return {}
    results = [r for part in gathered for r in part]
    return eval_report(dataset, results, dataset.image_ids[:n], label_list, out_dir, vis_count, draw_threshold)


def eval_report(dataset: CocoDetection, results: list[dict], image_ids: Sequence[int], label_list: Sequence[str],
                out_dir: str | Path | None, vis_count: int, draw_threshold: float) -> dict[str, Any]:
    """The eval content of COCO `results` on `image_ids` (score's table + num_images), and with `out_dir`
    its PR curves and drawn predictions; shared by both families' evaluations."""
    report = score(dataset.coco, results, image_ids, dataset.cat_ids, label_list)
    report["num_images"] = len(image_ids)
    if out_dir is not None:
        out_dir = Path(out_dir)
        report["pr_curves"] = plot_pr_curves(report.pop("_precision"), dataset.cat_ids, label_list,
                                             out_dir / "pr_curves")
        report["vis"] = draw_predictions(dataset, results, label_list, out_dir / "vis", vis_count, draw_threshold)
    else:
        report.pop("_precision", None)
    return report


def score(coco_gt, results: list[dict], image_ids: Sequence[int], cat_ids: Sequence[int],
          label_list: Sequence[str]) -> dict[str, Any]:
    """COCOeval → {'metrics', 'per_class', 'summary' (the printed table), '_precision'}."""
    from pycocotools.cocoeval import COCOeval

    zero = {"metrics": {k: 0.0 for k in METRIC_NAMES}, "summary": "no detections",
            "per_class": [{"class_id": i, "name": n, "AP": 0.0, "AP50": 0.0} for i, n in enumerate(label_list)],
            "num_detections": 0, "_precision": None}
    if not results:
        return zero
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.imgIds = list(image_ids)
        ev.params.catIds = list(cat_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [None if s < 0 else round(float(s), 6) for s in ev.stats]
    precision = ev.eval["precision"]  # [T=10 IoUs, R=101 recalls, K classes, A=4 areas, M=3 maxDets]
    per_class = []
    for k, name in enumerate(label_list):
        p = precision[:, :, k, 0, -1]
        ap = float(p[p > -1].mean()) if (p > -1).any() else None
        p50 = precision[0, :, k, 0, -1]
        ap50 = float(p50[p50 > -1].mean()) if (p50 > -1).any() else None
        per_class.append({"class_id": k, "name": name, "AP": None if ap is None else round(ap, 6),
                          "AP50": None if ap50 is None else round(ap50, 6)})
    return {"metrics": dict(zip(METRIC_NAMES, stats)), "per_class": per_class, "summary": buf.getvalue().strip(),
            "num_detections": len(results), "_precision": precision}


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name, flags=re.UNICODE).strip("_") or "class"


def plot_pr_curves(precision, cat_ids: Sequence[int], label_list: Sequence[str], folder: Path) -> list[str]:
    """One PNG per class: precision against recall at IoU 0.50, 0.75 and averaged over 0.50:0.95."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    _use_cjk_font(plt)
    recall = np.linspace(0, 1, 101)
    paths = []
    for k, name in enumerate(label_list):
        fig, ax = plt.subplots(figsize=(4.5, 4), dpi=100)
        if precision is not None:
            p = precision[:, :, k, 0, -1]
            for curve, lab in ((p[0], "IoU 0.50"), (p[5], "IoU 0.75"),
                               (np.where((p > -1).all(0), p.mean(0), -1), "IoU 0.50:0.95")):
                ax.plot(recall[curve > -1], curve[curve > -1], label=lab)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=f"{k}: {name}")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        path = folder / f"{k:03d}_{_safe(name)}.png"
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        paths.append(str(path))
    return paths


def _use_cjk_font(plt) -> None:
    from matplotlib import font_manager

    from ..draw import FONT_CANDIDATES

    for path in FONT_CANDIDATES:
        if Path(path).exists():
            try:
                font_manager.fontManager.addfont(path)
                plt.rcParams["font.family"] = font_manager.FontProperties(fname=path).get_name()
                return
            except Exception:  # noqa: BLE001 - a font matplotlib cannot read: keep its default
                continue


def draw_predictions(dataset: CocoDetection, results: list[dict], label_list: Sequence[str], folder: Path,
                     count: int, threshold: float) -> list[str]:
    """Predictions with score ≥ threshold drawn on the first `count` images of the split."""
    from PIL import Image

    from ..draw import draw_boxes

    folder.mkdir(parents=True, exist_ok=True)
    index = {cid: i for i, cid in enumerate(dataset.cat_ids)}
    by_image: dict[int, list[dict]] = {}
    for r in results:
        if r["score"] >= threshold:
            by_image.setdefault(r["image_id"], []).append(r)
    paths = []
    for image_id in dataset.image_ids[:count]:
        dets = by_image.get(image_id, [])
        img = Image.open(dataset.image_path(image_id))
        boxes = [[d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3]] for d in dets]
        out = draw_boxes(img, boxes, [index[d["category_id"]] for d in dets], list(label_list),
                         [d["score"] for d in dets])
        path = folder / f"{Path(dataset.coco.imgs[image_id]['file_name']).stem}_{image_id}.jpg"
        out.save(path, quality=90)
        paths.append(str(path))
    return paths
