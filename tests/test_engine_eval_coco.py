"""The toolbox's COCO numbers equal pycocotools' COCOeval run directly on the same detections, when all K
detections per image are submitted (as PaddleDetection does), on a multi-class case where keeping only the
100 best across classes (the old rule) gives a lower AP."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from toolbox.engine.evaluate import METRIC_NAMES, coco_results, score

CAT_IDS = [3, 7]            # source category ids (class index = rank among them)
LABELS = ["car", "person"]
K = 300


def _gt() -> COCO:
    images = [{"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in (1, 2)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 100, 80], "area": 8000, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 7, "bbox": [300, 200, 60, 150], "area": 9000, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 7, "bbox": [50, 60, 40, 120], "area": 4800, "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 3, "bbox": [400, 100, 150, 90], "area": 13500, "iscrowd": 0},
    ]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns,
                    "categories": [{"id": c, "name": n} for c, n in zip(CAT_IDS, LABELS)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _detections(coco: COCO):
    """K detections per image: the 'car' object found with a high score, then 250 'car' false positives
    scoring above the 'person' object, which is found with a low score (rank > 100 across classes, rank 1
    among persons). labels [2,K], boxes [2,K,4] xyxy, scores [2,K], like the model's post-processing."""
    rng = np.random.default_rng(0)
    labels = np.zeros([2, K], np.int64)
    boxes = np.zeros([2, K, 4], np.float32)
    scores = np.zeros([2, K], np.float32)
    for b, image_id in enumerate((1, 2)):
        anns = {a["category_id"]: a["bbox"] for a in coco.imgToAnns[image_id]}
        xywh = {c: np.array(v, np.float32) for c, v in anns.items()}
        def xyxy(v):
            return np.array([v[0], v[1], v[0] + v[2], v[1] + v[3]], np.float32)
        labels[b, 0], boxes[b, 0], scores[b, 0] = 0, xyxy(xywh[3]), 0.95
        for k in range(1, 251):  # car false positives away from every object
            x, y = rng.uniform(560, 600), rng.uniform(400, 440)
            labels[b, k], boxes[b, k], scores[b, k] = 0, [x, y, x + 20, y + 20], 0.9 - k * 1e-3
        labels[b, 251], boxes[b, 251], scores[b, 251] = 1, xyxy(xywh[7]), 0.3
        for k in range(252, K):  # low-scoring person false positives
            x, y = rng.uniform(0, 20), rng.uniform(440, 460)
            labels[b, k], boxes[b, k], scores[b, k] = 1, [x, y, x + 15, y + 15], 0.1 - k * 1e-4
    return labels, boxes, scores


def _pycocotools_stats(coco: COCO, results: list[dict]) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats]


def test_all_k_detections_are_submitted_and_the_metrics_equal_cocoeval():
    coco = _gt()
    labels, boxes, scores = _detections(coco)
    results = coco_results([1, 2], labels, boxes, scores, CAT_IDS)
    assert len(results) == 2 * K  # nothing dropped before COCOeval
    assert {r["category_id"] for r in results} == set(CAT_IDS)
    ours = score(coco, results, [1, 2], CAT_IDS, LABELS)
    reference = _pycocotools_stats(coco, results)
    for name, want in zip(METRIC_NAMES, reference):
        got = ours["metrics"][name]
        # score() rounds to 6 decimals and reports -1 (no object of that size) as None
        assert (got is None and want < 0) or got == pytest.approx(want, abs=5e-7), name
    # both objects of each class are found at rank 1 of their class: AP 1 for both classes
    assert ours["metrics"]["AP"] == pytest.approx(1.0)
    assert [c["AP"] for c in ours["per_class"]] == [pytest.approx(1.0), pytest.approx(1.0)]

    # The old rule (the 100 best per image across classes) loses every person: a lower AP and AR100.
    old = score(coco, coco_results([1, 2], labels, boxes, scores, CAT_IDS, keep=100), [1, 2], CAT_IDS, LABELS)
    assert old["metrics"]["AP"] == pytest.approx(0.5)  # car 1.0, person 0.0
    assert old["metrics"]["AR100"] < ours["metrics"]["AR100"]
