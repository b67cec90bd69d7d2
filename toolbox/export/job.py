"""One export job: the driver that runs each requested format's step in order, with progress and events.

Each format lives in its own module and is a function of the job (paddle_export, onnx_export,
rknn_export); the job holds what they share: the eval-mode model, its export form (fuse.py) wrapped for deploy, the sample
images preprocessed as every runtime sees them, and the model's reference outputs on them (raw
logits/boxes and final detections), which every format's check compares against.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import ToolboxError
from ..events import EventLog
from ..fileio import write_text
from ..workspace import Workspace
from . import compare
from .paddle_static import build_infer_cfg, write_infer_cfg
from .report import ExportReport
from .source import Source

NUM_SAMPLES = 4      # sample images every format is checked on (batch of the checks)
VAL_LIMIT = 200      # images of the val split for the sampling cost (RKNN)


class ExportJob:
    """One export: builds every requested format into `staging` (a temporary folder), checking each."""

    def __init__(self, ws: Workspace, src: Source, name: str, fmts: list[str], staging: Path, *, fp16_onnx: bool,
                 rknn_quant: str, calib_size: int | None, samples, draw_threshold: float, val_limit: int | None,
                 progress: bool, int8_max_ap_drop: float = 0.010):
        self.ws, self.src, self.name, self.fmts, self.dir = ws, src, name, fmts, staging
        self.work = staging / ".work"
        self.work.mkdir()
        self.log = staging / "export.log"
        self.fp16_onnx, self.rknn_quant, self.calib_size = fp16_onnx, rknn_quant, calib_size or 32
        self.int8_calib_size, self.int8_max_ap_drop = calib_size, int8_max_ap_drop   # None: onnx_int8's default
        self.sample_paths = samples
        self.draw_threshold = draw_threshold
        self.val_limit = val_limit
        self.progress = progress
        self.events = EventLog(staging / "events.jsonl")
        self.report = ExportReport(name, src.describe())
        self.stages: list[dict] = []
        self.bar = None

    def steps(self) -> list[tuple[str, object]]:
        """(name, callable) of every step this job runs, in order."""
        from .onnx_export import export_onnx, export_onnx_fp16
        from .onnx_int8_step import Int8Export
        from .paddle_export import export_paddle
        from .rknn_export import RknnExport

        steps = [("model", self.load_model), ("paddle", lambda: export_paddle(self))]
        if "onnx" in self.fmts:
            steps.append(("onnx", lambda: export_onnx(self)))
            if self.fp16_onnx:
                steps.append(("onnx_fp16", lambda: export_onnx_fp16(self)))
            if "onnx-int8" in self.fmts:
                steps.append(("onnx_int8", lambda: Int8Export(self, self.int8_max_ap_drop).run()))
        if "rknn" in self.fmts:
            steps.append(("rknn", lambda: RknnExport(self).run()))
        steps.append(("files", self.finish))
        return steps

    def run(self) -> None:
        steps = self.steps()
        self.events.write("start", name=self.name, formats=self.fmts, source=self.src.describe(),
                          total_steps=len(steps))
        from tqdm import tqdm

        self.bar = tqdm(total=len(steps), desc=f"export {self.name}", unit="step", disable=not self.progress,
                        dynamic_ncols=True)
        try:
            for i, (step, fn) in enumerate(steps):
                self.bar.set_postfix_str(step)
                t0 = time.time()
                fn()
                self.report.timing(step, time.time() - t0)
                self.events.write("log", step=i + 1, total_steps=len(steps), stage=step,
                                  seconds=round(time.time() - t0, 2))
                self.bar.update(1)
        finally:
            self.bar.close()
        self.report.write(self.dir, ok=True)
        self.events.end("ok", 0, None, export_dir=str(self.ws.exports / self.name))

    def fail(self, e: BaseException) -> None:
        code = e.exit_code if isinstance(e, ToolboxError) else (130 if isinstance(e, KeyboardInterrupt) else 3)
        status = "cancelled" if code == 130 else "failed"
        msg = str(e) or type(e).__name__
        self.report.data["error"] = msg
        try:
            self.report.write(self.dir, ok=False)
        finally:
            self.events.end(status, code, msg)

    def info(self, msg: str) -> None:
        if self.bar is not None and self.progress:
            self.bar.write(msg)

    def load_model(self) -> None:
        """Build the eval-mode model (`model`, wrapped as `reference`), its export form (`export_model`, wrapped
        as `deploy`: what the graphs are traced from) and the reference outputs every check compares to."""
        import paddle

        from ..models import DeployModel, build_model, load_weights
        from .fuse import fuse_for_export

        kwargs = dict(self.src.overrides)
        kwargs["input_size"] = self.src.input_size
        if self.src.sampling:
            kwargs["sampling"] = self.src.sampling
        paddle.set_device("cpu")
        self.model = build_model(self.src.model, self.src.num_classes, **kwargs)
        wrep = load_weights(self.model, self.src.weights)
        self.report.data["source"]["weights_report"] = {k: v for k, v in wrep.items()
                                                        if isinstance(v, (str, int, float, bool, type(None)))}
        self.model.eval()
        # every check compares against the model as trained (`reference`); the graphs written are traced
        # from its export form (`export_model`: RepVGG re-parameterised, batch norms folded, fuse.py)
        self.reference = DeployModel(self.model)
        self.export_model, fused = fuse_for_export(self.model)
        self.deploy = DeployModel(self.export_model)
        self.deploy.eval()
        self.report.data["graph_fusion"] = fused.to_dict()
        tr = self.model.transformer
        self.model_built(int(tr.num_queries), getattr(tr, "sampling", "grid"))
        with paddle.no_grad():
            logits, boxes = (t.numpy() for t in _raw(self.model, self.X))
            dets = self.reference(paddle.to_tensor(self.X), paddle.to_tensor(self.sizes))
        self.ref_raw = (logits, boxes)
        self.ref_dets = tuple(t.numpy() for t in dets)

    def model_built(self, num_queries: int, trained_sampling: str | None) -> None:
        """What every family's export derives once its model is loaded: the query and top-K counts, the
        infer_cfg fields, and the sample images (preprocessed as every runtime sees them) the checks use."""
        self.trained_sampling = trained_sampling
        self.num_queries = num_queries
        self.num_top = min(300, num_queries * self.src.num_classes)
        self.infer_cfg_base = dict(model_name=self.src.model_name, arch=self.src.arch, num_classes=self.src.num_classes,
                                   input_size=self.src.input_size, label_list=self.src.label_list,
                                   draw_threshold=self.draw_threshold, num_top=self.num_top,
                                   num_queries=num_queries, **self._preprocess_params())
        self.samples = self._samples()
        self.X, self.sizes = self._preprocess([im for _, im in self.samples])
        self.report.data["samples"] = [str(p) for p, _ in self.samples]

    def finish(self) -> None:
        write_text(self.dir / "labels.txt", "".join(f"{n}\n" for n in self.src.label_list))
        cfg = build_infer_cfg(sampling=self.trained_sampling, stages=self.stages, **self.infer_cfg_base)
        write_infer_cfg(self.dir, cfg)

    # ------------------------------------------------------------------ helpers
    def _preprocess_params(self) -> dict:
        """Normalisation and resize interpolation of the model's config (infer_cfg's preprocess)."""
        from ..models import load_config

        try:
            section = load_config(self.src.model).get("preprocess") or {}
        except Exception:  # noqa: BLE001 - a config without the section uses the RT-DETR default
            section = {}
        pre, resize = section.get("normalize") or {}, section.get("resize") or {}
        return {"mean": pre.get("mean"), "std": pre.get("std"), "interp": resize.get("interp")}

    def preprocess(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """RGB images -> (images [N,3,S,S] float32, orig_target_sizes [N,2]) as every runtime sees them."""
        return self._preprocess(images)

    def _preprocess(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        from .paddle_static import preprocess_ops
        from .runtime import normalize, resize

        base = self.infer_cfg_base
        cfg = {"preprocess": preprocess_ops(self.src.input_size, base["mean"], base["std"], base["interp"])}
        x = np.stack([normalize(resize(im, self.src.input_size, base["interp"]), cfg) for im in images])
        x = x.astype(np.float32)
        sizes = np.array([[im.shape[1], im.shape[0]] for im in images], np.int64)
        return x, sizes

    def _samples(self) -> list[tuple[str, np.ndarray]]:
        from .runtime import load_image

        paths = [Path(p) for p in self.sample_paths] if self.sample_paths else self.dataset_images("val", NUM_SAMPLES)
        if not paths:
            paths = self.dataset_images("train", NUM_SAMPLES)
        if not paths:  # weights from elsewhere, no dataset: the demo generator's images
            from ..data.demo import generate

            demo = generate(self.work / "demo", num_train=0, num_val=NUM_SAMPLES, image_size=self.src.input_size)
            paths = sorted((demo / "images").glob("*.jpg"))
            self.report.warn("no dataset known for these weights: the checks used synthetic demo images "
                             "(pass samples=[...] to use real ones)")
        return [(str(p), load_image(p)) for p in paths[:NUM_SAMPLES]]

    def dataset_images(self, split: str, n: int | None) -> list[Path]:
        """Up to n images of the source's dataset split (id order); [] when no dataset is known."""
        if not self.src.dataset_dir:
            return []
        import json

        ann = self.src.dataset_dir / "annotations" / f"instance_{split}.json"
        if not ann.is_file():
            return []
        images = json.loads(ann.read_text(encoding="utf-8")).get("images", [])
        out = []
        for im in sorted(images, key=lambda d: d["id"]):
            p = self.src.dataset_dir / "images" / im["file_name"]
            if not p.is_file():
                p = self.src.dataset_dir / im["file_name"]
            if p.is_file():
                out.append(p)
            if n is not None and len(out) >= n:
                break
        return out

    def match(self, ref, cand, tol: dict) -> dict:
        """Detections of two runtimes on the sample images, matched by IoU per image, merged (compare.py)."""
        per_image = [compare.match_detections(tuple(r[i] for r in ref), tuple(c[i] for c in cand), **tol)
                     for i in range(len(ref[0]))]
        return compare.merge(per_image).to_dict()



def _raw(model, x: np.ndarray):
    """pred_logits, pred_boxes of the eval-mode model on a preprocessed batch."""
    import paddle

    out = model(paddle.to_tensor(x))
    return out["pred_logits"], out["pred_boxes"]
