"""The Train page's plan: what a run will do (steps, the engine's learning-rate / warm-up / EMA schedule)
and how long it will take here, and a CPU-sized proposal when the recipe's GPU defaults would take days.

The schedule is the engine's own resolution of the form (toolbox.engine.config.resolve: recipe defaults,
the model's pipelines/ file, the options, the -o overrides), never re-derived here. The time comes from
this workspace's own measurements: the images per second that the newest run of the same model on the
same device logged (a short probe run gives one in a minute), scaled by the pixel count to other sizes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..engine import config as engine_config
from ..events import read_events
from ..models import load_config
from ..workspace import Workspace
from .widgets import fmt_duration, read_json

CPU_BUDGET_S = 25 * 60     # a first CPU run: under half an hour on 2 cores, with a margin for evaluations
CPU_INPUT_SIZE = 320       # the recipe's 640 costs 4x the time per image on a CPU
PROBE_STEPS = 4            # a probe run: enough logged steps for a steady images/s


@dataclass
class Speed:
    """Training images per second measured by a run, at its input size and batch."""

    images_per_s: float
    input_size: int
    run: str

    def seconds_per_image(self, input_size: int) -> float:
        return (input_size / self.input_size) ** 2 / self.images_per_s


def dataset_facts(ws: Workspace, dataset: str) -> tuple[list[str], int]:
    """(class names, train images) from the dataset's check report."""
    report = read_json(ws.dataset_dir(dataset) / "check_dataset_result.json") or {}
    attrs = report.get("attributes") or {}
    return list(attrs.get("class_names") or []), int(attrs.get("train_samples") or 0)


def _is_rfdetr(model: str) -> bool:
    from ..rfdetr.dispatch import family_of_model

    return family_of_model(model) == "rfdetr"


def cpu_size(model: str, size: int) -> int:
    """The CPU input size for `model`: at most CPU_INPUT_SIZE, a multiple the model accepts (RF-DETR
    sizes have their own multiple, e.g. 56 for RF-DETR-B)."""
    size = min(int(size), CPU_INPUT_SIZE)
    if model and _is_rfdetr(model):
        from ..rfdetr.dispatch import model_config
        from ..rfdetr.model import size_multiple

        m = size_multiple(model_config(model))
        size = max(m, size // m * m)
    return size


def resolved(model: str, class_names: list[str], options: dict, overrides: dict) -> dict:
    """The run's configuration as the engine resolves it (options: engine keys, None = not given);
    an RF-DETR model: as toolbox.rfdetr.config resolves it."""
    if _is_rfdetr(model):
        from ..rfdetr import config as R
        from ..rfdetr.dispatch import model_config

        mcfg = model_config(model)
        return R.resolve(model_name=mcfg.get("model_name", model), model_source=model, model_cfg=mcfg,
                         dataset={"name": "", "label_list": class_names or ["object"]},
                         options={k: v for k, v in options.items() if k not in R.UNSUPPORTED}, overrides=overrides)
    cfg = load_config(model)
    return engine_config.resolve(model_name=cfg.get("model_name", model), model_source=model, model_cfg=cfg,
                                 dataset={"name": "", "label_list": class_names or ["object"]},
                                 options=options, overrides=overrides)


def planned_steps(train_images: int, cfg: dict) -> int:
    t = cfg["train"]
    per_epoch = math.ceil(max(1, train_images) / int(t["batch_size"]) / int(t["grad_accum_steps"]))
    total = int(t["epochs"]) * per_epoch
    return min(total, int(t["max_steps"])) if t.get("max_steps") else total


def measured_speed(ws: Workspace, model: str, device: str) -> Speed | None:
    """The newest run of `model` on `device` in this workspace that logged its images per second."""
    runs = sorted((p for p in ws.runs.glob("*/config.yaml")), key=lambda p: p.stat().st_mtime, reverse=True)
    for cfg_path in runs:
        cfg = engine_config.load(cfg_path)
        if (cfg.get("model") or {}).get("name") != model or (cfg.get("train") or {}).get("device", "cpu") != device:
            continue
        ips = [float(e["images_per_s"]) for e in read_events(cfg_path.parent / "events.jsonl")
               if e.get("type") == "log" and e.get("images_per_s")]
        if ips:
            return Speed(ips[-1], int(cfg["model"]["input_size"]), cfg_path.parent.name)
    return None


def cpu_proposal(train_images: int, speed: Speed, model_size: int, budget_s: float = CPU_BUDGET_S,
                 model: str | None = None) -> dict:
    """Input size and epochs (as form values) whose training fits `budget_s` at the measured speed."""
    size = cpu_size(model, model_size) if model else min(model_size, CPU_INPUT_SIZE)
    epoch_s = max(1, train_images) * speed.seconds_per_image(size)
    epochs = max(1, int(budget_s // epoch_s))
    return {"--input-size": size, "--epochs": epochs, "--batch-size": 4,
            "--eval-interval": max(1, epochs // 4), "--max-steps": 0}


def plan_md(ws: Workspace, dataset: str, model: str, device: str, options: dict, overrides: dict,
            speed: Speed | None) -> str:
    """The plan as the page shows it: steps, schedule, estimated time (or how to get one)."""
    names, n_train = dataset_facts(ws, dataset)
    cfg = resolved(model, names, options, overrides)
    t, size = cfg["train"], int(cfg["model"]["input_size"])
    steps = planned_steps(n_train, cfg)
    if cfg["model"].get("backend") == "rfdetr":
        return "\n\n".join([_steps_line(t, steps, size, n_train), _rfdetr_schedule(t),
                            _time_line(t, steps, speed, size)])
    cap = int(t.get("warmup_steps_max", 2000))
    warmup, _ = engine_config.planned_warmup(t["warmup_steps"], steps, cap)  # as the trainer resolves it
    ema_warmup, _ = engine_config.planned_warmup(t["ema_warmup_steps"], steps, cap)
    ema = f"EMA decay {t['ema_decay']}, EMA warm-up {ema_warmup} steps" if t.get("ema") else "no EMA"
    lines = [_steps_line(t, steps, size, n_train),
             f"**Schedule (the engine's):** learning rate {t['lr']:.3g} (base {t['base_lr']:.3g}, scaling "
             f"'{t['lr_scaling']}'), warm-up {warmup} steps from ×{t['warmup_start_factor']}, {ema}.",
             _time_line(t, steps, speed, size)]
    return "\n\n".join(lines)


def _steps_line(t: dict, steps: int, size: int, n_train: int) -> str:
    return (f"**Plan:** {t['epochs']} epochs × {math.ceil(steps / max(1, int(t['epochs'])))} steps "
            f"= **{steps} steps** of {int(t['batch_size']) * int(t['grad_accum_steps'])} images at {size} px "
            f"on {n_train} training images.")


def _rfdetr_schedule(t: dict) -> str:
    """RF-DETR's schedule as rfdetr runs it (toolbox.rfdetr.config's resolution of the form)."""
    ema = f"EMA decay {t['ema_decay']} (tau {t['ema_tau']})" if t.get("ema") else "no EMA"
    warm = f"warm-up {t['warmup_epochs']} epochs" if float(t.get("warmup_epochs") or 0) else "no warm-up"
    return (f"**Schedule (rfdetr's):** learning rate {float(t['lr']):.3g}, encoder {float(t['lr_encoder']):.3g}, "
            f"{warm}, {ema}; rfdetr recommends batch × accumulation = 16 (now {t['effective_batch']}).")


def _time_line(t: dict, steps: int, speed: "Speed | None", size: int) -> str:
    if speed is None:
        return ("**Time:** not measured on this machine yet for this model and device: press "
                "**Measure speed** (a short probe run).")
    train_s = steps * int(t["batch_size"]) * int(t["grad_accum_steps"]) * speed.seconds_per_image(size)
    return (f"**Time:** about **{fmt_duration(train_s)}** of training (+ evaluations), from "
            f"{speed.images_per_s:.2f} images/s at {speed.input_size} px measured by run `{speed.run}`.")


def probe_run_name(model: str, size: int) -> str:
    return f"probe-{Path(model).stem}-{size}"
