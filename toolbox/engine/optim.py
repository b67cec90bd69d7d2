"""The optimiser of the RT-DETR recipe: AdamW with parameter groups, warm-up, clipping.

Per-parameter learning-rate multiplier = the multiplier the model gave the parameter (the backbone's
`lr_mult_list`, 0.1 in the recipe, stored by Paddle in `param.optimize_attr`) x the `lr_mult` of the
first `train.param_groups` regex matching its state-dict name x `train.backbone_lr_mult` for backbone
parameters. Weight decay = the matching group's `weight_decay` (the recipes set 0 for norms), else
`train.weight_decay`. Parameters with equal (multiplier, decay) share one Paddle group; Paddle reads a
group's `learning_rate` as a multiplier of the global rate, which `LRSchedule` sets every step: linear
warm-up from `warmup_start_factor` over `warmup_steps` optimizer steps, then constant, times `lr_gamma`
at each milestone. Gradients are clipped to a global norm of `clip_grad_norm`.
"""
from __future__ import annotations

import re
from typing import Any

import paddle


def param_settings(model: paddle.nn.Layer, train_cfg: dict) -> dict[str, tuple[float, float]]:
    """{state-dict name: (lr multiplier, weight decay)} for every trainable parameter."""
    default_wd = float(train_cfg.get("weight_decay", 0.0))
    backbone_mult = float(train_cfg.get("backbone_lr_mult", 1.0) or 1.0)
    rules = []
    for g in train_cfg.get("param_groups") or []:
        try:
            rules.append((re.compile(g["params"]), g))
        except (re.error, KeyError, TypeError) as e:
            from ..errors import UsageError

            raise UsageError(f"train.param_groups: bad entry {g!r} ({e}); each needs a `params` regex") from e
    out = {}
    for name, p in model.named_parameters():
        if p.stop_gradient:
            continue
        own = getattr(p, "_toolbox_lr_mult", None)
        if own is None:  # remember the model's own multiplier: Paddle overwrites optimize_attr per group
            own = float((getattr(p, "optimize_attr", None) or {}).get("learning_rate", 1.0))
            p._toolbox_lr_mult = own
        mult, wd = own, default_wd
        for rx, g in rules:
            if rx.search(name):
                mult *= float(g.get("lr_mult", 1.0))
                wd = float(g["weight_decay"]) if g.get("weight_decay") is not None else wd
                break
        if name.startswith("backbone.") or ".backbone." in name:
            mult *= backbone_mult
        out[name] = (mult, wd)
    return out


def param_groups(model: paddle.nn.Layer, train_cfg: dict) -> list[dict[str, Any]]:
    settings = param_settings(model, train_cfg)
    params = dict(model.named_parameters())
    groups: dict[tuple[float, float], list] = {}
    for name, key in settings.items():
        groups.setdefault(key, []).append(params[name])
    return [{"params": ps, "learning_rate": mult, "weight_decay": wd}
            for (mult, wd), ps in sorted(groups.items())]


def build_optimizer(model: paddle.nn.Layer, train_cfg: dict) -> paddle.optimizer.AdamW:
    clip = float(train_cfg.get("clip_grad_norm") or 0.0)
    return paddle.optimizer.AdamW(
        learning_rate=float(train_cfg["lr"]),
        parameters=param_groups(model, train_cfg),
        weight_decay=float(train_cfg.get("weight_decay", 0.0)),
        grad_clip=paddle.nn.ClipGradByGlobalNorm(clip) if clip > 0 else None,
    )


class LRSchedule:
    """lr(step) for optimizer steps: linear warm-up, then constant with optional step milestones."""

    def __init__(self, lr: float, warmup_steps: int, start_factor: float = 0.001,
                 milestones_steps: list[int] | None = None, gamma: float = 0.1):
        self.base = float(lr)
        self.warmup_steps = int(warmup_steps)
        self.start_factor = float(start_factor)
        self.milestones = sorted(int(m) for m in (milestones_steps or []))
        self.gamma = float(gamma)
        self.last_step = 0

    def __call__(self, step: int) -> float:
        lr = self.base * self.gamma ** sum(step >= m for m in self.milestones)
        if self.warmup_steps > 0 and step < self.warmup_steps:
            alpha = step / self.warmup_steps
            lr *= self.start_factor * (1 - alpha) + alpha
        return lr

    def apply(self, optimizer: paddle.optimizer.Optimizer, step: int) -> float:
        """Set the optimizer's rate for optimizer step `step` (0-based) and return it."""
        self.last_step = step
        lr = self(step)
        optimizer.set_lr(lr)
        return lr

    def state_dict(self) -> dict:
        return {"base": self.base, "warmup_steps": self.warmup_steps, "start_factor": self.start_factor,
                "milestones": self.milestones, "gamma": self.gamma, "last_step": self.last_step}

    def set_state_dict(self, state: dict) -> None:
        self.last_step = int(state.get("last_step", 0))


def portable_state(optimizer_state: dict, model: paddle.nn.Layer) -> dict:
    """Optimizer state with Paddle's per-process parameter names (`linear_3.w_0_moment1_0`) replaced by
    state-dict names (`decoder.x.weight|moment1_0`), so a new process (other creation order) can load it."""
    names = sorted(((p.name, n) for n, p in model.named_parameters()), key=lambda t: -len(t[0]))
    out = {}
    for key, value in optimizer_state.items():
        for pname, sname in names:
            if key.startswith(pname + "_"):
                key = f"{sname}|{key[len(pname) + 1:]}"
                break
        out[key] = value
    return out


def local_state(portable: dict, model: paddle.nn.Layer) -> dict:
    """The inverse of `portable_state` for this process's parameters."""
    by_name = {n: p.name for n, p in model.named_parameters()}
    out = {}
    for key, value in portable.items():
        if "|" in key:
            sname, acc = key.split("|", 1)
            if sname not in by_name:
                continue
            key = f"{by_name[sname]}_{acc}"
        out[key] = value
    return out
