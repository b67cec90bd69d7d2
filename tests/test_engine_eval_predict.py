"""`eval` and `predict` on the tiny run: COCO metrics files and pictures, PaddleX-shaped predictions for
images, folders and videos, the threshold, and the COCO scoring itself on hand-made detections."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

import toolbox  # noqa: E402
from toolbox.errors import InputError, UsageError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_coco_scoring_of_perfect_and_shifted_detections(session_workspace, tiny_dataset):
    from toolbox.data.loader import CocoDetection
    from toolbox.engine.evaluate import score

    ds = CocoDetection(session_workspace.dataset_dir(tiny_dataset), "val")
    gt = [a for a in ds.coco.dataset["annotations"]]
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in gt]
    r = score(ds.coco, perfect, ds.image_ids, ds.cat_ids, ["ball", "block", "cone"])
    assert r["metrics"]["AP"] == pytest.approx(1.0) and r["metrics"]["AP50"] == pytest.approx(1.0)
    assert all(c["AP"] == pytest.approx(1.0) for c in r["per_class"] if c["AP"] is not None)
    shifted = [dict(d, bbox=[d["bbox"][0] + d["bbox"][2] * 0.3, d["bbox"][1], d["bbox"][2], d["bbox"][3]])
               for d in perfect]
    r2 = score(ds.coco, shifted, ds.image_ids, ds.cat_ids, ["ball", "block", "cone"])
    assert 0 < r2["metrics"]["AP"] < r["metrics"]["AP"] and r2["metrics"]["AP50"] == pytest.approx(1.0)
    empty = score(ds.coco, [], ds.image_ids, ds.cat_ids, ["ball", "block", "cone"])
    assert empty["metrics"]["AP"] == 0.0


def test_eval_writes_metrics_curves_and_pictures(session_workspace, tiny_run):
    report = toolbox.evaluate(run=tiny_run.name, workspace=session_workspace, vis_count=3, threshold=0.0,
                              progress=False)
    out = tiny_run / "eval"
    m = json.loads((out / "metrics.json").read_text())
    assert m["type"] == "eval" and m["step"] == 8 and m["split"] == "val" and m["num_images"] == 8
    assert set(m["metrics"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}
    assert [c["class_id"] for c in m["per_class"]] == [0, 1, 2]
    assert len(m["pr_curves"]) == 3 and len(m["vis"]) == 3
    for rel in m["pr_curves"] + m["vis"]:
        img = cv2.imread(str(out / rel))
        assert img is not None and img.shape[0] > 50
    assert m["num_detections"] > 0 and report["path"] == str(out / "metrics.json")
    # the same metrics as training's last evaluation of those weights (both use run_eval on the EMA weights)
    from toolbox.events import read_events

    train_eval = [e for e in read_events(tiny_run / "events.jsonl") if e["type"] == "eval"][-1]
    assert m["metrics"] == train_eval["metrics"]
    types = [e["type"] for e in read_events(out / "events.jsonl")]
    assert types[0] == "start" and "eval" in types and types[-1] == "end"


def test_eval_with_model_and_weights(session_workspace, tiny_run, tiny_dataset):
    weights = str(tiny_run / "checkpoints" / "last")
    report = toolbox.evaluate(model="tiny-test", weights=weights, dataset=tiny_dataset,
                              workspace=session_workspace, vis_count=1, progress=False)
    assert Path(report["path"]).is_file() and Path(report["path"]).parent.parent.name.startswith("eval-tiny-test-")
    with pytest.raises(UsageError, match="--dataset"):
        toolbox.evaluate(model="tiny-test", weights=weights, workspace=session_workspace)


def _video(path: Path, frames: int = 5):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for i in range(frames):
        img = np.full((120, 160, 3), 40 * i, np.uint8)
        cv2.rectangle(img, (20 + 5 * i, 20), (80 + 5 * i, 90), (0, 200, 255), -1)
        w.write(img)
    w.release()


def test_predict_images_folders_videos_and_threshold(session_workspace, tiny_run, tmp_path):
    images = session_workspace.dataset_dir("tiny") / "images"
    one = sorted(images.glob("val_*.jpg"))[0]
    res = toolbox.predict([one], run=tiny_run.name, threshold=0.0, out=tmp_path / "a", workspace=session_workspace,
                          progress=False)
    data = json.loads((tmp_path / "a" / f"{one.stem}.json").read_text())
    assert data["input_path"] == str(one) and data["boxes"] == res[0]["boxes"]
    box = data["boxes"][0]
    assert set(box) == {"cls_id", "label", "score", "coordinate"} and box["label"] in ("ball", "block", "cone")
    w, h = cv2.imread(str(one)).shape[1::-1]
    coords = np.array([b["coordinate"] for b in data["boxes"]])
    assert (coords[:, 0] >= 0).all() and (coords[:, 2] <= w + 1e-3).all() and (coords[:, 3] <= h + 1e-3).all()
    scores = [b["score"] for b in data["boxes"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 300  # threshold 0: all K = 300 of the top-k
    assert cv2.imread(str(tmp_path / "a" / f"{one.stem}.jpg")).shape[:2] == (h, w)
    mid = float(np.median(scores))
    res2 = toolbox.predict([one], run=tiny_run.name, threshold=mid, out=tmp_path / "b", workspace=session_workspace,
                           progress=False)
    assert 0 < len(res2[0]["boxes"]) < len(scores) and min(b["score"] for b in res2[0]["boxes"]) >= mid
    video = tmp_path / "clip.mp4"
    _video(video)
    folder = tmp_path / "inputs"
    folder.mkdir()
    for p in sorted(images.glob("val_*.jpg"))[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    res3 = toolbox.predict([folder, video], run=tiny_run.name, threshold=0.0, out=tmp_path / "c",
                           workspace=session_workspace, progress=False)
    assert len(res3) == 3
    vid = json.loads((tmp_path / "c" / "clip.json").read_text())
    assert [f["frame_index"] for f in vid["frames"]] == [0, 1, 2, 3, 4] and vid["frames"][0]["boxes"]
    cap = cv2.VideoCapture(str(tmp_path / "c" / "clip.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()


def test_predict_errors(session_workspace, tiny_run, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("x")
    with pytest.raises(InputError, match="not an image or video"):
        toolbox.predict([bad], run=tiny_run.name, workspace=session_workspace)
    with pytest.raises(InputError, match="no such file"):
        toolbox.predict([tmp_path / "missing.jpg"], run=tiny_run.name, workspace=session_workspace)
    with pytest.raises(UsageError, match="threshold"):
        toolbox.predict([bad], run=tiny_run.name, threshold=2, workspace=session_workspace)
    with pytest.raises(UsageError, match="one of --run"):
        toolbox.predict([bad], workspace=session_workspace)


def test_cli_predict_with_model_and_weights(session_workspace, tiny_run, tmp_path):
    one = sorted((session_workspace.dataset_dir("tiny") / "images").glob("val_*.jpg"))[0]
    labels = tmp_path / "labels.txt"
    labels.write_text("ball\nblock\ncone\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "toolbox", "--workspace", str(session_workspace.root), "predict",
                           str(one), "--model", "tiny-test", "--weights", str(tiny_run / "checkpoints" / "best"),
                           "--labels", str(labels), "--threshold", "0", "--out", str(tmp_path / "o")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "o" / f"{one.stem}.json").read_text())
    assert {b["label"] for b in data["boxes"]} <= {"ball", "block", "cone"} and data["boxes"]


def _match(a: list[dict], b: list[dict], top: int = 20) -> None:
    """Detections agree by class-aware IoU matching (near-tied scores may reorder; one query can give the same
    box in several classes), CONTRACTS.md's parity rule: FP32 runtimes, so IoU 0.99 and |dscore| 1e-3."""
    from toolbox.export.compare import match_detections

    def arrays(dets):
        return (np.array([d["cls_id"] for d in dets]), np.array([d["coordinate"] for d in dets], np.float64),
                np.array([d["score"] for d in dets]))

    stats = match_detections(arrays(a), arrays(b), top=top, iou_min=0.99, score_tol=1e-3)
    assert stats.compared == min(top, len(a)) and stats.ok, stats


def test_predict_with_an_export_matches_the_weights(session_workspace, tiny_run, request, tmp_path):
    """predict with the export folder (both ONNX paths) = predict with the same weights in Paddle."""
    from tests.conftest import require
    from toolbox.engine.predict import OnnxPredictor, boxes_json, read_image

    try:
        export_dir = Path(request.getfixturevalue("tiny_export_onnx"))
    except pytest.FixtureLookupError:
        require(False, "the export step's tiny_export_onnx fixture is not available")
    one = sorted((session_workspace.dataset_dir("tiny") / "images").glob("val_*.jpg"))[0]
    seeded = request.getfixturevalue("tiny_seeded_weights")  # the weights the export fixtures are made from
    ref = toolbox.predict([one], model="tiny-test", weights=str(seeded), num_classes=3, threshold=0.0,
                          out=tmp_path / "run", workspace=session_workspace, progress=False)[0]["boxes"]
    assert max(b["score"] for b in ref) > 0.5  # informative weights: score agreement (1e-3) means something
    via_runtime = toolbox.predict([one], export=str(export_dir), threshold=0.0, out=tmp_path / "exp",
                                  workspace=session_workspace, progress=False)[0]["boxes"]
    _match(ref, via_runtime)
    own = OnnxPredictor(export_dir)  # this module's own ONNX Runtime path, reading infer_cfg.yml
    labels, boxes, scores = own([read_image(one)])
    _match(ref, boxes_json(labels[0], boxes[0], scores[0], own.label_list, 0.0))
