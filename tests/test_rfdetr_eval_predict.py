"""`eval` and `predict` of an RF-DETR run (toolbox.rfdetr.evaluate / predict), dispatched by toolbox's api:
the same metrics.json and prediction files as RT-DETR's, AP from the toolbox's own COCO evaluation."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.rfdetr_support import RF_SIZE

pytestmark = pytest.mark.usefixtures("needs_rfdetr")

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
# the keys toolbox.engine.api.evaluate writes for an RT-DETR run (its metrics.json), in full
METRICS_JSON_KEYS = {"schema_version", "time", "type", "epoch", "step", "metrics", "per_class", "run", "weights",
                     "dataset", "split", "input_size", "num_images", "num_detections", "summary", "pr_curves", "vis"}


def test_eval_writes_the_rtdetr_metrics_file(session_workspace, rfdetr_run):
    import toolbox
    from toolbox.events import read_events

    report = toolbox.evaluate(run=rfdetr_run.name, workspace=session_workspace, vis_count=2, threshold=0.0,
                              progress=False)
    out = rfdetr_run / "eval"
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) == METRICS_JSON_KEYS and report["path"] == str(out / "metrics.json")
    assert m["type"] == "eval" and m["split"] == "val" and m["num_images"] == 8 and m["input_size"] == RF_SIZE
    assert list(m["metrics"]) == METRICS and [c["class_id"] for c in m["per_class"]] == [0, 1, 2]
    assert m["num_detections"] == 8 * 300  # all K = 300 detections of every image are scored, as for RT-DETR
    assert len(m["pr_curves"]) == 3 and len(m["vis"]) == 2
    for rel in m["pr_curves"] + m["vis"]:
        assert cv2.imread(str(out / rel)) is not None
    # the best checkpoint's weights were scored the same way during training: the same numbers
    train_eval = [e for e in read_events(rfdetr_run / "events.jsonl") if e["type"] == "eval"][-1]
    assert m["metrics"] == train_eval["metrics"] and m["step"] == train_eval["step"]
    types = [e["type"] for e in read_events(out / "events.jsonl")]
    assert types[0] == "start" and "eval" in types and types[-1] == "end"


def test_eval_ap_is_pycocotools_on_the_predictions(session_workspace, rfdetr_run):
    """The metrics are COCOeval's own stats on the torch model's predictions (nothing of rfdetr's metric)."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    from toolbox.data.loader import CocoDetection
    from toolbox.engine.predict import read_image
    from toolbox.rfdetr.evaluate import evaluate_split
    from toolbox.rfdetr.predict import predictor

    pred = predictor(run=rfdetr_run.name, model=None, weights="best", workspace=session_workspace)
    ds = CocoDetection(Path(session_workspace.dataset_dir("tiny")), "val")
    mine = evaluate_split(pred, ds, pred.label_list, batch_size=3)
    results = []
    for image_id in ds.image_ids:
        labels, boxes, scores = pred([read_image(ds.image_path(image_id))])
        for lab, (x1, y1, x2, y2), s in zip(labels[0], boxes[0], scores[0]):
            results.append({"image_id": image_id, "category_id": ds.cat_ids[int(lab)],
                            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(ds.coco, ds.coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for name, stat in zip(METRICS, ev.stats):
        got = mine["metrics"][name]
        # 1e-6: the toolbox rounds each metric to 6 decimals; batching (3 vs 1) does not change a prediction
        assert (got is None and stat < 0) or got == pytest.approx(float(stat), abs=1e-6), name
    assert mine["num_detections"] == len(results) == 8 * 300
    # (a 3-step model scores ~0 here; test_class_index_is_the_contract_rank scores non-zero APs the same way)


def test_class_index_is_the_contract_rank(session_workspace, tiny_dataset):
    """evaluate_split maps class index k to the k-th category id: ground truth given as predictions scores
    AP 1, the same boxes with every class index moved by one score 0."""
    from toolbox.data.loader import CocoDetection
    from toolbox.rfdetr.evaluate import evaluate_split

    ds = CocoDetection(session_workspace.dataset_dir(tiny_dataset), "val")
    index = {c: k for k, c in enumerate(ds.cat_ids)}
    by_path = {str(ds.image_path(i)): i for i in ds.image_ids}

    class Oracle:
        """Answers each image with its ground-truth boxes (labels moved by `shift`)."""

        label_list = ["a", "b", "c"]

        def __init__(self, shift):
            self.shift, self.order = shift, iter(ds.image_ids)

        def __call__(self, images):
            out_l, out_b, out_s = [], [], []
            for _ in images:
                anns = ds.coco.imgToAnns[next(self.order)]
                out_l.append(np.array([(index[a["category_id"]] + self.shift) % 3 for a in anns]))
                out_b.append(np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                        a["bbox"][1] + a["bbox"][3]] for a in anns], np.float32).reshape(-1, 4))
                out_s.append(np.full(len(anns), 0.9, np.float32))
            return np.stack(out_l), np.stack(out_b), np.stack(out_s)  # batch_size 1: no ragged rows

    assert by_path  # the split has images
    right = evaluate_split(Oracle(0), ds, Oracle.label_list, batch_size=1)
    wrong = evaluate_split(Oracle(1), ds, Oracle.label_list, batch_size=1)
    assert right["metrics"]["AP"] == pytest.approx(1.0) and wrong["metrics"]["AP"] == 0.0


def test_predict_writes_the_rtdetr_prediction_files(session_workspace, rfdetr_run, tmp_path):
    import toolbox
    from toolbox.rfdetr.predict import predictor

    images = session_workspace.dataset_dir("tiny") / "images"
    one = sorted(images.glob("val_*.jpg"))[0]
    res = toolbox.predict([one], run=rfdetr_run.name, threshold=0.0, out=tmp_path / "a",
                          workspace=session_workspace, progress=False)
    data = json.loads((tmp_path / "a" / f"{one.stem}.json").read_text())
    assert set(data) == {"input_path", "page_index", "boxes", "vis_path"} and data["boxes"] == res[0]["boxes"]
    cfg_labels = json.loads((tmp_path / "a" / "results.json").read_text())["label_list"]
    box = data["boxes"][0]
    assert set(box) == {"cls_id", "label", "score", "coordinate"} and box["label"] == cfg_labels[box["cls_id"]]
    assert {b["cls_id"] for b in data["boxes"]} <= {0, 1, 2}  # the background slot never comes out
    w, h = cv2.imread(str(one)).shape[1::-1]
    coords = np.array([b["coordinate"] for b in data["boxes"]])
    assert (coords[:, :2] >= 0).all() and (coords[:, 2] <= w + 1e-3).all() and (coords[:, 3] <= h + 1e-3).all()
    # an untrained RF-DETR regresses some negative widths; rfdetr's PostProcess counts them as 0, never inverted
    assert (coords[:, 2] >= coords[:, 0]).all() and (coords[:, 3] >= coords[:, 1]).all()
    scores = [b["score"] for b in data["boxes"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 300
    assert cv2.imread(str(tmp_path / "a" / f"{one.stem}.jpg")).shape[:2] == (h, w)
    # the file holds the predictor's own top detections, rounded as RT-DETR's files are (6 decimals, 0.01 px)
    labels, boxes, sc = predictor(run=rfdetr_run.name, model=None, weights="best",
                                  workspace=session_workspace)([cv2.cvtColor(cv2.imread(str(one)), cv2.COLOR_BGR2RGB)])
    assert box["cls_id"] == int(labels[0][0]) and box["score"] == pytest.approx(float(sc[0][0]), abs=1e-6)
    assert np.allclose(box["coordinate"], boxes[0][0], atol=0.006)


def test_cli_eval_and_predict_with_model_and_weights(session_workspace, rfdetr_run, tmp_path):
    """`--model RF-DETR-N --weights model.pth` dispatches to RF-DETR in the CLI (one process each)."""
    one = sorted((session_workspace.dataset_dir("tiny") / "images").glob("val_*.jpg"))[0]
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(ROOT))
    weights = str(rfdetr_run / "checkpoints" / "best" / "model.pth")
    argv = ["--workspace", str(session_workspace.root), "predict", str(one), "--model", "RF-DETR-N", "--weights",
            weights, "--num-classes", "3", "--input-size", str(RF_SIZE), "--threshold", "0", "--out",
            str(tmp_path / "o")]
    code = ("import sys; from toolbox.cli import main; rc = main(sys.argv[1:]); "
            "print('PADDLE', 'paddle' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "PADDLE False" in proc.stdout  # an RF-DETR command never loads Paddle
    boxes = json.loads((tmp_path / "o" / f"{one.stem}.json").read_text())["boxes"]
    assert len(boxes) == 300 and boxes[0]["label"] in ("0", "1", "2")
    bad = subprocess.run([sys.executable, "-m", "toolbox", "--workspace", str(session_workspace.root), "eval",
                          "--model", "RF-DETR-N", "--weights", weights, "--dataset", "tiny", "--input-size", "70"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "multiple of 32" in bad.stderr and "Traceback" not in bad.stderr
