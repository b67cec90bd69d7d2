"""The configuration of an RF-DETR run (runs/<run>/config.yaml), in the toolbox's section layout.

Same sections and key names as an RT-DETR run (model, data, train) where the meaning is the same, so the
UI's Runs page, plan and curves read both; `model.backend: rfdetr` marks the family. Defaults: the
toolbox's schedule keys (eval/save/log intervals, seed, workers), then the pipelines/ file's `train:`
recipe (rfdetr's TrainConfig defaults), then the options given, then `-o train.KEY=VALUE` overrides, where
KEY may also be any field of rfdetr's TrainConfig (passed through to it unchanged).
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

from ..errors import UsageError

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 100,
    "max_steps": None,
    "batch_size": 4,
    "grad_accum_steps": 4,        # rfdetr's docs: batch x accumulation = 16
    "lr": 1.0e-4,
    "lr_encoder": 1.5e-4,
    "weight_decay": 1.0e-4,
    "ema": True,
    "ema_decay": 0.993,
    "ema_tau": 100,
    "warmup_epochs": 0.0,
    "clip_max_norm": 0.1,
    "multi_scale": True,          # rfdetr's per-batch multi-scale training around the input size
    "eval_interval": 1,
    "save_interval": 1,
    "log_interval": 10,
    "early_stop_patience": 0,     # evaluations without a better (toolbox) AP before stopping; 0 = never
    "seed": 0,
    "num_workers": 2,
    "device": "cpu",
    "amp": False,
    "pretrained": "default",
}

# toolbox options RF-DETR has no counterpart for: a clear error instead of a silently ignored flag
UNSUPPORTED = {"warmup_steps": "-o train.warmup_epochs=E (rfdetr warms up in epochs)",
               "sampling": "nothing: discrete sampling is an RT-DETRv2 option"}


def recipe(model_cfg: Mapping[str, Any]) -> dict:
    """The pipelines/ file's `train:` block as run-config train keys."""
    src = dict(model_cfg.get("train") or {})
    out = {k: v for k, v in src.items() if k in TRAIN_DEFAULTS and k != "ema"}
    ema = src.get("ema")
    if isinstance(ema, Mapping):
        out["ema"] = bool(ema.get("use", True))
        if ema.get("decay") is not None:
            out["ema_decay"] = float(ema["decay"])
        if ema.get("tau") is not None:
            out["ema_tau"] = int(ema["tau"])
    elif ema is not None:
        out["ema"] = bool(ema)
    return out


def _rfdetr_train_fields() -> set[str]:
    from rfdetr.config import TrainConfig

    return set(TrainConfig.model_fields)


def resolve(*, model_name: str, model_source: str, model_cfg: Mapping[str, Any], dataset: Mapping[str, Any],
            options: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict:
    """Defaults < recipe < options (None = not given) < -o overrides; the input size checked against the
    variant's multiple (UsageError naming valid sizes)."""
    from .model import check_input_size, default_resolution

    train = copy.deepcopy(TRAIN_DEFAULTS)
    train.update(recipe(model_cfg))
    model: dict[str, Any] = {"name": model_name, "source": model_source, "backend": "rfdetr",
                             "arch": model_cfg.get("arch") or "RF-DETR",
                             "num_classes": len(dataset["label_list"]), "label_list": list(dataset["label_list"]),
                             "input_size": int(model_cfg.get("input_size") or default_resolution(model_cfg))}
    for key, value in options.items():
        if value is None or value is False and key == "amp":
            continue
        if key in UNSUPPORTED:
            raise UsageError(f"--{key.replace('_', '-')} is not an RF-DETR option; use {UNSUPPORTED[key]}")
        if key == "input_size":
            model["input_size"] = int(value)
        elif key in train:
            train[key] = value
        elif key != "init_from":
            raise UsageError(f"--{key.replace('_', '-')} is not an RF-DETR training option")
    rf_fields = None
    for dotted, value in overrides.items():
        head, _, rest = dotted.partition(".")
        if head == "train" and rest and "." not in rest:
            if rest not in train:
                rf_fields = rf_fields if rf_fields is not None else _rfdetr_train_fields()
                if rest not in rf_fields:
                    raise UsageError(f"-o {dotted}: unknown train key '{rest}' (toolbox keys: "
                                     f"{', '.join(sorted(train))}; or a field of rfdetr's TrainConfig)")
            train[rest] = value
        elif head == "model" and rest == "input_size":
            model["input_size"] = int(value)
        else:
            raise UsageError(f"-o {dotted}: RF-DETR runs take -o train.KEY=VALUE (or model.input_size)")
    model["input_size"] = check_input_size(model_cfg, int(model["input_size"]))
    for key in ("epochs", "batch_size", "grad_accum_steps", "eval_interval", "save_interval", "log_interval"):
        if int(train[key]) < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be at least 1, got {train[key]}")
    if train["max_steps"] is not None and int(train["max_steps"]) < 1:
        train["max_steps"] = None  # 0 = no cap (the UI's form value)
    train["effective_batch"] = int(train["batch_size"]) * int(train["grad_accum_steps"])
    data = {k: v for k, v in dataset.items() if k != "label_list"}
    return {"schema_version": 1, "model": model, "data": data, "train": train}
