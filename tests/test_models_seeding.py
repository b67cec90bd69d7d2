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
        model = build_model("tiny-test", num_classes=3)
        seed_informative_weights(model, images, seed=0, directions=directions)
        head = model.transformer.dec_score_head[model.transformer.decoder.eval_idx]
        norms[directions] = float(np.linalg.norm(head.weight.numpy(), axis=0).mean())
    # measured 44.6 vs 20.5 on the tiny run's images; 0.8 leaves room for other images' spectra
    assert norms[8] < 0.8 * norms[None], norms
