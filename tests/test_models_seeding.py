"""Seeded informative weights: the export checks' score tolerances mean something only when detections
score well above them, which a freshly initialised model's do not (about 0.01)."""
from __future__ import annotations

import numpy as np
import paddle

from toolbox.models.build import build_model
from toolbox.models.detector import DeployModel
from toolbox.models.seeding import seed_informative_weights


def _scores(model, images):
    sizes = paddle.to_tensor(np.array([[images.shape[3], images.shape[2]]] * len(images), np.int64))
    with paddle.no_grad():
        return DeployModel(model)(paddle.to_tensor(images), sizes)[2].numpy()


def test_seeded_scores_spread_over_the_score_range():
    paddle.seed(0)
    model = build_model("tiny-test", num_classes=3)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (2, 3, 128, 128)).astype(np.float32)
    before = _scores(model, images)
    # the prior bias of the score heads is logit(0.01): nothing an untouched model says reaches 0.1
    assert before[:, 0].max() < 0.1
    info = seed_informative_weights(model, images, seed=0)
    after = _scores(model, images)
    top20 = after[:, :20]
    # targets 0.9 / 0.1 on average over images; 0.15 of slack for the per-image spread of features
    assert np.all(top20[:, 0] > 0.75) and np.all(top20[:, 0] < 0.99)
    assert np.all(top20[:, 19] > 0.05) and np.all(top20[:, 19] < 0.25)
    # neighbours 1e-4 apart can be told apart by any fp32 runtime (fp32 scores differ ~1e-6)
    assert np.min(top20[:, :-1] - top20[:, 1:]) > 1e-4
    np.testing.assert_allclose(top20, info_scores(info, after), atol=0)


def info_scores(info, after):
    """The summary's per-image best and 20th scores are the model's (the head was written as planned)."""
    np.testing.assert_allclose(after[:, 0], info["top1"], atol=2e-4)   # summary rounds to 4 decimals (5e-5), computed in float64 vs the fp32 model (~1e-6)
    np.testing.assert_allclose(after[:, 19], info["top20"], atol=2e-4)
    return after[:, :20]


def test_seeding_is_reproducible():
    images = np.random.default_rng(1).uniform(0, 1, (1, 3, 128, 128)).astype(np.float32)
    heads = []
    for _ in range(2):
        paddle.seed(3)
        model = build_model("tiny-test", num_classes=3)
        seed_informative_weights(model, images, seed=5)
        heads.append(model.transformer.dec_score_head[model.transformer.decoder.eval_idx].weight.numpy())
    np.testing.assert_array_equal(heads[0], heads[1])


def test_head_drawn_in_leading_components_needs_smaller_weights():
    """The same score spread read off the features' leading principal components takes a head with smaller
    weights than one drawn in all dimensions (less rounding noise multiplied into the scores, FP16 included)."""
    images = np.random.default_rng(2).uniform(0, 1, (2, 3, 128, 128)).astype(np.float32)
    norms = {}
    for directions in (None, 8):
        paddle.seed(0)
        # 20 classes: the mean column norm over 3 classes is one noisy draw (seed 0 gave a ratio of 0.98 on
        # an Intel Xeon, 0.55 and 0.40 for seeds 1 and 2); over 20 columns seeds 0-2 give 0.31-0.43
        model = build_model("tiny-test", num_classes=20)
        seed_informative_weights(model, images, seed=0, directions=directions)
        head = model.transformer.dec_score_head[model.transformer.decoder.eval_idx]
        norms[directions] = float(np.linalg.norm(head.weight.numpy(), axis=0).mean())
    # expected ratio ~sqrt(8/64 x total/leading-8 feature energy) ~0.4 here; 0.6 leaves room for the draw
    assert norms[8] < 0.6 * norms[None], norms


def _norm_outputs(model, images):
    """Every BatchNorm2D's output on `images` (float64 numpy), in forward order."""
    outs = []
    hooks = [m.register_forward_post_hook(lambda layer, inp, out: outs.append(out.numpy().astype(np.float64)))
             for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    with paddle.no_grad():
        model(paddle.to_tensor(images))
    for h in hooks:
        h.remove()
    return outs


def test_recalibrated_norms_bring_a_blown_up_backbone_back_to_unit_scale():
    """A backbone whose activations have grown by 1e4 (as a deep random one does) is brought back by
    recalibrating its BatchNorms on the images: each norm's output is then per-channel zero-mean and
    unit-variance on them (weight 1, bias 0 as initialised), and seeding works on the result."""
    from toolbox.models.seeding import recalibrate_norms

    paddle.seed(0)
    model = build_model("tiny-test", num_classes=3)
    model.eval()
    images = np.random.default_rng(4).uniform(0, 1, (2, 3, 128, 128)).astype(np.float32)
    first = next(m for m in model.backbone.sublayers() if isinstance(m, paddle.nn.Conv2D))
    first.weight.set_value(first.weight * 1e4)
    before = _norm_outputs(model, images)
    assert max(float(np.abs(o).max()) for o in before) > 1e3   # the blow-up is there to be undone
    count = recalibrate_norms(model, images)
    after = _norm_outputs(model, images)
    assert count == len(after) > 0
    for out in after:
        mean, std = out.mean(axis=(0, 2, 3)), out.std(axis=(0, 2, 3))
        live = std > 1e-3        # a channel that is constant on the images (a dead ReLU input) has no scale to set
        assert live.mean() > 0.5
        # BN's epsilon (1e-5) against variances of order 1 leaves ~1e-5 relative; float32 sums ~1e-6
        np.testing.assert_allclose(mean, 0.0, atol=1e-3)
        np.testing.assert_allclose(std[live], 1.0, rtol=1e-3)
    seed_informative_weights(model, images, seed=0)
