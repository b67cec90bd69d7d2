"""Running an export folder: the predictor behind `predict --export`, the parity checks and benchmarks.

It reads everything from `infer_cfg.yml` (input size, preprocessing, label list, and `stages`: the
ordered graphs of each format), so it runs exactly what an SDK demo runs:

    backend "onnxruntime"        model.onnx                                 (stages of format onnx)
    backend "onnxruntime-fp16"   model_fp16.onnx                            (format onnx_fp16)
    backend "onnxruntime-int8"   model_int8.onnx                            (format onnx_int8)
    backend "paddle"             paddle/model.json with Paddle Inference    (format paddle)
    backend "rknn-onnx"          the RK3588 split run on the CPU: the NPU stages' ONNX graphs
                                 (rknn/*.onnx, what rknn-toolkit2 was given) in onnxruntime and the
                                 CPU stages from rtdetr_cpu.py          (format rknn)

Images are RGB uint8 HWC arrays (use `load_image` for files: EXIF orientation applied).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, RuntimeFailure
from . import rtdetr_cpu
from .paddle_static import read_infer_cfg

BACKENDS = {"onnxruntime": "onnx", "onnxruntime-fp16": "onnx_fp16", "onnxruntime-int8": "onnx_int8", "paddle": "paddle",
            "rknn-onnx": "rknn"}


def load_image(path: str | os.PathLike) -> np.ndarray:
    """An image file -> RGB uint8 [H,W,3], upright (EXIF orientation applied)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (FileNotFoundError, UnidentifiedImageError, OSError) as e:
        raise InputError(f"cannot read image {path}: {e}") from e


def resize(image: np.ndarray, size: int, interp: str | int | None = None) -> np.ndarray:
    """RGB uint8 [H,W,3] -> [size,size,3] uint8, aspect ratio not kept (the export's Resize), with the
    infer_cfg Resize's `interp` (None = cubic, RT-DETR's)."""
    import cv2

    from ..data.transforms import interpolation

    return cv2.resize(np.ascontiguousarray(image), (int(size), int(size)), interpolation=interpolation(interp))


def resize_interp(cfg: dict) -> str | int | None:
    """The interpolation named by infer_cfg's Resize op (None when it names none)."""
    return next((op["Resize"].get("interp") for op in cfg.get("preprocess", []) if "Resize" in op), None)


def normalize(resized: np.ndarray, cfg: dict) -> np.ndarray:
    """Resized RGB uint8 [S,S,3] -> float32 [3,S,S] following infer_cfg's Normalize and Permute."""
    norm = next((op["Normalize"] for op in cfg["preprocess"] if "Normalize" in op), {})
    x = resized.astype(np.float32) * np.float32(norm.get("scale", 1.0 / 255.0))
    mean = np.asarray(norm.get("mean", [0, 0, 0]), np.float32)
    std = np.asarray(norm.get("std", [1, 1, 1]), np.float32)
    if np.any(mean != 0) or np.any(std != 1):
        x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class StageRunner:
    """Executes one format's `stages` in order over a dict of named arrays."""

    def __init__(self, export_dir: Path, stages: list[dict], use_onnx_for_rknn: bool = True,
                 threads: int | None = None):
        self.export_dir = export_dir
        self.stages = stages
        self.threads = threads
        self._sessions: dict[str, Any] = {}
        self.use_onnx_for_rknn = use_onnx_for_rknn

    def _session(self, stage: dict):
        key = stage["name"]
        if key not in self._sessions:
            rt = stage["runtime"]
            if rt == "onnxruntime" or (rt == "rknn" and self.use_onnx_for_rknn):
                from .onnx import session

                self._sessions[key] = session(self.export_dir / stage["onnx" if rt == "rknn" else "file"], self.threads)
            elif rt == "paddle":
                self._sessions[key] = paddle_predictor(self.export_dir / stage["file"],
                                                      self.export_dir / stage["params"], self.threads)
            else:
                raise RuntimeFailure(f"stage '{key}' needs runtime '{rt}', which cannot run here "
                                     f"(an RK3588 board runs .rknn files; use backend 'rknn-onnx' on a PC)")
        return self._sessions[key]

    def run(self, env: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for stage in self.stages:
            names_in = [i["name"] for i in stage["inputs"]]
            names_out = [o["name"] for o in stage["outputs"]]
            missing = [n for n in names_in if n not in env]
            if missing:
                raise RuntimeFailure(f"stage '{stage['name']}' needs {missing}, produced by no earlier stage "
                                     f"(infer_cfg.yml stages are inconsistent: re-export)")
            if stage["runtime"] == "cpu":
                fn = getattr(rtdetr_cpu, stage["function"])
                outs = fn(*[env[n] for n in names_in], **stage.get("args", {}))
            elif stage["runtime"] == "paddle":
                outs = run_paddle(self._session(stage), [env[n] for n in names_in])
            else:
                sess = self._session(stage)
                feeds = {i.name: env[n] for i, n in zip(sess.get_inputs(), names_in)}
                outs = sess.run(None, feeds)
            env.update(zip(names_out, outs))
        return env


def paddle_predictor(program: Path, params: Path, threads: int | None = None):
    """A Paddle Inference predictor on CPU. oneDNN is off: on Paddle 3.3.1 RT-DETR programs fail with
    `ConvertPirAttribute2RuntimeAttribute not support` when it is on."""
    from paddle import inference

    config = inference.Config(str(program), str(params))
    config.disable_gpu()
    config.disable_mkldnn()
    config.disable_glog_info()
    if threads:
        config.set_cpu_math_library_num_threads(int(threads))
    return inference.create_predictor(config)


def run_paddle(predictor, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    for name, arr in zip(predictor.get_input_names(), inputs):
        handle = predictor.get_input_handle(name)
        handle.reshape(list(arr.shape))
        handle.copy_from_cpu(np.ascontiguousarray(arr))
    predictor.run()
    return [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]


class Predictor:
    """Loads an export folder and predicts detections on RGB images.

    predict(images) -> one dict per image: labels int64 [K], boxes float32 [K,4] xyxy original pixels,
    scores float32 [K] (K = 300, best first; filter with `threshold` or infer_cfg's draw_threshold).
    """

    def __init__(self, export_dir: str | os.PathLike, backend: str = "onnxruntime", threads: int | None = None):
        self.export_dir = Path(export_dir)
        self.cfg = read_infer_cfg(self.export_dir)
        if backend not in BACKENDS:
            raise InputError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
        fmt = BACKENDS[backend]
        stages = [s for s in self.cfg["stages"] if s.get("format") == fmt]
        if not stages:
            have = sorted({s.get("format") for s in self.cfg["stages"]})
            raise InputError(f"{self.export_dir} has no '{fmt}' model (formats: {', '.join(have)}); "
                             f"re-export with --formats including it")
        self.backend = backend
        self.runner = StageRunner(self.export_dir, stages, threads=threads)
        self.input_size = int(self.cfg["input_size"])
        self.label_list = list(self.cfg["label_list"])
        self.draw_threshold = float(self.cfg.get("draw_threshold", 0.5))
        self.batch = 1 if fmt == "rknn" else 8  # the RKNN graphs have a fixed batch of 1

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 [H,W,3] -> (images float32 [3,S,S], orig_target_sizes int64 [2] (w, h))."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"expected an RGB image [H,W,3], got shape {image.shape}")
        h, w = image.shape[:2]
        return normalize(resize(image, self.input_size, resize_interp(self.cfg)), self.cfg), np.array([w, h], np.int64)

    def run_arrays(self, images: np.ndarray, sizes: np.ndarray) -> dict[str, np.ndarray]:
        """Batch run on preprocessed inputs; returns every named tensor the stages produced."""
        return self.runner.run({"images": images, "orig_target_sizes": sizes})

    def predict(self, images: Sequence[np.ndarray], threshold: float | None = None) -> list[dict]:
        results: list[dict] = []
        for start in range(0, len(images), self.batch):
            chunk = [self.preprocess(im) for im in images[start:start + self.batch]]
            env = self.run_arrays(np.stack([c[0] for c in chunk]), np.stack([c[1] for c in chunk]))
            for i in range(len(chunk)):
                keep = slice(None) if threshold is None else env["scores"][i] >= threshold
                results.append({"labels": env["labels"][i][keep], "boxes": env["boxes"][i][keep],
                                "scores": env["scores"][i][keep]})
        return results
