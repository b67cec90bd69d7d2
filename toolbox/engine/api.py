"""Python API of the engine step: `toolbox.train`, `toolbox.evaluate`, `toolbox.predict` (the CLI calls these).

    run_dir = toolbox.train(dataset="bccd", model="RT-DETR-R18", epochs=20, pretrained="none")
    report  = toolbox.evaluate(run=run_dir.name)            # runs/<run>/eval/metrics.json
    results = toolbox.predict(["photo.jpg"], run=run_dir.name, threshold=0.4)

An RF-DETR model (pipelines/ `backend: rfdetr`) or run goes to toolbox.rfdetr (the official rfdetr package):
`_family` below is the one place that decides, for the CLI and the web UI alike.
"""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import InputError, UsageError
from ..workspace import Workspace


def _ws(workspace: Workspace | str | os.PathLike | None) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


def _family(ws: Workspace, **what) -> str:
    """paddle (RT-DETR, this engine) or rfdetr (toolbox.rfdetr): the one place train/eval/predict dispatch."""
    from ..rfdetr.dispatch import family

    return family(ws, **what)


def train(dataset: str | None = None, model: str | None = None, *, config: str | None = None, run: str | None = None,
          epochs: int | None = None, max_steps: int | None = None, batch_size: int | None = None,
          grad_accum_steps: int | None = None, lr: float | None = None, warmup_steps: int | None = None,
          pretrained: str | None = None, resume: bool | str | None = None, init_from: str | None = None,
          sampling: str | None = None, device: str | None = None, amp: bool | None = None,
          input_size: int | None = None, num_workers: int | None = None, eval_interval: int | None = None,
          save_interval: int | None = None, log_interval: int | None = None,
          early_stop_patience: int | None = None, seed: int | None = None, overrides: Sequence[str] = (),
          workspace: Workspace | str | None = None, progress: bool = True) -> Path:
    """Train a model on a workspace dataset; returns runs/<run>/. Options left None come from the recipe.

    `overrides` are `KEY=VALUE` strings like the CLI's `-o`. `resume=True` continues `run`'s last
    checkpoint; a path continues that checkpoint. Several GPUs need the launcher: use the CLI
    (`--device gpu:0,1`) or `python -m paddle.distributed.launch`.
    """
    options = dict(dataset=dataset, model=model, config=config, run=run, epochs=epochs, max_steps=max_steps,
                   batch_size=batch_size, grad_accum_steps=grad_accum_steps, lr=lr, warmup_steps=warmup_steps,
                   pretrained=pretrained, resume=resume, init_from=init_from, sampling=sampling, device=device,
                   amp=amp or None, input_size=input_size, num_workers=num_workers, eval_interval=eval_interval,
                   save_interval=save_interval, log_interval=log_interval,
                   early_stop_patience=early_stop_patience, seed=seed, overrides=list(overrides or ()))
    ws = _ws(workspace)
    if _family(ws, model=model, config=config, run=run, resume=resume) == "rfdetr":
        from ..rfdetr.train import train as _rf_train

        return _rf_train(options, ws, progress=progress)
    from . import distributed as D
    from .train import train as _train

    if device and D.needs_launch(device):
        raise UsageError(f"device {device}: several GPUs need paddle.distributed.launch; run "
                         f"`python -m toolbox train --device {device} ...` (it starts the launcher)")
    return _train(options, ws, progress=progress)


def load_model_for_inference(*, run: str | None, model: str | None, weights: str | None,
                             workspace: Workspace, input_size: int | None = None,
                             label_list: Sequence[str] | None = None, num_classes: int | None = None):
    """(model in eval mode, label_list, input_size, weights path, run config or None) from a run or weights."""
    from . import checkpoint as ckpt
    from . import config as C
    from ..models import build_model, load_weights

    run_dir, cfg, labels = C.inference_source(run=run, model=model, weights=weights, workspace=workspace,
                                              label_list=label_list, num_classes=num_classes,
                                              weights_kind=".pdparams")
    if run_dir is not None:
        m = cfg["model"]
        which = weights or "best"
        if which in ("best", "last"):
            folder = run_dir / "checkpoints" / which
            if which == "best" and not (folder / ckpt.PARAMS).is_file():
                folder = run_dir / "checkpoints" / "last"  # a run without val split has no best
            if not (folder / ckpt.PARAMS).is_file():
                raise UsageError(f"run '{run}' has no '{which}' checkpoint yet ({folder})")
            path = ckpt.resolve(folder) / ckpt.PARAMS
        else:
            path = Path(weights).expanduser()
            path = ckpt.resolve(path) / ckpt.PARAMS if path.is_dir() else path
        overrides = dict(m.get("overrides") or {})
        overrides["input_size"] = int(input_size or m["input_size"])
        if m.get("sampling"):
            overrides["sampling"] = m["sampling"]
        net = build_model(m["source"], int(m["num_classes"]), **overrides)
    else:
        path = Path(weights).expanduser()
        path = ckpt.resolve(path) / ckpt.PARAMS if path.is_dir() else path
        overrides = {"input_size": int(input_size)} if input_size else {}
        net = build_model(model, len(labels), **overrides)
    if not Path(path).is_file():
        raise InputError(f"{path}: no such weights file")
    load_weights(net, str(path))
    net.eval()
    if cfg is not None:
        size = int(input_size or cfg["model"]["input_size"])
    else:
        from ..models import load_config

        size = int(input_size or load_config(model).get("input_size") or 640)
    return net, labels, size, Path(path), cfg


def evaluate(run: str | None = None, *, model: str | None = None, weights: str | None = None,
             dataset: str | None = None, split: str = "val", input_size: int | None = None, batch_size: int = 2,
             device: str = "cpu", vis_count: int = 8, threshold: float = 0.5,
             workspace: Workspace | str | None = None, progress: bool = True) -> dict[str, Any]:
    """COCO-evaluate a run (best checkpoint by default) or `model` + `weights` on a dataset split.

    Writes runs/<run>/eval/: metrics.json (the eval event + pr_curves/ and vis/ paths), pr_curves/*.png,
    vis/*.jpg, events.jsonl. With `model`, the folder is runs/eval-<model>-<time>/eval/.
    """
    ws = _ws(workspace)
    if _family(ws, model=model, run=run) == "rfdetr":
        from ..rfdetr.evaluate import evaluate as _rf_evaluate

        return _rf_evaluate(run, model=model, weights=weights, dataset=dataset, split=split, input_size=input_size,
                            batch_size=batch_size, device=device, vis_count=vis_count, threshold=threshold,
                            workspace=ws, progress=progress)
    from . import checkpoint as ckpt
    from . import distributed as D
    from .eval_job import eval_job
    from .evaluate import run_eval
    from .train import catch_sigterm

    D.setup_device(device, amp=False)
    catch_sigterm()  # importing Paddle replaced the CLI's SIGTERM handler: cancel must still end as 130

    def score(net, data, labels, size, out):
        return run_eval(net, data, labels, size, batch_size=batch_size, out_dir=out, vis_count=vis_count,
                        draw_threshold=threshold, progress=progress)

    return eval_job(ws, run=run, model=model, weights=weights, dataset=dataset, split=split,
                    input_size=input_size, load=load_model_for_inference, score=score,
                    checkpoint_info=lambda path: ckpt.info(path.parent))


def predict(inputs: str | Path | Iterable[str | Path], *, run: str | None = None, export: str | None = None,
            model: str | None = None, weights: str | None = None, labels: str | None = None,
            num_classes: int | None = None, threshold: float = 0.5, input_size: int | None = None,
            out: str | Path | None = None, device: str = "cpu", video_stride: int = 1, backend: str = "onnxruntime",
            workspace: Workspace | str | None = None, progress: bool = True) -> list[dict]:
    """Detect objects in images, folders or videos with a run, an export folder, or model + weights.

    Returns one dict per input file (PaddleX shape: input_path, boxes [{cls_id, label, score,
    coordinate}], plus json_path and vis_path) and writes them, drawn, to `out`
    (default workspace/predictions/<time>/). With `export`, `backend` picks the export's format:
    onnxruntime (model.onnx), onnxruntime-fp16, paddle (Paddle Inference) or rknn-onnx (the RK3588 split).
    """
    from . import distributed as D
    from . import predict as P

    ws = _ws(workspace)
    threshold = P.check_threshold(threshold)
    if sum(bool(x) for x in (run, export, model)) != 1:
        raise UsageError("give one of --run NAME, --export NAME|DIR, or --model NAME --weights PATH")
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files = P.expand_inputs(inputs)
    label_list = None
    if labels and not export:
        lp = Path(labels).expanduser()
        if not lp.is_file():
            raise UsageError(f"--labels {labels}: no such file")
        label_list = [ln.strip() for ln in lp.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if export:
        predictor = P.export_predictor(ws.export_dir(export), backend)
    elif _family(ws, model=model, run=run) == "rfdetr":
        from ..rfdetr.predict import predictor as rf_predictor

        predictor = rf_predictor(run=run, model=model, weights=weights, workspace=ws, input_size=input_size,
                                 label_list=label_list, num_classes=num_classes, device=device)
    else:
        D.setup_device(device, amp=False)
        net, names, size, _, _ = load_model_for_inference(run=run, model=model, weights=weights, workspace=ws,
                                                          input_size=input_size, label_list=label_list,
                                                          num_classes=num_classes)
        predictor = P.PaddlePredictor(net, names, size)
    if out:
        out_dir = Path(out).expanduser()
    else:  # a fresh folder per call, even for calls within the same second
        base = ws.root / "predictions" / f"{datetime.now():%Y%m%d-%H%M%S}"
        out_dir, n = base, 1
        while out_dir.exists():
            n += 1
            out_dir = base.with_name(f"{base.name}-{n}")
    return P.run(predictor, files, out_dir, threshold, video_stride, progress=progress)
