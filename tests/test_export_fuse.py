"""The export form of a model (toolbox/export/fuse.py) computes what the model computes, with fewer nodes,
and the ONNX clean-up (onnx_lean.py) changes no output.

Tolerance: folding is computed in float64 and rounded once to float32 (~6e-8 relative per weight);
the fused convolution then sums its products in another order than conv-then-BN, so each layer moves
by float32 reassociation, ~1e-7-1e-6 relative; through a backbone, neck and encoder (~25 layers deep)
this stays under ~2e-6 of the output's magnitude (measured: 5e-7 on the tiny model). FUSE_RTOL = 1e-5
of the largest reference magnitude leaves 5x margin, while a wrong fold (no mean, a misplaced 1x1
kernel) moves outputs by 1e-2 or more (test_a_wrong_fold_is_caught).

The batch norms of a freshly built model hold the identity (mean 0, variance 1, scale 1, shift 0), on
which a wrong fold would go unseen; every test first gives them random statistics.
"""
from __future__ import annotations

import numpy as np
import pytest

FUSE_RTOL = 1e-5  # of max |reference|: float32 reassociation of the folded convs (module docstring)


def randomize_batch_norms(model, seed: int = 0) -> None:
    """Give every BatchNorm2D non-trivial running statistics and affine parameters."""
    import paddle.nn as nn

    rng = np.random.default_rng(seed)
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, nn.BatchNorm2D):
            n = layer._mean.shape[0]
            layer._mean.set_value(rng.normal(0, 0.2, n).astype(np.float32))
            layer._variance.set_value(rng.uniform(0.5, 2.0, n).astype(np.float32))
            layer.weight.set_value(rng.uniform(0.5, 1.5, n).astype(np.float32))
            layer.bias.set_value(rng.normal(0, 0.2, n).astype(np.float32))


def tiny_model(seed: int = 0):
    import paddle

    from toolbox.models import build_model

    paddle.seed(seed)
    model = build_model("tiny-test", 3)
    randomize_batch_norms(model, seed)
    model.eval()
    return model


def stage_outputs(model, ref_model, x) -> list[np.ndarray]:
    """Backbone maps, neck maps, encoder outputs and the decoder's raw outputs of `model` on x; the decoder
    is fed the query selection of `ref_model` (near-tied encoder scores of an untrained model may select
    other queries under float reassociation; the selection itself is checked in the export's parity)."""
    import paddle

    with paddle.no_grad():
        x = paddle.to_tensor(x)
        back = model.backbone(x)
        feats = model.neck(list(back))
        memory, out_mem, enc_logits, enc_coords, shapes = model.transformer.encode(feats)
        r_mem, r_out, r_logits, r_coords, _ = ref_model.transformer.encode(ref_model.extract(x))
        target, ref_unact, _, _ = ref_model.transformer.select_queries(r_out, r_logits, r_coords)
        boxes, logits = model.transformer.decode(target, ref_unact, memory, shapes)
    return [t.numpy() for t in [*back, *feats, memory, enc_logits, enc_coords, boxes, logits]]


def max_rel_diff(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    return max(float(np.abs(r - g).max() / max(1e-12, np.abs(r).max())) for r, g in zip(ref, got))


def test_fused_tiny_model_equals_the_unfused():
    from toolbox.export.fuse import RepVggDeploy, fuse_for_export
    from toolbox.models.hybrid_encoder import RepVggBlock

    model = tiny_model()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    fused, report = fuse_for_export(model)
    assert report.batch_norms_left == 0
    assert report.repvgg_blocks == sum(isinstance(m, RepVggBlock) for m in model.sublayers()) > 0
    assert sum(isinstance(m, RepVggDeploy) for m in fused.sublayers()) == report.repvgg_blocks
    # the training form is untouched: same names (PaddleDetection's), same values
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(np.array_equal(before[k], after[k].numpy()) for k in before)
    x = np.random.default_rng(0).uniform(0, 1, (2, 3, 128, 128)).astype(np.float32)
    rel = max_rel_diff(stage_outputs(model, model, x), stage_outputs(fused, model, x))
    assert rel <= FUSE_RTOL, rel


def test_hgnetv2_conv_bn_pairs_fold():
    """RT-DETR-L/X's backbone (ConvBNAct, depthwise convs included) folds too: checked on the backbone alone."""
    import paddle

    from toolbox.export.fuse import fuse_for_export
    from toolbox.models.backbones.hgnetv2 import PPHGNetV2

    paddle.seed(0)
    net = PPHGNetV2("L")
    randomize_batch_norms(net)
    net.eval()
    fused, report = fuse_for_export(net)
    assert report.batch_norms_left == 0 and report.batch_norms_folded > 0
    x = paddle.to_tensor(np.random.default_rng(0).uniform(0, 1, (1, 3, 96, 96)).astype(np.float32))
    with paddle.no_grad():
        ref, got = [t.numpy() for t in net(x)], [t.numpy() for t in fused(x)]
    rel = max_rel_diff(ref, got)
    assert rel <= FUSE_RTOL, rel


@pytest.mark.parametrize("wrong", ["bn_mean_dropped", "repvgg_1x1_off_centre"])
def test_a_wrong_fold_is_caught(monkeypatch, wrong):
    """The comparison above can fail: a fold that forgets the running mean, or puts the RepVGG 1x1 kernel
    in a corner of the 3x3 instead of its centre, moves the outputs far beyond FUSE_RTOL."""
    from toolbox.export import fuse

    right = fuse.conv_bn_weights
    if wrong == "bn_mean_dropped":
        def bad(conv, bn):
            w, b = right(conv, bn)
            scale = bn.weight.numpy().astype(np.float64) / np.sqrt(bn._variance.numpy().astype(np.float64) + bn._epsilon)
            return w, b + bn._mean.numpy() * scale  # as if the running mean were 0
        monkeypatch.setattr(fuse, "conv_bn_weights", bad)
    else:
        def corner(w1):
            out = np.zeros(w1.shape[:2] + (3, 3), w1.dtype)
            out[:, :, 0, 0] = w1[:, :, 0, 0]  # wrong: the top-left tap reads the pixel up-left
            return out
        monkeypatch.setattr(fuse, "centre_1x1", corner)
    model = tiny_model()
    fused, _ = fuse.fuse_for_export(model)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 128, 128)).astype(np.float32)
    rel = max_rel_diff(stage_outputs(model, model, x), stage_outputs(fused, model, x))
    assert rel > 100 * FUSE_RTOL, rel


@pytest.mark.slow  # ~30 s on 2 shared cores (paddle.jit.save + paddle2onnx)
def test_fused_tiny_onnx_equals_the_unfused_model(tmp_path):
    """The fused, cleaned-up ONNX graph (what the export writes) against the unfused Paddle model."""
    import paddle

    from toolbox.export.fuse import fuse_for_export
    from toolbox.export.onnx import convert, op_counts, session
    from toolbox.export.stages import RawModel, save_static

    model = tiny_model(1)
    fused, _ = fuse_for_export(model)
    spec = [paddle.static.InputSpec([None, 3, 128, 128], "float32", "images")]
    save_static(RawModel(fused), str(tmp_path / "raw" / "model"), spec)
    path = convert(tmp_path / "raw", tmp_path / "raw.onnx", ["pred_logits", "pred_boxes"])
    counts = op_counts(path)
    # Identities left: only those naming a graph output (onnx_lean keeps them)
    assert counts["BatchNormalization"] == 0 and counts["Identity"] <= 2
    # the stage graphs are compared on the encoder's outputs, which carry every folded layer
    x = np.random.default_rng(2).uniform(0, 1, (2, 3, 128, 128)).astype(np.float32)
    with paddle.no_grad():
        ref = [t.numpy() for t in RawModel(model)(paddle.to_tensor(x))]
    got = session(path).run(None, {"images": x})
    # raw outputs: equal up to near-tied query selection; the paired comparison is the export's own
    from toolbox.export import compare

    paired = compare.paired_raw_diff(ref[0], ref[1], got[0], got[1], atol=1e-4, boundary=6)
    assert paired["ok"], paired


# ---------------------------------------------------------------------------------------------- ONNX clean-up
def _graph_with_leftovers():
    """x -> Identity -> Identity -> Conv(W) -> Add(B [1,C,1,1]) -> Transpose -> Transpose -> Identity -> y,
    plus a second Conv whose output feeds two nodes (its Add must not be folded)."""
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    W = numpy_helper.from_array(rng.normal(0, 1, (4, 3, 3, 3)).astype(np.float32), "W")
    B = numpy_helper.from_array(rng.normal(0, 1, (1, 4, 1, 1)).astype(np.float32), "B")
    nodes = [
        helper.make_node("Identity", ["x"], ["i1"]), helper.make_node("Identity", ["i1"], ["i2"]),
        helper.make_node("Conv", ["i2", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Add", ["c", "B"], ["a"]),
        helper.make_node("Transpose", ["a"], ["t1"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 3, 1, 2]),
        helper.make_node("Identity", ["t2"], ["y"]),
        helper.make_node("Conv", ["x", "W"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Add", ["c2", "B"], ["a2"]),
        helper.make_node("Mul", ["a2", "c2"], ["z"]),
    ]
    vi = lambda n, shape: helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, shape)  # noqa: E731
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                              [vi("y", [1, 4, 8, 8]), vi("z", [1, 4, 8, 8])], [W, B])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])


def test_onnx_lean_removes_leftovers_and_keeps_outputs():
    import onnx
    import onnxruntime as ort

    from toolbox.export.onnx_lean import lean

    model = _graph_with_leftovers()
    x = np.random.default_rng(1).normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})  # noqa: E731
    before = run(model)
    counts = lean(model)
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    # the graph output's own Identity stays (it names the output); the shared Conv output keeps its Add;
    # the two Transposes compose to the identity permutation and go
    assert counts == {"identities": 2, "conv_bias": 1, "transposes": 1}
    assert ops.count("Identity") == 1 and ops.count("Add") == 1 and ops.count("Transpose") == 0
    assert len(next(n for n in model.graph.node if n.output[0] == "a").input) == 3  # the folded bias
    for b, a in zip(before, run(model)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)  # conv+bias vs conv then add: one fp32 rounding


# ---------------------------------------------------------------------------------------------- full size
R18_UNFUSED = {"Conv": 69, "BatchNormalization": 69}   # measured: paddle2onnx 2.1.0, RT-DETR-R18, 640
R18_FUSED = {"Conv": 57, "BatchNormalization": 0, "Identity": 1}  # PaddleDetection's R18 export: 57 Conv


@pytest.mark.slow
def test_fused_r18_at_640_equals_the_unfused_with_fewer_nodes(tmp_path):
    """Full RT-DETR-R18, 80 classes, 640, seeded informative weights and random batch-norm statistics."""
    import paddle

    from toolbox.export.fuse import fuse_for_export
    from toolbox.export.onnx import convert, op_counts
    from toolbox.export.paddle_static import save_paddle
    from toolbox.models import DeployModel, build_model
    from toolbox.models.seeding import seed_informative_weights

    paddle.seed(0)
    model = build_model("RT-DETR-R18", 80, input_size=640)
    randomize_batch_norms(model, 3)
    model.eval()
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 640, 640)).astype(np.float32)
    seed_informative_weights(model, x, seed=0)
    fused, report = fuse_for_export(model)
    assert report.to_dict() == {"repvgg_blocks": 12, "batch_norms_folded": 45, "batch_norms_left": 0}
    rel = max_rel_diff(stage_outputs(model, model, x), stage_outputs(fused, model, x))
    assert rel <= FUSE_RTOL, rel
    counts = {}
    for name, layer in (("unfused", model), ("fused", fused)):
        save_paddle(DeployModel(layer), tmp_path / name, 640)
        counts[name] = op_counts(convert(tmp_path / name, tmp_path / f"{name}.onnx", ["labels", "boxes", "scores"],
                                         lean_graph=name == "fused"))
    assert {k: counts["unfused"][k] for k in R18_UNFUSED} == R18_UNFUSED
    assert {k: counts["fused"][k] for k in R18_FUSED} == R18_FUSED
