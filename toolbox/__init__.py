"""No-code toolbox for real-time DETR detectors on PaddlePaddle.

The Python API mirrors the CLI, one function a step (imported lazily, so `import toolbox` is cheap):

    toolbox.check(path, name=None, format="auto")      toolbox.convert(...)   toolbox.split(name, 80, 20)
    toolbox.train(dataset=..., model="RT-DETR-R18")     toolbox.evaluate(run=...)   toolbox.predict(inputs, run=...)
    toolbox.export(run=..., formats=("paddle", "onnx"))  toolbox.deploy(export=..., target="all")
    toolbox.build_model("RT-DETR-R18", num_classes=80)  toolbox.load_weights(model, path_or_url)
"""
from __future__ import annotations

import importlib
import os

__version__ = "0.1.0"

# Paddle sets OMP_NUM_THREADS=1 at import when it is unset; remember what the user asked for before that.
USER_OMP_NUM_THREADS = os.environ.get("OMP_NUM_THREADS")

_API = {
    "check": "toolbox.data.api",
    "convert": "toolbox.data.api",
    "split": "toolbox.data.api",
    "train": "toolbox.engine.api",
    "evaluate": "toolbox.engine.api",
    "predict": "toolbox.engine.api",
    "export": "toolbox.export.api",
    "deploy": "toolbox.deploy.api",
    "build_model": "toolbox.models",
    "load_weights": "toolbox.models",
    "Workspace": "toolbox.workspace",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'toolbox' has no attribute {name!r}")
