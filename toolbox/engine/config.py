"""Resolving a training run's configuration: recipe defaults < the model's pipelines/ file < options < -o.

The result is one plain dict, written as `runs/<run>/config.yaml`, that says everything the run used
(model name, num_classes, label_list, input_size, every hyper-parameter), so eval, export and resume read
it back instead of guessing. Sections: `model`, `data`, `train`, `augment`.
"""
from __future__ import annotations

import copy
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from ..errors import UsageError

# The published RT-DETR recipe (PaddleDetection rtdetr_r*_6x_coco: AdamW 1e-4, tuned for a global batch of 16
# and used as given at any batch by PaddleDetection and PaddleX (so `lr_scaling: none` by default),
# weight decay 1e-4, backbone lr x0.1 through the backbone's lr_mult_list, 2000 linear warm-up steps from
# 0.001, constant lr after, global grad-norm clip 0.1, EMA 0.9999 with warm-up). The `train:` section of a
# pipelines/ file (schema in pipelines/README.md) replaces these values.
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 72,
    "max_steps": None,
    "batch_size": 4,              # per device
    "global_batch": 16,           # the batch the config's base_lr was tuned for
    "base_lr": 1.0e-4,
    "lr": None,                   # the learning rate actually used (resolved below)
    "lr_scaling": "none",         # none (PaddleDetection/PaddleX: base_lr whatever the batch) | linear | sqrt
    "lr_milestones": [],          # epochs at which lr is multiplied by lr_gamma (recipe: none)
    "lr_gamma": 0.1,
    "weight_decay": 1.0e-4,
    "param_groups": [],           # [{params: regex over state-dict names, lr_mult?, weight_decay?}], first match
    "backbone_lr_mult": 1.0,      # extra multiplier on top of the backbone's own lr_mult_list
    "warmup_steps": "auto",       # auto: WARMUP_FRACTION of the planned steps, clamped to [1, warmup_steps_max]
    "warmup_steps_max": 2000,     # the recipe's warm-up (a pipelines/ file's train.warmup_steps)
    "warmup_start_factor": 0.001,
    "clip_grad_norm": 0.1,
    "grad_accum_steps": 1,
    "ema": True,
    "ema_decay": 0.9999,
    "ema_warmup_steps": 2000,     # PaddleDetection's fixed value (see planned_warmup); "auto" as for warmup_steps
    "no_aug_epochs": 0,           # RT-DETRv2: strong augmentation off for the last epochs
    "eval_interval": 1,
    "save_interval": 1,
    "log_interval": 10,
    "early_stop_patience": 0,     # evaluations without a better AP before stopping; 0 = never
    "seed": 0,
    "num_workers": 2,
    "device": "cpu",
    "amp": False,
    "sync_bn": False,             # multi-GPU: synchronised BatchNorm (the recipes: true)
    "pretrained": "default",
    "init_from": None,
}

AUGMENT_DEFAULTS: dict[str, Any] = {
    "distort_prob": 0.8,
    "expand_prob": 0.5,
    "expand_max_ratio": 4.0,
    "crop_prob": 0.8,
    "flip_prob": 0.5,
    # RT-DETR's multi-scale sizes for 640, scaled to the input size (multiples of 32); null: fixed size
    "scales_640": [480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800],
    "fill_value": [123.675, 116.28, 103.53],
}

SECTIONS = ("model", "data", "train", "augment")
WARMUP_FRACTION = 0.05  # automatic warm-up: this share of the planned optimizer steps


def planned_warmup(value: Any, total_steps: int, cap: int) -> tuple[int, str]:
    """(warm-up steps, why) for a `warmup_steps`-like value: an int is used as given; "auto" (or None) is
    WARMUP_FRACTION of the run's planned optimizer steps clamped to [1, cap], so a short run is not all
    warm-up (the recipe's 2000 steps are longer than many whole runs on small datasets).

    The EMA warm-up keeps PaddleDetection's 2000 by default: with decay 0.9999, a short EMA warm-up makes
    the average a ~10,000-step memory, so at the end of a 1,000-step run 95 % of the evaluated (EMA)
    weights would come from its first half; the long warm-up keeps the EMA close to the raw weights
    until a run is long enough for the average to help."""
    if value is None or value == "auto":
        steps = min(max(1, round(WARMUP_FRACTION * int(total_steps))), max(1, int(cap)))
        return steps, (f"auto: {WARMUP_FRACTION:.0%} of {int(total_steps)} planned steps, "
                       f"clamped to [1, {int(cap)}]")
    return int(value), "fixed"


def default_run_name(model_name: str, now: datetime | None = None) -> str:
    now = now or datetime.now()
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', model_name)}-{now:%Y%m%d-%H%M%S}"


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`-o KEY=VALUE` strings → {dotted key: YAML-parsed value}; a malformed item is a usage error."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UsageError(f"-o expects KEY=VALUE, got '{item}' (e.g. -o train.weight_decay=0.0001 "
                             f"or -o transformer.eval_idx=2)")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def scale_sizes(input_size: int, scales: list[int], base: int = 640) -> list[int]:
    """A recipe's multi-scale list (for its input size `base`) mapped to `input_size`, multiples of 32."""
    return [max(32, int(round(s * input_size / base / 32)) * 32) for s in scales]


def min_input_size(num_queries: int, strides: Sequence[int] = (8, 16, 32)) -> int:
    """The smallest multiple of 32 whose encoder positions (one per cell of each feature level) reach
    `num_queries`: query selection takes the top num_queries positions, so fewer cannot be trained
    (300 queries, strides 8/16/32 → 128 px: 16² + 8² + 4² = 336 positions; 96 px has only 189)."""
    size = 32
    while sum((size // int(s)) ** 2 for s in strides) < int(num_queries):
        size += 32
    return size


def _model_value(model_cfg: Mapping[str, Any], overrides: Mapping[str, Any], key: str, default: Any) -> Any:
    """A transformer setting as the run will build it: an override (flat or dotted) or the model file's."""
    for k in (key, f"transformer.{key}", f"model.transformer.{key}"):
        if overrides.get(k) is not None:
            return overrides[k]
    return (model_cfg.get("transformer") or {}).get(key, default)


def scaled_lr(base_lr: float, global_batch: int, used_batch: int, rule: str) -> float:
    if rule == "none" or used_batch == global_batch:
        return float(base_lr)
    ratio = used_batch / float(global_batch)
    if rule == "sqrt":
        ratio = math.sqrt(ratio)
    elif rule != "linear":
        raise UsageError(f"train.lr_scaling must be linear, sqrt or none, got '{rule}'")
    return float(base_lr) * ratio


def model_recipe(model_cfg: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    """(train, augment, model-info) values of a pipelines/ file, mapped to this module's names."""
    src = dict(model_cfg.get("train") or {})
    train: dict[str, Any] = {}
    for ours, theirs in (("epochs", "epochs"), ("batch_size", "batch_size"), ("global_batch", "global_batch_size"),
                         ("base_lr", "base_lr"), ("param_groups", "param_groups"), ("warmup_steps_max", "warmup_steps"),
                         ("warmup_start_factor", "warmup_start_factor"), ("clip_grad_norm", "clip_grad_norm"),
                         ("sync_bn", "sync_bn")):
        if src.get(theirs) is not None:
            train[ours] = src[theirs]
    opt = src.get("optimizer") or {}
    if opt.get("weight_decay") is not None:
        train["weight_decay"] = opt["weight_decay"]
    sched = src.get("lr_schedule") or {}
    if sched.get("milestones"):
        train["lr_milestones"], train["lr_gamma"] = list(sched["milestones"]), sched.get("gamma", 0.1)
    if "ema" in src:
        ema = src.get("ema")
        train["ema"] = bool(ema)
        if isinstance(ema, Mapping):
            train["ema_decay"] = ema.get("decay", TRAIN_DEFAULTS["ema_decay"])
            train["ema_warmup_steps"] = ema.get("warmup_steps", TRAIN_DEFAULTS["ema_warmup_steps"])
    stop = src.get("strong_aug_stop_epoch")
    if stop is not None and src.get("epochs"):
        train["no_aug_epochs"] = max(0, int(src["epochs"]) - int(stop))  # kept as "the last N epochs"
    augment: dict[str, Any] = {}
    if "multi_scale" in src:
        augment["scales_640"] = list(src["multi_scale"]) if src["multi_scale"] else None
    aug = src.get("augment") or {}
    for ours, theirs in (("distort_prob", "random_distort"), ("crop_prob", "random_crop"),
                         ("flip_prob", "random_flip")):
        if isinstance(aug.get(theirs), (int, float)):
            augment[ours] = float(aug[theirs])
    expand = aug.get("random_expand")
    if isinstance(expand, Mapping) and expand.get("fill_value"):
        augment["fill_value"] = list(expand["fill_value"])
    elif expand is False or expand is None and "random_expand" in aug:
        augment["expand_prob"] = 0.0
    pretrained = model_cfg.get("pretrained")
    info = {
        "pretrained": None if pretrained in (None, "none", "") else str(pretrained),
        "input_size": model_cfg.get("input_size"),
        "arch": model_cfg.get("arch"),
    }
    if isinstance(info["input_size"], (list, tuple)):
        info["input_size"] = int(info["input_size"][-1])
    return train, augment, info


def resolve(*, model_name: str, model_source: str, model_cfg: Mapping[str, Any], dataset: Mapping[str, Any],
            options: Mapping[str, Any], overrides: Mapping[str, Any], world_size: int = 1) -> dict:
    """Merge defaults, the model file's recipe, explicit options (None = not given) and -o overrides."""
    recipe_train, recipe_aug, info = model_recipe(model_cfg)
    train = copy.deepcopy(TRAIN_DEFAULTS)
    train.update({k: v for k, v in recipe_train.items() if k in TRAIN_DEFAULTS})
    augment = copy.deepcopy(AUGMENT_DEFAULTS)
    augment.update(recipe_aug)
    model: dict[str, Any] = {"name": model_name, "source": model_source, "arch": info["arch"],
                             "num_classes": len(dataset["label_list"]), "label_list": list(dataset["label_list"]),
                             "input_size": int(info["input_size"] or 640), "sampling": None, "overrides": {}}
    data = dict(dataset)
    data.pop("label_list", None)
    train["pretrained_default"] = info["pretrained"]  # the model file's official weights (None: none)

    lr_given = options.get("lr")
    for key, value in options.items():
        if value is None:
            continue
        if key in ("input_size", "sampling"):
            model[key] = value
        elif key == "lr":
            train["base_lr"] = float(value)
        elif key in train:
            train[key] = value
        else:
            raise KeyError(key)

    sections = {"model": model, "data": data, "train": train, "augment": augment}
    for dotted, value in overrides.items():
        head, _, rest = dotted.partition(".")
        if head in ("train", "augment") and rest:
            known = TRAIN_DEFAULTS if head == "train" else AUGMENT_DEFAULTS
            top = rest.split(".")[0]
            if top not in known and top not in sections[head]:
                raise UsageError(f"-o {dotted}: unknown {head} key '{top}' (known: {', '.join(sorted(known))})")
            _set_dotted(sections[head], rest, value, dotted)
        elif head == "model" and rest in ("input_size", "sampling"):
            model[rest] = value
        elif head == "data" and rest:
            raise UsageError(f"-o {dotted}: the dataset is chosen with --dataset")
        else:  # anything else configures the network itself (build_model's flat or dotted keys)
            model["overrides"][rest if head == "model" else dotted] = value
    if "input_size" in model["overrides"]:
        model["input_size"] = int(model["overrides"].pop("input_size"))
    if "sampling" in model["overrides"]:
        model["sampling"] = model["overrides"].pop("sampling")

    _validate(model, train)
    floor = min_input_size(int(_model_value(model_cfg, model["overrides"], "num_queries", 300)),
                           _model_value(model_cfg, model["overrides"], "feat_strides", [8, 16, 32]))
    if model["input_size"] < floor:
        raise UsageError(f"--input-size {model['input_size']} is too small for {model_name}: it gives fewer encoder "
                         f"positions than its {_model_value(model_cfg, model['overrides'], 'num_queries', 300)} "
                         f"queries; the smallest size it accepts is {floor}")
    used_batch = int(train["batch_size"]) * int(train["grad_accum_steps"]) * int(world_size)
    train["world_size"] = int(world_size)
    train["effective_batch"] = used_batch
    if train.get("lr") is None or lr_given is not None:
        train["lr"] = scaled_lr(train["base_lr"], int(train["global_batch"]), used_batch, train["lr_scaling"])
    augment["sizes"] = ([max(floor, s) for s in scale_sizes(model["input_size"], augment["scales_640"],
                                                          int(info["input_size"] or 640))]
                        if augment.get("scales_640")
                        else [model["input_size"]])  # multi-scale never below the floor (see min_input_size)
    return {"schema_version": 1, **sections}


def _set_dotted(target: dict, dotted: str, value: Any, full: str) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        target = target.setdefault(p, {})
        if not isinstance(target, dict):
            raise UsageError(f"-o {full}: '{p}' is not a section")
    if parts[-1] not in target and not isinstance(target, dict):
        raise UsageError(f"-o {full}: unknown key")
    target[parts[-1]] = value


def _validate(model: dict, train: dict) -> None:
    def positive(name: str, value: Any, allow_zero: bool = False) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
        if not ok:
            raise UsageError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")

    for k in ("epochs", "batch_size", "grad_accum_steps", "eval_interval", "save_interval", "log_interval",
              "base_lr", "global_batch"):
        positive(k.replace("_", "-"), train[k])
    for k in ("early_stop_patience", "num_workers", "weight_decay", "clip_grad_norm"):
        positive(k.replace("_", "-"), train[k], allow_zero=True)
    for k in ("warmup_steps", "ema_warmup_steps"):
        if train[k] not in (None, "auto"):
            positive(k.replace("_", "-"), train[k], allow_zero=True)
    positive("warmup-steps-max", train["warmup_steps_max"], allow_zero=True)
    if train["max_steps"] is not None:
        positive("max-steps", train["max_steps"])
    positive("input-size", model["input_size"])
    if model["input_size"] % 32:
        raise UsageError(f"--input-size must be a multiple of 32 (the backbone's stride), got {model['input_size']}")
    if model["sampling"] not in (None, "grid", "discrete"):
        raise UsageError(f"--sampling must be grid or discrete, got {model['sampling']!r}")


def save(config: Mapping[str, Any], path: str | Path) -> None:
    from ..fileio import write_yaml

    write_yaml(path, _plain(config))


def load(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def resumed_config(run_dir: Path, given: Mapping[str, Any], overrides: Mapping[str, Any],
                   changeable: Iterable[str], accepted: Iterable[str] = ()) -> dict:
    """The run's config.yaml with the options a resume may change (`changeable`) applied.

    A resumed run continues as it was configured, in both families: every other option given (not None or
    False), and any -o override, is named in one warning rather than silently dropped. `accepted` are
    options the caller applies itself (RT-DETR's --amp, which a resume may switch on only).
    """
    import sys

    changeable, accepted = list(changeable), set(accepted)
    cfg = load(Path(run_dir) / "config.yaml")
    ignored = [k for k, v in given.items()
               if v is not None and v is not False and k not in changeable and k not in accepted]
    if ignored or overrides:
        print(f"warning: --resume continues the run as configured; ignoring "
              f"{', '.join('--' + k.replace('_', '-') for k in ignored)}{' -o' if overrides else ''}",
              file=sys.stderr)
    for k in changeable:
        if given.get(k) is not None:
            cfg["train"][k] = given[k]
    return cfg


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return value


def inference_source(*, run: str | None, model: str | None, weights: str | None, workspace: Any,
                     label_list: Sequence[str] | None, num_classes: int | None,
                     weights_kind: str) -> tuple[Path | None, dict | None, list[str]]:
    """(run folder or None, run config or None, label_list) of what a predict/eval loads, in both families:
    a run (its config names model, classes and size) or a model name with weights and the classes given
    (--dataset, --labels or --num-classes). `weights_kind` names the family's weights in the error."""
    if run and model:
        raise UsageError("give --run NAME or --model NAME --weights PATH, not both")
    if run:
        run_dir = workspace.run_dir(run)
        cfg = load(run_dir / "config.yaml")
        return run_dir, cfg, list(cfg["model"]["label_list"])
    if not model:
        raise UsageError("give --run NAME, or --model NAME with --weights PATH")
    if not weights or weights in ("best", "last"):
        raise UsageError(f"--model NAME needs --weights PATH (a checkpoint folder or {weights_kind} file)")
    if label_list is None:
        if not num_classes:
            raise UsageError("--model with --weights needs the classes: --dataset, --labels FILE or --num-classes N")
        label_list = [str(i) for i in range(int(num_classes))]
    return None, None, list(label_list)
