"""Load and save `.pdparams` state dicts: local paths or URLs (cached), with a report of what was used.

PaddleDetection's checkpoints are pickled dicts name → array; ours use the same names (the state dict
of `build_model`), so official COCO weights load unchanged and ours load in PaddleDetection. Loading is
by name: entries whose shape differs from the model's are skipped and reported. The usual case is
fine-tuning COCO weights on a dataset with another class count, where exactly the class-dependent heads
(the encoder and decoder score heads and the denoising class embedding) differ; they keep their fresh
initialisation and everything else loads.

URLs are downloaded once into the cache (`$TOOLBOX_CACHE/weights`, default ~/.cache/toolbox/weights)
with a progress bar, written under a temporary name and renamed, and checked against a SHA-256 when
one is known. Without network access the download fails with RuntimeFailure (exit 3) and a hint.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from toolbox.errors import InputError, RuntimeFailure
from toolbox.fileio import atomic_path

log = logging.getLogger(__name__)

# State-dict entries whose shape depends on the number of classes (PaddleDetection's names).
CLASS_DEPENDENT = re.compile(r"(^|\.)(enc_score_head|dec_score_head\.\d+|denoising_class_embed)\.")
OFFLINE_HINT = ("download it on a machine with internet access and pass the file's path instead, "
                "or pass --pretrained none to start from random weights")


def cache_dir() -> Path:
    """Where downloaded weights live: $TOOLBOX_CACHE/weights, else ~/.cache/toolbox/weights."""
    root = os.environ.get("TOOLBOX_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "toolbox"
    return base / "weights"


def is_url(text: str | os.PathLike) -> bool:
    return urllib.parse.urlparse(str(text)).scheme in ("http", "https", "ftp", "file")


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_path(url: str) -> Path:
    """The cache file of `url`: its file name (cache hits survive across runs and are easy to find)."""
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name or "weights.pdparams"
    return cache_dir() / name


def download(url: str, sha256: str | None = None, *, progress: bool = True, timeout: float = 30.0) -> Path:
    """Fetch `url` into the cache (once) and return the local path.

    A cached file is reused when its checksum matches (or no checksum is known). The download goes to a
    temporary file renamed on success, so an interrupted one leaves nothing half-written behind.
    """
    from tqdm import tqdm

    dest = cached_path(url)
    if dest.is_file():
        if not sha256 or sha256_of(dest) == sha256.lower():
            return dest
        log.warning("cached %s does not match its checksum; downloading it again", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(dest) as tmp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            digest = hashlib.sha256()
            with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                              desc=f"download {dest.name}", disable=not progress) as bar:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if sha256 and digest.hexdigest() != sha256.lower():
                raise RuntimeFailure(f"downloaded {url} but its SHA-256 {digest.hexdigest()} differs from the "
                                     f"expected {sha256}; the file was discarded (retry, or check the URL)")
    except RuntimeFailure:
        raise
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeFailure(f"cannot download weights {url} ({reason}): no network access? "
                             f"{OFFLINE_HINT}") from None
    except OSError as exc:
        raise RuntimeFailure(f"cannot write downloaded weights to {dest} ({exc}); set TOOLBOX_CACHE to a "
                             f"writable folder") from None
    return dest


def resolve(path_or_url: str | os.PathLike, sha256: str | None = None, *, progress: bool = True) -> Path:
    """A local path as is (must exist) or a URL downloaded into the cache."""
    if is_url(path_or_url):
        if urllib.parse.urlparse(str(path_or_url)).scheme == "file":
            return resolve(urllib.request.url2pathname(urllib.parse.urlparse(str(path_or_url)).path), sha256)
        return download(str(path_or_url), sha256, progress=progress)
    path = Path(path_or_url).expanduser()
    if path.is_dir():
        candidates = [path / "model.pdparams", path / "best" / "model.pdparams"]
        path = next((c for c in candidates if c.is_file()), path / "model.pdparams")
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist (give a .pdparams file, a checkpoint folder, or a URL)")
    if sha256 and sha256_of(path) != sha256.lower():
        raise InputError(f"weights file {path} does not match its expected SHA-256 {sha256}")
    return path


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A .pdparams file → {name: numpy array}. Accepts a bare state dict (PaddleDetection's format)."""
    try:
        state = paddle.load(str(path), return_numpy=True)
    except Exception as exc:  # pickle errors, truncated files, wrong formats: all one message
        raise InputError(f"cannot read weights {path}: {type(exc).__name__}: {exc} "
                         f"(expected a .pdparams state dict)") from None
    if not isinstance(state, Mapping) or not state:
        raise InputError(f"weights {path} hold no state dict (a mapping of parameter names to arrays)")
    out = {}
    for name, value in state.items():
        if isinstance(value, paddle.Tensor):
            value = value.numpy()
        if isinstance(value, np.ndarray):
            out[str(name)] = value
    if not out:
        raise InputError(f"weights {path} hold no arrays (is it an optimizer state .pdopt?)")
    return out


def num_classes_of(state: Mapping[str, Any]) -> int | None:
    """The class count a checkpoint was trained for (its encoder score head's output size), if visible."""
    w = state.get("transformer.enc_score_head.weight")
    return int(w.shape[-1]) if w is not None else None


def load_state_dict(model: paddle.nn.Layer, state: Mapping[str, np.ndarray], *, source: str = "state dict",
                    strict: bool = False) -> dict:
    """Copy every entry of `state` whose name and shape match into `model`; report the rest.

    Returns {source, loaded, total, missing, unexpected, skipped [{name, checkpoint_shape, model_shape}],
    class_heads_skipped, num_classes_checkpoint, num_classes_model, message}. `strict` raises InputError
    on anything missing, unexpected or skipped; otherwise a checkpoint that matches nothing raises.
    """
    own = model.state_dict()
    missing, skipped, loaded = [], [], 0
    for name, target in own.items():
        if name not in state:
            missing.append(name)
            continue
        value = np.asarray(state[name])
        if list(value.shape) != list(target.shape):
            skipped.append({"name": name, "checkpoint_shape": list(value.shape), "model_shape": list(target.shape)})
            continue
        dtype = _numpy_dtype(target)
        target.set_value(value if dtype is None else value.astype(dtype, copy=False))
        loaded += 1
    unexpected = [n for n in state if n not in own]
    class_skips = [s["name"] for s in skipped if CLASS_DEPENDENT.search(s["name"])]
    other_skips = [s["name"] for s in skipped if not CLASS_DEPENDENT.search(s["name"])]
    report = {
        "source": source, "loaded": loaded, "total": len(own), "missing": missing, "unexpected": unexpected,
        "skipped": skipped, "class_heads_skipped": bool(class_skips),
        "num_classes_checkpoint": num_classes_of(state), "num_classes_model": num_classes_of(own),
    }
    parts = [f"loaded {loaded}/{len(own)} tensors from {source}"]
    if class_skips:
        parts.append(f"class-dependent heads kept fresh ({len(class_skips)} tensors: checkpoint has "
                     f"{report['num_classes_checkpoint']} classes, model {report['num_classes_model']})")
    if other_skips:
        parts.append(f"{len(other_skips)} tensors skipped for a shape mismatch (e.g. {other_skips[0]})")
    if missing:
        parts.append(f"{len(missing)} missing from the checkpoint (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    report["message"] = "; ".join(parts)
    if loaded == 0:
        raise InputError(f"none of the {len(state)} tensors in {source} fit this model "
                         f"(e.g. {next(iter(state))}); is it a checkpoint of another architecture?")
    if strict and (missing or unexpected or skipped):
        raise InputError(f"weights {source} do not match the model exactly: {report['message']}")
    (log.warning if (other_skips or missing or unexpected) else log.info)("%s", report["message"])
    return report


def load_weights(model: paddle.nn.Layer, path_or_url: str | os.PathLike, *, sha256: str | None = None,
                 strict: bool = False, progress: bool = True) -> dict:
    """Load a .pdparams (path, checkpoint folder, or URL) into `model` by name; see load_state_dict for
    the report. Class-count mismatches load everything but the class heads and say so in the report."""
    path = resolve(path_or_url, sha256, progress=progress)
    report = load_state_dict(model, read_state_dict(path), source=str(path_or_url), strict=strict)
    report["path"] = str(path)
    return report


def save_weights(model: paddle.nn.Layer | Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write the model's state dict (every parameter and buffer, PaddleDetection's names) to `path`
    atomically (temporary file, then rename)."""
    state = model.state_dict() if isinstance(model, paddle.nn.Layer) else dict(model)
    path = Path(path)
    with atomic_path(path) as tmp:
        paddle.save(state, str(tmp))
    return path


def _numpy_dtype(tensor: paddle.Tensor) -> np.dtype | None:
    """numpy dtype of a Paddle tensor (None for types numpy lacks, e.g. bfloat16: then no cast)."""
    try:
        return np.dtype(str(tensor.dtype).replace("paddle.", ""))
    except TypeError:
        return None


def load_pretrained(model: paddle.nn.Layer, source: str | os.PathLike | None = None, *,
                    progress: bool = True) -> dict | None:
    """Load the model's official weights (`model.config["pretrained"]`, checked against
    `pretrained_sha256`) or `source` when given; "none" (or an empty value) loads nothing → None."""
    cfg = getattr(model, "config", {}) or {}
    chosen = cfg.get("pretrained") if source is None else source
    if chosen is None or str(chosen).strip().lower() in ("", "none", "null"):
        return None
    sha = cfg.get("pretrained_sha256") if source is None else None
    return load_weights(model, chosen, sha256=sha, progress=progress)
