"""RF-DETR inference with the toolbox's meanings: a predictor callable like toolbox.engine.predict's.

`TorchPredictor(net, label_list, input_size)(images)` takes RGB uint8 images and returns (labels [B,K],
boxes [B,K,4] x1y1x2y2 in original pixels clipped to the image, scores [B,K]) as numpy, K = 300, so
toolbox.engine.predict.run writes the same JSON and drawings as for RT-DETR, and evaluation scores it the
same way. Pre-processing is rfdetr's own predict(): [0,1] RGB, bilinear resize without antialiasing to
SxS, ImageNet mean/std. Post-processing is rfdetr's PostProcess (sigmoid, top-K over query x class) over
the dataset's classes only: rfdetr's head has one extra (background) logit at index num_classes, which
is dropped so a class index is always the contract's (rank of the category id); the export's graph
(toolbox.rfdetr.onnx_wrap) computes the same.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, UsageError
from ..workspace import Workspace

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
NUM_TOP = 300
WEIGHTS = "model.pth"


def postprocess(logits, boxes_cxcywh, sizes_wh, num_classes: int, num_top: int = NUM_TOP):
    """(labels, boxes xyxy px, scores) torch tensors [B,K..] from raw outputs; sizes_wh: [B,2] (width, height).

    rfdetr's own PostProcess (what its predict() uses: sigmoid, top-K over query x class with its stable tie
    rule, a negative regressed width counted as 0, boxes clamped to the image) on the foreground logits."""
    import torch
    from rfdetr.models.postprocess import PostProcess

    fg = {"pred_logits": logits[..., :num_classes], "pred_boxes": boxes_cxcywh}
    res = PostProcess(num_select=num_top)(fg, sizes_wh[:, [1, 0]])  # rfdetr takes (height, width)
    return (torch.stack([r["labels"] for r in res]).to(torch.int64), torch.stack([r["boxes"] for r in res]),
            torch.stack([r["scores"] for r in res]))


def preprocess(images: Sequence[np.ndarray], input_size: int):
    """RGB uint8 HxWx3 images → a normalised [B,3,S,S] float tensor, as rfdetr's predict() prepares them."""
    import torch
    import torchvision.transforms.functional as F

    out = []
    for im in images:
        t = torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float().div_(255.0)
        out.append(F.resize(t, [input_size, input_size], antialias=False))
    return F.normalize(torch.stack(out), MEAN, STD)


class TorchPredictor:
    """An RF-DETR torch module (rfdetr's LWDETR, eval mode) with its label list and input size."""

    def __init__(self, net, label_list: Sequence[str], input_size: int, device: str = "cpu"):
        self.net, self.label_list, self.input_size = net.eval(), list(label_list), int(input_size)
        self.device = device
        self.net.to(device)

    def raw(self, images: Sequence[np.ndarray]) -> dict:
        import torch

        with torch.no_grad():
            return self.net(preprocess(images, self.input_size).to(self.device))

    def __call__(self, images: Sequence[np.ndarray]):
        import torch

        out = self.raw(images)
        sizes = torch.tensor([[im.shape[1], im.shape[0]] for im in images], dtype=torch.int64)
        labels, boxes, scores = postprocess(out["pred_logits"].float().cpu(), out["pred_boxes"].float().cpu(),
                                            sizes, len(self.label_list))
        return labels.numpy(), boxes.numpy(), scores.numpy()


def torch_device(device: str | None) -> str:
    """The toolbox's --device (cpu, gpu, gpu:N) as a torch device string."""
    text = (device or "cpu").strip().lower()
    if text == "cpu":
        return "cpu"
    if text in ("gpu", "cuda") or text.startswith(("gpu:", "cuda:")):
        ids = text.split(":", 1)[1] if ":" in text else "0"
        if "," in ids:
            raise UsageError(f"--device {device}: RF-DETR runs on one device in the toolbox; give gpu or gpu:N")
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: this torch build sees no CUDA GPU; use --device cpu")
        return f"cuda:{int(ids)}"
    raise UsageError(f"--device {device}: expected cpu, gpu or gpu:N")


def checkpoint_file(run_dir: Path, which: str | None) -> Path:
    """best (default; last when the run has no best yet), last, or a path → a model.pth file."""
    which = which or "best"
    if which in ("best", "last"):
        folder = run_dir / "checkpoints" / which
        if which == "best" and not (folder / WEIGHTS).is_file():
            folder = run_dir / "checkpoints" / "last"
        if not (folder / WEIGHTS).is_file():
            raise UsageError(f"run '{run_dir.name}' has no '{which}' checkpoint yet ({folder})")
        return folder / WEIGHTS
    p = Path(which).expanduser()
    p = p / WEIGHTS if p.is_dir() else p
    if not p.is_file():
        raise InputError(f"{p}: no such weights file")
    return p


def load_for_inference(*, run: str | None, model: str | None, weights: str | None, workspace: Workspace,
                       input_size: int | None = None, label_list: Sequence[str] | None = None,
                       num_classes: int | None = None):
    """(torch module in eval mode, label_list, input_size, weights path, run config or None), nothing downloaded."""
    from ..engine import config as C
    from .dispatch import model_config
    from .model import check_input_size, load_checkpoint, torch_module

    run_dir, cfg, labels = C.inference_source(run=run, model=model, weights=weights, workspace=workspace,
                                              label_list=label_list, num_classes=num_classes,
                                              weights_kind="model.pth")
    if run_dir is not None:
        model_cfg = model_config(cfg["model"]["source"])
        path = checkpoint_file(run_dir, weights)
        size = int(input_size or cfg["model"]["input_size"])
    else:
        model_cfg = model_config(model)
        path = checkpoint_file(Path("."), weights)
        size = int(input_size or model_cfg.get("input_size"))
    size = check_input_size(model_cfg, size)
    net = torch_module(load_checkpoint(model_cfg, len(labels), path, input_size=size))
    return net, labels, size, path, cfg


def predictor(*, run: str | None, model: str | None, weights: str | None, workspace: Workspace,
              input_size: int | None = None, label_list: Sequence[str] | None = None,
              num_classes: int | None = None, device: str = "cpu") -> TorchPredictor:
    net, labels, size, _, _ = load_for_inference(run=run, model=model, weights=weights, workspace=workspace,
                                                 input_size=input_size, label_list=label_list,
                                                 num_classes=num_classes)
    return TorchPredictor(net, labels, size, torch_device(device))


def info_of(path: Path) -> dict[str, Any]:
    """The checkpoint.json beside a model.pth (epoch, step, metrics), {} when absent."""
    import json

    p = Path(path).parent / "checkpoint.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
