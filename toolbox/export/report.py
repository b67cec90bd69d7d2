"""`export_report.json`: for every format, the check it passed and the figures behind it.

Shape (schema_version 1):
{"schema_version": 1, "name", "created", "ok": bool, "source": {run, weights, model, num_classes, sampling},
 "io_convention": {...}, "formats": {"paddle"|"onnx"|"onnx_fp16"|"rknn": {"files": [...], "check": {...},
 "passed": bool, ...}}, "sampling_cost": {...} (RKNN only), "warnings": [...], "timings_s": {...}}
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from ..events import now_iso
from ..fileio import write_json

IO_CONVENTION = {
    "name": "RT-DETRv2 (images, orig_target_sizes) -> (labels, boxes, scores)",
    "paddle": "the Paddle static model has the same inputs and outputs as model.onnx (outputs in the order "
              "labels, boxes, scores; Paddle Inference calls them fetch_name_0..2). It is NOT "
              "PaddleDetection's (im_shape, image, scale_factor) -> (bbox [N*K,6], bbox_num) convention",
    "inputs": "images float32 [N,3,S,S] RGB /255; orig_target_sizes int64 [N,2] = (width, height)",
    "outputs": "labels int64 [N,K]; boxes float32 [N,K,4] xyxy original pixels clipped; scores float32 [N,K]",
}


class ExportReport:
    """Collects the checks of one export and writes them atomically."""

    def __init__(self, name: str, source: dict):
        import numpy
        import paddle

        self.data: dict[str, Any] = {
            "schema_version": 1, "name": name, "created": now_iso(), "ok": False, "source": source,
            "io_convention": IO_CONVENTION, "formats": {}, "warnings": [], "timings_s": {},
            "environment": {"python": platform.python_version(), "paddle": paddle.__version__,
                            "numpy": numpy.__version__, **_versions("paddle2onnx", "onnx", "onnxruntime")},
        }

    def format(self, fmt: str, **fields: Any) -> dict:
        entry = self.data["formats"].setdefault(fmt, {})
        entry.update(fields)
        return entry

    def warn(self, message: str) -> None:
        self.data["warnings"].append(message)

    def timing(self, step: str, seconds: float) -> None:
        self.data["timings_s"][step] = round(float(seconds), 2)

    def write(self, export_dir: str | os.PathLike, ok: bool) -> Path:
        self.data["ok"] = bool(ok)
        path = Path(export_dir) / "export_report.json"
        write_json(path, self.data)
        return path


def _versions(*names: str) -> dict:
    from importlib import metadata

    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out
