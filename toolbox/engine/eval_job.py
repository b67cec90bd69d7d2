"""The `eval` job both model families share: where it writes, which data it scores, its events and metrics.json.

RT-DETR (toolbox.engine.api.evaluate) and RF-DETR (toolbox.rfdetr.evaluate.evaluate) differ only in how a
model is loaded and how it predicts a split; both then go through the engine's COCO scoring. So the job
takes those two steps as functions and owns the rest once: runs/<run>/eval/ (or runs/eval-<model>-<time>/
eval/ for weights without a run), the dataset check against the run's classes, events.jsonl with its end
status (cancelled 130, failed with the error's exit code), and metrics.json.
"""
from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError, ToolboxError, UsageError
from ..events import EventLog
from ..fileio import write_json
from ..workspace import Workspace, record_job_output

# load(run=, model=, weights=, workspace=, input_size=[, label_list=]) -> (net, labels, size, weights path, cfg)
Loader = Callable[..., tuple]
# score(net, dataset, labels, size, out_dir) -> the eval content {metrics, per_class, summary, pr_curves, vis, ...}
Scorer = Callable[[Any, Any, list, int, Path], dict]


def eval_job(ws: Workspace, *, run: str | None, model: str | None, weights: str | None, dataset: str | None,
             split: str, input_size: int | None, load: Loader, score: Scorer,
             checkpoint_info: Callable[[Path], dict]) -> dict[str, Any]:
    """Evaluate and write runs/<run>/eval/; returns metrics.json's content plus its `path`."""
    from ..data.loader import CocoDetection, dataset_labels
    from . import config as C

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
            net, labels, size, path, _ = load(run=run, model=None, weights=weights, workspace=ws,
                                              input_size=input_size)
        else:
            if not dataset:
                raise UsageError("--model with --weights needs --dataset NAME")
            data_dir = ws.dataset_dir(dataset)
            cat_ids, names = dataset_labels(data_dir)
            net, labels, size, path, _ = load(run=None, model=model, weights=weights, workspace=ws,
                                              input_size=input_size, label_list=names)
        data = CocoDetection(data_dir, split, cat_ids)
        out.mkdir(parents=True, exist_ok=True)
        for sub in ("pr_curves", "vis"):
            shutil.rmtree(out / sub, ignore_errors=True)
        events = EventLog(out / "events.jsonl")
        events.write("start", run=run_dir.name, weights=str(path), dataset=data_dir.name, split=split,
                     num_images=len(data), input_size=size)
        report = score(net, data, labels, size, out)
        summary = report.pop("summary", "")
        info = checkpoint_info(Path(path))
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
