"""The trainer: one process, or one of N under `paddle.distributed.launch`.

`train(options, workspace)` resolves the run's configuration (toolbox.engine.config), builds the model,
loads weights (--resume, --init-from or --pretrained), and runs the loop:

    for each epoch:  for each micro-batch (augmented, multi-scale):
        forward → losses;  NaN check;  backward (loss / micro-batches in this update)
        every grad_accum_steps micro-batches: lr for this step, clipped AdamW step, EMA update, step += 1
        every log_interval steps: a `log` event (losses averaged over ranks, lr, images/s, eta)
    every eval_interval epochs (and at the end): COCO eval with the EMA weights → `eval` event, best/
    every save_interval epochs (and at the end): checkpoints/last/

A "step" is one optimizer update (what --max-steps, --warmup-steps, --log-interval count). Cancelling
(Ctrl-C, SIGTERM) or failing writes an `end` event with the exit code; checkpoint folders are replaced
atomically, so nothing partial is ever left behind.
"""
from __future__ import annotations

import logging
import math
import random
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, RuntimeFailure, ToolboxError, UsageError
from ..events import EventLog
from ..workspace import Workspace, record_job_output
from . import checkpoint as ckpt
from . import config as C
from . import distributed as D
from .run_log import run_logger, run_outcome, say

OPTION_KEYS = ("epochs", "max_steps", "batch_size", "grad_accum_steps", "lr", "warmup_steps", "pretrained",
               "init_from", "sampling", "device", "amp", "input_size", "num_workers", "eval_interval",
               "save_interval", "log_interval", "early_stop_patience", "seed")
# options that may change when resuming (the rest must stay as the run began, for an exact continuation)
RESUME_CHANGEABLE = ("epochs", "max_steps", "log_interval", "eval_interval", "save_interval",
                     "early_stop_patience", "num_workers", "device")


def _say(log: logging.Logger, message: str, echo: bool = True) -> None:
    say(log, message, echo and D.is_main())


def resolve_model_source(model: str | None, config_file: str | None) -> tuple[str, str, dict]:
    """(model name, the name or yaml path given to build_model, the model's config dict)."""
    from ..models import load_config

    if bool(model) == bool(config_file):
        raise UsageError("give exactly one of --model NAME (a pipelines/ model, see `python -m toolbox train --help`) "
                         "or --config FILE")
    source = str(Path(config_file).expanduser().resolve()) if config_file else str(model)
    if config_file and not Path(source).is_file():
        raise UsageError(f"--config {config_file}: no such file")
    try:
        cfg = load_config(source)
    except ToolboxError:
        raise
    except FileNotFoundError as e:
        raise UsageError(f"unknown model '{source}': {e}") from e
    name = str(cfg.get("model_name") or Path(source).stem)
    return name, source, cfg


def resolve_weights_path(workspace: Workspace, value: str, what: str) -> str:
    """--init-from RUN|PATH → a .pdparams path (a run's best, else last checkpoint)."""
    run_folder = workspace.runs / value
    if run_folder.is_dir():
        for sub in ("best", "last"):
            p = run_folder / "checkpoints" / sub / ckpt.PARAMS
            if p.is_file():
                return str(p)
        raise UsageError(f"{what} {value}: the run has no checkpoint yet ({run_folder / 'checkpoints'})")
    p = Path(value).expanduser()
    if p.is_dir():
        return str(ckpt.resolve(p) / ckpt.PARAMS)
    if p.is_file():
        return str(p.resolve())
    raise UsageError(f"{what} {value}: neither a run in {workspace.runs} nor a checkpoint folder or .pdparams file")


def load_pretrained(model, source: str, what: str) -> dict:
    from ..models import load_weights

    try:
        return load_weights(model, source) or {}
    except ToolboxError as e:
        if source.startswith(("http://", "https://")) and "--pretrained none" not in str(e):
            raise RuntimeFailure(f"{e} (no internet? train from scratch with --pretrained none, or pass a "
                                 f"downloaded .pdparams with --pretrained PATH)") from e
        raise
    except OSError as e:
        hint = (" (no internet? pass --pretrained none, or a downloaded file with --pretrained PATH)"
                if source.startswith(("http://", "https://")) else "")
        raise RuntimeFailure(f"{what} {source}: cannot load the weights: {e}{hint}") from e


def prepare(options: dict[str, Any], workspace: Workspace) -> tuple[Path, dict, dict | None]:
    """Resolve run folder and configuration; returns (run_dir, config, resume-checkpoint or None)."""
    resume = options.get("resume")
    overrides = C.parse_overrides(options.get("overrides") or [])
    given = {k: options.get(k) for k in OPTION_KEYS}
    if resume:
        run_dir, folder = _resume_target(workspace, options.get("run"), resume)
        cfg = C.resumed_config(run_dir, given, overrides, RESUME_CHANGEABLE, accepted=("amp",))
        if given.get("amp"):
            cfg["train"]["amp"] = True
        return run_dir, cfg, ckpt.load(folder)
    name, source, model_cfg = resolve_model_source(options.get("model"), options.get("config"))
    if not options.get("dataset"):
        raise UsageError("--dataset NAME|DIR is required (see `python -m toolbox check PATH --name NAME`)")
    dataset_dir = workspace.dataset_dir(options["dataset"])
    from ..data.loader import annotation_path, dataset_labels

    annotation_path(dataset_dir, "train")
    cat_ids, labels = dataset_labels(dataset_dir)
    dataset = {"name": dataset_dir.name, "dir": str(dataset_dir), "cat_ids": cat_ids, "label_list": labels}
    if given.get("amp") is False:
        given["amp"] = None
    world = D.world_size()
    cfg = C.resolve(model_name=name, model_source=source, model_cfg=model_cfg, dataset=dataset,
                    options={k: v for k, v in given.items()}, overrides=overrides, world_size=world)
    run = options.get("run") or C.default_run_name(name)
    if "/" in run or run in (".", "..") or not run.strip():
        raise UsageError(f"--run {run!r}: a run name is a plain folder name")
    run_dir = workspace.runs / run
    if (run_dir / "events.jsonl").exists() and D.is_main():
        raise UsageError(f"run '{run}' already exists in {workspace.runs}; choose another --run, continue it with "
                         f"--run {run} --resume, or delete it with `python -m toolbox runs delete {run}`")
    return run_dir, cfg, None


def _resume_target(workspace: Workspace, run: str | None, resume: Any) -> tuple[Path, Path]:
    if resume is True or resume == "last":
        if not run:
            raise UsageError("--resume without a checkpoint needs --run NAME (the run to continue)")
        run_dir = workspace.run_dir(run)
        return run_dir, run_dir / "checkpoints" / "last"
    p = Path(str(resume)).expanduser()
    if not p.exists() and (workspace.runs / str(resume)).is_dir():  # --resume RUN
        run_dir = workspace.runs / str(resume)
        return run_dir, run_dir / "checkpoints" / "last"
    folder = ckpt.resolve(p)
    run_dir = folder.parent.parent
    if not (run_dir / "config.yaml").is_file():
        raise UsageError(f"--resume {resume}: expected a checkpoint inside runs/<run>/checkpoints/ "
                         f"(no config.yaml in {run_dir})")
    return run_dir, folder


def train(options: dict[str, Any], workspace: Workspace, progress: bool = True) -> Path:
    """Run a training job; returns the run folder. Raises ToolboxError subclasses on failure."""
    device = options.get("device") or "cpu"
    D.parse_device(device)
    run_dir, cfg, resume_state = prepare(options, workspace)
    main = D.is_main()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        record_job_output(workspace, run_dir)
        for stale in (run_dir / "checkpoints").glob(".*.tmp") if (run_dir / "checkpoints").is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)  # a temp folder of a killed save: never a checkpoint
        C.save(cfg, run_dir / "config.yaml")  # on resume: with the schedule options changed for the rest
    events = EventLog(run_dir / "events.jsonl", enabled=main)
    log = run_logger(run_dir, "toolbox.train", main)
    trainer = None
    with run_outcome(run_dir, events, log, lambda: trainer.step if trainer else 0):
        trainer = Trainer(cfg, run_dir, events, log, resume_state, progress=progress)
        if main and resume_state is None:
            C.save(cfg, run_dir / "config.yaml")  # now with the weights actually used (pretrained_used, ...)
        trainer.run()
    return run_dir


class Trainer:
    """Holds the model, optimizer, EMA, data and loop position of one run (see the module docstring)."""

    def __init__(self, cfg: dict, run_dir: Path, events: EventLog, log: logging.Logger,
                 resume: dict | None, progress: bool = True):
        import paddle

        from ..data.loader import BatchPlan, CocoDetection, TrainBatches
        from ..data.transforms import model_interpolation
        from ..models import build_model
        from .ema import ModelEMA
        from .optim import LRSchedule, build_optimizer, local_state

        self.cfg, self.run_dir, self.events, self.log = cfg, run_dir, events, log
        self.progress = progress
        t, m, d = cfg["train"], cfg["model"], cfg["data"]
        self.t = t
        self.place = D.setup_device(t["device"], bool(t["amp"]))
        D.init_parallel()
        seed = int(t["seed"])
        random.seed(seed)
        np.random.seed(seed)
        paddle.seed(seed)  # the same initial weights on every rank

        overrides = dict(m.get("overrides") or {})
        overrides["input_size"] = int(m["input_size"])
        if m.get("sampling"):
            overrides["sampling"] = m["sampling"]
        self.model = build_model(m["source"], int(m["num_classes"]), **overrides)
        self.weights_report: dict = {}
        if resume is None:
            self._initial_weights()
        self.optimizer = build_optimizer(self.model, t)

        self.train_set = CocoDetection(d["dir"], "train", d["cat_ids"], skip_empty=True)
        if len(self.train_set) == 0:
            raise InputError(f"{self.train_set.ann_file}: no training image has a box to learn from "
                             f"(run `python -m toolbox check` on the dataset)")
        self.val_set = None
        if (Path(d["dir"]) / "annotations" / "instance_val.json").is_file():
            self.val_set = CocoDetection(d["dir"], "val", d["cat_ids"])
        self.plan = BatchPlan(len(self.train_set), int(t["batch_size"]), seed=seed,
                              rank=D.rank(), world_size=D.world_size(), drop_last=True)
        epochs = int(t["epochs"])
        no_aug_from = epochs - int(t["no_aug_epochs"]) if int(t["no_aug_epochs"]) > 0 else None
        self.loader = TrainBatches(self.train_set, self.plan, cfg["augment"], cfg["augment"]["sizes"], seed,
                                   int(t["num_workers"]), no_aug_from_epoch=no_aug_from,
                                   fixed_size=int(m["input_size"]),
                                   interpolation=model_interpolation(self.model))
        self.fixed_size = int(m["input_size"])
        self.accum = int(t["grad_accum_steps"])
        self.batches_per_epoch = len(self.plan)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / self.accum)
        self.total_steps = epochs * self.steps_per_epoch
        if t["max_steps"]:
            self.total_steps = min(self.total_steps, int(t["max_steps"]))
        cap = int(t.get("warmup_steps_max", 2000))
        t["warmup_steps"], self.warmup_why = C.planned_warmup(t["warmup_steps"], self.total_steps, cap)
        t["ema_warmup_steps"], self.ema_warmup_why = C.planned_warmup(t["ema_warmup_steps"], self.total_steps, cap)
        self.ema = ModelEMA(self.model, t["ema_decay"], t["ema_warmup_steps"]) if t["ema"] else None
        milestones = [int(e) * self.steps_per_epoch for e in t.get("lr_milestones") or []]
        self.schedule = LRSchedule(t["lr"], int(t["warmup_steps"]), float(t["warmup_start_factor"]),
                                   milestones, float(t["lr_gamma"]))
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=1024) if t["amp"] else None

        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.best_ap, self.bad_evals, self.last_metrics = None, 0, None
        if resume is not None:
            self._restore(resume, local_state)
        if resume is None:  # training noise (denoising queries) differs per rank; init was shared
            paddle.seed(seed * 1000 + D.rank() + 1)
        elif D.world_size() > 1:  # the saved RNG state is rank 0's: give the other ranks their own stream
            paddle.seed(seed * 1000 + D.rank() + 1 + self.step)
        self.dp_model = D.wrap_model(self.model, sync_bn=bool(t.get("sync_bn")) and self.place.startswith("gpu"))

    # ------------------------------------------------------------------ set-up
    def _initial_weights(self) -> None:
        t = self.t
        if t.get("init_from"):
            path = resolve_weights_path(_workspace_of(self.run_dir), str(t["init_from"]), "--init-from")
            t["init_from_path"] = path
            self.weights_report = {"init_from": path, **_summary(load_pretrained(self.model, path, "--init-from"))}
            return
        pre = t.get("pretrained") or "default"
        source = t.get("pretrained_default") if pre == "default" else (None if str(pre).lower() == "none" else pre)
        t["pretrained_used"] = source
        if source:
            if not str(source).startswith(("http://", "https://")) and Path(str(source)).expanduser().is_dir():
                source = str(ckpt.resolve(Path(str(source)).expanduser()) / ckpt.PARAMS)
            self.weights_report = {"pretrained": source, **_summary(load_pretrained(self.model, source, "--pretrained"))}
        else:
            self.weights_report = {"pretrained": None}

    def _restore(self, state: dict, local_state) -> None:
        import paddle

        raw = state["raw_weights"] if state["raw_weights"] is not None else state["weights"]
        self.model.set_state_dict(raw)
        loop = state["loop"] or {}
        if self.ema is not None:
            self.ema.load(state["weights"], int(loop.get("ema_updates", 0)))
        if state["optimizer"]:
            self.optimizer.set_state_dict(local_state(state["optimizer"], self.model))
        self.schedule.set_state_dict(state["schedule"] or {})
        self.epoch = int(loop.get("epoch", 0))
        self.batch_in_epoch = int(loop.get("batch", 0))
        self.step = int(loop.get("step", 0))
        self.best_ap = loop.get("best_ap")
        self.bad_evals = int(loop.get("bad_evals", 0))
        if self.scaler is not None and loop.get("scaler"):
            self.scaler.load_state_dict(loop["scaler"])
        if loop.get("rng") is not None:
            ckpt.set_rng_state(loop["rng"])
        else:
            paddle.seed(int(self.t["seed"]) + self.step)
        self.weights_report = {"resumed_from": str(state["folder"]), "step": self.step, "epoch": self.epoch}

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        t = self.t
        catch_sigterm()
        self.events.write("start", run=self.run_dir.name, model=self.cfg["model"]["name"],
                          dataset=self.cfg["data"]["name"], total_steps=self.total_steps, epochs=int(t["epochs"]),
                          steps_per_epoch=self.steps_per_epoch, world_size=D.world_size(), device=self.place,
                          resumed=self.step > 0, weights=self.weights_report,
                          lr=t["lr"], effective_batch=t["effective_batch"], warmup_steps=t["warmup_steps"],
                          ema_warmup_steps=t["ema_warmup_steps"] if t["ema"] else None)
        empty = self.train_set.skipped_empty
        left_out = f", {empty} without boxes left out as PaddleDetection does" if empty else ""
        _say(self.log, f"run {self.run_dir.name}: {self.cfg['model']['name']} on {self.cfg['data']['name']} "
                       f"({len(self.train_set)} train images with boxes{left_out}, "
                       f"{self.cfg['model']['num_classes']} classes), "
                       f"device {self.place} x{D.world_size()}, input {self.cfg['model']['input_size']}")
        scaling = ("used as given at any batch (lr_scaling none)" if t["lr_scaling"] == "none" else
                   f"scaled '{t['lr_scaling']}' from base lr {t['base_lr']:.3g} for a global batch of "
                   f"{t['global_batch']}")
        ema = (f"EMA decay {t['ema_decay']} with warm-up {t['ema_warmup_steps']} steps ({self.ema_warmup_why})"
               if t["ema"] else "EMA off")
        _say(self.log, f"lr {t['lr']:.3g} used for an effective batch of {t['effective_batch']} "
                       f"({t['batch_size']} per device x {t['grad_accum_steps']} accumulation x {D.world_size()} "
                       f"devices), {scaling}; warm-up {t['warmup_steps']} steps ({self.warmup_why}); {ema}; "
                       f"{self.total_steps} steps ({self.steps_per_epoch} per epoch)")
        if self.weights_report:
            _say(self.log, f"weights: {self.weights_report}", echo=False)
        if self.step >= self.total_steps:
            _say(self.log, f"nothing to do: step {self.step} already reached {self.total_steps} steps "
                           f"(raise --epochs or --max-steps to continue)")
            self.events.end("ok", 0, None, step=self.step)
            return
        self.model.train()
        self.t0, self.step0 = time.time(), self.step
        self.win_t, self.win_images, self.win_losses, self.win_count = time.time(), 0, {}, 0
        stop = False
        epochs = int(t["epochs"])
        while self.epoch < epochs and not stop:
            stop = self._epoch()
            if not stop or self.batch_in_epoch == 0:  # a finished epoch
                evaluate_now = ((self.epoch) % int(t["eval_interval"]) == 0)
                save_now = (self.epoch % int(t["save_interval"]) == 0)
                last = self.epoch >= epochs or self.step >= self.total_steps or stop
                if (evaluate_now or last) and self.val_set is not None:
                    stop = self._evaluate() or stop
                if save_now or last or stop:
                    self._save("last")
        if stop and self.batch_in_epoch != 0:  # stopped inside an epoch (--max-steps)
            if self.val_set is not None:
                self._evaluate()
            self._save("last")
        elapsed = time.time() - self.t0
        extra = {}
        if D.world_size() > 1:  # show that data parallelism kept every rank's weights identical
            sums = D.gather(weight_digest(self.model))
            extra = {"rank_weight_sums": sums,
                     "ranks_agree": all(abs(s - sums[0]) <= 1e-9 * max(1.0, abs(sums[0])) for s in sums)}
            _say(self.log, f"ranks agree: {extra['ranks_agree']} (weight sums {sums})", echo=False)
        _say(self.log, f"done: {self.step} steps in {elapsed:.0f} s; best AP "
                       f"{'n/a' if self.best_ap is None else f'{self.best_ap:.4f}'}; run folder {self.run_dir}")
        self.events.end("ok", 0, None, step=self.step, best_ap=self.best_ap, elapsed_s=round(elapsed, 1), **extra)
        D.barrier()

    def _epoch(self) -> bool:
        """Train the rest of the current epoch; True when training must stop (max steps, early stop)."""
        t = self.t
        n = self.batches_per_epoch
        start = self.batch_in_epoch
        bar = None
        if self.progress and D.is_main():
            from tqdm import tqdm

            bar = tqdm(total=n, initial=start, desc=f"epoch {self.epoch + 1}/{t['epochs']}", unit="batch",
                       leave=False, dynamic_ncols=True, file=sys.stderr)
        stop = False
        try:
            for bi, (images, targets) in enumerate(self.loader.epoch(self.epoch, start=start), start=start):
                group = bi // self.accum
                group_size = min(self.accum, n - group * self.accum)
                update = (bi + 1) % self.accum == 0 or bi == n - 1
                losses = self._forward_backward(images, targets, group_size, sync=update)
                for k, v in losses.items():
                    self.win_losses[k] = self.win_losses.get(k, 0.0) + v
                self.win_count += 1
                self.win_images += len(images)
                self.batch_in_epoch = bi + 1
                if update:
                    lr = self._update()
                    if bar:
                        bar.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{lr:.2e}", step=self.step, refresh=False)
                    if self.step % int(t["log_interval"]) == 0 or self.step == self.total_steps:
                        self._log(lr)
                    if self.step >= self.total_steps:
                        stop = True
                if bar:
                    bar.update(1)
                if stop:
                    break
        finally:
            if bar:
                bar.close()
        if self.batch_in_epoch >= n:
            self.epoch += 1
            self.batch_in_epoch = 0
        return stop

    def _forward_backward(self, images: np.ndarray, targets: list[dict], group_size: int, sync: bool) -> dict:
        import paddle

        x = paddle.to_tensor(images)
        tg = [{"labels": paddle.to_tensor(tt["labels"], dtype="int64"),
               "boxes": paddle.to_tensor(tt["boxes"], dtype="float32").reshape([-1, 4])} for tt in targets]
        no_sync = (self.dp_model.no_sync() if (not sync and hasattr(self.dp_model, "no_sync")) else nullcontext())
        with no_sync:
            amp = paddle.amp.auto_cast(level="O1") if self.scaler is not None else nullcontext()
            with amp:
                out = self.dp_model(x, tg)
            loss = out["loss"]
            value = float(loss.item())
            if not math.isfinite(value):
                raise RuntimeFailure(
                    f"the loss became {value} at step {self.step + 1} (epoch {self.epoch + 1}): training diverged; "
                    f"lower --lr (now {self.t['lr']:.3g}), raise --warmup-steps, or check the dataset's boxes "
                    f"with `python -m toolbox check`")
            scaled = loss / group_size
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
        return {k: float(v.item()) for k, v in out.items() if hasattr(v, "item") and v.size == 1}

    def _update(self) -> float:
        lr = self.schedule.apply(self.optimizer, self.step)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.clear_grad(set_to_zero=False)
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return lr

    def _log(self, lr: float) -> None:
        losses = {k: v / max(self.win_count, 1) for k, v in self.win_losses.items()}
        losses = D.mean_across_ranks(losses)
        now = time.time()
        ips = self.win_images * D.world_size() / max(now - self.win_t, 1e-9)
        done = self.step - self.step0
        eta = (now - self.t0) / max(done, 1) * (self.total_steps - self.step)
        self.events.write("log", epoch=self.epoch + 1, step=self.step, total_steps=self.total_steps,
                          losses={k: round(v, 6) for k, v in losses.items()}, lr=lr,
                          images_per_s=round(ips, 3), eta_s=round(eta, 1))
        self.log.info(f"epoch {self.epoch + 1} step {self.step}/{self.total_steps} loss {losses.get('loss', 0):.4f} "
                      f"lr {lr:.3e} {ips:.2f} img/s eta {eta:.0f}s "
                      + " ".join(f"{k} {v:.4f}" for k, v in sorted(losses.items()) if k != "loss"))
        self.win_t, self.win_images, self.win_losses, self.win_count = now, 0, {}, 0

    def _evaluate(self) -> bool:
        """COCO eval with the EMA weights; writes best/ on a new best AP. True when early stop triggers."""
        from .evaluate import run_eval

        t = self.t
        backup = self._swap_in_ema()
        try:
            report = run_eval(self.model, self.val_set, self.cfg["model"]["label_list"], self.fixed_size,
                              batch_size=max(1, int(t["batch_size"])), num_workers=int(t["num_workers"]),
                              progress=self.progress)
        finally:
            self._swap_out_ema(backup)
            self.model.train()
        decision = None
        if D.is_main():
            ap = report["metrics"]["AP"] or 0.0
            improved = self.best_ap is None or ap > self.best_ap
            self.last_metrics = report["metrics"]
            self.events.write("eval", epoch=self.epoch if self.batch_in_epoch == 0 else self.epoch + 1,
                              step=self.step, metrics=report["metrics"], per_class=report["per_class"])
            self.log.info(f"eval at step {self.step}: AP {ap:.4f} AP50 {report['metrics']['AP50'] or 0:.4f}\n"
                          f"{report.get('summary', '')}")
            if self.progress:
                print(f"eval step {self.step}: AP {ap:.4f}  AP50 {report['metrics']['AP50'] or 0:.4f}",
                      file=sys.stderr, flush=True)
            decision = {"improved": improved, "ap": ap}
        decision = D.from_main(decision)
        if decision["improved"]:
            self.best_ap, self.bad_evals = decision["ap"], 0
            self._save("best")
        else:
            self.bad_evals += 1
        patience = int(t["early_stop_patience"])
        if patience and self.bad_evals >= patience:
            _say(self.log, f"early stop: AP did not improve in {self.bad_evals} evaluations "
                           f"(best {self.best_ap:.4f}; --early-stop-patience {patience})")
            self.events.write("early_stop", step=self.step, best_ap=self.best_ap, evaluations=self.bad_evals)
            return True
        return False

    def _swap_in_ema(self):
        if self.ema is None:
            return None
        import paddle

        params = dict(self.model.named_parameters())
        backup = {}
        with paddle.no_grad():
            for n, s in self.ema.shadow.items():
                backup[n] = params[n].detach().clone()
                params[n].set_value(s)
        return backup

    def _swap_out_ema(self, backup) -> None:
        if backup is None:
            return
        import paddle

        params = dict(self.model.named_parameters())
        with paddle.no_grad():
            for n, v in backup.items():
                params[n].set_value(v)

    def _save(self, which: str) -> None:
        from .optim import portable_state

        if D.is_main():
            weights = self.ema.state_dict(self.model) if self.ema is not None else self.model.state_dict()
            raw = self.model.state_dict() if self.ema is not None else None
            loop = {"epoch": self.epoch, "batch": self.batch_in_epoch, "step": self.step, "best_ap": self.best_ap,
                    "bad_evals": self.bad_evals, "ema_updates": self.ema.updates if self.ema else 0,
                    "scaler": self.scaler.state_dict() if self.scaler is not None else None}
            info = {"run": self.run_dir.name, "model": self.cfg["model"]["name"], "epoch": self.epoch,
                    "step": self.step, "metrics": self.last_metrics, "ema": self.ema is not None}
            folder = ckpt.save(self.run_dir / "checkpoints" / which, weights=weights, raw_weights=raw,
                               optimizer_state=portable_state(self.optimizer.state_dict(), self.model),
                               schedule_state=self.schedule.state_dict(), loop_state=loop, info=info)
            self.events.write("checkpoint", which=which, path=str(folder), epoch=self.epoch, step=self.step)
            self.log.info(f"saved checkpoints/{which} at step {self.step}")
        D.barrier()


def catch_sigterm() -> None:
    """SIGTERM (the UI's cancel, `kill`) ends the job like Ctrl-C. Importing Paddle replaces the handler
    the CLI installed, so it is installed again once Paddle is loaded."""
    import signal
    import threading

    def _interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def weight_digest(model) -> float:
    """Sum of |w| over the trainable parameters (float64): equal on ranks that hold equal weights."""
    return float(sum(np.abs(p.numpy().astype(np.float64)).sum() for p in model.parameters() if not p.stop_gradient))


def _summary(report: dict) -> dict:
    """A JSON-friendly short form of load_weights' report (counts, a few names)."""
    out = {}
    for k, v in (report or {}).items():
        if isinstance(v, (list, tuple, set)):
            v = list(v)
            out[k] = {"count": len(v), "first": [str(x) for x in v[:5]]}
        elif isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
    return out


def _workspace_of(run_dir: Path) -> Workspace:
    return Workspace(run_dir.parent.parent)
