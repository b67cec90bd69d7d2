"""Checkpoint folders in PaddleDetection's format: model.pdparams, model.pdema, model.pdopt.

- `model.pdparams`: the weights to use (the EMA weights when EMA is on): what eval, export, predict and
  PaddleDetection itself load.
- `model.pdema`: the raw (non-averaged) weights, EMA on only: what a resumed run continues training.
- `model.pdopt`: the optimizer state dict, plus `LR_Scheduler`, `last_epoch` and a `toolbox` entry with
  the loop position (epoch, step, batch within the epoch), EMA update count, best AP, early-stop counter
  and the Python/NumPy/Paddle RNG states, which is what `--resume` needs to continue exactly.
- `checkpoint.json`: a small human/UI summary (epoch, step, metrics).

Each folder is written under a temporary name and renamed into place (toolbox.fileio.atomic_dir), so a
kill at any moment leaves the previous complete set or the new one, never a mix.
"""
from __future__ import annotations

import json
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from ..errors import InputError
from ..fileio import atomic_dir, recover_dir

PARAMS, EMA, OPT, INFO = "model.pdparams", "model.pdema", "model.pdopt", "checkpoint.json"


def rng_state() -> np.ndarray:
    """Python, NumPy and Paddle generator states, pickled into a uint8 array (what paddle.save stores)."""
    blob = pickle.dumps({"python": random.getstate(), "numpy": np.random.get_state(),
                         "paddle": paddle.get_rng_state()})
    return np.frombuffer(blob, np.uint8).copy()


def set_rng_state(blob) -> None:
    state = pickle.loads(np.asarray(blob, np.uint8).tobytes())
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    paddle.set_rng_state(state["paddle"])


def save(folder: str | Path, *, weights: dict, raw_weights: dict | None, optimizer_state: dict,
         schedule_state: dict, loop_state: dict, info: dict | None = None) -> Path:
    """Write one checkpoint folder atomically; `loop_state` is stored under pdopt['toolbox']."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        paddle.save(weights, str(tmp / PARAMS))
        if raw_weights is not None:
            paddle.save(raw_weights, str(tmp / EMA))
        opt = dict(optimizer_state)
        opt["LR_Scheduler"] = schedule_state
        opt["last_epoch"] = int(loop_state.get("epoch", 0))
        opt["toolbox"] = {**loop_state, "rng": rng_state()}
        paddle.save(opt, str(tmp / OPT))
        (tmp / INFO).write_text(json.dumps({"schema_version": 1, **(info or {})}, indent=1) + "\n",
                                encoding="utf-8")
    return folder


def resolve(path: str | Path) -> Path:
    """A checkpoint folder, or a .pdparams file's folder; repairs an interrupted replacement first."""
    path = Path(path)
    if path.suffix == ".pdparams":
        path = path.parent
    recover_dir(path)
    if not (path / PARAMS).is_file():
        raise InputError(f"{path} is not a checkpoint: {PARAMS} is missing (a checkpoint folder holds "
                         f"{PARAMS}, {EMA} and {OPT})")
    return path


def load_weights_file(path: str | Path) -> dict:
    try:
        return paddle.load(str(path))
    except Exception as e:  # noqa: BLE001 - corrupt or foreign file
        raise InputError(f"{path}: cannot be loaded as Paddle weights ({type(e).__name__}: {e})") from e


def load(folder: str | Path) -> dict[str, Any]:
    """{'weights', 'raw_weights' (or None), 'optimizer' (state dict), 'schedule', 'loop'} of a folder."""
    folder = resolve(folder)
    out: dict[str, Any] = {"folder": folder, "weights": load_weights_file(folder / PARAMS)}
    out["raw_weights"] = load_weights_file(folder / EMA) if (folder / EMA).is_file() else None
    if (folder / OPT).is_file():
        opt = load_weights_file(folder / OPT)
        out["schedule"] = opt.pop("LR_Scheduler", {})
        opt.pop("last_epoch", None)
        out["loop"] = opt.pop("toolbox", {})
        out["optimizer"] = opt
    else:
        out["schedule"], out["loop"], out["optimizer"] = {}, {}, None
    return out


def info(folder: str | Path) -> dict:
    p = Path(folder) / INFO
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
