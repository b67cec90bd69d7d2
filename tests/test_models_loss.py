"""RT-DETR loss: the varifocal definition, box losses, normalisation by the number of boxes,
auxiliary and denoising terms (hand-made predictions, checked against numpy)."""
from __future__ import annotations

import numpy as np
import paddle

from toolbox.models.denoising import DenoisingMeta
from toolbox.models.losses import DINOLoss, varifocal_loss_with_logits


def _np_vfl(x, q, label, alpha=0.75, gamma=2.0):
    p = 1 / (1 + np.exp(-x))
    weight = alpha * p ** gamma * (1 - label) + q * label
    bce = np.maximum(x, 0) - x * q + np.log1p(np.exp(-np.abs(x)))
    return bce * weight


def test_varifocal_loss_value_and_gradient_through_its_weight():
    rng = np.random.default_rng(0)
    x = rng.normal(size=[4, 3])
    label = np.zeros([4, 3]); label[0, 1] = label[2, 0] = 1
    q = label * np.array([[0.7], [0], [0.4], [0]])
    xt = paddle.to_tensor(x.astype("float32"), stop_gradient=False)
    loss = varifocal_loss_with_logits(xt, paddle.to_tensor(q.astype("float32")), paddle.to_tensor(label.astype("float32")))
    np.testing.assert_allclose(loss.numpy(), _np_vfl(x, q, label), rtol=1e-5, atol=1e-7)
    loss.sum().backward()
    # PaddleDetection does not detach sigmoid(x) inside the weight: the gradient includes that term.
    eps = 1e-6
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x); d[i] = eps
        numeric[i] = (_np_vfl(x + d, q, label).sum() - _np_vfl(x - d, q, label).sum()) / (2 * eps)
    np.testing.assert_allclose(xt.grad.numpy(), numeric, rtol=1e-3, atol=1e-5)


def _gt():
    return [{"labels": paddle.to_tensor([1], dtype="int64"),
             "boxes": paddle.to_tensor([[0.5, 0.5, 0.2, 0.4]], dtype="float32")}]


def _outputs(logits, boxes, enc_logits=None, enc_boxes=None):
    logits = np.asarray(logits, "float32")
    boxes = np.asarray(boxes, "float32")
    return {
        "logits": paddle.to_tensor(logits), "boxes": paddle.to_tensor(boxes),
        "enc_logits": paddle.to_tensor(logits[-1] if enc_logits is None else enc_logits),
        "enc_boxes": paddle.to_tensor(boxes[-1] if enc_boxes is None else enc_boxes),
        "dn_logits": None, "dn_boxes": None, "dn_meta": None,
    }


def test_perfect_boxes_cost_nothing_and_the_class_loss_is_the_vfl_sum_over_boxes():
    gt_box = [0.5, 0.5, 0.2, 0.4]
    # One decoder layer, one image, 3 queries x 2 classes; query 2 is the ground truth (class 1).
    logits = np.array([[[[1.0, -2.0], [0.5, 0.3], [-1.0, 2.5]]]])
    boxes = np.array([[[[0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1], gt_box]]])
    losses = DINOLoss(num_classes=2)(_outputs(logits, boxes), _gt())
    assert float(losses["loss_bbox"]) == 0.0 and abs(float(losses["loss_giou"])) < 1e-6
    label = np.zeros([3, 2]); label[2, 1] = 1
    q = label * 1.0  # IoU of a perfect box = 1
    np.testing.assert_allclose(float(losses["loss_class"]), _np_vfl(logits[0, 0], q, label).sum() / 1, rtol=1e-5)
    # The encoder proposals equal the last layer here, so the aux sum is the same set once more.
    np.testing.assert_allclose(float(losses["loss_class_aux"]), float(losses["loss_class"]), rtol=1e-6)
    assert float(losses["loss_class_dn"]) == 0.0


def test_box_losses_and_iou_target():
    logits = np.zeros([1, 1, 2, 2])
    boxes = np.array([[[[0.55, 0.5, 0.2, 0.4], [0.1, 0.1, 0.05, 0.05]]]])  # query 0 shifted by 0.05 in x
    losses = DINOLoss(num_classes=2)(_outputs(logits, boxes), _gt())
    np.testing.assert_allclose(float(losses["loss_bbox"]), 5 * 0.05, rtol=1e-4)
    iou = (0.15 * 0.4) / (2 * 0.08 - 0.15 * 0.4)  # x: [0.45, 0.65] vs [0.4, 0.6], same y range
    hull = 0.25 * 0.4
    giou = iou - (hull - (2 * 0.08 - 0.15 * 0.4)) / hull
    np.testing.assert_allclose(float(losses["loss_giou"]), 2 * (1 - giou), rtol=1e-4)
    label = np.zeros([2, 2]); label[0, 1] = 1
    np.testing.assert_allclose(float(losses["loss_class"]), _np_vfl(np.zeros([2, 2]), label * iou, label).sum(), rtol=1e-4)


def test_losses_are_normalised_by_the_number_of_boxes():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=[2, 1, 5, 3]).astype("float32")
    boxes = np.concatenate([rng.uniform(0.3, 0.7, [2, 1, 5, 2]), rng.uniform(0.1, 0.3, [2, 1, 5, 2])], -1)
    targets = [{"labels": paddle.to_tensor([0, 2], dtype="int64"),
                "boxes": paddle.to_tensor([[0.4, 0.4, 0.2, 0.2], [0.6, 0.5, 0.2, 0.3]], dtype="float32")}]
    single = DINOLoss(num_classes=3)(_outputs(logits, boxes), targets)
    # The same image twice: twice the sums, twice the boxes → the same losses.
    double = DINOLoss(num_classes=3)(_outputs(np.concatenate([logits] * 2, 1), np.concatenate([boxes] * 2, 1)), targets * 2)
    for k in single:
        np.testing.assert_allclose(float(double[k]), float(single[k]), rtol=1e-5, err_msg=k)
    # Two decoder layers: aux = encoder proposals + layer 0, main = layer 1.
    assert float(single["loss_bbox_aux"]) > 0 and float(single["loss_bbox"]) > 0


def test_denoising_losses_use_the_known_assignment_and_the_group_count():
    gt = _gt()
    meta = DenoisingMeta(positive_idx=[np.array([0, 2])], num_group=2, num_split=(4, 3))
    dn_boxes = np.tile(np.array([0.5, 0.5, 0.2, 0.4], "float32"), [1, 1, 4, 1])
    dn_boxes[0, 0, 1] = dn_boxes[0, 0, 3] = [0.1, 0.1, 0.1, 0.1]  # the negatives are elsewhere
    dn_logits = np.zeros([1, 1, 4, 2], "float32")
    out = _outputs(np.zeros([1, 1, 3, 2]), np.full([1, 1, 3, 4], 0.5))
    out.update(dn_boxes=paddle.to_tensor(dn_boxes), dn_logits=paddle.to_tensor(dn_logits), dn_meta=meta)
    losses = DINOLoss(num_classes=2)(out, gt)
    assert float(losses["loss_bbox_dn"]) == 0.0 and abs(float(losses["loss_giou_dn"])) < 1e-6
    label = np.zeros([4, 2]); label[[0, 2], 1] = 1
    want = _np_vfl(np.zeros([4, 2]), label, label).sum() / 2  # 1 box x 2 groups
    np.testing.assert_allclose(float(losses["loss_class_dn"]), want, rtol=1e-5)
    assert float(losses["loss_class_aux_dn"]) == 0.0  # one decoder layer: no auxiliary denoising sets
