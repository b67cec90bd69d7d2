"""The Paddle inference model (`paddle/model.json` + `model.pdiparams`) and `infer_cfg.yml/json`.

`paddle.jit.save` traces the eval-mode DeployModel (the weights loaded are the checkpoint's
`model.pdparams`, which are the EMA weights when EMA was on) into a Paddle 3 PIR program. The program
has the exported signature of CONTRACTS.md: inputs `images` float32 [N,3,S,S] and `orig_target_sizes`
int64 [N,2] (w, h); outputs labels, boxes, scores in that order (Paddle Inference names them
fetch_name_0..2; infer_cfg's `io` gives their meaning, so consumers never guess).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..fileio import write_json, write_yaml

INFER_CFG_SCHEMA = 1
DEFAULT_MEAN = [0.0, 0.0, 0.0]
DEFAULT_STD = [1.0, 1.0, 1.0]


def io_signature(input_size: int, num_top: int = 300) -> dict:
    """The exported model's inputs and outputs (-1 = the dynamic batch dimension N)."""
    s = int(input_size)
    return {
        "inputs": [
            {"name": "images", "dtype": "float32", "shape": [-1, 3, s, s],
             "meaning": "RGB, resized to SxS (no aspect ratio kept, with preprocess Resize's interp), divided by 255, NCHW"},
            {"name": "orig_target_sizes", "dtype": "int64", "shape": [-1, 2],
             "meaning": "original image (width, height)"},
        ],
        "outputs": [
            {"name": "labels", "dtype": "int64", "shape": [-1, num_top], "meaning": "class index into label_list"},
            {"name": "boxes", "dtype": "float32", "shape": [-1, num_top, 4],
             "meaning": "x1, y1, x2, y2 in original pixels, clipped to the image"},
            {"name": "scores", "dtype": "float32", "shape": [-1, num_top], "meaning": "sigmoid score"},
        ],
    }


def preprocess_ops(input_size: int, mean: list[float] | None = None, std: list[float] | None = None,
                   interp: str | None = None) -> list[dict]:
    """PaddleDetection-style ordered preprocessing: what every runtime does to an RGB image. `interp` is the
    model config's resize interpolation (RT-DETR: cubic, RT-DETRv2: linear); every reader follows it."""
    return [
        {"Resize": {"target_size": [int(input_size), int(input_size)], "keep_ratio": False, "interp": interp or "cubic"}},
        {"Normalize": {"scale": 1.0 / 255.0, "mean": [float(x) for x in (mean or DEFAULT_MEAN)],
                       "std": [float(x) for x in (std or DEFAULT_STD)]}},
        {"Permute": {"from": "HWC", "to": "CHW"}},
    ]


def build_infer_cfg(*, model_name: str, arch: str, num_classes: int, input_size: int, label_list: list[str],
                    sampling: str, stages: list[dict], draw_threshold: float = 0.5,
                    mean: list[float] | None = None, std: list[float] | None = None, num_top: int = 300,
                    num_queries: int | None = None, interp: str | None = None) -> dict:
    """The content of infer_cfg.yml (and infer_cfg.json, the same for C++ readers)."""
    return {
        "schema_version": INFER_CFG_SCHEMA,
        "model_name": model_name,
        "arch": arch,
        "num_classes": int(num_classes),
        "input_size": int(input_size),
        "channel_order": "RGB",
        "preprocess": preprocess_ops(input_size, mean, std, interp),
        "label_list": list(label_list),
        "draw_threshold": float(draw_threshold),
        "sampling": sampling,
        "num_queries": num_queries,
        "num_top": int(num_top),
        "io": io_signature(input_size, num_top),
        "stages": stages,
    }


def write_infer_cfg(export_dir: str | os.PathLike, cfg: dict) -> None:
    export_dir = Path(export_dir)
    write_yaml(export_dir / "infer_cfg.yml", cfg)
    write_json(export_dir / "infer_cfg.json", cfg)


def read_infer_cfg(export_dir: str | os.PathLike) -> dict:
    """Load `infer_cfg.yml` of an export folder (or the file itself)."""
    import yaml

    from ..errors import InputError

    path = Path(export_dir)
    if path.is_dir():
        path = path / "infer_cfg.yml"
    if not path.is_file():
        raise InputError(f"{path} is missing: not an export folder (make one with `python -m toolbox export`)")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise InputError(f"{path} is not valid YAML: {e}") from e
    missing = [k for k in ("input_size", "label_list", "io", "stages") if k not in (cfg or {})]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)}: re-export the model with this toolbox version")
    return cfg


def save_paddle(layer: Any, out_dir: str | os.PathLike, input_size: int) -> dict:
    """paddle.jit.save of `layer` (an eval-mode DeployModel) into out_dir/model.json + model.pdiparams."""
    import paddle

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layer.eval()
    spec = [paddle.static.InputSpec([None, 3, int(input_size), int(input_size)], "float32", "images"),
            paddle.static.InputSpec([None, 2], "int64", "orig_target_sizes")]
    import warnings

    with warnings.catch_warnings():  # dy2static's "Tensor do not have 'place' interface" notices
        warnings.simplefilter("ignore", UserWarning)
        paddle.jit.save(layer, str(out_dir / "model"), input_spec=spec)
    files = {"program": out_dir / "model.json", "params": out_dir / "model.pdiparams"}
    for p in files.values():
        if not p.is_file():
            from ..errors import RuntimeFailure

            raise RuntimeFailure(f"paddle.jit.save did not write {p} (Paddle {paddle.__version__}); "
                                 f"Paddle 3 writes model.json + model.pdiparams")
    return {k: str(v) for k, v in files.items()}


def paddle_stage(input_size: int, num_top: int = 300) -> dict:
    sig = io_signature(input_size, num_top)
    return {"name": "model", "format": "paddle", "runtime": "paddle", "file": "paddle/model.json",
            "params": "paddle/model.pdiparams", "inputs": sig["inputs"], "outputs": sig["outputs"],
            "note": "Paddle Inference names the outputs fetch_name_0..2, in this order; on CPU call "
                    "config.disable_mkldnn()"}
