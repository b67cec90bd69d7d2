"""Model configs: load pipelines/<NAME>.yaml (or any YAML path) and apply overrides.

A config is a plain dict (see pipelines/README.md for its keys). Overrides come from the Python API
(`build_model(name, num_classes, eval_idx=3)`) and the CLI (`train -o transformer.eval_idx=3`): dotted
keys address any entry, and a few flat shortcuts name the knobs users turn most (FLAT_KEYS). String
values are read as YAML scalars, so "3", "1e-4", "[4, 4, 4]" and "true" arrive typed.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from toolbox.errors import InputError, UsageError

PIPELINES_DIR = Path(__file__).resolve().parents[2] / "pipelines"
MODEL_SECTIONS = ("backbone", "neck", "transformer", "loss")
# Sections whose keys are constructor arguments: an override may add a key the file leaves at its
# default (a wrong name then fails in the constructor with the section named).
OPEN_SECTIONS = MODEL_SECTIONS
FLAT_KEYS: dict[str, tuple[str, ...]] = {
    "input_size": ("input_size",),
    "num_classes": ("num_classes",),
    "pretrained": ("pretrained",),
    "sampling": ("transformer", "cross_attn_sampling_method"),
    "eval_idx": ("transformer", "eval_idx"),
    "num_decoder_layers": ("transformer", "num_decoder_layers"),
    "num_queries": ("transformer", "num_queries"),
    "num_denoising": ("transformer", "num_denoising"),
    "num_decoder_points": ("transformer", "num_decoder_points"),
    "freeze_at": ("backbone", "freeze_at"),
    "freeze_norm": ("backbone", "freeze_norm"),
}
# The contract's names for the cross-attention sampling (CLI --sampling) → the config's values.
SAMPLING_VALUES = {"grid": "default", "default": "default", "discrete": "discrete"}


def model_names() -> list[str]:
    """Every config under pipelines/ (zoo models and tiny-test), sorted."""
    return sorted(p.stem for p in PIPELINES_DIR.glob("*.yaml"))


def config_path(name_or_yaml: str | Path) -> Path:
    """A model name (pipelines/<name>.yaml, case-insensitive) or a path to a YAML file → its path."""
    text = str(name_or_yaml)
    path = Path(text).expanduser()
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        if path.is_file():
            return path
        if len(path.parts) == 1 and (PIPELINES_DIR / path.name).is_file():  # "RT-DETR-R18.yaml"
            return PIPELINES_DIR / path.name
        raise UsageError(f"model config {path} does not exist")
    exact = PIPELINES_DIR / f"{text}.yaml"
    if exact.is_file():
        return exact
    by_lower = {n.lower(): n for n in model_names()}
    if text.lower() in by_lower:
        return PIPELINES_DIR / f"{by_lower[text.lower()]}.yaml"
    raise UsageError(f"unknown model {text!r}; use one of: {', '.join(model_names())} (or a path to a YAML config)")


def parse_value(value: Any) -> Any:
    """CLI strings → typed values via YAML ('3' → 3, '[4,4,4]' → list, 'true' → True); others unchanged."""
    if not isinstance(value, str):
        return value
    try:
        parsed = yaml.safe_load(value) if value.strip() else value
    except yaml.YAMLError:
        return value
    if isinstance(parsed, str):  # PyYAML reads "5e-5" (no dot) as a string
        try:
            return float(parsed)
        except ValueError:
            return parsed
    return parsed


def _set(cfg: dict, path: tuple[str, ...], value: Any, key_text: str) -> None:
    node = cfg
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None and i >= 1 and path[0] in OPEN_SECTIONS:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(path[: i + 1])
            raise UsageError(f"override {key_text}: {where} is not a section of this config")
        node = child
    leaf = path[-1]
    if leaf not in node and not (len(path) >= 2 and path[0] in OPEN_SECTIONS):
        known = ", ".join(sorted(k for k in node)) if node is not cfg else ", ".join(sorted(cfg) + sorted(FLAT_KEYS))
        raise UsageError(f"override {key_text}: no such key; known here: {known}")
    node[leaf] = value


def apply_overrides(cfg: dict, overrides: Mapping[str, Any] | None) -> dict:
    """Return a copy of `cfg` with `overrides` applied (flat shortcut or dotted keys; see FLAT_KEYS)."""
    cfg = copy.deepcopy(cfg)
    for key, raw in (overrides or {}).items():
        value = parse_value(raw)
        if key == "sampling":
            if value not in SAMPLING_VALUES:
                raise UsageError(f"sampling={value!r}: use grid or discrete")
            value = SAMPLING_VALUES[value]
        if key in FLAT_KEYS:
            path = FLAT_KEYS[key]
        else:
            path = tuple(key.split("."))
            if not all(path):
                raise UsageError(f"override {key!r}: empty part in a dotted key")
        if path[0] not in cfg and path[0] not in ("pretrained",):
            raise UsageError(f"override {key}: unknown key; use a dotted key into one of "
                             f"{', '.join(sorted(cfg))} or one of {', '.join(sorted(FLAT_KEYS))}")
        _set(cfg, path, value, key)
    return cfg


def backend(cfg: Mapping[str, Any]) -> str:
    """The family a config belongs to (CONTRACTS "Models"): paddle (RT-DETR, the default) or rfdetr."""
    return str(cfg.get("backend") or "paddle")


def validate(cfg: Mapping[str, Any], source: str = "config") -> None:
    """Check what the constructors cannot say clearly: sections present, sizes and indices in range."""
    if backend(cfg) == "rfdetr":  # a Paddle model cannot be built from it: say so rather than "missing sections"
        raise UsageError(f"{source}: {cfg.get('model_name')} is an RF-DETR model (backend: rfdetr), built by "
                         f"toolbox.rfdetr through the rfdetr package, not by the Paddle engine")
    missing = [s for s in MODEL_SECTIONS if not isinstance(cfg.get(s), Mapping)]
    if missing:
        raise InputError(f"{source} is not a model config: missing section(s) {', '.join(missing)}")
    n = cfg.get("num_classes")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UsageError(f"{source}: num_classes must be a positive integer, got {n!r}")
    size = cfg.get("input_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 32 or size % 32:
        raise UsageError(f"{source}: input_size must be a multiple of 32 (the coarsest feature stride), got {size!r}")
    tr = cfg["transformer"]
    layers = tr.get("num_decoder_layers", 6)
    if not isinstance(layers, int) or layers < 1:
        raise UsageError(f"{source}: transformer.num_decoder_layers must be >= 1, got {layers!r}")
    idx = tr.get("eval_idx", -1)
    if not isinstance(idx, int) or not -layers <= idx < layers:
        raise UsageError(f"{source}: transformer.eval_idx={idx!r} must lie in [{-layers}, {layers - 1}] "
                         f"for {layers} decoder layers (-1 = the last)")
    q = tr.get("num_queries", 300)
    if not isinstance(q, int) or q < 1:
        raise UsageError(f"{source}: transformer.num_queries must be a positive integer, got {q!r}")
    strides = tr.get("feat_strides", [8, 16, 32])
    anchors = sum((size // s) ** 2 for s in strides)
    if anchors < q:
        raise UsageError(f"{source}: input_size {size} gives {anchors} encoder positions, fewer than "
                         f"num_queries={q} (query selection picks that many); use a larger input_size "
                         f"or fewer queries")
    points = tr.get("num_decoder_points")
    levels = tr.get("num_levels", 3)
    if isinstance(points, list) and len(points) != levels:
        raise UsageError(f"{source}: transformer.num_decoder_points {points} needs one value per level ({levels})")
    method = tr.get("cross_attn_sampling_method")
    if method is not None and method not in ("default", "discrete"):
        raise UsageError(f"{source}: transformer.cross_attn_sampling_method={method!r}: use default (grid) or discrete")


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read model config {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"model config {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise InputError(f"model config {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def load_config(name_or_yaml: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict:
    """Resolved config dict of a model name, a YAML path, or an already loaded config (copied), with
    `overrides` applied and checked. `model_name` defaults to the file stem."""
    if isinstance(name_or_yaml, Mapping):
        cfg, source = copy.deepcopy(dict(name_or_yaml)), "config"
    else:
        path = config_path(name_or_yaml)
        cfg, source = read_yaml(path), str(path)
        cfg.setdefault("model_name", path.stem)
    cfg = apply_overrides(cfg, overrides)
    validate(cfg, source)
    return cfg


ZOO_COLUMNS = ("name", "arch", "backbone", "ap", "ap50", "params_m", "gflops", "fps_t4", "epochs", "input_size",
               "pretrained")


def list_models() -> list[dict]:
    """Rows of the model-zoo table: one dict per pipelines/ config with a `zoo:` block (tiny-test has
    none), RT-DETR before RT-DETRv2, each by size. Keys: ZOO_COLUMNS + `ap_checkpoint`, `source`."""
    rows = []
    for name in model_names():
        cfg = read_yaml(PIPELINES_DIR / f"{name}.yaml")
        zoo = cfg.get("zoo")
        if not isinstance(zoo, Mapping):
            continue
        rows.append({"name": cfg.get("model_name", name), "arch": cfg.get("arch"), "backbone": zoo.get("backbone"),
                     "ap": zoo.get("ap"), "ap50": zoo.get("ap50"), "params_m": zoo.get("params_m"),
                     "gflops": zoo.get("gflops"), "fps_t4": zoo.get("fps_t4"), "epochs": zoo.get("epochs"),
                     "input_size": cfg.get("input_size"), "pretrained": cfg.get("pretrained"),
                     "ap_checkpoint": zoo.get("ap_checkpoint", zoo.get("ap")), "source": zoo.get("source"),
                     "backend": backend(cfg)})
    rows.sort(key=lambda r: (str(r["arch"]), r["gflops"] or 0))
    return rows
