"""`toolbox.export(...)` / `python -m toolbox export`: a trained model -> exports/<name>/.

What is written (CONTRACTS.md "Exported models"): paddle/ (Paddle inference model), model.onnx,
model_fp16.onnx (opt.), rknn/ (the RK3588 split: two NPU graphs + the numpy CPU stages), infer_cfg.yml
and .json, labels.txt, export_report.json, events.jsonl, export.log (converter output).

Every format is checked right after it is made, on a few real images, and the export fails (exit 3)
when a check is beyond tolerance:
- paddle: Paddle Inference runs the saved program; its detections match the eval-mode model's;
- onnx: raw outputs (logits, normalised boxes), queries paired, within max(1e-4, 3x the model's own
  rounding floor) of Paddle's (onnx_export.py says why), detections matched by IoU;
- onnx_fp16: detections matched against fp32 ONNX (IoU >= 0.9, |dscore| <= 0.05);
- onnx_int8: COCO AP and AP50 of model_int8.onnx vs model.onnx on the val split; fails when AP drops by
  more than int8_max_ap_drop (onnx_int8_step.py; which stages stay FP32 is measured there);
- rknn: the graphs hold no GridSample and no TopK; the rknn-toolkit2 simulator's detections match
  onnxruntime running the same split graphs (IoU >= 0.9, |dscore| <= 0.05 for FP16).

The folder is built under a temporary name and renamed when complete, so exports/<name>/ is always
a whole export; a failed export is kept as exports/<name>.failed/ (report and logs) for diagnosis.

RF-DETR (a source whose pipelines/ config or run says `backend: rfdetr`) goes to toolbox/rfdetr/export.py
(`_job_class`): the same driver, files and checks, with ONNX traced through rfdetr's own export path;
formats onnx (its default) and rknn (converted as far as rknn-toolkit2 goes, the CPU operators reported);
paddle, onnx-int8 and --fp16-onnx are usage errors for it.

Where things are: source.py (what is exported), job.py (the driver and what the steps share), one module
a format (paddle_export.py, onnx_export.py, onnx_int8_step.py, rknn_export.py), compare.py (how outputs are compared).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from ..errors import ToolboxError, UsageError
from ..fileio import recover_dir
from ..workspace import Workspace, record_job_output
from .job import VAL_LIMIT, ExportJob
from .source import Source, named_dataset, resolve_source  # noqa: F401 - Source is part of this module's API

FORMATS = ("paddle", "onnx", "onnx-int8", "rknn")
DEFAULT_FORMATS = {"paddle": ("paddle", "onnx"), "rfdetr": ("onnx",)}   # by Source.backend
RKNN_QUANT = ("fp16", "int8")


def export(run: str | None = None, weights: str = "best", model: str | None = None, num_classes: int | None = None,
           labels: str | os.PathLike | Sequence[str] | None = None, name: str | None = None,
           formats: Sequence[str] | str | None = None, input_size: int | None = None, fp16_onnx: bool = False,
           rknn_quant: str = "fp16", calib_size: int | None = None, workspace: str | os.PathLike | Workspace | None = None,
           samples: Sequence[str | os.PathLike] | None = None, draw_threshold: float = 0.5,
           val_limit: int | None = VAL_LIMIT, progress: bool = True, dataset: str | None = None,
           int8_max_ap_drop: float = 0.010) -> Path:
    """Export a run's checkpoint (or weights trained elsewhere) and return exports/<name>/.

    run + weights ('best' | 'last' | a .pdparams path), or model (a pipelines/ name or YAML) + weights
    (path or URL) + num_classes [+ labels: a file with one name a line, or a list]. `samples`: image
    files for the checks (default: the run's val images). `dataset`: a workspace dataset for calibration
    and accuracy images when the weights come without a run. `calib_size`: INT8 calibration images (default
    32 for rknn, 200 for onnx-int8). `formats` None: the family's default (RT-DETR paddle,onnx; RF-DETR
    onnx, the only format it has besides rknn). Raises ToolboxError subclasses (exit codes).
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if formats is not None:
        parse_formats(formats)  # a typo is a usage error before the source is even looked at
    if rknn_quant not in RKNN_QUANT:
        raise UsageError(f"--rknn-quant must be one of {', '.join(RKNN_QUANT)}, got '{rknn_quant}'")
    if calib_size is not None and calib_size < 1:
        raise UsageError(f"--calib-size must be >= 1, got {calib_size}")
    src = resolve_source(ws, run=run, weights=weights, model=model, num_classes=num_classes, labels=labels,
                         input_size=input_size)
    job_class = _job_class(src)
    fmts = parse_formats(formats if formats is not None else DEFAULT_FORMATS[src.backend])
    if src.backend == "rfdetr":
        from ..rfdetr.export import check_formats

        check_formats(fmts)
        if fp16_onnx:
            raise UsageError("--fp16-onnx is for the RT-DETR family for now; RF-DETR exports FP32 model.onnx")
        if rknn_quant == "int8":
            raise UsageError("--rknn-quant int8 is for the RT-DETR family; RF-DETR's RKNN attempt is FP16")
    if dataset:
        src.dataset_dir = named_dataset(ws, dataset)
    if "onnx-int8" in fmts and src.dataset_dir is None:
        raise UsageError("--formats onnx-int8 calibrates on a dataset's train split and checks AP on its val split: "
                         "pass --dataset NAME (weights given with --model have no run dataset)")
    name = name or src.default_name
    if not re.fullmatch(r"[\w][\w.+-]*", name) or name.endswith((".failed", ".old", ".tmp")):
        raise UsageError(f"export name '{name}' must be letters, digits, '_', '-', '.', '+' (no path, no "
                         f"reserved suffix .failed/.old/.tmp)")
    if "rknn" in fmts:
        from .rknn import require_rknn

        require_rknn()  # fail before the slow work, with the install command
        if rknn_quant == "int8" and src.dataset_dir is None:
            raise UsageError("--rknn-quant int8 calibrates on the training images of a run's dataset, and none "
                             "is known here: export from --run, or use --rknn-quant fp16")
    ws.exports.mkdir(parents=True, exist_ok=True)
    target = ws.exports / name
    recover_dir(target)
    record_job_output(ws, target)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=ws.exports))
    job = job_class(ws, src, name, fmts, staging, fp16_onnx=fp16_onnx, rknn_quant=rknn_quant, calib_size=calib_size,
                     samples=samples, draw_threshold=draw_threshold, val_limit=val_limit, progress=progress,
                     int8_max_ap_drop=int8_max_ap_drop)
    try:
        job.run()
    except BaseException as e:
        job.fail(e)
        failed = ws.exports / f"{name}.failed"
        shutil.rmtree(failed, ignore_errors=True)
        shutil.rmtree(staging / ".work", ignore_errors=True)
        os.replace(staging, failed)
        if isinstance(e, ToolboxError):
            raise type(e)(f"{e} (report and logs: {failed})", exit_code=e.exit_code) from e
        raise
    shutil.rmtree(staging / ".work", ignore_errors=True)
    _publish_modes(staging)
    old = target.with_name(target.name + ".old")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(ws.exports / f"{name}.failed", ignore_errors=True)
    return target


def _job_class(src: Source) -> type[ExportJob]:
    """The export driver of the source's family: RT-DETR's ExportJob, or RF-DETR's (toolbox/rfdetr/export.py)."""
    if src.backend == "rfdetr":
        from ..rfdetr.export import RfdetrExportJob

        return RfdetrExportJob
    return ExportJob


def _publish_modes(folder: Path) -> None:
    """Temporary files and folders are created private (0600/0700); an export is meant to be shared and
    served (web UI, SDK builds), so give it the usual modes under the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for p in folder.rglob("*"):
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


def parse_formats(formats: Sequence[str] | str) -> list[str]:
    items = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    items = [f.replace("_", "-") for f in items]
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise UsageError(f"unknown export format(s) {', '.join(bad) or '(none given)'}: choose from "
                         f"{', '.join(FORMATS)}, comma separated (e.g. --formats paddle,onnx,rknn)")
    if "onnx-int8" in items:
        items.append("onnx")  # the FP32 model.onnx is what INT8 is quantized from and checked against
    return [f for f in FORMATS if f in items]
