"""Comparing two runtimes' outputs: raw tensors by max abs difference, detections by IoU matching.

Final detections are never compared index by index: near-tied scores reorder between runtimes (and
fp16 moves them more), so each reference detection is matched to the candidate detection of the same
class with the highest IoU (greedy, best reference score first, one-to-one).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# The contract's detection tolerances (CONTRACTS.md "Parity"), shared by every format's check:
# FP32 runtimes differ only by float reassociation (~1e-5 in scores, sub-pixel boxes), so 0.99 IoU / 1e-3
FP32_MATCH = {"iou_min": 0.99, "score_tol": 1e-3}
# FP16 (ONNX fp16, RKNN FP16): half precision keeps ~3 decimal digits; through 6 decoder layers boxes move
# by up to a few pixels and sigmoid scores by a few hundredths, so 0.9 IoU / 0.05
FP16_MATCH = {"iou_min": 0.9, "score_tol": 0.05}


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.abs(a - b).max()) if a.size else 0.0


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box [4] with boxes [M,4] -> [M]."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = _area(box) + _area(boxes) - inter
    # two empty boxes (clipped to an image edge, or a regressed size of 0) at the same place count as a perfect
    # match: their IoU is undefined, and float32 rounding of pixel coordinates (< 1e4 px) stays under 1e-3 px
    same = np.all(np.abs(box - boxes) <= EMPTY_BOX_ATOL, axis=1)
    return np.where(union > 0, inter / np.maximum(union, 1e-12), same.astype(float))


EMPTY_BOX_ATOL = 1e-3  # pixels


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


@dataclass
class MatchStats:
    """How a candidate's detections agree with a reference's on one or more images."""

    compared: int = 0            # reference detections looked at
    matched: int = 0             # of those, matched with IoU >= iou_min and |dscore| <= score_tol
    min_iou: float = 1.0
    mean_iou: float = 1.0
    max_score_diff: float = 0.0
    iou_min: float = 0.9
    score_tol: float = 0.05

    @property
    def ok(self) -> bool:
        return self.matched == self.compared

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def match_detections(ref: tuple, cand: tuple, *, top: int = 20, min_score: float = 0.0,
                     iou_min: float = 0.9, score_tol: float = 0.05) -> MatchStats:
    """Match one image's detections. ref/cand: (labels [K], boxes [K,4] xyxy, scores [K]).

    The reference's `top` best detections with score >= min_score are compared against all of the
    candidate's detections (so a detection that just fell below a cut-off still finds its partner).
    """
    rl, rb, rs = (np.asarray(x) for x in ref)
    cl, cb, cs = (np.asarray(x) for x in cand)
    order = np.argsort(-rs, kind="stable")
    order = [i for i in order if rs[i] >= min_score][:top]
    used = np.zeros(len(cl), bool)
    ious, dscores, good = [], [], 0
    for i in order:
        same = np.flatnonzero((cl == rl[i]) & ~used)
        if same.size == 0:
            ious.append(0.0)
            dscores.append(float(rs[i]))
            continue
        iou = box_iou(rb[i].astype(np.float64), cb[same].astype(np.float64))
        # best IoU; among (near-)equal IoUs prefer the closest score
        key = iou - 1e-6 * np.abs(cs[same] - rs[i])
        j = same[int(np.argmax(key))]
        used[j] = True
        best = float(iou[int(np.argmax(key))])
        ds = abs(float(cs[j]) - float(rs[i]))
        ious.append(best)
        dscores.append(ds)
        good += int(best >= iou_min and ds <= score_tol)
    return MatchStats(compared=len(order), matched=good, min_iou=min(ious, default=1.0),
                      mean_iou=float(np.mean(ious)) if ious else 1.0,
                      max_score_diff=max(dscores, default=0.0), iou_min=iou_min, score_tol=score_tol)


def merge(stats: list[MatchStats]) -> MatchStats:
    """Combine per-image statistics into one."""
    if not stats:
        return MatchStats()
    n = sum(s.compared for s in stats)
    mean = sum(s.mean_iou * s.compared for s in stats) / n if n else 1.0
    return MatchStats(compared=n, matched=sum(s.matched for s in stats), min_iou=min(s.min_iou for s in stats),
                      mean_iou=float(mean), max_score_diff=max(s.max_score_diff for s in stats),
                      iou_min=stats[0].iou_min, score_tol=stats[0].score_tol)


NOT_ADMISSIBLE = 1e6   # cost of a pair beyond atol: more than the sum of all admissible ones (Q x atol)


def paired_raw_diff(ref_logits: np.ndarray, ref_boxes: np.ndarray, cand_logits: np.ndarray,
                    cand_boxes: np.ndarray, *, atol: float, boundary: int) -> dict:
    """Compare raw decoder outputs [N,Q,C] / [N,Q,4] query by query after pairing the queries.

    Why pair: queries are the encoder's top-Q positions in score order, and two positions whose encoder
    scores differ by ~1e-6 may trade places (or one may enter the selection instead of another) between
    runtimes, so slot i of one runtime need not be slot i of the other. Each reference query is paired
    one-to-one with a candidate query whose box agrees within `atol` (a maximum matching among such pairs,
    the closest boxes among equally many: Hungarian on max |Δbox|, pairs beyond `atol` barred). An
    unpaired reference query is allowed only among the last `boundary` slots (the selection boundary,
    where near-tied positions enter or leave the top-Q); paired queries are held to `atol` in logits and
    boxes.
    """
    from scipy.optimize import linear_sum_assignment

    rl, rb, cl, cb = (np.asarray(x, np.float64) for x in (ref_logits, ref_boxes, cand_logits, cand_boxes))
    if rl.shape != cl.shape or rb.shape != cb.shape:
        raise ValueError(f"shapes differ: {rl.shape}/{rb.shape} vs {cl.shape}/{cb.shape}")
    n_img, n_q = rb.shape[:2]
    logit_diff = box_diff = 0.0
    unpaired_total = 0
    inner_unpaired = 0          # unpaired reference queries outside the boundary: always a failure
    reordered = 0
    for n in range(n_img):
        dist = np.abs(rb[n][:, None, :] - cb[n][None, :, :]).max(-1)       # [Q, Q] max |Δbox|
        # as many pairs within atol as possible first, then the closest: on the plain distance the assignment
        # minimises the sum and, when one query left the selection and another entered, may shift a chain of
        # queries one anchor (0.0125 at 640) sideways instead of leaving the two unpaired (seen: RT-DETRv2-R18
        # on an Intel Xeon, 16 queries whose exact counterparts were there went unpaired)
        rows, cols = linear_sum_assignment(np.where(dist <= atol, dist, NOT_ADMISSIBLE))
        paired = dist[rows, cols] <= atol
        for r, c in zip(rows[paired], cols[paired]):
            logit_diff = max(logit_diff, float(np.abs(rl[n, r] - cl[n, c]).max()))
            box_diff = max(box_diff, float(dist[r, c]))
        reordered += int(np.sum(rows[paired] != cols[paired]))
        unpaired = rows[~paired]
        unpaired_total += len(unpaired)
        inner_unpaired += int(np.sum(unpaired < n_q - boundary))
    ok = inner_unpaired == 0 and logit_diff <= atol
    return {"pred_logits": logit_diff, "pred_boxes": box_diff, "reordered": reordered,
            "unpaired": unpaired_total, "unpaired_inside": inner_unpaired, "boundary": boundary,
            "ok": bool(ok)}
