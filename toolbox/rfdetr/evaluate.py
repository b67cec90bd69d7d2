"""COCO evaluation of an RF-DETR model with the toolbox's own scoring, so RT-DETR and RF-DETR numbers compare.

Only the prediction differs from toolbox.engine.evaluate.run_eval: the torch predictor (rfdetr's
pre-processing, background slot dropped) replaces the Paddle forward. Everything after it is the engine's:
`coco_results` (all K detections, category ids restored from class indices), `score` (pycocotools
COCOeval: the 12-number table and per-class AP), `plot_pr_curves` and `draw_predictions`. Used by the
trainer's per-epoch evaluation and by `eval --run <an RF-DETR run>`.
"""
from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from ..data.loader import CocoDetection
from ..engine.evaluate import coco_results, draw_predictions, plot_pr_curves, score
from ..engine.predict import read_image
from ..errors import InputError, ToolboxError, UsageError
from ..events import EventLog
from ..fileio import write_json
from ..workspace import Workspace, record_job_output


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
    report = score(dataset.coco, results, ids, dataset.cat_ids, label_list)
    report["num_images"] = len(ids)
    if out_dir is not None:
        out_dir = Path(out_dir)
        report["pr_curves"] = plot_pr_curves(report.pop("_precision"), dataset.cat_ids, label_list,
                                             out_dir / "pr_curves")
        report["vis"] = draw_predictions(dataset, results, label_list, out_dir / "vis", vis_count, draw_threshold)
    else:
        report.pop("_precision", None)
    return report


def evaluate(run: str | None = None, *, model: str | None = None, weights: str | None = None,
             dataset: str | None = None, split: str = "val", input_size: int | None = None, batch_size: int = 2,
             device: str = "cpu", vis_count: int = 8, threshold: float = 0.5, workspace: Workspace,
             progress: bool = True) -> dict[str, Any]:
    """`eval` for RF-DETR: runs/<run>/eval/ with the same metrics.json, pr_curves/, vis/ and events.jsonl."""
    from ..data.loader import dataset_labels
    from ..engine import config as C
    from .predict import TorchPredictor, info_of, load_for_inference, torch_device

    ws = workspace
    if run:
        run_dir = ws.run_dir(run)
    elif model:
        run_dir = ws.runs / f"eval-{model}-{datetime.now():%Y%m%d-%H%M%S}"
    else:
        raise UsageError("give --run NAME, or --model NAME --weights PATH --dataset NAME")
    out = run_dir / "eval"
    record_job_output(ws, out)
    events = None
    try:
        if run:
            cfg = C.load(run_dir / "config.yaml")
            data_dir = ws.dataset_dir(dataset) if dataset else Path(cfg["data"]["dir"])
            if not data_dir.is_dir():
                raise UsageError(f"the run's dataset {data_dir} is gone; pass --dataset NAME")
            cat_ids = cfg["data"].get("cat_ids")
            if dataset:
                cat_ids, names = dataset_labels(data_dir)
                if list(names) != list(cfg["model"]["label_list"]):
                    raise InputError(f"dataset {data_dir.name} has classes {names}, the run was trained on "
                                     f"{cfg['model']['label_list']}")
            net, labels, size, path, _ = load_for_inference(run=run, model=None, weights=weights, workspace=ws,
                                                            input_size=input_size)
        else:
            if not dataset:
                raise UsageError("--model with --weights needs --dataset NAME")
            data_dir = ws.dataset_dir(dataset)
            cat_ids, names = dataset_labels(data_dir)
            net, labels, size, path, _ = load_for_inference(run=None, model=model, weights=weights, workspace=ws,
                                                            input_size=input_size, label_list=names)
        data = CocoDetection(data_dir, split, cat_ids)
        out.mkdir(parents=True, exist_ok=True)
        for sub in ("pr_curves", "vis"):
            shutil.rmtree(out / sub, ignore_errors=True)
        events = EventLog(out / "events.jsonl")
        events.write("start", run=run_dir.name, weights=str(path), dataset=data_dir.name, split=split,
                     num_images=len(data), input_size=size)
        predictor = TorchPredictor(net, labels, size, torch_device(device))
        report = evaluate_split(predictor, data, labels, batch_size=batch_size, out_dir=out, vis_count=vis_count,
                                draw_threshold=threshold, progress=progress)
        summary = report.pop("summary", "")
        info = info_of(path)
        event = events.write("eval", epoch=info.get("epoch"), step=info.get("step"), metrics=report["metrics"],
                             per_class=report["per_class"])
        metrics = {**event, "run": run_dir.name, "weights": str(path), "dataset": data_dir.name, "split": split,
                   "input_size": size, "num_images": report["num_images"],
                   "num_detections": report.get("num_detections", 0), "summary": summary,
                   "pr_curves": [os.path.relpath(p, out) for p in report["pr_curves"]],
                   "vis": [os.path.relpath(p, out) for p in report["vis"]]}
        write_json(out / "metrics.json", metrics)
        events.end("ok", 0, None)
    except KeyboardInterrupt:
        if events:
            events.end("cancelled", 130, "cancelled by the user")
        raise
    except ToolboxError as e:
        if events:
            events.end("failed", e.exit_code, str(e))
        raise
    except Exception as e:
        if events:
            events.end("failed", 3, f"{type(e).__name__}: {e}")
        raise
    metrics["path"] = str(out / "metrics.json")
    return metrics
