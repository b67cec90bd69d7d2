"""RF-DETR training through rfdetr's own Lightning stack, reporting the way RT-DETR runs do.

rfdetr's public training pieces do the work: `RFDETRModelModule` (model, criterion, optimizer and
schedule), `RFDETRDataModule` (its Roboflow-layout reader and augmentation), `RFDETREMACallback` and
`build_trainer` (PyTorch Lightning). What rfdetr's own `RFDETR.train()` adds on top (its checkpoint
files, CSV/TensorBoard logs, its own COCO metric and best-model selection) is left out: the
`ToolboxReport` callback below writes the toolbox's run folder instead (CONTRACTS "Files"):

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

import copy
import json
import logging
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from ..engine import config as C
from ..errors import Cancelled, InputError, RuntimeFailure, ToolboxError, UsageError
from ..events import EventLog
from ..fileio import atomic_dir
from ..workspace import Workspace, record_job_output
from . import config as R
from .predict import WEIGHTS

OPTION_KEYS = ("epochs", "max_steps", "batch_size", "grad_accum_steps", "lr", "warmup_steps", "pretrained",
               "init_from", "sampling", "device", "amp", "input_size", "num_workers", "eval_interval",
               "save_interval", "log_interval", "early_stop_patience", "seed")
RESUME_CHANGEABLE = ("epochs", "max_steps", "log_interval", "eval_interval", "save_interval",
                     "early_stop_patience", "num_workers", "device")
DATA_LAYOUT = "rfdetr_data"  # the Roboflow layout (links) rfdetr reads, inside the run folder


# ---------------------------------------------------------------------------------------------- logging
def _logger(run_dir: Path) -> logging.Logger:
    """train.log of the run (the same line format as RT-DETR runs); not toolbox.engine.train's, which imports
    Paddle: an RF-DETR job stays a torch-only process."""
    log = logging.getLogger(f"toolbox.rfdetr.train.{run_dir}")
    log.setLevel(logging.INFO)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    h = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(h)
    return log


def _say(log: logging.Logger, message: str, echo: bool = True) -> None:
    log.info(message)
    if echo:
        print(message, file=sys.stderr, flush=True)


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
        cfg = C.load(run_dir / "config.yaml")
        ignored = [k for k, v in given.items() if v not in (None, False) and k not in RESUME_CHANGEABLE]
        if ignored or overrides:
            print(f"warning: --resume continues the run as configured; ignoring "
                  f"{', '.join('--' + k.replace('_', '-') for k in ignored)}{' -o' if overrides else ''}",
                  file=sys.stderr)
        for k in RESUME_CHANGEABLE:
            if given.get(k) is not None:
                cfg["train"][k] = given[k]
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
    log = _logger(run_dir)
    report = None
    try:
        report = _fit(cfg, run_dir, events, log, resume, progress)
    except (KeyboardInterrupt, Cancelled):
        step = report.step if report else _last_step(run_dir)
        _say(log, f"cancelled at step {step}; the last complete checkpoint stays in {ckdir}")
        events.end("cancelled", 130, "cancelled by the user", step=step)
        raise Cancelled(f"training cancelled at step {step}; the last complete checkpoint is in {ckdir} "
                        f"(continue with --run {run_dir.name} --resume)") from None
    except ToolboxError as e:
        _say(log, f"failed: {e}", echo=False)
        events.end("failed", e.exit_code, str(e))
        raise
    except MemoryError as e:
        msg = "out of memory: lower --batch-size or --input-size (or use --grad-accum-steps)"
        events.end("failed", 3, msg)
        raise RuntimeFailure(msg) from e
    except Exception as e:
        events.end("failed", 3, f"{type(e).__name__}: {e}")
        if "out of memory" in str(e).lower():
            raise RuntimeFailure("out of memory: lower --batch-size or --input-size "
                                 "(or use --grad-accum-steps)") from e
        raise
    finally:
        for h in list(log.handlers):
            log.removeHandler(h)
            h.close()
    return run_dir


def _last_step(run_dir: Path) -> int:
    from ..events import read_events

    steps = [int(e.get("step") or 0) for e in read_events(run_dir / "events.jsonl") if e.get("step") is not None]
    return max(steps, default=0)


def _fit(cfg: dict, run_dir: Path, events: EventLog, log: logging.Logger, resume: Path | None,
         progress: bool) -> "ToolboxReport":
    import warnings

    import torch

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


_MAIN_TERM = re.compile(r"^loss_[a-z]+$")  # the last decoder layer's terms (aux: _0.._n, encoder: _enc)


def _loss_terms(metrics: Mapping[str, Any]) -> dict[str, float]:
    """rfdetr's per-step loss terms of the batch just trained (`train/<term>_step`, unweighted, as its
    criterion returns them) → {term: value}; the weighted total stays `loss`."""
    out = {}
    for key, value in metrics.items():
        if key.startswith("train/loss_") and key.endswith("_step"):
            try:
                out[key[len("train/"):-len("_step")]] = float(value)
            except (TypeError, ValueError):
                continue
    return out


def _callback_base():
    from pytorch_lightning.callbacks import Callback

    return Callback


class ToolboxReport(_callback_base()):
    """Lightning callback: the toolbox's events, evaluation, checkpoints and early stop for one run."""

    def __init__(self, cfg: dict, run_dir: Path, events: EventLog, log: logging.Logger, val_set, *,
                 progress: bool, weights: dict):
        self.cfg, self.run_dir, self.events, self.runlog, self.val_set = cfg, run_dir, events, log, val_set
        self.t = cfg["train"]
        self.progress, self.weights = progress, weights
        self.best_ap: float | None = None
        self.bad_evals = 0
        self.last_metrics: dict | None = None
        self.step = 0
        self.interrupted = False
        self.error: BaseException | None = None
        self.total_steps = 0
        self.started = False

    # ----------------------------------------------------------------- resume state
    def state_dict(self) -> dict:
        return {"best_ap": self.best_ap, "bad_evals": self.bad_evals, "last_metrics": self.last_metrics}

    def load_state_dict(self, state: dict) -> None:
        self.best_ap = state.get("best_ap")
        self.bad_evals = int(state.get("bad_evals") or 0)
        self.last_metrics = state.get("last_metrics")

    # ----------------------------------------------------------------- hooks
    def on_train_start(self, trainer, pl_module) -> None:
        self.started = True
        t, m = self.t, self.cfg["model"]
        accum = int(t["grad_accum_steps"])
        self.steps_per_epoch = max(1, math.ceil(int(trainer.num_training_batches) / accum))
        total = int(t["epochs"]) * self.steps_per_epoch
        if t.get("max_steps"):
            total = min(total, int(t["max_steps"]))
        self.total_steps = total
        self.step = self.step0 = int(trainer.global_step)
        self.t0 = self.win_t = time.time()
        self.win_images, self.win_loss, self.win_count, self.win_terms = 0, 0.0, 0, {}
        device = str(pl_module.device)
        self.events.write("start", run=self.run_dir.name, model=m["name"], dataset=self.cfg["data"]["name"],
                          total_steps=total, epochs=int(t["epochs"]), steps_per_epoch=self.steps_per_epoch,
                          world_size=1, device=device, resumed=self.step > 0, weights=self.weights,
                          lr=float(t["lr"]), lr_encoder=float(t["lr_encoder"]),
                          effective_batch=int(t["effective_batch"]), warmup_steps=None,
                          ema_warmup_steps=None, backend="rfdetr")
        _say(self.runlog, f"run {self.run_dir.name}: {m['name']} (rfdetr) on {self.cfg['data']['name']} "
                       f"({m['num_classes']} classes), device {device}, input {m['input_size']}; lr {t['lr']:.3g}, "
                       f"encoder lr {t['lr_encoder']:.3g}, effective batch {t['effective_batch']} "
                       f"({t['batch_size']} x {accum} accumulation); "
                       f"{'EMA decay ' + str(t['ema_decay']) + ' tau ' + str(t['ema_tau']) if t['ema'] else 'EMA off'}"
                       f"; {total} steps ({self.steps_per_epoch} per epoch)")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            value = float(loss.detach().float().item())
            if not math.isfinite(value):
                self.error = RuntimeFailure(
                    f"the loss became {value} at step {trainer.global_step + 1}: training diverged; lower --lr "
                    f"(now {self.t['lr']:.3g}) or check the dataset's boxes with `python -m toolbox check`")
                trainer.should_stop = True
                return
            self.win_loss += value
            self.win_count += 1
            for name, v in _loss_terms(trainer.callback_metrics).items():
                self.win_terms[name] = self.win_terms.get(name, 0.0) + v
        self.win_images += len(batch[1])
        step = int(trainer.global_step)
        if step == self.step:
            return
        self.step = step
        if step % int(self.t["log_interval"]) == 0 or step >= self.total_steps:
            self._log(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.error is not None or self.interrupted:
            return
        epoch = int(trainer.current_epoch) + 1
        last = epoch >= int(self.t["epochs"]) or self.step >= self.total_steps or trainer.should_stop
        stop = False
        if self.val_set is not None and (epoch % int(self.t["eval_interval"]) == 0 or last):
            stop = self._evaluate(trainer, pl_module, epoch)
        if stop:
            trainer.should_stop = True
        if epoch % int(self.t["save_interval"]) == 0 or last or stop:
            self._save_last(trainer, pl_module, epoch)

    def on_exception(self, trainer, pl_module, exception) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.interrupted = True

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        """Add `model` (the weights to use, EMA when on, sharing the tensors Lightning stores anyway) and the
        toolbox's loop summary to Lightning's checkpoint, so rfdetr's and the toolbox's readers load it."""
        weights = None
        for state in (checkpoint.get("callbacks") or {}).values():
            avg = state.get("average_model_state_dict") if isinstance(state, dict) else None
            if isinstance(avg, dict):
                weights = {k[len("module.model."):]: v for k, v in avg.items() if k.startswith("module.model.")}
        if not weights:
            weights = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
        checkpoint["model"] = weights
        checkpoint["toolbox"] = {"step": self.step, "best_ap": self.best_ap, "bad_evals": self.bad_evals}

    # ----------------------------------------------------------------- work
    def _log(self, trainer) -> None:
        now = time.time()
        lr = float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else float(self.t["lr"])
        ips = self.win_images / max(now - self.win_t, 1e-9)
        done = self.step - self.step0
        eta = (now - self.t0) / max(done, 1) * max(self.total_steps - self.step, 0)
        n = max(self.win_count, 1)
        loss = self.win_loss / n
        terms = {k: round(v / n, 6) for k, v in sorted(self.win_terms.items())}
        epoch = int(trainer.current_epoch) + 1
        self.events.write("log", epoch=epoch, step=self.step, total_steps=self.total_steps,
                          losses={"loss": round(loss, 6), **terms}, lr=lr, images_per_s=round(ips, 3),
                          eta_s=round(eta, 1))
        self.runlog.info(f"epoch {epoch} step {self.step}/{self.total_steps} loss {loss:.4f} lr {lr:.3e} "
                         f"{ips:.2f} img/s eta {eta:.0f}s "
                         + " ".join(f"{k} {v:.4f}" for k, v in terms.items() if _MAIN_TERM.match(k)))
        self.win_t, self.win_images, self.win_loss, self.win_count, self.win_terms = now, 0, 0.0, 0, {}

    def _weights(self, trainer, pl_module) -> dict:
        """The weights to use: the EMA average when EMA is on, else the live model's (copies)."""
        from rfdetr.training.callbacks import RFDETREMACallback

        for cb in trainer.callbacks:
            if isinstance(cb, RFDETREMACallback):
                ema = cb.get_ema_model_state_dict()
                if ema:
                    return ema
        return {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}

    def _evaluate(self, trainer, pl_module, epoch: int) -> bool:
        """Toolbox COCO eval of the EMA weights → `eval` event; best/ on a new best AP. True: early stop."""
        from .evaluate import evaluate_split
        from .predict import TorchPredictor

        m = self.cfg["model"]
        net = copy.deepcopy(pl_module.model)
        net.load_state_dict(self._weights(trainer, pl_module))
        predictor = TorchPredictor(net, m["label_list"], int(m["input_size"]), str(pl_module.device))
        report = evaluate_split(predictor, self.val_set, m["label_list"], batch_size=int(self.t["batch_size"]))
        del predictor, net
        ap = report["metrics"]["AP"] or 0.0
        self.last_metrics = report["metrics"]
        self.events.write("eval", epoch=epoch, step=self.step, metrics=report["metrics"],
                          per_class=report["per_class"])
        self.runlog.info(f"eval at step {self.step}: AP {ap:.4f} AP50 {report['metrics']['AP50'] or 0:.4f}\n"
                      f"{report.get('summary', '')}")
        if self.progress:
            print(f"eval step {self.step}: AP {ap:.4f}  AP50 {report['metrics']['AP50'] or 0:.4f}",
                  file=sys.stderr, flush=True)
        if self.best_ap is None or ap > self.best_ap:
            self.best_ap, self.bad_evals = ap, 0
            self._save_best(trainer, pl_module, epoch)
        else:
            self.bad_evals += 1
        patience = int(self.t["early_stop_patience"] or 0)
        if patience and self.bad_evals >= patience:
            _say(self.runlog, f"early stop: AP did not improve in {self.bad_evals} evaluations "
                           f"(best {self.best_ap:.4f}; --early-stop-patience {patience})")
            self.events.write("early_stop", step=self.step, best_ap=self.best_ap, evaluations=self.bad_evals)
            return True
        return False

    def _info(self, epoch: int) -> dict:
        return {"schema_version": 1, "run": self.run_dir.name, "model": self.cfg["model"]["name"],
                "backend": "rfdetr", "epoch": epoch, "step": self.step, "metrics": self.last_metrics,
                "ema": bool(self.t["ema"])}

    def _save_last(self, trainer, pl_module, epoch: int) -> None:
        folder = self.run_dir / "checkpoints" / "last"
        with atomic_dir(folder) as tmp:
            trainer.save_checkpoint(str(tmp / WEIGHTS))
            (tmp / "checkpoint.json").write_text(json.dumps(self._info(epoch), indent=1) + "\n", encoding="utf-8")
        self.events.write("checkpoint", which="last", path=str(folder), epoch=epoch, step=self.step)
        self.runlog.info(f"saved checkpoints/last at step {self.step}")

    def _save_best(self, trainer, pl_module, epoch: int) -> None:
        """rfdetr's light checkpoint layout (as its BestModelCallback writes): weights + model description."""
        import torch
        from rfdetr.training.callbacks.best_model import BestModelCallback

        weights = self._weights(trainer, pl_module)
        args, name, model_config = BestModelCallback._resolve_model_description(trainer, pl_module, weights,
                                                                               allow_deprecated=True)
        payload = {"model": weights, "epoch": epoch, "global_step": self.step,
                   **BestModelCallback._model_description(args, name, model_config),
                   "toolbox": {"step": self.step, "ap": self.best_ap}}
        folder = self.run_dir / "checkpoints" / "best"
        with atomic_dir(folder) as tmp:
            torch.save(payload, tmp / WEIGHTS)
            (tmp / "checkpoint.json").write_text(json.dumps(self._info(epoch), indent=1) + "\n", encoding="utf-8")
        self.events.write("checkpoint", which="best", path=str(folder), epoch=epoch, step=self.step)
        self.runlog.info(f"saved checkpoints/best at step {self.step} (AP {self.best_ap:.4f})")

    def finish(self, trainer) -> None:
        elapsed = time.time() - getattr(self, "t0", time.time())
        _say(self.runlog, f"done: {self.step} steps in {elapsed:.0f} s; best AP "
                       f"{'n/a' if self.best_ap is None else f'{self.best_ap:.4f}'}; run folder {self.run_dir}")
        self.events.end("ok", 0, None, step=self.step, best_ap=self.best_ap, elapsed_s=round(elapsed, 1))
