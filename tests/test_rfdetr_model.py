"""RF-DETR models built through rfdetr with nothing downloaded (toolbox.rfdetr.model).

The hub switches are set before rfdetr/transformers are imported, and the hub and rfdetr caches point at
empty folders, so any hidden download (detector weights or the DINOv2 backbone) fails these tests.
"""
from __future__ import annotations

import os
import tempfile

_EMPTY = tempfile.mkdtemp(prefix="rfdetr-nocache-")
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_CACHE=os.path.join(_EMPTY, "hf"),
                  RF_HOME=os.path.join(_EMPTY, "rf"))

import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("rfdetr")

from toolbox.errors import RuntimeFailure, UsageError  # noqa: E402
from toolbox.models.config import read_yaml, PIPELINES_DIR  # noqa: E402
from toolbox.rfdetr import model as M  # noqa: E402


def cfg(name: str) -> dict:
    return read_yaml(PIPELINES_DIR / f"{name}.yaml")


def test_multiples_come_from_the_installed_package():
    from rfdetr.config import RFDETRBaseConfig, RFDETRNanoConfig

    nano = RFDETRNanoConfig.model_fields
    assert M.size_multiple(cfg("RF-DETR-N")) == nano["patch_size"].default * nano["num_windows"].default == 32
    base = RFDETRBaseConfig.model_fields
    assert M.size_multiple(cfg("RF-DETR-B")) == base["patch_size"].default * base["num_windows"].default == 56
    for name in ("RF-DETR-N", "RF-DETR-S", "RF-DETR-M", "RF-DETR-B", "RF-DETR-L"):
        c = cfg(name)  # the file's input_size is rfdetr's default and a valid multiple
        assert c["input_size"] == M.default_resolution(c) and c["input_size"] % M.size_multiple(c) == 0
    with pytest.raises(UsageError, match="multiple of 32"):
        M.check_input_size(cfg("RF-DETR-N"), 100)


def test_nano_from_scratch_runs_offline():
    wrapper = M.build_rfdetr(cfg("RF-DETR-N"), 3, pretrained="none", input_size=64)
    net = M.torch_module(wrapper)
    assert not net.training
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64))
    # rfdetr's head has num_classes + 1 logits (its extra background slot)
    assert out["pred_logits"].shape[-1] == 4 and out["pred_boxes"].shape[-1] == 4
    assert torch.isfinite(out["pred_logits"]).all()
    assert not os.listdir(_EMPTY) or all(not os.listdir(os.path.join(_EMPTY, d)) for d in os.listdir(_EMPTY))


def test_base_builds_its_dinov2_encoder_without_the_hub():
    """RF-DETR-B's patch grid matches DINOv2's, where rfdetr would fetch the hub backbone: none must not."""
    net = M.torch_module(M.build_rfdetr(cfg("RF-DETR-B"), 2, pretrained="none", input_size=112))
    assert sum(p.numel() for p in net.parameters()) > 1_000_000


def test_offline_pretrained_is_a_runtime_failure():
    with pytest.raises(RuntimeFailure, match="pass --pretrained none"):
        M.build_rfdetr(cfg("RF-DETR-N"), 3, pretrained=None, input_size=64)
    with pytest.raises(UsageError, match="not a checkpoint name"):
        M.build_rfdetr(cfg("RF-DETR-N"), 3, pretrained="no-such-weights.pth", input_size=64)


def test_checkpoint_round_trip(tmp_path):
    wrapper = M.build_rfdetr(cfg("RF-DETR-N"), 3, pretrained="none", input_size=64)
    net = M.torch_module(wrapper)
    path = tmp_path / "model.pth"
    torch.save({"model": net.state_dict(), "epoch": 0}, path)
    again = M.torch_module(M.load_checkpoint(cfg("RF-DETR-N"), 3, path, input_size=64))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = net(x)["pred_logits"], again(x)["pred_logits"]
    assert torch.equal(a, b)  # the same weights on the same CPU kernels: bit-identical
    from toolbox.errors import InputError

    with pytest.raises(InputError, match="does not fit"):
        M.load_checkpoint(cfg("RF-DETR-N"), 5, path, input_size=64)
