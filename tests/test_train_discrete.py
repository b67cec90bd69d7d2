"""Discrete sampling (RT-DETRv2's grid_sample-free cross-attention) gives the sampling offsets no gradient:
they are frozen while a model samples discretely (as upstream) and trainable again on grid.
tests/test_engine_distributed.py trains discretely on two processes (the reduce must not stall)."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _offsets(model):
    return {n: p for n, p in model.named_parameters() if "sampling_offsets" in n}


def test_offsets_freeze_with_discrete_sampling_only():
    from toolbox.models import build_model

    model = build_model("tiny-test", 3, sampling="discrete")
    assert _offsets(model) and all(p.stop_gradient for p in _offsets(model).values())
    others = [p for n, p in model.named_parameters() if "sampling_offsets" not in n and "decoder" in n]
    assert others and not any(p.stop_gradient for p in others)
    model.transformer.set_sampling("grid")
    assert not any(p.stop_gradient for p in _offsets(model).values())
    assert not any(p.stop_gradient for p in _offsets(build_model("tiny-test", 3)).values())
