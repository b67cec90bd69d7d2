"""Detector demo of this SDK: runs the exported RT-DETR model on an image or a folder of images, prints the
detections as JSON and saves drawn images.

    python demo.py images/sample.png                 # CPU (or the GPU on a GPU SDK)
    python demo.py my_folder --out results --threshold 0.4 --device cpu

Everything it needs is in model/infer_cfg.json: preprocessing, label list, the model's inputs/outputs and
the stages to run (one ONNX graph, or NPU graph(s) + CPU parts on RK3588). It depends on numpy, OpenCV and
onnxruntime (or onnxruntime-gpu / rknn-toolkit-lite2), not on the toolbox that made it.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np

import rtdetr_cpu  # the CPU stages of the RK3588 split (numpy), copied from the export

HERE = Path(__file__).resolve().parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
RESIZED_U8 = "_resized_uint8_nhwc"
# infer_cfg's Resize `interp` names (RT-DETR: cubic, RT-DETRv2: linear) → OpenCV flags
INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA,
                  "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}


def load_config(model_dir: Path) -> dict:
    """infer_cfg.json, with defaults for the keys the demo needs."""
    path = model_dir / "infer_cfg.json"
    if not path.is_file():
        sys.exit(f"error: {path} not found (pass --model-dir, the folder holding infer_cfg.json)")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    size = cfg.get("input_size", 640)
    scale, mean, std, interp = 1 / 255.0, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], "cubic"
    for op in cfg.get("preprocess", []):
        kind, args = (op["type"], op) if "type" in op else next(iter(op.items()))
        if kind == "Resize":
            size = args.get("target_size", size)
            interp = str(args.get("interp", interp)).lower()
            if interp not in INTERPOLATIONS:
                sys.exit(f"error: {path}: preprocess Resize interp '{interp}' is not one of "
                         f"{', '.join(INTERPOLATIONS)}")
        elif kind in ("Normalize", "NormalizeImage"):
            scale = _number(args.get("scale", scale))
            mean, std = args.get("mean", mean), args.get("std", std)
    stages = [s for s in cfg.get("stages", []) if s.get("runtime") != "paddle"]
    if not stages:
        stages = [{"file": "model.onnx", "runtime": "onnxruntime",
                   "inputs": ["images", "orig_target_sizes"], "outputs": ["labels", "boxes", "scores"]}]
    return {"size": int(size[-1] if isinstance(size, (list, tuple)) else size), "scale": float(scale),
            "interp": INTERPOLATIONS[interp],
            "mean": np.asarray(mean, np.float32), "std": np.asarray(std, np.float32),
            "labels": list(cfg.get("label_list", [])), "threshold": float(cfg.get("draw_threshold", 0.5)),
            "stages": stages}


def _number(v) -> float:
    if isinstance(v, str) and "/" in v:
        a, b = v.split("/", 1)
        return float(a) / float(b)
    return float(v)


def _names(items) -> list[str]:
    return [i["name"] if isinstance(i, dict) else str(i) for i in items]


def preprocess(image_rgb: np.ndarray, cfg: dict) -> dict[str, np.ndarray]:
    """SxS resize (aspect not kept) with infer_cfg's interpolation, scale/normalise, HWC→CHW: the model's
    two inputs."""
    h, w = image_rgb.shape[:2]
    s = cfg["size"]
    resized = cv2.resize(image_rgb, (s, s), interpolation=cfg.get("interp", cv2.INTER_CUBIC))
    x = (resized.astype(np.float32) * cfg["scale"] - cfg["mean"]) / cfg["std"]
    return {"images": np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32),
            "orig_target_sizes": np.array([[w, h]], dtype=np.int64),
            RESIZED_U8: resized[None]}  # what an NPU graph with Normalize folded in takes (uint8 NHWC)


class Pipeline:
    """Runs infer_cfg's stages in order on a dict of named arrays.

    onnxruntime stages use onnxruntime (CUDA first when `device` is gpu), rknn stages use RKNNLite on an
    RK3588 board and fall back to their ONNX twin on the CPU elsewhere, cpu stages use rtdetr_cpu.py.
    """

    def __init__(self, model_dir: Path, cfg: dict, device: str = "cpu"):
        self.model_dir, self.cfg, self.device = model_dir, cfg, device
        self.runners = [self._runner(s) for s in cfg["stages"]]

    def _runner(self, stage: dict):
        runtime = stage.get("runtime", "onnxruntime")
        if runtime == "cpu":
            return _cpu_runner(stage)
        if runtime == "rknn":
            rknn = _rknn_runner(self.model_dir / stage["file"], stage)
            if rknn is not None:
                return rknn
            twin = stage.get("onnx")
            if not twin:
                sys.exit(f"error: stage {stage['file']} needs the RKNN runtime and has no ONNX twin")
            return _ort_runner(self.model_dir / twin, "cpu", stage)
        return _ort_runner(self.model_dir / stage["file"], self.device, stage)

    def __call__(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for run in self.runners:
            tensors.update(run(tensors))
        return tensors


def _cpu_runner(stage: dict):
    fn = getattr(rtdetr_cpu, stage["function"], None)
    if fn is None:
        sys.exit(f"error: unknown cpu function '{stage['function']}' in stage '{stage.get('name')}'")
    ins, outs, args = _names(stage["inputs"]), _names(stage["outputs"]), stage.get("args", {})
    return lambda t: dict(zip(outs, fn(*(t[n] for n in ins), **args)))


def _ort_runner(path: Path, device: str, stage: dict):
    """onnxruntime session; the stage's input/output names map to the graph's by position (exporters
    may name graph outputs after internal variables)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device == "gpu":
        if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* pip packages, when installed
            try:
                ort.preload_dlls()
            except Exception:  # noqa: BLE001 - system-wide CUDA is fine too
                pass
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            warnings.warn("this onnxruntime has no CUDA execution provider (pip install onnxruntime-gpu); "
                          "running on the CPU", stacklevel=2)
    session = ort.InferenceSession(str(path), providers=providers)
    if device == "gpu" and session.get_providers()[0] != "CUDAExecutionProvider":
        warnings.warn("CUDA execution provider could not start (needs CUDA 13 and cuDNN 9, see README); "
                      "running on the CPU", stacklevel=2)
    graph_in = session.get_inputs()
    stage_in = _names(stage.get("inputs", [])) or [i.name for i in graph_in]
    graph_out = [o.name for o in session.get_outputs()]
    stage_out = _names(stage.get("outputs", [])) or graph_out

    def run(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {}
        for g, name in zip(graph_in, stage_in):
            if name not in t:
                sys.exit(f"error: {path.name} needs input '{name}', which no earlier stage produced")
            feed[g.name] = t[name].astype(np.int64 if "int64" in g.type else np.float32, copy=False)
        return dict(zip(stage_out, session.run(graph_out, feed)))

    return run


def _rknn_runner(path: Path, stage: dict):
    """RKNNLite on an RK3588 board (NPU); None where the runtime or the NPU is not there."""
    try:
        from rknnlite.api import RKNNLite
    except ImportError:
        warnings.warn("rknn-toolkit-lite2 is not installed: the NPU stage runs on the CPU with onnxruntime",
                      stacklevel=2)
        return None
    try:
        rknn = RKNNLite(verbose=False)
        if rknn.load_rknn(str(path)) != 0:
            raise RuntimeError(f"load_rknn({path.name}) failed")
        if rknn.init_runtime(core_mask=RKNNLite.NPU_CORE_AUTO) != 0:
            raise RuntimeError("init_runtime failed")
    except Exception as e:  # noqa: BLE001 - no NPU (not a board, container without /dev/dri): fall back
        warnings.warn(f"RKNN runtime unavailable ({e}): the NPU stage runs on the CPU with onnxruntime",
                      stacklevel=2)
        return None
    ins, outs = stage.get("inputs", []), _names(stage.get("outputs", []))

    def run(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = []
        for i in ins:
            name = i["name"] if isinstance(i, dict) else i
            uint8_image = isinstance(i, dict) and i.get("dtype") == "uint8" and i.get("layout") == "NHWC"
            feed.append(np.ascontiguousarray(t[RESIZED_U8] if uint8_image else t[name]))
        got = rknn.inference(inputs=feed)
        return {n: np.asarray(v) for n, v in zip(outs, got)}

    return run


def detections(t: dict[str, np.ndarray], labels: list[str], threshold: float) -> list[dict]:
    """Batch-of-one outputs labels [1,K], boxes [1,K,4], scores [1,K] → list, best first (the same keys as
    `python -m toolbox predict`: cls_id, label, score, coordinate = x1, y1, x2, y2 in pixels)."""
    scores, cls, boxes = t["scores"][0], t["labels"][0].astype(np.int64), t["boxes"][0]
    keep = np.nonzero(scores >= threshold)[0]
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return [{"cls_id": int(cls[i]), "label": labels[cls[i]] if 0 <= cls[i] < len(labels) else str(cls[i]),
             "score": float(scores[i]), "coordinate": [float(v) for v in boxes[i]]} for i in keep]


def draw(image_bgr: np.ndarray, dets: list[dict]) -> np.ndarray:
    out = image_bgr.copy()
    thick = max(2, min(out.shape[:2]) // 300)
    for d in dets:
        hue = (d["cls_id"] * 0.618033988749895) % 1.0
        color = cv2.cvtColor(np.uint8([[[int(hue * 180), 217, 242]]]), cv2.COLOR_HSV2BGR)[0, 0].tolist()
        x1, y1, x2, y2 = (int(round(v)) for v in d["coordinate"])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        name = d["label"] if d["label"].isascii() else f"#{d['cls_id']}"  # OpenCV fonts have no CJK glyphs
        text = f"{name} {d['score']:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = y1 - th - base if y1 - th - base >= 0 else y1
        cv2.rectangle(out, (x1, ty), (x1 + tw + 4, ty + th + base), color, -1)
        cv2.putText(out, text, (x1 + 2, ty + th), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def list_images(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return files
        sys.exit(f"error: no .jpg/.jpeg/.png/.bmp images in {path}")
    sys.exit(f"error: no such image or folder: {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input", type=Path, help="an image or a folder of images")
    p.add_argument("--model-dir", type=Path, default=HERE / "model", help="folder with infer_cfg.json (default: model)")
    p.add_argument("--out", type=Path, default=Path("output"), help="drawn images and results.json (default: output)")
    p.add_argument("--threshold", type=float, default=None, help="minimum score (default: draw_threshold of infer_cfg)")
    p.add_argument("--device", choices=("cpu", "gpu"), default=DEFAULT_DEVICE)
    args = p.parse_args(argv)
    cfg = load_config(args.model_dir)
    threshold = cfg["threshold"] if args.threshold is None else args.threshold
    pipe = Pipeline(args.model_dir, cfg, args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in list_images(args.input):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            sys.exit(f"error: cannot read image {path}")
        t = pipe(preprocess(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), cfg))
        dets = detections(t, cfg["labels"], threshold)
        results.append({"input_path": path.as_posix(), "width": bgr.shape[1], "height": bgr.shape[0], "boxes": dets})
        vis = args.out / f"{path.stem}.jpg"
        cv2.imwrite(str(vis), draw(bgr, dets))
        print(f"{path.name}: {len(dets)} detections -> {vis}", file=sys.stderr)
    text = json.dumps(results, ensure_ascii=False)
    (args.out / "results.json").write_text(text, encoding="utf-8")
    print(text)
    return 0


DEFAULT_DEVICE = "cpu"  # the GPU SDKs set "gpu" here

if __name__ == "__main__":
    sys.exit(main())
