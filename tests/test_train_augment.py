"""Training data as PaddleDetection's RT-DETR reader prepares it: RandomDistort (p 0.8; four distortions
in random order, each p 0.5; factors in [0.5, 1.5]; hue ±18 of Pillow's 256 HSV units), the IoU crop's
"no crop" choice, images without boxes left out of training, and drop_last."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("OMP_NUM_THREADS", "1")

from toolbox.data import transforms as T  # noqa: E402
from toolbox.data.loader import BatchPlan, CocoDetection  # noqa: E402

IDENTITY = {"brightness": (1.0, 1.0), "contrast": (1.0, 1.0), "saturation": (1.0, 1.0), "hue": (0.0, 0.0)}


def _hue(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("HSV"))[..., 0].astype(int)


def test_hue_moves_up_to_18_of_pillows_256_units(monkeypatch):
    monkeypatch.setattr(T, "DISTORT_RANGES", dict(IDENTITY, hue=(-18.0, 18.0)))
    img = np.zeros((8, 8, 3), np.uint8)
    img[...] = (200, 40, 40)  # a saturated red: hue 0, so shifts wrap around the circle
    shifts = []
    for seed in range(300):
        out = T.photometric_distort(img, np.random.default_rng(seed), prob=1.0)
        shifts.append(((_hue(out) - _hue(img) + 128) % 256 - 128)[0, 0])
    shifts = np.abs(np.array(shifts))
    # ~120 applied shifts drawn from U(-18, 18): the largest lies near 18 (±1 for the 8-bit HSV round trip);
    # the old ±18 OpenCV degrees reached only 12.75 Pillow units.
    assert 16 <= shifts.max() <= 19
    assert 0.3 < (shifts > 0).mean() < 0.5  # applied with p 0.5 (and 1/36 of draws round to 0)


def test_brightness_factor_spans_half_to_one_and_a_half(monkeypatch):
    monkeypatch.setattr(T, "DISTORT_RANGES", dict(IDENTITY, brightness=(0.5, 1.5)))
    img = np.full((4, 4, 3), 100, np.uint8)
    ratios = np.array([T.photometric_distort(img, np.random.default_rng(s), prob=1.0)[0, 0, 0] / 100
                       for s in range(200)])
    changed = ratios[ratios != 1.0]
    assert 0.5 <= changed.min() < 0.6 and 1.4 < changed.max() <= 1.5  # U(0.5, 1.5), 8-bit rounding
    assert 0.4 < len(changed) / len(ratios) < 0.6  # p 0.5


def test_distortion_probabilities():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    same = [np.array_equal(T.photometric_distort(img, np.random.default_rng(s)), img) for s in range(600)]
    # unchanged: not distorted (0.2) or distorted with none of the 4 drawn (0.8 / 16) → 0.25; 3σ ≈ 0.053
    assert 0.197 < np.mean(same) < 0.303
    assert np.array_equal(T.photometric_distort(img, np.random.default_rng(3), prob=0.0), img)


def test_the_iou_crop_may_choose_not_to_crop():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
    sample = {"image": img, "boxes": np.array([[40, 30, 90, 100], [120, 60, 180, 140]], np.float32),
              "labels": np.array([0, 1], np.int64)}

    def uncropped(allow):
        return np.mean([T.iou_crop(sample, np.random.default_rng(s), prob=1.0, allow_no_crop=allow) is sample
                        for s in range(300)])

    # "no crop" is one of 7 choices tried first with p 1/7 (0.14); without it almost every image is cropped
    assert uncropped(True) > 0.1 and uncropped(False) < 0.05


def test_images_without_boxes_are_left_out_of_training_and_the_last_partial_batch_dropped(tmp_path):
    (tmp_path / "annotations").mkdir()
    coco = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48} for i in (1, 2, 3)],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 1, 10, 10], "area": 100,
                             "iscrowd": 0},
                            {"id": 2, "image_id": 3, "category_id": 5, "bbox": [1, 1, 10, 10], "area": 100,
                             "iscrowd": 1}],  # image 2: nothing; image 3: only a crowd box
            "categories": [{"id": 5, "name": "x"}]}
    (tmp_path / "annotations" / "instance_train.json").write_text(json.dumps(coco))
    train = CocoDetection(tmp_path, "train", [5], skip_empty=True)
    assert train.image_ids == [1] and train.skipped_empty == 2
    assert len(CocoDetection(tmp_path, "train", [5])) == 3  # evaluation keeps every image
    plan = BatchPlan(10, 4, drop_last=True)
    assert [len(b) for b in plan.epoch(0)] == [4, 4]
    assert [len(b) for b in BatchPlan(3, 4, drop_last=True).epoch(0)] == [3]  # smaller than a batch: kept


@pytest.mark.slow
def test_training_drops_the_last_partial_batch(session_workspace, tiny_dataset):
    import toolbox
    from toolbox.events import read_events

    run = toolbox.train(dataset=tiny_dataset, model="tiny-test", run="drop-last", batch_size=3, max_steps=1,
                        pretrained="none", num_workers=0, workspace=session_workspace, progress=False)
    start = [e for e in read_events(run / "events.jsonl") if e["type"] == "start"][0]
    assert start["steps_per_epoch"] == 5  # 16 images at batch 3: 5 full batches, the 1 left over dropped
