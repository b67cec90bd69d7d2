"""What every training run does around its loop, whatever the family (RT-DETR: engine/train.py, RF-DETR:
rfdetr/train.py): train.log in the run folder, messages to it and the terminal, and how the run ends —
Ctrl-C/SIGTERM as `cancelled` (exit 130, the last complete checkpoint named), a toolbox error with its exit
code, out-of-memory as a RuntimeFailure with what to lower, anything else as `failed` (3). No Paddle or
torch here: an RF-DETR job stays a torch-only process and an RT-DETR one a Paddle-only one.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ..errors import Cancelled, RuntimeFailure, ToolboxError
from ..events import EventLog

OOM_HINT = "out of memory: lower --batch-size or --input-size (or use --grad-accum-steps)"


def run_logger(run_dir: Path, name: str, enabled: bool = True) -> logging.Logger:
    """The run's train.log (one line format for both families); a null logger where `enabled` is False
    (the non-main ranks of a multi-GPU run)."""
    log = logging.getLogger(f"{name}.{run_dir}")
    log.setLevel(logging.INFO)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    if enabled:
        h = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(h)
    else:
        log.addHandler(logging.NullHandler())
    return log


def say(log: logging.Logger, message: str, echo: bool = True) -> None:
    """To train.log, and to stderr when `echo`."""
    log.info(message)
    if echo:
        print(message, file=sys.stderr, flush=True)


@contextmanager
def run_outcome(run_dir: Path, events: EventLog, log: logging.Logger, step_now: Callable[[], int]) -> Iterator[None]:
    """Wrap a training loop: write its `end` event and turn what stopped it into the toolbox's errors;
    `step_now()` gives the step reached, for the cancel message. train.log's handlers are closed after."""
    ckdir = run_dir / "checkpoints"
    try:
        yield
    except (KeyboardInterrupt, Cancelled):
        step = step_now()
        say(log, f"cancelled at step {step}; the last complete checkpoint stays in {ckdir}")
        events.end("cancelled", 130, "cancelled by the user", step=step)
        raise Cancelled(f"training cancelled at step {step}; the last complete checkpoint is in {ckdir} "
                        f"(continue with --run {run_dir.name} --resume)") from None
    except ToolboxError as e:
        say(log, f"failed: {e}", echo=False)
        events.end("failed", e.exit_code, str(e))
        raise
    except MemoryError as e:
        events.end("failed", 3, OOM_HINT)
        raise RuntimeFailure(OOM_HINT) from e
    except Exception as e:
        events.end("failed", 3, f"{type(e).__name__}: {e}")
        if "out of memory" in str(e).lower():
            raise RuntimeFailure(OOM_HINT) from e
        raise
    finally:
        for h in list(log.handlers):
            log.removeHandler(h)
            h.close()
