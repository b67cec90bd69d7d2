"""The RF-DETR family through the whole web wizard in a real browser (Debian's Chromium driven by Playwright),
with no code: check a dataset → pick RF-DETR-N on the Train page, from scratch (`none`: nothing downloaded),
a few steps → evaluate → export (the page ticks ONNX for an RF-DETR run) → build the linux-cpu-python zip,
download it and run its demo → predict on the Predict page. Screenshots: test-artifacts/ui/rfdetr-*.png.

The demo's detections are compared with PyTorch's in tests/test_rfdetr_deploy.py on seeded weights; a 3-step
model scores every query about alike, so here the demo is checked for running on the zip as downloaded,
with RF-DETR's own pre-processing (ImageNet mean/std) in the zip's infer_cfg, and its labels.
"""
from __future__ import annotations

import json

import pytest

from tests.rfdetr_support import RF_SIZE
from tests.ui_support import (App, assert_form, browser, build_and_download_zip, evaluate_run, export_run,
                              fill_form, fill_number, import_dataset, open_tab, pick, predict_on_page, run_zip_demo,
                              shot, stop_jobs, text_of, tiny_source, wait_text, wait_value)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.usefixtures("needs_rfdetr")]


def test_rfdetr_whole_wizard(tmp_path):
    ws = tmp_path / "workspace"
    src = tiny_source(ws)
    app = App(ws).wait_ready()
    try:
        with browser() as b:
            page = b.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.goto(app.url)
            wait_text(page, "data-status", "check passed", timeout=120)
            assert "check passed" in import_dataset(page, src, "parts")

            # 2. Train: the picker's RF-DETR-N, its own recipe in the form, options set as a user would
            open_tab(page, "2 · Train")
            pick(page, "train-dataset", "parts")
            page.get_by_text("Training options").click()
            pick(page, "train-model", "RF-DETR-N")
            # typed at once, before RF-DETR's defaults reach the form (the first pick imports rfdetr,
            # seconds): the refill must fill the untouched boxes and keep these
            typed = {f"train-opt-{elem}": value for elem, value in (
                ("epochs", 1), ("max-steps", 3), ("batch-size", 2), ("input-size", RF_SIZE), ("log-interval", 1),
                ("num-workers", 0))}
            for elem, value in typed.items():
                fill_number(page, elem, value)
            # the form shows rfdetr's recipe for the picked model: 4 x 4 = rfdetr's effective batch of 16
            wait_value(page, "train-opt-grad-accum-steps", "4", timeout=60)
            page.wait_for_timeout(1000)
            assert_form(page, typed)
            fill_form(page, {"train-opt-grad-accum-steps": 1})  # R18's default too: typed after the refill
            page.locator("#train-run input, #train-run textarea").first.fill("rfwiz")
            pick(page, "train-pretrained", "none")
            page.locator("#train-overrides textarea").first.fill("train.multi_scale=false")
            page.locator("#train-start").click()
            wait_text(page, "train-message", "Started job", timeout=60)
            wait_text(page, "train-status", "ok", timeout=600, unless="failed")
            wait_text(page, "train-summary", "finished", timeout=30)
            run_dir = ws / "runs" / "rfwiz"
            assert (run_dir / "checkpoints" / "best" / "model.pth").is_file()
            events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
            assert [e["step"] for e in events if e["type"] == "log"] == [1, 2, 3]
            shot(page, "rfdetr-2-train")

            # 3. Evaluate
            evaluate_run(page, "rfwiz")
            metrics = json.loads((run_dir / "eval" / "metrics.json").read_text(encoding="utf-8"))
            assert metrics["num_images"] == 6, metrics
            shot(page, "rfdetr-3-evaluate")

            # 4. Export: an RF-DETR run is offered ONNX (ticked) and RKNN, never Paddle; zip, download, demo
            table = export_run(page, "rfwiz")
            formats = text_of(page, "export-formats")
            assert "ONNX" in formats and "Paddle" not in formats, formats
            assert "onnx" in table and "paddle" not in table, table
            saved = build_and_download_zip(page, tmp_path / "sdk.zip", "rfdetr-4-export-deploy")
            demo_dir, result = run_zip_demo(saved, tmp_path, "--threshold", "0")
            cfg = json.loads(next(demo_dir.rglob("infer_cfg.json")).read_text(encoding="utf-8"))
            norm = next(op["Normalize"] for op in cfg["preprocess"] if "Normalize" in op)
            assert norm["mean"] == [0.485, 0.456, 0.406], norm  # RF-DETR's ImageNet normalisation
            boxes = result[0]["boxes"]
            assert len(boxes) == 300 and {b["label"] for b in boxes} <= {"ball", "block", "cone"}, boxes[:3]

            # 5. Predict with the run's PyTorch weights on the Predict page
            predict_on_page(page, ws, "parts", "run · rfwiz")
            shot(page, "rfdetr-5-predict")

            open_tab(page, "Runs")
            page.locator("#runs-refresh").click()
            page.wait_for_timeout(1500)
            table = text_of(page, "runs-table")
            assert "rfwiz" in table and "failed" not in table, table
    finally:
        app.stop()
        stop_jobs(ws)
