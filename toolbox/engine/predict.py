"""Prediction on images, folders and videos, with a Paddle model or an export folder (ONNX Runtime).

Each input gives one JSON in PaddleX's detection result shape,
`{"input_path": ..., "boxes": [{"cls_id", "label", "score", "coordinate": [x1, y1, x2, y2]}]}`
(videos: `{"input_path", "fps", "frames": [{"frame_index", "boxes"}]}`), plus a drawn image (or video).
Both back ends take RGB uint8 images and return (labels, boxes xyxy in original pixels, scores), using
the same preprocessing as training's evaluation and the exported model: SxS resize with the model's
interpolation (a Paddle model: its config's `preprocess`; an export: infer_cfg.yml's), then normalised.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from ..errors import InputError, RuntimeFailure, UsageError
from ..data.transforms import interpolation
from ..fileio import write_json

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class PaddlePredictor:
    """A dygraph RT-DETR (eval mode) with its label list and input size."""

    def __init__(self, model, label_list: Sequence[str], input_size: int):
        self.model, self.label_list, self.input_size = model, list(label_list), int(input_size)
        self.model.eval()

    def __call__(self, images: Sequence[np.ndarray]):
        from ..data.transforms import model_interpolation, resize_image
        from .evaluate import predict_batch

        interp = model_interpolation(self.model)
        batch = np.stack([resize_image(im, self.input_size, interp) for im in images])
        sizes = np.array([[im.shape[1], im.shape[0]] for im in images], np.int64)
        return predict_batch(self.model, batch, sizes)


class OnnxPredictor:
    """An export folder's model.onnx on ONNX Runtime, preprocessed as its infer_cfg.yml says."""

    def __init__(self, export_dir: str | Path):
        import yaml

        self.dir = Path(export_dir)
        cfg_path = self.dir / "infer_cfg.yml"
        if not cfg_path.is_file():
            raise InputError(f"{self.dir}: infer_cfg.yml is missing; is this an export folder "
                             f"(`python -m toolbox export --run RUN`)?")
        self.cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        onnx_path = self.dir / "model.onnx"
        if not onnx_path.is_file():
            raise InputError(f"{self.dir}: model.onnx is missing; export with --formats onnx")
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise RuntimeFailure("onnxruntime is not installed: pip install onnxruntime") from e
        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.label_list = list(self.cfg.get("label_list") or [])
        self.input_size = int(self.cfg.get("input_size") or 640)
        self.preprocess = list(self.cfg.get("preprocess") or [])
        self.draw_threshold = float(self.cfg.get("draw_threshold", 0.5))

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        x = image
        chw = False
        for step in self.preprocess:
            kind, args = _step(step)
            if kind == "Resize":
                ts = args.get("target_size", self.input_size)
                h, w = (ts, ts) if isinstance(ts, int) else (int(ts[0]), int(ts[1]))
                try:
                    interp = interpolation(args.get("interp", "cubic"))
                except ValueError as e:
                    raise InputError(f"{self.dir / 'infer_cfg.yml'}: preprocess Resize: {e}") from None
                x = cv2.resize(x, (w, h), interpolation=interp)
            elif kind == "Normalize":
                x = x.astype(np.float32) * np.float32(args.get("scale", 1 / 255.0))
                mean = np.asarray(args.get("mean", [0, 0, 0]), np.float32)
                std = np.asarray(args.get("std", [1, 1, 1]), np.float32)
                x = (x - mean) / std
            elif kind == "Permute":
                x = x.transpose(2, 0, 1)
                chw = True
        if not chw:
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x, dtype=np.float32)

    def __call__(self, images: Sequence[np.ndarray]):
        batch = np.stack([self._prepare(im) for im in images])
        sizes = np.array([[im.shape[1], im.shape[0]] for im in images], np.int64)
        names = [i.name for i in self.session.get_inputs()]
        feeds = {"images": batch, "orig_target_sizes": sizes}
        out = self.session.run(["labels", "boxes", "scores"], {n: feeds[n] for n in names})
        return out[0], out[1], out[2]


def _step(step: Any) -> tuple[str, dict]:
    """A preprocess entry as `{Resize: {...}}`, `{type: Resize, ...}` or a bare name → (name, args)."""
    if isinstance(step, dict):
        if "type" in step:
            return str(step["type"]), step
        if len(step) == 1:
            kind, args = next(iter(step.items()))
            return str(kind), args if isinstance(args, dict) else {}
    return str(step), {}


class ExportPredictor:
    """Adapter over the export step's runtime (toolbox.export.runtime.Predictor): the same call shape as
    the Paddle predictor here, any backend an export folder offers (onnxruntime, onnxruntime-fp16, paddle,
    rknn-onnx)."""

    def __init__(self, export_dir: str | Path, backend: str = "onnxruntime"):
        from ..export.runtime import Predictor

        self.inner = Predictor(export_dir, backend=backend)
        self.label_list = list(self.inner.label_list)
        self.input_size = self.inner.input_size

    def __call__(self, images: Sequence[np.ndarray]):
        res = self.inner.predict(list(images))
        return [r["labels"] for r in res], [r["boxes"] for r in res], [r["scores"] for r in res]


def export_predictor(export_dir: str | Path, backend: str = "onnxruntime"):
    """The export step's runtime when it is installed; else this module's ONNX Runtime path (onnxruntime)."""
    try:
        import toolbox.export.runtime  # noqa: F401
    except ImportError:
        if backend != "onnxruntime":
            raise UsageError(f"backend {backend} needs toolbox.export.runtime, which is not available")
        return OnnxPredictor(export_dir)
    return ExportPredictor(export_dir, backend)


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files, folders (their images and videos, sorted, not recursive) → a list of files."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
            if not found:
                raise InputError(f"{p}: no images or videos in this folder "
                                 f"({', '.join(sorted(IMAGE_EXTS | VIDEO_EXTS))})")
            files.extend(found)
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_EXTS | VIDEO_EXTS:
                raise InputError(f"{p}: not an image or video file (by its extension)")
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    return files


def boxes_json(labels, boxes, scores, label_list: Sequence[str], threshold: float) -> list[dict[str, Any]]:
    """One image's detections above `threshold`, best first, as PaddleX result boxes."""
    out = []
    order = np.argsort(-np.asarray(scores), kind="stable")
    for k in order:
        s = float(scores[k])
        if s < threshold:
            break
        c = int(labels[k])
        out.append({"cls_id": c, "label": label_list[c] if 0 <= c < len(label_list) else str(c),
                    "score": round(s, 6), "coordinate": [round(float(v), 2) for v in boxes[k]]})
    return out


def _draw(image_rgb: np.ndarray, dets: list[dict], label_list: Sequence[str]) -> np.ndarray:
    from PIL import Image

    from ..draw import draw_boxes

    img = draw_boxes(Image.fromarray(image_rgb), [d["coordinate"] for d in dets], [d["cls_id"] for d in dets],
                     list(label_list), [d["score"] for d in dets])
    return np.asarray(img)


def read_image(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{path}: cannot be decoded as an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def run(predictor, files: Sequence[Path], out_dir: Path, threshold: float, video_stride: int = 1,
        progress: bool = True) -> list[dict]:
    """Predict every file; writes <stem>.json and a drawn <stem>.jpg/.mp4 into out_dir; returns the results."""
    out_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    results = []
    bar = None
    if progress and len(files) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(files), desc="predict", unit="file", leave=False)
    for f in files:
        stem = f.stem
        i = 1
        while stem in used:
            i += 1
            stem = f"{f.stem}_{i}"
        used.add(stem)
        if f.suffix.lower() in VIDEO_EXTS:
            res = _video(predictor, f, out_dir, stem, threshold, max(1, int(video_stride)))
        else:
            image = read_image(f)
            labels, boxes, scores = predictor([image])
            dets = boxes_json(labels[0], boxes[0], scores[0], predictor.label_list, threshold)
            vis = out_dir / f"{stem}.jpg"
            cv2.imwrite(str(vis), cv2.cvtColor(_draw(image, dets, predictor.label_list), cv2.COLOR_RGB2BGR))
            res = {"input_path": str(f), "page_index": None, "boxes": dets, "vis_path": str(vis)}
        res["json_path"] = str(out_dir / f"{stem}.json")
        write_json(res["json_path"], {k: v for k, v in res.items() if k != "json_path"})
        results.append(res)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    write_json(out_dir / "results.json", {"schema_version": 1, "threshold": threshold,
                                          "label_list": predictor.label_list, "results": results})
    return results


def _video(predictor, path: Path, out_dir: Path, stem: str, threshold: float, stride: int) -> dict:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"{path}: cannot be opened as a video (codec not supported by OpenCV?)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    vis = out_dir / f"{stem}.mp4"
    writer = None
    frames = []
    index = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if index % stride == 0:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                labels, boxes, scores = predictor([rgb])
                dets = boxes_json(labels[0], boxes[0], scores[0], predictor.label_list, threshold)
                frames.append({"frame_index": index, "boxes": dets})
                drawn = cv2.cvtColor(_draw(rgb, dets, predictor.label_list), cv2.COLOR_RGB2BGR)
                if writer is None:
                    h, w = drawn.shape[:2]
                    writer = cv2.VideoWriter(str(vis), cv2.VideoWriter_fourcc(*"mp4v"), fps / stride, (w, h))
                writer.write(drawn)
            index += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if not frames:
        raise InputError(f"{path}: no frame could be decoded")
    return {"input_path": str(path), "fps": fps, "frame_count": index, "frames": frames, "vis_path": str(vis)}


def check_threshold(threshold: float) -> float:
    if not 0.0 <= float(threshold) <= 1.0:
        raise UsageError(f"--threshold must be within [0, 1], got {threshold}")
    return float(threshold)
