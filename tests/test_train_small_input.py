"""The smallest input size: multi-scale never goes below the size whose encoder positions reach the number
of queries (a 96 px batch once crashed RT-DETR-R18 at step 3 inside Paddle's topk), and smaller sizes are
refused before training with a one-line reason."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

import toolbox  # noqa: E402
from toolbox.engine import config as C  # noqa: E402
from toolbox.errors import UsageError  # noqa: E402
from toolbox.events import read_events  # noqa: E402
from toolbox.models import load_config  # noqa: E402

DATASET = {"name": "d", "dir": "/nowhere", "cat_ids": [1, 2], "label_list": ["a", "b"]}


def _resolve(size, overrides=()):
    return C.resolve(model_name="RT-DETR-R18", model_source="RT-DETR-R18", model_cfg=load_config("RT-DETR-R18"),
                     dataset=DATASET, options={"input_size": size}, overrides=C.parse_overrides(overrides))


def test_the_floor_is_the_smallest_size_with_enough_encoder_positions():
    assert C.min_input_size(300) == 128  # 16² + 8² + 4² = 336 ≥ 300; 96 px: 12² + 6² + 3² = 189
    assert C.min_input_size(100) == 96 and C.min_input_size(21) == 32
    sizes = _resolve(128)["augment"]["sizes"]
    assert min(sizes) == 128 and max(sizes) == 160  # 480..800 scaled to 128 is 96..160: 96 floored
    assert min(_resolve(160)["augment"]["sizes"]) == 128  # 480 * 160/640 = 120 → 128
    with pytest.raises(UsageError, match=r"--input-size 96 is too small .* smallest size it accepts is 128"):
        _resolve(96)
    assert min(_resolve(96, ["num_queries=100"])["augment"]["sizes"]) == 96  # fewer queries, lower floor


@pytest.mark.slow
def test_rt_detr_r18_trains_at_the_smallest_size_it_accepts(session_workspace, tiny_dataset):
    run = toolbox.train(dataset=tiny_dataset, model="RT-DETR-R18", run="r18-at-128", input_size=128,
                        batch_size=2, max_steps=6, log_interval=1, pretrained="none", num_workers=0,
                        workspace=session_workspace, progress=False)
    evs = list(read_events(run / "events.jsonl"))
    assert [e["step"] for e in evs if e["type"] == "log"] == [1, 2, 3, 4, 5, 6]
    assert evs[-1]["type"] == "end" and evs[-1]["status"] == "ok"
    with pytest.raises(UsageError, match="smallest size it accepts is 128"):
        toolbox.train(dataset=tiny_dataset, model="RT-DETR-R18", run="r18-at-96", input_size=96,
                      pretrained="none", workspace=session_workspace, progress=False)
    assert not (session_workspace.runs / "r18-at-96").exists()  # refused before anything was written
