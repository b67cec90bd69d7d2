"""Reading a workspace dataset (PaddleX COCO layout) into training and evaluation batches.

`CocoDetection` reads one split's annotation file with pycocotools and maps category ids to class
indices with `toolbox.data.classes.class_mapping` (the contract's order). `BatchPlan` decides which
image indices form each batch of an epoch: a seeded permutation per epoch, sharded across distributed
ranks, so every rank sees its own share and a resumed run can skip the batches it already trained on.
`batches()` turns a plan into collated numpy batches on a small thread pool (`num_workers` threads:
cv2 and numpy release the GIL, and threads need no pickling of the dataset), keeping a few ready ahead.
"""
from __future__ import annotations

import contextlib
import io
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from ..errors import InputError
from .classes import class_mapping, label_index
from . import transforms as T

SPLIT_FILES = {"train": "instance_train.json", "val": "instance_val.json", "test": "instance_test.json"}


def annotation_path(dataset_dir: str | Path, split: str) -> Path:
    path = Path(dataset_dir) / "annotations" / SPLIT_FILES[split]
    if not path.is_file():
        raise InputError(f"{path} is missing: the dataset has no '{split}' split "
                         f"(import it with `python -m toolbox check DIR`, or re-split with `python -m toolbox split`)")
    return path


def load_coco(path: str | Path):
    """pycocotools COCO object for `path`, without its chatter on stdout."""
    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except Exception as e:  # noqa: BLE001 - bad JSON or schema: the user's input
        raise InputError(f"{path}: cannot be read as COCO annotations ({type(e).__name__}: {e}); "
                         f"run `python -m toolbox check` on the dataset") from e


def dataset_labels(dataset_dir: str | Path) -> tuple[list[int], list[str]]:
    """(cat_ids, label_list) over all splits present, in the contract's class order."""
    import json

    dicts = []
    for split in SPLIT_FILES:
        p = Path(dataset_dir) / "annotations" / SPLIT_FILES[split]
        if p.is_file():
            with open(p, encoding="utf-8") as f:
                dicts.append(json.load(f))
    if not dicts:
        raise InputError(f"{dataset_dir}: no annotations/instance_*.json found; import the dataset with "
                         f"`python -m toolbox check DIR --name NAME`")
    cat_ids, names = class_mapping(dicts)
    if not cat_ids:
        raise InputError(f"{dataset_dir}: the annotations list no categories")
    return cat_ids, names


class CocoDetection:
    """One split of a COCO dataset: `len()`, `load(i)` → a sample dict (see transforms.py).

    Crowd boxes are skipped. `skip_empty` leaves out images without a (non-crowd, known-class) box, as
    PaddleDetection's COCODataSet does for training (allow_empty: false); evaluation keeps every image.
    """

    def __init__(self, dataset_dir: str | Path, split: str, cat_ids: Sequence[int] | None = None,
                 skip_empty: bool = False):
        self.root = Path(dataset_dir)
        self.ann_file = annotation_path(self.root, split)
        self.coco = load_coco(self.ann_file)
        if cat_ids is None:
            cat_ids, _ = dataset_labels(self.root)
        self.cat_ids = list(cat_ids)
        self.index_of = label_index(self.cat_ids)
        self.image_ids = sorted(self.coco.imgs)
        if skip_empty:
            self.image_ids = [i for i in self.image_ids
                              if any(not a.get("iscrowd", 0) and int(a["category_id"]) in self.index_of
                                     for a in self.coco.imgToAnns.get(i, []))]
        self.skipped_empty = len(self.coco.imgs) - len(self.image_ids)
        self.image_dir = self.root / "images"

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: int) -> Path:
        name = self.coco.imgs[image_id]["file_name"]
        p = self.root / "images" / name
        return p if p.exists() or not (self.root / name).exists() else self.root / name

    def load(self, i: int) -> dict[str, Any]:
        image_id = self.image_ids[i]
        path = self.image_path(image_id)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"{path}: cannot be read as an image (image id {image_id}); "
                             f"run `python -m toolbox check` on the dataset")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        boxes = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = np.array([self.index_of.get(int(a["category_id"]), -1) for a in anns], np.int64)
        keep = labels >= 0
        h, w = image.shape[:2]
        return {"image": image, "boxes": boxes[keep], "labels": labels[keep], "image_id": int(image_id),
                "orig_size": (w, h), "idx": i}


class BatchPlan:
    """The batches of one epoch: indices of a seeded permutation, sharded by rank.

    Each rank takes every world-th index of the (padded) permutation, so all ranks run the same number
    of steps. `drop_last` (training: on, as PaddleDetection's TrainReader) drops an epoch's last partial
    batch, except when a rank's share is smaller than one batch (then that one batch is kept).
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False):
        if n == 0:
            raise InputError("the split has no images to train on")
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last

    def per_rank(self) -> int:
        return math.ceil(self.n / self.world_size)

    def __len__(self) -> int:
        k = self.per_rank()
        return k // self.batch_size if self.drop_last and k >= self.batch_size else math.ceil(k / self.batch_size)

    def epoch(self, epoch: int) -> list[list[int]]:
        order = (np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        total = self.per_rank() * self.world_size
        order = np.concatenate([order, order[: total - self.n]]) if total > self.n else order
        mine = order[self.rank::self.world_size].tolist()
        return [mine[b * self.batch_size:(b + 1) * self.batch_size] for b in range(len(self))]


def batches(plan_batches: Sequence[list[int]], make_batch: Callable[[int, list[int]], Any],
            num_workers: int = 0, prefetch: int = 2, start: int = 0) -> Iterator[Any]:
    """Yield `make_batch(batch_index, indices)` for each batch from `start`, prefetched on threads."""
    todo = list(enumerate(plan_batches))[start:]
    if num_workers <= 0:
        for bi, idx in todo:
            yield make_batch(bi, idx)
        return
    with ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="loader") as pool:
        pending = [pool.submit(make_batch, bi, idx) for bi, idx in todo[: prefetch + num_workers]]
        nxt = len(pending)
        try:
            while pending:
                result = pending.pop(0).result()
                if nxt < len(todo):
                    bi, idx = todo[nxt]
                    pending.append(pool.submit(make_batch, bi, idx))
                    nxt += 1
                yield result
        finally:
            for f in pending:
                f.cancel()


class TrainBatches:
    """Augmented, multi-scale training batches for epoch e; randomness from (seed, epoch, index).

    From `no_aug_from_epoch` on (RT-DETRv2's last epochs) only the flip remains and every batch has the
    fixed size `fixed_size` (no distortion, zoom-out, crop or multi-scale).
    """

    def __init__(self, dataset: CocoDetection, plan: BatchPlan, augment_cfg: dict, sizes: Sequence[int],
                 seed: int, num_workers: int = 0, no_aug_from_epoch: int | None = None,
                 fixed_size: int | None = None, interpolation: int = cv2.INTER_CUBIC):
        self.dataset, self.plan, self.cfg, self.sizes = dataset, plan, augment_cfg, list(sizes)
        self.interpolation = interpolation  # the model's, for the last epochs' plain resize
        self.seed, self.num_workers, self.no_aug_from_epoch = seed, num_workers, no_aug_from_epoch
        self.fixed_size = int(fixed_size or max(self.sizes))

    def __len__(self) -> int:
        return len(self.plan)

    def strong(self, epoch: int) -> bool:
        return self.no_aug_from_epoch is None or epoch < self.no_aug_from_epoch

    def make(self, epoch: int, batch_index: int, indices: list[int]):
        strong = self.strong(epoch)
        samples = []
        for i in indices:
            rng = np.random.default_rng([self.seed, epoch, i, 1])
            samples.append(T.augment(self.dataset.load(i), rng, self.cfg, strong=strong))
        rng = np.random.default_rng([self.seed, epoch, batch_index, 2, self.plan.rank])
        size = self.sizes[int(rng.integers(len(self.sizes)))] if strong else self.fixed_size
        return T.collate_train(samples, size, rng, random_interp=strong, interpolation=self.interpolation)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[np.ndarray, list[dict]]]:
        return batches(self.plan.epoch(epoch), lambda bi, idx: self.make(epoch, bi, idx),
                       self.num_workers, start=start)


def eval_batches(dataset: CocoDetection, size: int, batch_size: int, num_workers: int = 0,
                 rank: int = 0, world_size: int = 1, limit: int | None = None,
                 interpolation: int = cv2.INTER_CUBIC):
    """SxS batches (`interpolation`: the model's) of (a rank's share of) a split, in order; `limit` caps
    the image count."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    mine = list(range(rank, n, world_size))
    plan = [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]
    return batches(plan, lambda bi, idx: T.collate_eval([dataset.load(i) for i in idx], size, interpolation),
                   num_workers)
