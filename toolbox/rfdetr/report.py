"""The Lightning callback that writes an RF-DETR run the toolbox's way (used by toolbox.rfdetr.train).

`ToolboxReport` turns Lightning's hooks into the run folder of CONTRACTS "Files": the `start` event with
the planned steps, a `log` event every --log-interval optimizer steps (weighted total loss and rfdetr's
own loss terms, lr, images/s, eta), the toolbox's COCO evaluation of the EMA weights at the epochs
--eval-interval says (`eval` event, checkpoints/best on a better AP, early stop after --early-stop-patience
evaluations without one), checkpoints/last every --save-interval epochs and at the end, and the `end`
event. Its own state (best AP, evaluations without improvement) rides in Lightning's checkpoint, so
--resume continues it.
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

from ..errors import RuntimeFailure
from ..events import EventLog
from ..fileio import atomic_dir
from .predict import WEIGHTS


def _say(log: logging.Logger, message: str, echo: bool = True) -> None:
    log.info(message)
    if echo:
        print(message, file=sys.stderr, flush=True)


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
