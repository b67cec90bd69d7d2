"""COCO evaluation of an RF-DETR model with the toolbox's own scoring, so RT-DETR and RF-DETR numbers compare.

Only the prediction differs from toolbox.engine.evaluate.run_eval: the torch predictor (rfdetr's
pre-processing, background slot dropped) replaces the Paddle forward. Everything after it is the engine's:
`coco_results` (all K detections, category ids restored from class indices) and `eval_report` (pycocotools
COCOeval: the 12-number table and per-class AP, PR curves, drawn predictions). Used by the
trainer's per-epoch evaluation and by `eval --run <an RF-DETR run>`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..data.loader import CocoDetection
from ..engine.evaluate import coco_results, eval_report
from ..engine.predict import read_image
from ..errors import InputError
from ..workspace import Workspace


def evaluate_split(predictor, dataset: CocoDetection, label_list: Sequence[str], *, batch_size: int = 2,
                   out_dir: str | Path | None = None, vis_count: int = 8, draw_threshold: float = 0.5,
                   progress: bool = False) -> dict[str, Any]:
    """The contract's eval content ({metrics, per_class, summary, num_images, ...}) of `predictor` on `dataset`."""
    results: list[dict] = []
    ids = list(dataset.image_ids)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), desc="eval", unit="img", leave=False, dynamic_ncols=True)
    for start in range(0, len(ids), max(1, int(batch_size))):
        chunk = ids[start:start + max(1, int(batch_size))]
        images = []
        for image_id in chunk:
            path = dataset.image_path(image_id)
            try:
                images.append(read_image(path))
            except InputError:
                raise InputError(f"{path}: cannot be read as an image (image id {image_id}); "
                                 f"run `python -m toolbox check` on the dataset") from None
        labels, boxes, scores = predictor(images)
        results.extend(coco_results(chunk, labels, boxes, scores, dataset.cat_ids))
        if bar:
            bar.update(len(chunk))
    if bar:
        bar.close()
    return eval_report(dataset, results, ids, label_list, out_dir, vis_count, draw_threshold)


def evaluate(run: str | None = None, *, model: str | None = None, weights: str | None = None,
             dataset: str | None = None, split: str = "val", input_size: int | None = None, batch_size: int = 2,
             device: str = "cpu", vis_count: int = 8, threshold: float = 0.5, workspace: Workspace,
             progress: bool = True) -> dict[str, Any]:
    """`eval` for RF-DETR: runs/<run>/eval/ with the same metrics.json, pr_curves/, vis/ and events.jsonl."""
    from ..engine.eval_job import eval_job
    from .predict import TorchPredictor, info_of, load_for_inference, torch_device

    def score(net, data, labels, size, out):
        predictor = TorchPredictor(net, labels, size, torch_device(device))
        return evaluate_split(predictor, data, labels, batch_size=batch_size, out_dir=out, vis_count=vis_count,
                              draw_threshold=threshold, progress=progress)

    return eval_job(workspace, run=run, model=model, weights=weights, dataset=dataset, split=split,
                    input_size=input_size, load=load_for_inference, score=score, checkpoint_info=info_of)
