"""The checkpoint-compatibility promise: a built model's state dict has exactly PaddleDetection's names
and shapes (../shared/reference lists: 80 classes, norm type bn), so official .pdparams load unchanged."""
from __future__ import annotations

import paddle
import pytest

from tests.conftest import shared_path
from toolbox.models import build_model

REFERENCES = {
    "RT-DETR-R18": "ppdet_rtdetr_r18vd_state_dict.txt",
    "RT-DETR-R34": "ppdet_rtdetr_r34vd_state_dict.txt",
    "RT-DETR-R50": "ppdet_rtdetr_r50vd_state_dict.txt",
    "RT-DETR-R101": "ppdet_rtdetr_r101vd_state_dict.txt",
    "RT-DETR-L": "ppdet_rtdetr_hgnetv2_l_state_dict.txt",
    "RT-DETR-X": "ppdet_rtdetr_hgnetv2_x_state_dict.txt",
    "RT-DETRv2-R18": "ppdet_rtdetrv2_r18vd_state_dict.txt",
    "RT-DETRv2-R50": "ppdet_rtdetrv2_r50vd_state_dict.txt",
}


def read_reference(path) -> dict[str, list[int]]:
    names = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name, shape = line.split("\t")
        names[name] = [int(d) for d in shape.strip("[] ").split(",") if d.strip()]
    return names


@pytest.mark.parametrize("model_name", sorted(REFERENCES))
def test_state_dict_matches_paddledetection(model_name):
    reference = read_reference(shared_path("reference", REFERENCES[model_name]))
    with paddle.LazyGuard():  # the constructors run; only the (slow, irrelevant here) random init is skipped
        model = build_model(model_name, num_classes=80)
    ours = {name: list(t.shape) for name, t in model.state_dict().items()}
    missing = sorted(set(reference) - set(ours))
    unexpected = sorted(set(ours) - set(reference))
    wrong = {n: (ours[n], reference[n]) for n in reference if n in ours and ours[n] != reference[n]}
    assert not missing, f"{len(missing)} names of PaddleDetection's checkpoint missing, e.g. {missing[:5]}"
    assert not unexpected, f"{len(unexpected)} names PaddleDetection's checkpoint lacks, e.g. {unexpected[:5]}"
    assert not wrong, f"{len(wrong)} shapes differ (ours, theirs), e.g. {dict(list(wrong.items())[:5])}"
    assert len(ours) == len(reference)
