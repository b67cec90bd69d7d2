"""RT-DETR transformer, neck and detector behaviour on the tiny config (fast: input 64-96 px)."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

S = 64


def _targets():
    return [
        {"labels": paddle.to_tensor([0, 2], dtype="int64"),
         "boxes": paddle.to_tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.7, 0.3, 0.4]], dtype="float32")},
        {"labels": paddle.to_tensor([1], dtype="int64"),
         "boxes": paddle.to_tensor([[0.5, 0.5, 0.5, 0.5]], dtype="float32")},
    ]


def _build(**overrides):
    """tiny-test at S px: 84 encoder positions, so 50 queries."""
    from toolbox.models import build_model

    return build_model("tiny-test", **{"num_classes": 3, "input_size": S, "num_queries": 50, **overrides})


@pytest.fixture(scope="module")
def tiny():
    paddle.seed(0)
    model = _build()
    model.eval()
    return model


@pytest.fixture(scope="module")
def images():
    paddle.seed(1)
    return paddle.rand([2, 3, S, S])


def test_eval_forward_shapes_and_value_ranges(tiny, images):
    from toolbox.models import postprocess

    with paddle.no_grad():
        out = tiny(images)
    q = tiny.transformer.num_queries
    assert out["pred_logits"].shape == [2, q, 3] and out["pred_boxes"].shape == [2, q, 4]
    assert np.isfinite(out["pred_logits"].numpy()).all()
    boxes = out["pred_boxes"].numpy()
    assert (boxes >= 0).all() and (boxes <= 1).all()

    wh = paddle.to_tensor([[640, 480], [100, 200]], dtype="int64")
    labels, pix, scores = postprocess(out["pred_logits"], out["pred_boxes"], wh)
    k = min(300, q * 3)
    assert labels.shape == [2, k] and pix.shape == [2, k, 4] and scores.shape == [2, k]
    assert labels.dtype == paddle.int64 and pix.dtype == paddle.float32
    s = scores.numpy()
    assert (s >= 0).all() and (s <= 1).all() and (np.diff(s, axis=1) <= 0).all()
    p = pix.numpy()
    assert (p[0, :, [0, 2]] <= 640).all() and (p[0, :, [1, 3]] <= 480).all()
    assert (p[1, :, [0, 2]] <= 100).all() and (p[1, :, [1, 3]] <= 200).all() and (p >= 0).all()
    assert (p[..., 2] >= p[..., 0]).all() and (p[..., 3] >= p[..., 1]).all()


def test_postprocess_scales_clips_and_clamps_k():
    from toolbox.models import postprocess

    logits = paddle.to_tensor([[[-5.0, 3.0], [2.0, -4.0]]])  # query 0 → class 1, query 1 → class 0
    boxes = paddle.to_tensor([[[0.5, 0.5, 0.2, 0.4], [0.95, 0.1, 0.2, 0.4]]])
    labels, pix, scores = postprocess(logits, boxes, paddle.to_tensor([[200, 100]], dtype="int64"), num_top=300)
    assert labels.shape == [1, 4]  # K clamped to Q * C
    np.testing.assert_array_equal(labels.numpy()[0, :2], [1, 0])
    np.testing.assert_allclose(scores.numpy()[0, :2], 1 / (1 + np.exp([-3.0, -2.0])), rtol=1e-6)
    np.testing.assert_allclose(pix.numpy()[0, 0], [80, 30, 120, 70], atol=1e-4)
    np.testing.assert_allclose(pix.numpy()[0, 1], [170, 0, 200, 30], atol=1e-4)  # clipped at x2 and y1


def test_training_losses_are_finite_and_backward_reaches_every_trainable_parameter(images):
    paddle.seed(2)
    model = _build()
    # The box heads' last layers start at zero (PaddleDetection's init), which zeroes the gradient of
    # the layers before them on the first step; give them weights so every path carries gradient.
    for name, p in model.named_parameters():
        if "bbox_head" in name and ".layers.2." in name:
            p.set_value(paddle.randn(p.shape) * 0.01)
    model.train()
    losses = model(images, _targets())
    expected = {f"loss_{p}{s}" for p in ("class", "bbox", "giou") for s in ("", "_aux", "_dn", "_aux_dn")}
    assert expected | {"loss"} == set(losses)
    for k, v in losses.items():
        assert np.isfinite(float(v)), k
    np.testing.assert_allclose(float(losses["loss"]), sum(float(v) for k, v in losses.items() if k != "loss"),
                               rtol=1e-5)
    losses["loss"].backward()
    trainable = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    assert len(trainable) > 100
    unreached = [n for n, p in trainable if p.grad is None or float(p.grad.abs().sum()) == 0.0]
    assert unreached == []
    assert all(np.isfinite(p.grad.numpy()).all() for _, p in trainable)


def test_training_with_an_image_without_boxes():
    paddle.seed(3)
    model = _build()
    model.train()
    targets = _targets()
    targets[1] = {"labels": paddle.zeros([0], dtype="int64"), "boxes": paddle.zeros([0, 4], dtype="float32")}
    losses = model(paddle.rand([2, 3, S, S]), targets)
    assert all(np.isfinite(float(v)) for v in losses.values())
    empty = [{"labels": paddle.zeros([0], dtype="int64"), "boxes": paddle.zeros([0, 4], dtype="float32")}] * 2
    losses = model(paddle.rand([2, 3, S, S]), empty)
    assert float(losses["loss_bbox"]) == 0.0 and float(losses["loss_class_dn"]) == 0.0
    assert np.isfinite(float(losses["loss"])) and float(losses["loss_class"]) > 0


def test_stages_compose_to_forward(tiny, images):
    with paddle.no_grad():
        out = tiny(images)
        tr = tiny.transformer
        memory, output_memory, enc_logits, enc_coords, shapes = tr.encode(tiny.extract(images))
        assert shapes == [(8, 8), (4, 4), (2, 2)]
        assert memory.shape == [2, 84, 64] and enc_logits.shape == [2, 84, 3] and enc_coords.shape == [2, 84, 4]
        target, ref_unact, topk_logits, topk_index = tr.select_queries(output_memory, enc_logits, enc_coords)
        # Query selection keeps the anchors with the best class logit, best first.
        best = enc_logits.max(-1).numpy()
        np.testing.assert_array_equal(np.sort(topk_index.numpy(), 1), np.sort(np.argsort(-best, 1)[:, :tr.num_queries], 1))
        np.testing.assert_array_equal(topk_logits.numpy(), np.take_along_axis(enc_logits.numpy(), topk_index.numpy()[..., None], 1))
        boxes, logits = tr.decode(target, ref_unact, memory, shapes)
    np.testing.assert_array_equal(logits[-1].numpy(), out["pred_logits"].numpy())
    np.testing.assert_array_equal(boxes[-1].numpy(), out["pred_boxes"].numpy())


def test_eval_idx_chooses_the_layer_and_skips_the_rest(tiny, images):
    tr = tiny.transformer
    calls = []
    hooks = [layer.register_forward_post_hook(lambda layer, inp, out, i=i: calls.append(i))
             for i, layer in enumerate(tr.decoder.layers)]
    try:
        with paddle.no_grad():
            memory, output_memory, enc_logits, enc_coords, shapes = tr.encode(tiny.extract(images))
            target, ref_unact, _, _ = tr.select_queries(output_memory, enc_logits, enc_coords)
            # Training mode runs (and returns) every layer; the decoder has no BN and dropout is 0.
            tr.train()
            all_boxes, all_logits = tr.decode(target, ref_unact, memory, shapes)
            tr.eval()
            assert calls == [0, 1] and all_logits.shape[0] == 2
            for idx in (0, 1, -1):
                calls.clear()
                tr.eval_idx = idx
                boxes, logits = tr.decode(target, ref_unact, memory, shapes)
                used = idx % 2
                assert calls == list(range(used + 1))
                np.testing.assert_allclose(logits[-1].numpy(), all_logits[used].numpy(), atol=1e-5)
                np.testing.assert_allclose(boxes[-1].numpy(), all_boxes[used].numpy(), atol=1e-6)
    finally:
        tr.eval_idx = -1
        for h in hooks:
            h.remove()
    assert _build(eval_idx=0).transformer.eval_idx == 0
    with pytest.raises(ValueError):
        tr.eval_idx = 5


def test_discrete_sampling_reads_the_pixel_grid_sampling_reads_at_its_centre():
    from toolbox.models.deformable_attention import sample_values

    rng = np.random.default_rng(0)
    h, w = 5, 7
    value = paddle.to_tensor(rng.normal(size=[2, 3, h, w]).astype("float32"))
    ix, iy = rng.integers(0, w, size=[2, 6, 4]), rng.integers(0, h, size=[2, 6, 4])
    centres = np.stack([(ix + 0.5) / w, (iy + 0.5) / h], -1).astype("float32")  # [N, Lq, P, 2]
    grid = sample_values(value, paddle.to_tensor(centres), "grid").numpy()  # [N, C, Lq, P]
    expected = np.stack([value.numpy()[n][:, iy[n], ix[n]] for n in range(2)])
    np.testing.assert_allclose(grid, expected, atol=1e-6)
    # RT-DETRv2's discrete operator reads int(loc * size + 0.5): the pixel whose centre is half a pixel
    # right/down of loc. Half a pixel left/up of the centres (plus noise below half a pixel) it reads them.
    noise = rng.uniform(-0.45, 0.45, size=centres.shape) / np.array([w, h])
    shifted = (centres - 0.5 / np.array([w, h]) + noise).astype("float32")
    discrete = sample_values(value, paddle.to_tensor(shifted), "discrete").numpy()
    np.testing.assert_array_equal(discrete, expected)
    # Outside the map it clamps to the border pixel (grid sampling would read zeros).
    outside = paddle.to_tensor(np.full([2, 1, 1, 2], 1.5, dtype="float32"))
    np.testing.assert_array_equal(sample_values(value, outside, "discrete").numpy()[:, :, 0, 0], value.numpy()[:, :, -1, -1])


def test_discrete_sampling_model_runs_and_switches_without_new_weights(tiny, images):
    paddle.seed(4)
    model = _build(sampling="discrete")
    assert all(layer.cross_attn.method == "discrete" for layer in model.transformer.decoder.layers)
    model.set_state_dict(tiny.state_dict())
    model.eval()
    with paddle.no_grad():
        out = model(images)
        assert np.isfinite(out["pred_logits"].numpy()).all()
        model.transformer.set_sampling("grid")
        again = model(images)
    with paddle.no_grad():
        ref = tiny(images)
    np.testing.assert_allclose(again["pred_logits"].numpy(), ref["pred_logits"].numpy(), atol=1e-5)
    model.transformer.set_sampling("discrete")
    model.train()
    losses = model(images, _targets())
    assert np.isfinite(float(losses["loss"]))


def test_v2_buffer_is_saved_and_points_per_level_are_configurable():
    from toolbox.models.decoder import RTDETRTransformer, RTDETRTransformerv2

    v2 = RTDETRTransformerv2(num_classes=3, hidden_dim=32, nhead=2, num_decoder_layers=1, dim_feedforward=32,
                             num_queries=10, num_decoder_points=[2, 3, 4], backbone_feat_channels=[32, 32, 32])
    sd = v2.state_dict()
    np.testing.assert_allclose(sd["decoder.layers.0.cross_attn.num_points_scale"].numpy(),
                               [1 / 2] * 2 + [1 / 3] * 3 + [1 / 4] * 4, rtol=1e-6)
    assert sd["decoder.layers.0.cross_attn.sampling_offsets.weight"].shape == [32, 2 * 9 * 2]
    v1 = RTDETRTransformer(num_classes=3, hidden_dim=32, nhead=2, num_decoder_layers=1, dim_feedforward=32,
                           num_queries=10, backbone_feat_channels=[32, 32, 32])
    assert not any("num_points_scale" in k for k in v1.state_dict())
    feats = [paddle.rand([1, 32, 8, 8]), paddle.rand([1, 32, 4, 4]), paddle.rand([1, 32, 2, 2])]
    v2.eval()
    logits, boxes = v2(feats)
    assert logits.shape == [1, 10, 3] and boxes.shape == [1, 10, 4]


def test_anchors_outside_the_margin_are_invalid():
    from toolbox.models.decoder import RTDETRTransformer

    tr = RTDETRTransformer(num_classes=2, hidden_dim=32, nhead=2, num_decoder_layers=1, backbone_feat_channels=[32])
    tr.num_levels = 1
    logits, valid = tr.generate_anchors([(80, 80)])
    v = valid.numpy()[0, :, 0].reshape(80, 80)
    # Centre (i + 0.5) / 80 <= 0.01 for i = 0: the border cells are invalid, the rest are not.
    assert not v[0].any() and not v[:, 0].any() and v[1:-1, 1:-1].all()
    assert np.isinf(logits.numpy()[0][~valid.numpy()[0, :, 0]]).all()
    inner = logits.numpy()[0, 81]  # cell (1, 1): centre 1.5 / 80, size 0.05
    np.testing.assert_allclose(inner, np.log(np.array([1.5 / 80, 1.5 / 80, 0.05, 0.05]) / (1 - np.array([1.5 / 80, 1.5 / 80, 0.05, 0.05]))), rtol=1e-5)


def test_denoising_queries_structure():
    from toolbox.models.box_ops import inverse_sigmoid
    from toolbox.models.denoising import build_denoising_queries

    targets = _targets()
    embed = paddle.randn([3, 8])
    dn, ref_unact, mask, meta = build_denoising_queries(targets, 3, 5, embed, num_denoising=9,
                                                        label_noise_ratio=0.0, box_noise_scale=0.0)
    # max 2 boxes per image → 9 // 2 = 4 groups of 2·2 queries.
    assert meta.num_group == 4 and meta.num_split == (16, 5)
    assert dn.shape == [2, 16, 8] and ref_unact.shape == [2, 16, 4] and mask.shape == [21, 21]
    np.testing.assert_array_equal(meta.positive_idx[0], [0, 1, 4, 5, 8, 9, 12, 13])
    np.testing.assert_array_equal(meta.positive_idx[1], [0, 4, 8, 12])
    # Without noise the queries are the ground truth; padding reads the zero row.
    np.testing.assert_allclose(dn.numpy()[0, 1], embed.numpy()[2], rtol=1e-6)
    np.testing.assert_allclose(dn.numpy()[1, 1], 0.0)
    np.testing.assert_allclose(ref_unact.numpy()[0, 4:6], inverse_sigmoid(targets[0]["boxes"]).numpy(), rtol=1e-5)
    m = np.isfinite(mask.numpy())  # True = may attend
    assert not m[16:, :16].any() and m[16:, 16:].all() and m[:16, 16:].all()
    group = np.arange(16) // 4
    np.testing.assert_array_equal(m[:16, :16], group[:, None] == group[None, :])

    paddle.seed(5)
    _, noisy, _, _ = build_denoising_queries(targets, 3, 5, embed, num_denoising=9, label_noise_ratio=0.5,
                                             box_noise_scale=1.0)
    box = 1 / (1 + np.exp(-noisy.numpy()[0]))
    gt = targets[0]["boxes"].numpy()
    cx_shift = np.abs(box[:, 0] - np.tile(np.concatenate([gt[:, 0], gt[:, 0]]), 4))
    assert (cx_shift <= np.tile(np.concatenate([gt[:, 2], gt[:, 2]]), 4) + 1e-5).all()  # at most one box width


@pytest.mark.slow
@pytest.mark.parametrize("sampling", ["grid", "discrete"])
def test_deploy_model_saves_as_a_static_graph_with_a_dynamic_batch(tmp_path, sampling, images):
    from toolbox.models import DeployModel

    paddle.seed(6)
    deploy = DeployModel(_build(sampling=sampling))
    sizes = paddle.to_tensor([[640, 480], [100, 200]], dtype="int64")
    with paddle.no_grad():
        expected = deploy(images, sizes)
    spec = [paddle.static.InputSpec([None, 3, S, S], "float32", "images"),
            paddle.static.InputSpec([None, 2], "int64", "orig_target_sizes")]
    paddle.jit.save(deploy, str(tmp_path / "model"), input_spec=spec)
    assert (tmp_path / "model.json").exists() and (tmp_path / "model.pdiparams").exists()
    loaded = paddle.jit.load(str(tmp_path / "model"))
    got = loaded(images, sizes)
    for a, b in zip(expected, got):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
    one = loaded(images[:1], sizes[:1])
    assert [o.shape for o in one] == [[1, 150], [1, 150, 4], [1, 150]]
