"""Session fixtures of the RF-DETR family (imported by tests/conftest.py as a pytest plugin).

`rfdetr_run`: one real RF-DETR-N training run from scratch (`pretrained none`, nothing downloaded) on the
tiny demo dataset (`tiny_dataset`: 16 train / 8 val images, 3 classes, ~160 px) in `session_workspace`,
through the toolbox's own entry (toolbox.train → toolbox.rfdetr.train), at RF_SIZE px (two windows of
the variant's multiple: the smallest size whose windows hold more than one patch row) for RF_STEPS
optimizer steps of batch 2; evaluated once, so it has checkpoints/best/model.pth and
checkpoints/last/model.pth. Returns the run folder. The export and deploy tests of RF-DETR use it.

The model hubs' offline switches are set by tests/conftest.py before anything imports rfdetr or
transformers, so a hidden download (detector weights or the DINOv2 backbone) fails instead of passing.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

RF_RUN = "rfdetr-tiny-run"
RF_MODEL = "RF-DETR-N"
RF_SIZE = 64          # 2 x RF-DETR-N's multiple (patch 16 x 2 windows = 32)
RF_STEPS = 3          # a few optimizer steps: enough to exercise log, eval, best and last
RF_BATCH = 2


def rfdetr_available() -> bool:
    try:
        import rfdetr  # noqa: F401
        import pytorch_lightning  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def needs_rfdetr() -> None:
    """Tests of the RF-DETR family: skipped where rfdetr is not installed, failed under CI=true (setup.sh
    installs it there, so they must not pass by not running)."""
    from tests.conftest import require

    require(rfdetr_available(), "rfdetr[train] is not installed (bash scripts/setup.sh)")


@pytest.fixture(scope="session")
def rfdetr_run(session_workspace, tiny_dataset) -> Path:
    from tests.conftest import require

    require(rfdetr_available(), "rfdetr[train] is not installed (bash scripts/setup.sh)")
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    import toolbox

    run_dir = toolbox.train(dataset=tiny_dataset, model=RF_MODEL, run=RF_RUN, max_steps=RF_STEPS,
                            batch_size=RF_BATCH, grad_accum_steps=1, log_interval=1, input_size=RF_SIZE,
                            pretrained="none", num_workers=0, overrides=["train.multi_scale=false"],
                            workspace=session_workspace, progress=False)
    for which in ("best", "last"):
        assert (run_dir / "checkpoints" / which / "model.pth").is_file(), which
    return run_dir
