"""Build RF-DETR detectors from a pipelines/ config with rfdetr's own classes, and load the toolbox's checkpoints.

The pipelines/ file names the rfdetr variant (`rfdetr.class`, e.g. RFDETRNano) and its config class
(`rfdetr.config`, e.g. RFDETRNanoConfig); every architectural fact (patch size, windows, default resolution)
is read from that installed config class, so a new rfdetr release cannot silently disagree with the YAML.

`pretrained="none"` must download nothing. rfdetr builds its DINOv2 encoder with
`from_pretrained("facebook/dinov2-with-registers-...")` (a Hugging Face hub download) whenever no detector
checkpoint is given and the variant's patch grid matches DINOv2's (RF-DETR-B). For that one case the
encoder is built from the package's own bundled DINOv2 config with random initialisation instead
(`_random_init_encoder`), which is what rfdetr itself does for the patch-16 variants.
"""
from __future__ import annotations

import contextlib
import logging
import os
import urllib.parse
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import InputError, RuntimeFailure, UsageError

log = logging.getLogger(__name__)


def _rfdetr():
    try:
        import rfdetr  # noqa: F401  (heavy: torch, transformers)
        import rfdetr.config
    except ImportError as exc:  # the optional family is missing from this environment
        raise RuntimeFailure(f"RF-DETR needs the rfdetr package ({exc}); run `bash scripts/setup.sh`") from None
    return rfdetr


def variant_class(cfg: Mapping[str, Any]) -> type:
    """The rfdetr wrapper class a pipelines/ config names (`rfdetr.class`)."""
    rf = _rfdetr()
    name = (cfg.get("rfdetr") or {}).get("class")
    cls = getattr(rf, str(name), None)
    if cls is None:
        raise InputError(f"{cfg.get('model_name')}: rfdetr.class {name!r} is not a class of rfdetr {version()}")
    return cls


def config_class(cfg: Mapping[str, Any]) -> type:
    """The rfdetr ModelConfig class of the variant (`rfdetr.config`), where the architecture's defaults live."""
    rf = _rfdetr()
    name = (cfg.get("rfdetr") or {}).get("config")
    cls = getattr(rf.config, str(name), None)
    if cls is None:
        raise InputError(f"{cfg.get('model_name')}: rfdetr.config {name!r} is not a config class of rfdetr {version()}")
    return cls


def version() -> str:
    from importlib.metadata import version as v

    return v("rfdetr")


def _default(cls: type, field: str) -> Any:
    return cls.model_fields[field].default


def size_multiple(cfg: Mapping[str, Any]) -> int:
    """The multiple every input size of this variant must be: patch size x windows (the windowed encoder
    splits the patch grid into num_windows x num_windows equal windows)."""
    cls = config_class(cfg)
    return int(_default(cls, "patch_size")) * int(_default(cls, "num_windows"))


def default_resolution(cfg: Mapping[str, Any]) -> int:
    """rfdetr's default square resolution of the variant."""
    return int(_default(config_class(cfg), "resolution"))


def check_input_size(cfg: Mapping[str, Any], size: int) -> int:
    """`size` if the variant accepts it, else a UsageError naming the multiple and the nearest valid sizes."""
    m = size_multiple(cfg)
    if not isinstance(size, int) or isinstance(size, bool) or size < m or size % m:
        lo = max(m, (int(size) // m) * m) if isinstance(size, int) else m
        raise UsageError(f"{cfg.get('model_name')}: input size {size!r} is not a multiple of {m} (patch size x "
                         f"windows of this RF-DETR size); use e.g. {lo} or {lo + m}")
    return size


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https")


def resolve_weights(cfg: Mapping[str, Any], pretrained: str | None) -> str | None:
    """Local path of the detector weights to start from, downloading through rfdetr when needed; None = scratch.

    None means the config's own `pretrained` (rfdetr's published COCO checkpoint name, e.g. rf-detr-nano.pth);
    "none" means random initialisation. A bare rfdetr name goes through rfdetr's download (cached under
    RF_HOME, ~/.roboflow/models); a URL is downloaded by rfdetr's downloader into the same cache; a path is used
    as is. Any failure to fetch → RuntimeFailure (exit 3) with a one-line reason and the `none` hint.
    """
    text = cfg.get("pretrained") if pretrained is None else pretrained
    if text is None or str(text).lower() == "none":
        return None
    text = str(text)
    _rfdetr()
    from rfdetr.assets.model_weights import ModelWeights, _download_file, download_pretrain_weights, get_model_cache_dir

    local = Path(text).expanduser()
    if not _is_url(text) and local.is_file():
        return str(local)
    if not _is_url(text) and ModelWeights.from_filename(os.path.basename(text)) is None:
        raise UsageError(f"--pretrained {text}: no such file, and not a checkpoint name rfdetr {version()} knows "
                         f"(e.g. {cfg.get('pretrained')}); pass a path, a URL or none")
    cache = Path(get_model_cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / os.path.basename(urllib.parse.urlparse(text).path if _is_url(text) else text)
    try:
        if _is_url(text):
            if not target.is_file():
                _download_file(url=text, filename=str(target), expected_md5=None)
        else:
            download_pretrain_weights(str(target))
    except Exception as exc:  # requests/urllib errors vary; all mean the same to the user
        raise RuntimeFailure(f"cannot download the pretrained weights {text} ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'}); "
                             f"check the network or pass --pretrained none") from None
    if not target.is_file():
        raise RuntimeFailure(f"rfdetr did not produce the weights file {target}; pass --pretrained none")
    return str(target)


@contextlib.contextmanager
def _random_init_encoder() -> Iterator[None]:
    """While building, make rfdetr's windowed DINOv2 encoder construct from its config (random weights)
    instead of fetching the hub checkpoint: the one hub call rfdetr makes when no detector weights are given."""
    from rfdetr.models.backbone import dinov2

    cls = dinov2.WindowedDinov2WithRegistersBackbone
    original = cls.__dict__["from_pretrained"] if "from_pretrained" in cls.__dict__ else None

    def _from_config(klass, _name, *args, config=None, **kwargs):  # same call shape as from_pretrained
        return klass(config)

    cls.from_pretrained = classmethod(_from_config)
    try:
        yield
    finally:
        if original is None:
            del cls.from_pretrained
        else:
            cls.from_pretrained = original


def build_rfdetr(cfg: Mapping[str, Any], num_classes: int, *, pretrained: str | None,
                 input_size: int | None) -> Any:
    """rfdetr's model wrapper (has .predict/.train/.export) for `cfg`'s variant with `num_classes` classes.

    `pretrained`: None = the config's COCO checkpoint, "none" = random init and no download at all, else a
    checkpoint name, URL or path. `input_size` (None = the config's) must be a multiple of size_multiple(cfg).
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise UsageError(f"num_classes must be a positive integer, got {num_classes!r}")
    size = check_input_size(cfg, int(input_size or cfg.get("input_size") or default_resolution(cfg)))
    cls = variant_class(cfg)
    weights = resolve_weights(cfg, pretrained)
    kwargs = dict(num_classes=num_classes, resolution=size, pretrain_weights=weights)
    guard = _random_init_encoder() if weights is None else contextlib.nullcontext()
    import warnings

    with guard, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rfdetr warns that training from scratch is unusual: it is asked for here
        try:
            return cls(**kwargs)
        except (OSError, RuntimeError, ValueError) as exc:
            raise RuntimeFailure(f"rfdetr could not build {cfg.get('model_name')} ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def torch_module(wrapper: Any):
    """The underlying detector (torch.nn.Module, rfdetr's LWDETR) of a wrapper, in eval mode."""
    net = wrapper.model.model
    if net is None:
        raise RuntimeFailure("this rfdetr wrapper was optimised in place and no longer holds its torch module")
    return net.eval()


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The dict of a model.pth the toolbox wrote (rfdetr's own {model, args, epoch, ...} layout)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such RF-DETR checkpoint")
    try:  # the toolbox's own files: args may hold non-tensor values, so full unpickling is needed
        data = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(f"{p} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "model" not in data:
        raise InputError(f"{p} is not an RF-DETR checkpoint (no 'model' state dict)")
    return data


def load_checkpoint(cfg: Mapping[str, Any], num_classes: int, path: str | os.PathLike,
                    input_size: int | None = None) -> Any:
    """A wrapper built from scratch (nothing downloaded) with the weights of `path` loaded strictly."""
    data = read_checkpoint(path)
    wrapper = build_rfdetr(cfg, num_classes, pretrained="none", input_size=input_size)
    net = wrapper.model.model
    try:
        net.load_state_dict(data["model"], strict=True)
    except RuntimeError as exc:
        raise InputError(f"{path} does not fit {cfg.get('model_name')} with {num_classes} classes: "
                         f"{str(exc).splitlines()[0][:200]}") from None
    net.eval()
    return wrapper
