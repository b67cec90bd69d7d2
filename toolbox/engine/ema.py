"""Exponential moving average of the weights (RT-DETR: decay 0.9999 with an exponential warm-up).

The effective decay at update n is `decay * (1 - exp(-n / warmup_steps))`, so the average follows the
raw weights closely early on (when they change fast) and becomes a long average later. Only trainable
parameters are averaged (PaddleDetection's `ema_filter_no_grad`); buffers such as BatchNorm statistics and
frozen parameters are taken from the model as they are when the averaged state is read.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import paddle


class ModelEMA:
    """Holds shadow copies (paddle tensors, same shapes as the parameters) of a model's trainable weights."""

    def __init__(self, model: paddle.nn.Layer, decay: float = 0.9999, warmup_steps: int = 2000):
        self.decay = float(decay)
        self.warmup_steps = int(warmup_steps)
        self.updates = 0
        self.names = [n for n, p in model.named_parameters() if not p.stop_gradient]
        params = dict(model.named_parameters())
        with paddle.no_grad():
            self.shadow = {n: params[n].detach().clone() for n in self.names}

    def current_decay(self) -> float:
        if self.warmup_steps <= 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-self.updates / self.warmup_steps))

    @paddle.no_grad()
    def update(self, model: paddle.nn.Layer) -> None:
        self.updates += 1
        d = self.current_decay()
        params = dict(model.named_parameters())
        w = 1.0 - d
        for n in self.names:  # shadow += (1 - d) * (param - shadow): one in-place op per tensor
            self.shadow[n].lerp_(params[n].detach(), w)

    def state_dict(self, model: paddle.nn.Layer) -> dict[str, Any]:
        """The model's full state dict with averaged values for the trainable parameters."""
        out = dict(model.state_dict())
        out.update(self.shadow)
        return out

    def load(self, state: dict[str, Any], updates: int) -> None:
        """Restore shadows from a saved averaged state dict (e.g. a checkpoint's model.pdparams)."""
        missing = [n for n in self.names if n not in state]
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameters, e.g. {missing[:3]}")
        with paddle.no_grad():
            for n in self.names:
                v = state[n]
                self.shadow[n].set_value(v.numpy() if hasattr(v, "numpy") else np.asarray(v))
        self.updates = int(updates)
