"""Weights: save → load round trip is exact; a checkpoint with another class count loads all but the
class heads and says so; URLs download through a cache (a local HTTP server stands in for the
internet) with checksum and atomic writes; offline gives a clear RuntimeFailure; PaddleDetection's own
checkpoint (the conformance fixture) loads with nothing missing."""
from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import paddle
import pytest

from tests.conftest import shared_path
from toolbox.errors import InputError, RuntimeFailure
from toolbox.models import build_model, load_pretrained, load_weights, save_weights
from toolbox.models.weights import sha256_of

CLASS_HEADS_TINY = {  # tiny-test: 2 decoder layers
    "transformer.enc_score_head.weight", "transformer.enc_score_head.bias",
    "transformer.dec_score_head.0.weight", "transformer.dec_score_head.0.bias",
    "transformer.dec_score_head.1.weight", "transformer.dec_score_head.1.bias",
    "transformer.denoising_class_embed.weight",
}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny-test model (3 classes) with non-trivial BN statistics, saved once for the module."""
    paddle.seed(1)
    model = build_model("tiny-test", num_classes=3)
    for name, t in model.state_dict().items():
        if name.endswith("_variance"):
            t.set_value(paddle.rand(t.shape) + 0.5)
        elif name.endswith("_mean"):
            t.set_value(paddle.rand(t.shape) - 0.5)
    path = save_weights(model, tmp_path_factory.mktemp("ckpt") / "model.pdparams")
    return model, path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLBOX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def _state(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def test_save_load_round_trip_is_exact(tiny_checkpoint):
    source, path = tiny_checkpoint
    paddle.seed(2)
    model = build_model("tiny-test", num_classes=3)
    report = load_weights(model, path)
    assert report["loaded"] == report["total"] == len(source.state_dict())
    assert not report["missing"] and not report["unexpected"] and not report["skipped"]
    a, b = _state(source), _state(model)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    source.eval(), model.eval()
    x = paddle.rand([1, 3, 128, 128])
    out_a, out_b = source(x), model(x)
    np.testing.assert_array_equal(out_a["pred_logits"].numpy(), out_b["pred_logits"].numpy())
    np.testing.assert_array_equal(out_a["pred_boxes"].numpy(), out_b["pred_boxes"].numpy())
    # a checkpoint folder (runs/<run>/checkpoints/best/) works as well as the file
    assert load_weights(model, path.parent)["loaded"] == report["total"]


def test_other_class_count_loads_everything_but_the_class_heads(tiny_checkpoint):
    source, path = tiny_checkpoint
    paddle.seed(3)
    model = build_model("tiny-test", num_classes=5)
    fresh = _state(model)
    report = load_weights(model, path)
    assert {s["name"] for s in report["skipped"]} == CLASS_HEADS_TINY
    assert report["class_heads_skipped"] is True
    assert (report["num_classes_checkpoint"], report["num_classes_model"]) == (3, 5)
    assert "class-dependent heads" in report["message"] and "3 classes, model 5" in report["message"]
    assert report["loaded"] == report["total"] - len(CLASS_HEADS_TINY)
    a, b = _state(source), _state(model)
    for name in b:
        expected = fresh[name] if name in CLASS_HEADS_TINY else a[name]
        np.testing.assert_array_equal(b[name], expected, err_msg=name)


def test_strict_loading_refuses_a_partial_match(tiny_checkpoint):
    _, path = tiny_checkpoint
    with pytest.raises(InputError, match="do not match the model exactly"):
        load_weights(build_model("tiny-test", num_classes=4), path, strict=True)


def test_bad_files_give_input_errors(tmp_path):
    model = build_model("tiny-test", num_classes=3)
    with pytest.raises(InputError, match="does not exist"):
        load_weights(model, tmp_path / "nope.pdparams")
    junk = tmp_path / "junk.pdparams"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="cannot read weights"):
        load_weights(model, junk)
    other = tmp_path / "other.pdparams"
    paddle.save({"foo.weight": np.zeros([2, 2], "float32")}, str(other))
    with pytest.raises(InputError, match="none of the 1 tensors"):
        load_weights(model, other)


def test_offline_url_is_a_clear_runtime_failure(cache):
    model = build_model("tiny-test", num_classes=3)
    url = "http://127.0.0.1:9/rtdetr_r18vd_dec3_6x_coco.pdparams"  # nothing listens on the discard port
    with pytest.raises(RuntimeFailure, match="--pretrained none") as info:
        load_weights(model, url, progress=False)
    assert info.value.exit_code == 3 and url in str(info.value)
    assert not cache.exists() or not any(cache.iterdir())  # no partial file left behind


@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on localhost serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_download_is_cached_and_checksummed(tiny_checkpoint, cache, http_root):
    source, path = tiny_checkpoint
    root, base = http_root
    (root / "tiny.pdparams").write_bytes(path.read_bytes())
    digest = sha256_of(path)
    model = build_model("tiny-test", num_classes=3)
    report = load_weights(model, f"{base}/tiny.pdparams", sha256=digest, progress=False)
    assert report["loaded"] == report["total"]
    cached = cache / "tiny.pdparams"
    assert cached.is_file() and sha256_of(cached) == digest
    assert sorted(p.name for p in cache.iterdir()) == ["tiny.pdparams"]  # no temporary files
    (root / "tiny.pdparams").unlink()  # the second load must come from the cache
    assert load_weights(model, f"{base}/tiny.pdparams", sha256=digest, progress=False)["loaded"] == report["total"]

    (root / "bad.pdparams").write_bytes(path.read_bytes())
    with pytest.raises(RuntimeFailure, match="SHA-256"):
        load_weights(model, f"{base}/bad.pdparams", sha256="0" * 64, progress=False)
    assert not (cache / "bad.pdparams").exists()


def test_load_pretrained_follows_the_config(tiny_checkpoint):
    _, path = tiny_checkpoint
    model = build_model("tiny-test", num_classes=3)
    assert model.config["pretrained"] == "none" and load_pretrained(model) is None
    assert load_pretrained(model, "none") is None
    assert load_pretrained(model, path)["loaded"] == len(model.state_dict())


def test_paddledetection_checkpoint_loads_unchanged():
    weights = shared_path("reference", "conformance_r18_320_c3", "weights.pdparams")
    model = build_model("RT-DETR-R18", num_classes=3)
    report = load_weights(model, weights)
    assert report["loaded"] == report["total"] == 464
    assert not report["missing"] and not report["unexpected"] and not report["skipped"]
    coco = build_model("RT-DETR-R18", num_classes=80)  # fine-tuning direction: 3 → 80 classes
    report = load_weights(coco, weights)
    assert report["class_heads_skipped"] and len(report["skipped"]) == 2 + 2 * 3 + 1
