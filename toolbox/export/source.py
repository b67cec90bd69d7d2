"""What an export reads: a model definition, its weights, its labels and (for a run) its dataset.

Two ways to name it (CONTRACTS.md "export"): a training run folder (`--run NAME [--weights best|last|PATH]`,
everything else read from the run's config.yaml) or a model and weights trained elsewhere (`--model NAME
--weights PATH|URL --num-classes N [--labels FILE]`). Both end as one `Source`, so no format step needs
to know which was given.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, ToolboxError, UsageError
from ..workspace import Workspace


@dataclass
class Source:
    """What is exported: a model definition, its weights and its labels."""

    model: str                      # build_model's name_or_yaml (rfdetr: the pipelines/ name or YAML)
    model_name: str
    arch: str
    num_classes: int
    label_list: list[str]
    input_size: int
    weights: str
    sampling: str | None = None     # the sampling the model was trained with (None: its config's)
    overrides: dict = field(default_factory=dict)
    run: str | None = None
    dataset_dir: Path | None = None
    default_name: str = "export"
    backend: str = "paddle"         # the family (CONTRACTS "Models"): paddle (RT-DETR) or rfdetr

    def describe(self) -> dict:
        return {"run": self.run, "model": self.model_name, "backend": self.backend, "weights": self.weights, "num_classes": self.num_classes,
                "input_size": self.input_size, "sampling": self.sampling,
                "dataset": str(self.dataset_dir) if self.dataset_dir else None}


def named_dataset(ws: Workspace, name: str) -> Path:
    """`--dataset NAME`: a workspace dataset (or folder) with COCO annotations, for weights without a run."""
    d = ws.dataset_dir(name)
    if not (d / "annotations").is_dir():
        raise UsageError(f"--dataset {name}: {d} has no annotations/ folder (import it with `python -m toolbox check`)")
    return d


def resolve_source(ws: Workspace, *, run: str | None, weights: str, model: str | None, num_classes: int | None,
                   labels: Any, input_size: int | None) -> Source:
    """The Source named by --run or by --model/--weights/--num-classes (UsageError when neither or both)."""
    if run and model:
        raise UsageError("give either --run or --model (with --weights and --num-classes), not both")
    if run:
        return _run_source(ws, run, weights, labels, input_size)
    if model:
        return _model_source(model, weights, num_classes, labels, input_size)
    raise UsageError("nothing to export: give --run NAME, or --model NAME --weights PATH --num-classes N")


def model_backend(model: str | os.PathLike) -> str:
    """The family of a pipelines/ name or YAML (its `backend` key; paddle when unreadable or absent), read
    without validating, since the Paddle validator refuses RF-DETR configs by design."""
    from ..models.config import backend, config_path, read_yaml

    try:
        return backend(read_yaml(config_path(model)))
    except ToolboxError:
        return "paddle"


def _run_source(ws: Workspace, run: str, weights: str, labels: Any, input_size: int | None) -> Source:
    import yaml

    run_dir = ws.run_dir(run)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise InputError(f"{cfg_path} is missing: '{run}' is not a finished training run folder")
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    m = cfg.get("model") or {}
    family = str(m.get("backend") or model_backend(str(m.get("source") or m.get("name") or m.get("model") or "")))
    ckpt = "model.pth" if family == "rfdetr" else "model.pdparams"   # CONTRACTS "Run folder"
    if weights in ("best", "last", None, ""):
        which = weights or "best"
        path = run_dir / "checkpoints" / which / ckpt
        if not path.is_file():
            have = sorted(p.parent.name for p in (run_dir / "checkpoints").glob(f"*/{ckpt}"))
            raise InputError(f"{path} is missing (checkpoints of '{run}': {', '.join(have) or 'none'}); "
                             f"use --weights last or a {Path(ckpt).suffix} path")
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InputError(f"weights file {path} does not exist")
    label_list = list(m.get("label_list") or [])
    num_classes = int(m.get("num_classes") or len(label_list))
    if labels is not None:
        label_list = _labels(labels, num_classes)
    if len(label_list) != num_classes:
        label_list = [f"class_{i}" for i in range(num_classes)]
    name = str(m.get("name") or m.get("model") or "")
    if not name:
        raise InputError(f"{cfg_path} does not say which model was trained (model.name)")
    source = str(m.get("source") or name)
    if not Path(source).is_file():
        source = name
    family_arch = "RF-DETR" if family == "rfdetr" else "RT-DETR"
    return Source(model=source, model_name=name, arch=str(m.get("arch") or family_arch), num_classes=num_classes,
                  label_list=label_list, input_size=int(input_size or m.get("input_size") or 640),
                  weights=str(path), sampling=m.get("sampling"), overrides=dict(m.get("overrides") or {}),
                  run=run_dir.name, dataset_dir=_run_dataset(ws, cfg), default_name=run_dir.name, backend=family)


def _run_dataset(ws: Workspace, cfg: dict) -> Path | None:
    data = cfg.get("data") or {}
    for key in ("dataset_dir", "dir", "path", "root", "dataset", "name"):
        value = data.get(key)
        if isinstance(value, str) and value:
            try:
                d = ws.dataset_dir(value)
            except UsageError:
                continue
            if (d / "annotations").is_dir():
                return d
    return None


def _model_source(model: str, weights: str, num_classes: int | None, labels: Any, input_size: int | None) -> Source:
    from ..models import load_config

    family = model_backend(model)
    if not weights or weights in ("best", "last"):
        raise UsageError(f"--model needs --weights {'PATH.pth' if family == 'rfdetr' else 'PATH.pdparams (or a URL)'}: "
                         f"the weights to export")
    if not num_classes or int(num_classes) < 1:
        raise UsageError("--model needs --num-classes N: the class count the weights were trained with")
    if not re.match(r"^[a-z]+://", str(weights)) and not Path(weights).expanduser().is_file():
        raise InputError(f"weights file {weights} does not exist")
    if family == "rfdetr" and re.match(r"^[a-z]+://", str(weights)):
        raise UsageError("--model RF-DETR-*: give --weights as a local model.pth (download it first)")
    try:
        if family == "rfdetr":  # the Paddle validator refuses these configs: read them as they are
            from ..models.config import config_path, read_yaml

            path = config_path(model)
            cfg = read_yaml(path)
            cfg.setdefault("model_name", path.stem)
        else:
            cfg = load_config(model)
    except ToolboxError:
        raise
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"unknown model '{model}': {e}") from e
    label_list = _labels(labels, int(num_classes)) if labels is not None else [f"class_{i}" for i in range(int(num_classes))]
    stem = Path(str(weights)).name.rsplit(".", 1)[0]
    return Source(model=model, model_name=str(cfg.get("model_name") or Path(str(model)).stem),
                  arch=str(cfg.get("arch") or "RT-DETR"), num_classes=int(num_classes), label_list=label_list,
                  input_size=int(input_size or cfg.get("input_size") or 640), weights=str(weights),
                  default_name=re.sub(r"[^\w.+-]+", "_", stem) or "export", backend=family)


def _labels(labels: Any, num_classes: int) -> list[str]:
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels).expanduser()
        if not path.is_file():
            raise InputError(f"labels file {path} does not exist (one class name a line)")
        names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        where = str(path)
    else:
        names, where = [str(x) for x in labels], "labels"
    if len(names) != num_classes:
        raise InputError(f"{where} lists {len(names)} class names but the model has {num_classes} classes")
    return names
