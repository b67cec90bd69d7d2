"""The web toolbox in a real browser (Debian's Chromium driven by Playwright): the whole wizard on a tiny
dataset (check → train a few steps → evaluate → export ONNX → SDK zip downloaded and opened → predict),
and an app restart in the middle of a training job. Screenshots of each page: test-artifacts/ui/."""
from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from urllib.parse import urlparse

import pytest

from tests.ui_support import (App, browser, fill_number, open_tab, pick, shot, stop_jobs, text_of, wait_text)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _tiny_source(root):
    from toolbox.data.demo import generate

    return generate(root / "incoming" / "parts", num_train=12, num_val=6, image_size=128, num_classes=3, seed=1)


def _start_training(page, dataset: str, run: str, max_steps: int, epochs: int = 1) -> None:
    open_tab(page, "2 · Train")
    pick(page, "train-dataset", dataset)
    pick(page, "train-model", "tiny-test")
    page.locator("#train-run input, #train-run textarea").first.fill(run)
    page.get_by_text("Training options").click()
    fill_number(page, "train-opt-epochs", epochs)
    fill_number(page, "train-opt-max-steps", max_steps)
    fill_number(page, "train-opt-batch-size", 2)
    fill_number(page, "train-opt-log-interval", 1)
    fill_number(page, "train-opt-num-workers", 0)
    page.locator("#train-start").click()
    wait_text(page, "train-message", "Started job", timeout=60)


def test_whole_wizard(tmp_path):
    ws = tmp_path / "workspace"
    src = _tiny_source(tmp_path / "workspace")  # inside the workspace: an allowed folder
    app = App(ws).wait_ready()
    requests: list[str] = []
    try:
        with browser() as b:
            page = b.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.on("request", lambda r: requests.append(r.url))
            page.goto(app.url)
            # 1. Data: the demo dataset is ready; check our own folder by path
            wait_text(page, "data-status", "check passed", timeout=120)
            shot(page, "1-data-demo")
            page.locator("#data-path textarea, #data-path input").first.fill(str(src))
            page.locator("#data-name textarea, #data-name input").first.fill("parts")
            page.locator("#data-check").click()
            status = wait_text(page, "data-status", "parts", timeout=180)
            assert "check passed" in status
            assert "12" in text_of(page, "data-counts")  # train images
            assert page.locator("#data-samples img").count() > 0
            _assert_images_load(page, "data-samples", str(ws))
            shot(page, "1-data-checked")
            # a path outside the allowed folders is refused with a clear message
            page.locator("#data-path textarea, #data-path input").first.fill("/etc")
            page.locator("#data-check").click()
            wait_text(page, "data-status", "outside the folders", timeout=60)

            # 2. Train a few steps of the tiny model
            _start_training(page, "parts", "wiz", max_steps=3)
            wait_text(page, "train-status", "ok", timeout=400)
            wait_text(page, "train-summary", "finished", timeout=30)
            page.wait_for_timeout(2500)
            assert page.locator("#train-loss-plot canvas, #train-loss-plot svg").count() > 0
            shot(page, "2-train")

            # 3. Evaluate it
            open_tab(page, "3 · Evaluate")
            page.locator("#eval-refresh").click()
            pick(page, "eval-run", "wiz")
            page.locator("#eval-start").click()
            wait_text(page, "eval-message", "Started evaluation job", timeout=60)
            wait_text(page, "eval-status", "ok", timeout=300)
            wait_text(page, "eval-head", "AP", timeout=60)
            assert "AP50" in text_of(page, "eval-coco")
            _assert_images_load(page, "eval-vis", str(ws))
            shot(page, "3-evaluate")

            # 4. Export ONNX, build the linux-cpu-python zip, download and open it
            open_tab(page, "4 · Export & deploy")
            page.locator("#export-refresh").click()
            pick(page, "export-run", "wiz")
            page.locator("#export-start").click()
            wait_text(page, "export-message", "Started export job", timeout=60)
            wait_text(page, "export-status", "ok", timeout=400)
            wait_text(page, "export-head", "checks passed", timeout=60)
            assert "onnx" in text_of(page, "export-formats-table")
            page.locator("#deploy-start").click()
            wait_text(page, "export-message", "Started deploy job", timeout=60)
            wait_text(page, "export-status", "ok", timeout=400)
            button = page.locator("#dl-linux-cpu-python")
            button.wait_for(state="visible", timeout=60000)
            shot(page, "4-export-deploy")
            with page.expect_download(timeout=60000) as dl:
                button.click()
            saved = tmp_path / "sdk.zip"
            dl.value.save_as(saved)
            with zipfile.ZipFile(saved) as z:
                names = z.namelist()
                assert z.testzip() is None
            assert any(n.endswith("model.onnx") for n in names), names
            assert any(n.endswith("infer_cfg.yml") for n in names), names
            assert any(re.search(r"README", n) for n in names), names
            # open it: the SDK's own demo runs on its sample image
            with zipfile.ZipFile(saved) as z:
                z.extractall(tmp_path / "sdk")
            demo_py = next((tmp_path / "sdk").rglob("demo.py"))
            run = subprocess.run([sys.executable, "demo.py", "images/sample.png", "--out", str(tmp_path / "sdk-out")],
                                 cwd=demo_py.parent, capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stderr[-2000:]
            assert (tmp_path / "sdk-out" / "results.json").is_file()

            # 5. Predict on an uploaded image with the export
            open_tab(page, "5 · Predict")
            page.locator("#predict-refresh").click()
            page.wait_for_timeout(1000)
            image = sorted((ws / "datasets" / "parts" / "images").rglob("*.jpg"))[0]
            page.locator("#predict-image input[type=file]").set_input_files(str(image))
            page.wait_for_timeout(1500)
            pick(page, "predict-source", "export · wiz")
            page.locator("#predict-run").click()
            wait_text(page, "predict-status", "found", timeout=120)
            page.locator("#predict-drawn img").wait_for(timeout=30000)
            _assert_images_load(page, "predict-drawn", str(ws))
            shot(page, "5-predict")

            # Runs: every job listed, all done
            open_tab(page, "Runs")
            page.locator("#runs-refresh").click()
            page.wait_for_timeout(1500)
            table = text_of(page, "runs-table")
            for kind in ("train", "eval", "export", "deploy"):
                assert kind in table
            assert "failed" not in table
            shot(page, "6-runs")
    finally:
        app.stop()
        stop_jobs(ws)
    # the page never reached beyond this machine (no analytics, fonts or CDNs)
    foreign = {urlparse(u).hostname for u in requests} - {"127.0.0.1", "localhost", None}
    assert not foreign, sorted(foreign)


def test_restart_mid_training(tmp_path):
    """Stop the app while a training job runs; a new app lists the job as running, follows it, and
    cancels it (the job's own process group ends with exit 130)."""
    ws = tmp_path / "workspace"
    app = App(ws).wait_ready()
    try:
        with browser() as b:
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app.url)
            wait_text(page, "data-status", "check passed", timeout=120)
            _start_training(page, "demo", "long", max_steps=2000, epochs=250)
            _wait_step(page, 1, timeout=300)  # a log event arrived
            shot(page, "7-train-before-restart")
        app.stop()
        from toolbox.workspace import Workspace

        reg = Workspace(ws).registry()
        job = [r for r in reg.list() if r["kind"] == "train"][0]
        assert job["status"] == "running", job  # the job outlived the app

        app = App(ws).wait_ready()
        with browser() as b:
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app.url)
            open_tab(page, "Runs")
            wait_text(page, "runs-table", "running", timeout=60)
            open_tab(page, "2 · Train")
            first = _wait_step(page, 1, timeout=60)
            _wait_step(page, first + 1, timeout=120)  # the step counter keeps moving
            shot(page, "8-train-after-restart")
            page.locator("#train-cancel").click()
            wait_text(page, "train-status", "cancelled", timeout=90)
            shot(page, "9-train-cancelled")
        row = reg.get(job["id"])
        assert row["status"] == "cancelled" and row["exit_code"] == 130, row
    finally:
        app.stop()
        stop_jobs(ws)


def _assert_images_load(page, elem_id: str, workspace: str) -> None:
    """The pictures of #elem_id really load (decoded, non-zero size), from a published copy, not the workspace."""
    page.wait_for_function(f"""() => [...document.querySelectorAll('#{elem_id} img')].length > 0 &&
        [...document.querySelectorAll('#{elem_id} img')].every(i => i.complete && i.naturalWidth > 0)""",
                           timeout=30000)
    srcs = page.eval_on_selector_all(f"#{elem_id} img", "els => els.map(e => decodeURIComponent(e.src))")
    assert srcs and not any(workspace in s for s in srcs), srcs


def _wait_step(page, at_least: int, timeout: float) -> int:
    """Wait until the followed training job reports step >= at_least; returns the step seen."""
    import time

    deadline, text = time.time() + timeout, ""
    while time.time() < deadline:
        text = text_of(page, "train-status")
        if _step(text) >= at_least:
            return _step(text)
        page.wait_for_timeout(1000)
    raise AssertionError(f"training never reached step {at_least}: {text}")


def _step(text: str) -> int:
    m = re.search(r"step (\d+)", text)
    return int(m.group(1)) if m else -1
