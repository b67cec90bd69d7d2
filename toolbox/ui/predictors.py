"""Predict in the app process without reloading the model each time, and without filling the disk.

Loading a model costs seconds on a small CPU (building the network, reading the weights, or opening an
ONNX Runtime session), while one picture takes a fraction of that; so the app keeps the two most
recently used predictors loaded, keyed by what they were made from (run or export, checkpoint file and
its modification time, device), and a retrained checkpoint is loaded afresh. Each call still writes its
drawn picture and JSON, under predictions/<kind>-<name>/<time>/, and only the newest KEEP_PER_MODEL of
those folders are kept per model.
"""
from __future__ import annotations

import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Hashable

from ..engine import predict as engine_predict
from ..engine.api import load_model_for_inference
from ..errors import UsageError
from ..workspace import Workspace

CACHE_SIZE = 2
KEEP_PER_MODEL = 20


class PredictorCache:
    """The `size` most recently used predictors, by key; `get` loads a missing one (thread-safe)."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], Any]) -> tuple[Any, bool]:
        """(predictor, True when it was already loaded)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key], True
        predictor = load()  # outside the lock: another model may be served meanwhile
        with self._lock:
            self._items[key] = predictor
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return predictor, False

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)


@dataclass
class Source:
    """What a prediction runs with: a run's checkpoint (Paddle) or an export's model.onnx (ONNX Runtime)."""

    kind: str    # run | export
    name: str
    folder: Path
    weights: Path
    device: str = "cpu"

    @property
    def key(self) -> tuple:
        return (self.kind, str(self.folder), str(self.weights), self.weights.stat().st_mtime_ns, self.device)

    @property
    def slug(self) -> str:
        return f"{self.kind}-{self.folder.name}"


def _is_rfdetr(run_folder: Path) -> bool:
    from ..rfdetr.dispatch import family_of_run_dir

    return family_of_run_dir(run_folder) == "rfdetr"


def find_source(ws: Workspace, kind: str, name: str, checkpoint: str = "best", device: str = "cpu") -> Source:
    """The run's checkpoint file (best, else last) or the export's model.onnx."""
    if kind == "export":
        folder = ws.export_dir(name)
        return Source(kind, name, folder, folder / "model.onnx", device)
    if kind != "run":
        raise UsageError(f"unknown source kind '{kind}': use run:NAME or export:NAME")
    folder = ws.run_dir(name)
    if _is_rfdetr(folder):  # RF-DETR runs keep rfdetr's model.pth in the same two folders
        from ..rfdetr.predict import checkpoint_file

        return Source(kind, name, folder, checkpoint_file(folder, checkpoint), device)
    from ..engine.checkpoint import PARAMS, resolve  # Paddle: loaded on the first prediction, not at start-up

    for which in ([checkpoint, "last"] if checkpoint == "best" else [checkpoint]):
        ck = folder / "checkpoints" / which
        if (ck / PARAMS).is_file():
            return Source(kind, name, folder, resolve(ck) / PARAMS, device)
    raise UsageError(f"run '{name}' has no '{checkpoint}' checkpoint yet ({folder / 'checkpoints'})")


def load_predictor(ws: Workspace, source: Source):
    """A fresh predictor for `source`, through the engine's own loaders."""
    from ..engine.distributed import setup_device

    if source.kind == "export":
        return engine_predict.export_predictor(source.folder, "onnxruntime")
    if _is_rfdetr(source.folder):
        from ..rfdetr.predict import predictor

        return predictor(run=source.name, model=None, weights=str(source.weights), workspace=ws,
                         device=source.device)
    setup_device(source.device, amp=False)
    net, labels, size, _path, _cfg = load_model_for_inference(run=source.name, model=None,
                                                              weights=str(source.weights), workspace=ws)
    return engine_predict.PaddlePredictor(net, labels, size)


def new_output_dir(ws: Workspace, source: Source, keep: int = KEEP_PER_MODEL) -> Path:
    """predictions/<kind>-<name>/<time>/ for this call, after deleting all but the newest keep-1 older ones."""
    base = ws.root / "predictions" / source.slug
    base.mkdir(parents=True, exist_ok=True)
    old = sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    stamp = f"{datetime.now():%Y%m%d-%H%M%S-%f}"
    out = base / stamp
    while out.exists():  # two calls within a microsecond
        time.sleep(0.001)
        out = base / f"{datetime.now():%Y%m%d-%H%M%S-%f}"
    out.mkdir()
    return out


def predict_one(ws: Workspace, cache: PredictorCache, source: Source, image: Path,
                threshold: float) -> tuple[dict, bool, float]:
    """(result for the image, whether the model was already loaded, seconds spent loading it)."""
    t0 = time.perf_counter()
    predictor, reused = cache.get(source.key, lambda: load_predictor(ws, source))
    load_s = 0.0 if reused else time.perf_counter() - t0
    out = new_output_dir(ws, source)
    results = engine_predict.run(predictor, [image], out, engine_predict.check_threshold(threshold), progress=False)
    return results[0], reused, load_s
