"""Hungarian matcher: optimal assignments on hand-made and brute-forced cases."""
from __future__ import annotations

import itertools

import numpy as np

from toolbox.models.matcher import HungarianMatcher


def _logits_for(classes, num_classes=3, high=6.0):
    logits = np.full([len(classes), num_classes], -high, dtype="float32")
    logits[np.arange(len(classes)), classes] = high
    return logits


def test_each_ground_truth_gets_its_own_perfect_prediction():
    gt_boxes = np.array([[0.2, 0.2, 0.1, 0.1], [0.7, 0.6, 0.3, 0.2], [0.5, 0.5, 0.4, 0.4]], dtype="float32")
    gt_labels = np.array([1, 0, 2])
    # Query 4 is gt 0, query 1 is gt 1, query 3 is gt 2; queries 0 and 2 are junk.
    boxes = np.array([[0.9, 0.9, 0.05, 0.05], gt_boxes[1], [0.1, 0.9, 0.1, 0.1], gt_boxes[2], gt_boxes[0]], dtype="float32")
    logits = _logits_for([0, 0, 2, 2, 1])
    (rows, cols), = HungarianMatcher().match(logits[None], boxes[None], [gt_labels], [gt_boxes])
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 4, 1: 1, 2: 3}


def test_class_cost_decides_between_identical_boxes():
    gt_boxes = np.array([[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]], dtype="float32")
    boxes = np.repeat(gt_boxes[:1], 2, axis=0)
    logits = _logits_for([2, 1])  # query 0 says class 2, query 1 says class 1
    (rows, cols), = HungarianMatcher().match(logits[None], boxes[None], [np.array([1, 2])], [gt_boxes])
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 1, 1: 0}


def test_assignment_is_optimal_against_brute_force():
    rng = np.random.default_rng(0)
    matcher = HungarianMatcher()
    for _ in range(20):
        q, n = 6, int(rng.integers(1, 5))
        logits = rng.normal(size=[1, q, 4]).astype("float32")
        boxes = np.concatenate([rng.uniform(0.2, 0.8, [1, q, 2]), rng.uniform(0.05, 0.4, [1, q, 2])], -1).astype("float32")
        gl = rng.integers(0, 4, n)
        gb = np.concatenate([rng.uniform(0.2, 0.8, [n, 2]), rng.uniform(0.05, 0.4, [n, 2])], -1).astype("float32")
        cost = matcher.cost_matrix(logits[0], boxes[0], gl, gb)
        (rows, cols), = matcher.match(logits, boxes, [gl], [gb])
        assert len(rows) == n and len(set(rows.tolist())) == n
        best = min(sum(cost[p[j], j] for j in range(n)) for p in itertools.permutations(range(q), n))
        assert abs(cost[rows, cols].sum() - best) < 1e-9


def test_cost_terms():
    matcher = HungarianMatcher(matcher_coeff={"class": 0, "bbox": 1, "giou": 0})
    a = np.array([[0.5, 0.5, 0.2, 0.2]], dtype="float32")
    b = np.array([[0.6, 0.5, 0.2, 0.4]], dtype="float32")
    np.testing.assert_allclose(matcher.cost_matrix(np.zeros([1, 2]), a, np.array([0]), b), [[0.3]], atol=1e-6)
    giou_only = HungarianMatcher(matcher_coeff={"class": 0, "bbox": 0, "giou": 1})
    # a = [0.4,0.4,0.6,0.6], b = [0.5,0.3,0.7,0.7]: inter 0.02, union 0.04+0.08-0.02 = 0.1, hull 0.3x0.4 = 0.12
    np.testing.assert_allclose(giou_only.cost_matrix(np.zeros([1, 2]), a, np.array([0]), b),
                               [[1 - (0.2 - 0.02 / 0.12)]], atol=1e-6)
    focal = HungarianMatcher(matcher_coeff={"class": 1, "bbox": 0, "giou": 0})
    p = 1 / (1 + np.exp(-0.3))
    want = 0.25 * (1 - p) ** 2 * -np.log(p + 1e-8) - 0.75 * p ** 2 * -np.log(1 - p + 1e-8)
    np.testing.assert_allclose(focal.cost_matrix(np.array([[0.3, -1.0]]), a, np.array([0]), b), [[want]], rtol=1e-6)


def test_images_without_boxes_match_nothing():
    out = HungarianMatcher().match(np.zeros([2, 3, 2]), np.full([2, 3, 4], 0.5), [np.zeros([0], "int64"), np.array([1])],
                                   [np.zeros([0, 4]), np.array([[0.5, 0.5, 0.2, 0.2]])])
    assert len(out[0][0]) == 0 and len(out[1][0]) == 1
