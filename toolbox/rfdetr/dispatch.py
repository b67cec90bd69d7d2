"""Which model family a command is about: RT-DETR (Paddle, toolbox.engine) or RF-DETR (toolbox.rfdetr).

One question asked in one place: toolbox.engine.api calls `family(...)` at the top of train/evaluate/
predict and hands RF-DETR work to toolbox.rfdetr.api, so the CLI and the web UI (which both call the api)
dispatch the same way. A pipelines/ file says its family with `backend:` (CONTRACTS "Models"); a run says
it in its config.yaml (`model.backend`, written by the RF-DETR trainer; absent = paddle).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError
from ..models.config import backend, config_path, read_yaml
from ..workspace import Workspace

PADDLE, RFDETR = "paddle", "rfdetr"


def model_config(name_or_yaml: str) -> dict:
    """A pipelines/ name or YAML path → its raw dict (no Paddle validation, which refuses RF-DETR files)."""
    cfg = read_yaml(config_path(name_or_yaml))
    cfg.setdefault("model_name", Path(str(config_path(name_or_yaml))).stem)
    return cfg


def family_of_model(name_or_yaml: str | None) -> str:
    return backend(model_config(name_or_yaml)) if name_or_yaml else PADDLE


def family_of_run_dir(run_dir: Path) -> str:
    """The family of a run folder: its config.yaml's model.backend (RT-DETR runs have none)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return PADDLE
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return PADDLE  # the Paddle side reports the broken file with its own message
    return str((cfg.get("model") or {}).get("backend") or PADDLE)


def _run_folder(workspace: Workspace, value: Any) -> Path | None:
    """A run name or folder, or a checkpoint inside runs/<run>/checkpoints/, → the run folder (None: not one)."""
    if not value or value is True:
        return None
    text = str(value)
    if (workspace.runs / text).is_dir():
        return workspace.runs / text
    p = Path(text).expanduser()
    for candidate in (p, *p.parents):
        if (candidate / "config.yaml").is_file() and (candidate / "events.jsonl").exists():
            return candidate
    return None


def family(workspace: Workspace, *, model: str | None = None, config: str | None = None,
           run: str | None = None, resume: Any = None) -> str:
    """paddle or rfdetr for the arguments of train/eval/predict (model or config file, else the run)."""
    if model or config:
        try:
            return family_of_model(model or config)
        except UsageError:
            return PADDLE  # an unknown name: the Paddle path says so with its full message
    folder = _run_folder(workspace, run) if run else None
    if folder is None and resume not in (None, True, "last"):
        folder = _run_folder(workspace, resume)
    return family_of_run_dir(folder) if folder is not None else PADDLE
