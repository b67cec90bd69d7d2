"""RF-DETR training through rfdetr's own Lightning stack, reporting the way RT-DETR runs do.

rfdetr's public training pieces do the work: `RFDETRModelModule` (model, criterion, optimizer and
schedule), `RFDETRDataModule` (its Roboflow-layout reader and augmentation), `RFDETREMACallback` and
`build_trainer` (PyTorch Lightning). What rfdetr's own `RFDETR.train()` adds on top (its checkpoint
files, CSV/TensorBoard logs, its own COCO metric and best-model selection) is left out: the
`ToolboxReport` callback (toolbox.rfdetr.report) writes the toolbox's run folder instead (CONTRACTS "Files"):

- events.jsonl: start, log every --log-interval optimizer steps (loss, lr, images/s, eta), eval (the
  toolbox's own COCO evaluation, toolbox.rfdetr.evaluate, with the EMA weights), checkpoint, end;
- checkpoints/last/model.pth: Lightning's full checkpoint (what --resume continues: optimizer, schedule,
  EMA, loop position, early-stop counter) plus `model`, the weights to use (EMA when on), so rfdetr's
  own readers load it too; checkpoints/best/model.pth: rfdetr's light layout (model, args, model_name,
  model_config) of the best evaluation by AP@[.5:.95]. Each folder is written under a temporary name and
  renamed (toolbox.fileio.atomic_dir).

A "step" is one optimizer update, as for RT-DETR (Lightning's global_step). Ctrl-C / SIGTERM end the
job with exit 130 and an `end` event with status cancelled; the last complete checkpoint stays.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..engine import config as C
from ..errors import InputError, RuntimeFailure, UsageError
from ..engine.run_log import run_logger, run_outcome
from ..events import EventLog
from ..workspace import Workspace, record_job_output
from . import config as R
from .predict import WEIGHTS
from .report import ToolboxReport, _say

OPTION_KEYS = ("epochs", "max_steps", "batch_size", "grad_accum_steps", "lr", "warmup_steps", "pretrained",
               "init_from", "sampling", "device", "amp", "input_size", "num_workers", "eval_interval",
               "save_interval", "log_interval", "early_stop_patience", "seed")
RESUME_CHANGEABLE = ("epochs", "max_steps", "log_interval", "eval_interval", "save_interval",
                     "early_stop_patience", "num_workers", "device")
DATA_LAYOUT = "rfdetr_data"  # the Roboflow layout (links) rfdetr reads, inside the run folder


def catch_sigterm() -> None:
    """SIGTERM (the UI's cancel, `kill`) ends the job like Ctrl-C; Lightning chains this handler after its own."""
    import signal
    import threading

    def _interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


# ---------------------------------------------------------------------------------------------- configuration
def _weights_of_run(workspace: Workspace, value: str, what: str) -> str:
    """--init-from RUN|PATH → a model.pth (a run's best, else last)."""
    folder = workspace.runs / value
    if folder.is_dir():
        for sub in ("best", "last"):
            p = folder / "checkpoints" / sub / WEIGHTS
            if p.is_file():
                return str(p)
        raise UsageError(f"{what} {value}: the run has no checkpoint yet ({folder / 'checkpoints'})")
    p = Path(value).expanduser()
    p = p / WEIGHTS if p.is_dir() else p
    if p.is_file():
        return str(p.resolve())
    raise UsageError(f"{what} {value}: neither a run in {workspace.runs} nor an RF-DETR model.pth")


def _resume_target(workspace: Workspace, run: str | None, resume: Any) -> tuple[Path, Path]:
    if resume is True or resume == "last":
        if not run:
            raise UsageError("--resume without a checkpoint needs --run NAME (the run to continue)")
        run_dir = workspace.run_dir(run)
        path = run_dir / "checkpoints" / "last" / WEIGHTS
    elif (workspace.runs / str(resume)).is_dir():
        run_dir = workspace.runs / str(resume)
        path = run_dir / "checkpoints" / "last" / WEIGHTS
    else:
        path = Path(str(resume)).expanduser()
        path = path / WEIGHTS if path.is_dir() else path
        run_dir = path.parent.parent.parent
    if not (run_dir / "config.yaml").is_file():
        raise UsageError(f"--resume {resume}: expected a checkpoint inside runs/<run>/checkpoints/")
    if not path.is_file():
        raise UsageError(f"--resume: run '{run_dir.name}' has no checkpoint to continue ({path})")
    return run_dir, path


def prepare(options: dict[str, Any], workspace: Workspace) -> tuple[Path, dict, Path | None]:
    """(run folder, run config, checkpoint to resume or None), every option checked before anything runs."""
    from ..data.loader import annotation_path, dataset_labels
    from .dispatch import model_config

    given = {k: options.get(k) for k in OPTION_KEYS}
    overrides = C.parse_overrides(options.get("overrides") or [])
    resume = options.get("resume")
    if resume:
        run_dir, path = _resume_target(workspace, options.get("run"), resume)
        cfg = C.resumed_config(run_dir, given, overrides, RESUME_CHANGEABLE)
        return run_dir, cfg, path
    if bool(options.get("model")) == bool(options.get("config")):
        raise UsageError("give exactly one of --model NAME or --config FILE")
    source = options.get("model") or str(Path(options["config"]).expanduser().resolve())
    mcfg = model_config(source)
    if not options.get("dataset"):
        raise UsageError("--dataset NAME|DIR is required (see `python -m toolbox check PATH --name NAME`)")
    dataset_dir = workspace.dataset_dir(options["dataset"])
    annotation_path(dataset_dir, "train")
    cat_ids, labels = dataset_labels(dataset_dir)
    dataset = {"name": dataset_dir.name, "dir": str(dataset_dir), "cat_ids": cat_ids, "label_list": labels}
    name = str(mcfg.get("model_name"))
    cfg = R.resolve(model_name=name, model_source=source, model_cfg=mcfg, dataset=dataset, options=given,
                    overrides=overrides)
    if given.get("init_from"):
        cfg["train"]["pretrained"] = _weights_of_run(workspace, str(given["init_from"]), "--init-from")
        cfg["train"]["init_from"] = str(given["init_from"])
    run = options.get("run") or C.default_run_name(name)
    if "/" in run or run in (".", "..") or not run.strip():
        raise UsageError(f"--run {run!r}: a run name is a plain folder name")
    run_dir = workspace.runs / run
    if (run_dir / "events.jsonl").exists():
        raise UsageError(f"run '{run}' already exists in {workspace.runs}; choose another --run, continue it with "
                         f"--run {run} --resume, or delete it with `python -m toolbox runs delete {run}`")
    return run_dir, cfg, None


# ---------------------------------------------------------------------------------------------- entry
def train(options: dict[str, Any], workspace: Workspace, progress: bool = True) -> Path:
    """Run an RF-DETR training job; returns the run folder. Raises ToolboxError subclasses on failure."""
    from .predict import torch_device

    run_dir, cfg, resume = prepare(options, workspace)
    torch_device(cfg["train"]["device"])  # a bad --device is a usage error before the run folder exists
    run_dir.mkdir(parents=True, exist_ok=True)
    record_job_output(workspace, run_dir)
    ckdir = run_dir / "checkpoints"
    for stale in ckdir.glob(".*.tmp") if ckdir.is_dir() else []:
        import shutil

        shutil.rmtree(stale, ignore_errors=True)  # a temp folder of a killed save: never a checkpoint
    C.save(cfg, run_dir / "config.yaml")
    events = EventLog(run_dir / "events.jsonl")
    log = run_logger(run_dir, "toolbox.rfdetr.train")
    report = None
    with run_outcome(run_dir, events, log, lambda: report.step if report else _last_step(run_dir)):
        report = _fit(cfg, run_dir, events, log, resume, progress)
    return run_dir


def _last_step(run_dir: Path) -> int:
    from ..events import read_events

    steps = [int(e.get("step") or 0) for e in read_events(run_dir / "events.jsonl") if e.get("step") is not None]
    return max(steps, default=0)


def _fit(cfg: dict, run_dir: Path, events: EventLog, log: logging.Logger, resume: Path | None,
         progress: bool) -> "ToolboxReport":
    import warnings

    from ..data.loader import CocoDetection
    from .dataset import write_layout
    from .dispatch import model_config
    from .model import _random_init_encoder, build_rfdetr, torch_module
    from .predict import torch_device

    m, d, t = cfg["model"], cfg["data"], cfg["train"]
    mcfg = model_config(m["source"])
    device = torch_device(t["device"])
    try:
        import pytorch_lightning as pl
        from rfdetr.config import TrainConfig
        from rfdetr.training import RFDETRDataModule, RFDETRModelModule, build_trainer
        from rfdetr.training.callbacks import RFDETREMACallback
    except ImportError as exc:
        raise RuntimeFailure(f"RF-DETR training needs rfdetr[train] ({exc}); run `bash scripts/setup.sh`") from None

    seed = int(t["seed"])
    pl.seed_everything(seed, workers=True, verbose=False)
    layout, _, _ = write_layout(d["dir"], run_dir / DATA_LAYOUT)
    train_set = CocoDetection(d["dir"], "train", d["cat_ids"], skip_empty=True)
    if len(train_set) == 0:
        raise InputError(f"{train_set.ann_file}: no training image has a box to learn from "
                         f"(run `python -m toolbox check` on the dataset)")
    val_set = None
    if (Path(d["dir"]) / "annotations" / "instance_val.json").is_file():
        val_set = CocoDetection(d["dir"], "val", d["cat_ids"])

    pretrained = None if t.get("pretrained") in (None, "default") else str(t["pretrained"])
    wrapper = build_rfdetr(mcfg, int(m["num_classes"]), pretrained="none" if resume else pretrained,
                           input_size=int(m["input_size"]))
    model_config_ = wrapper.model_config.model_copy(update={"pretrain_weights": None})
    known = set(TrainConfig.model_fields)
    extra = {k: v for k, v in t.items() if k in known and k not in _MAPPED}
    tc = TrainConfig(
        dataset_dir=str(layout), output_dir=str(run_dir / "rfdetr"), dataset_file="roboflow",
        epochs=int(t["epochs"]), batch_size=int(t["batch_size"]), grad_accum_steps=int(t["grad_accum_steps"]),
        lr=float(t["lr"]), lr_encoder=float(t["lr_encoder"]), weight_decay=float(t["weight_decay"]),
        use_ema=bool(t["ema"]), ema_decay=float(t["ema_decay"]), ema_tau=int(t["ema_tau"]),
        warmup_epochs=float(t["warmup_epochs"]), clip_max_norm=float(t["clip_max_norm"]),
        multi_scale=bool(t["multi_scale"]), num_workers=int(t["num_workers"]), seed=seed,
        class_names=list(m["label_list"]), amp_dtype="auto" if t.get("amp") else None,
        progress_bar=None, tensorboard=False, eval_interval=1,
        compact_train_metrics=False, train_log_on_step=True,  # per-step loss terms for the `log` events
        **extra)
    with _random_init_encoder(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = RFDETRModelModule(model_config_, tc)
    if not resume:
        module.model.load_state_dict(torch_module(wrapper).state_dict())
    del wrapper
    datamodule = RFDETRDataModule(model_config_, tc)
    report = ToolboxReport(cfg, run_dir, events, log, val_set, progress=progress,
                           weights={"resumed_from": str(resume)} if resume else
                           {"pretrained": pretrained or "none"})
    callbacks: list = []
    if t["ema"]:
        callbacks.append(RFDETREMACallback(decay=tc.ema_decay, tau=tc.ema_tau,
                                           update_interval_steps=tc.ema_update_interval))
    callbacks.append(report)
    if progress:
        from pytorch_lightning.callbacks import TQDMProgressBar

        callbacks.append(TQDMProgressBar(refresh_rate=1))
    accelerator, devices = ("cpu", 1) if device == "cpu" else ("gpu", [int(device.split(":")[1])])
    max_steps = int(t["max_steps"]) if t.get("max_steps") else -1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = build_trainer(tc, model_config_, accelerator=accelerator, include_training_callbacks=False,
                                callbacks=callbacks, logger=False, devices=devices, max_steps=max_steps,
                                limit_val_batches=0, num_sanity_val_steps=0, enable_progress_bar=progress,
                                enable_model_summary=False)
    catch_sigterm()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            trainer.fit(module, datamodule, ckpt_path=str(resume) if resume else None)
    except SystemExit:
        if report.interrupted:  # Lightning turns Ctrl-C into sys.exit(1) after its own clean-up
            raise KeyboardInterrupt from None
        raise
    if report.interrupted:
        raise KeyboardInterrupt
    if report.error is not None:
        raise report.error
    if not report.started:  # Lightning skipped the loop: the resumed run already reached its length
        report.step = int(trainer.global_step)
        _say(log, f"nothing to do: step {report.step} already reached the run's length "
                  f"(raise --epochs or --max-steps to continue)")
    report.finish(trainer)
    return report


# TrainConfig fields set explicitly above from the toolbox's keys
_MAPPED = {"epochs", "batch_size", "grad_accum_steps", "lr", "lr_encoder", "weight_decay", "ema_decay", "ema_tau",
           "warmup_epochs", "clip_max_norm", "multi_scale", "num_workers", "seed", "dataset_dir", "output_dir",
           "class_names", "progress_bar", "tensorboard", "eval_interval", "use_ema", "amp_dtype", "dataset_file",
           "device", "resume", "compact_train_metrics", "train_log_on_step"}
