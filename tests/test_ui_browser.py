"""The web toolbox in a real browser (Debian's Chromium driven by Playwright): the whole wizard on a tiny
dataset (check → train a few steps → evaluate → export ONNX → SDK zip downloaded and opened → predict),
and an app restart in the middle of a training job. Screenshots of each page: test-artifacts/ui/."""
from __future__ import annotations

import json
import re
import sqlite3
import zipfile
from urllib.parse import urlparse

import pytest

from tests.ui_support import (App, assert_images_load, browser, build_and_download_zip, evaluate_run, export_run,
                              fill_form, import_dataset, open_tab, pick, predict_on_page, run_zip_demo, shot,
                              stop_jobs, text_of, tiny_source, wait_text, wait_value)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _start_training(page, ws, dataset: str, run: str, max_steps: int, epochs: int = 1, batch_size: int = 2) -> None:
    open_tab(page, "2 · Train")
    pick(page, "train-dataset", dataset)
    pick(page, "train-model", "tiny-test")
    page.locator("#train-run input, #train-run textarea").first.fill(run)
    page.get_by_text("Training options").click()
    # tiny-test's defaults have reached the form (its 128 px): a box typed equal to R18's default (batch 4)
    # would otherwise count as untouched and take tiny-test's
    wait_value(page, "train-opt-input-size", "128")
    fill_form(page, {"train-opt-epochs": epochs, "train-opt-max-steps": max_steps,
                     "train-opt-batch-size": batch_size, "train-opt-log-interval": 1, "train-opt-num-workers": 0})
    page.locator("#train-start").click()
    wait_text(page, "train-message", "Started job", timeout=60)
    # the blank learning-rate and warm-up boxes pass nothing (Gradio's number box once sent them as 0)
    [args] = [json.loads(a) for a, in sqlite3.connect(ws / "toolbox.db").execute(
        "select args from jobs where kind = 'train' and name = ?", (run,))]
    assert "--lr" not in args and "--warmup-steps" not in args, args


def test_whole_wizard(tmp_path):
    ws = tmp_path / "workspace"
    src = tiny_source(tmp_path / "workspace")  # inside the workspace: an allowed folder
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
            status = import_dataset(page, src, "parts")
            assert "check passed" in status
            assert "12" in text_of(page, "data-counts")  # train images
            assert page.locator("#data-samples img").count() > 0
            assert_images_load(page, "data-samples", str(ws))
            shot(page, "1-data-checked")
            # a path outside the allowed folders is refused with a clear message
            page.locator("#data-path textarea, #data-path input").first.fill("/etc")
            page.locator("#data-check").click()
            wait_text(page, "data-message", "outside the folders", timeout=60)

            # 2. Train the tiny model 2 epochs of 3 steps, evaluated after each: numeric curves, and an
            #    idle page that does not redraw
            _start_training(page, ws, "parts", "wiz", max_steps=0, epochs=2, batch_size=4)
            wait_text(page, "train-status", "ok", timeout=400, unless="failed")
            wait_text(page, "train-summary", "finished", timeout=30)
            _assert_curves(page, ws / "runs" / "wiz" / "events.jsonl", n_evals=2)
            shot(page, "2-train")
            _assert_still(page, ["train-loss-plot", "train-lr-plot", "train-map-plot", "train-status", "train-log"],
                          seconds=30)
            # the plan: the engine's schedule, the time from this run's measured speed, a CPU proposal in one click
            plan = wait_text(page, "train-plan", "CPU-sized proposal", timeout=60)
            assert "Schedule (the engine's)" in plan and "about" in plan and "measured by run wiz" in plan, plan
            epochs = re.search(r"CPU-sized proposal: input (\d+) px, (\d+) epochs", plan)
            assert epochs, plan
            page.locator("#train-propose").click()
            page.wait_for_timeout(1500)
            assert page.locator("#train-opt-epochs input").first.input_value() == epochs.group(2)
            assert page.locator("#train-opt-input-size input").first.input_value() == epochs.group(1)

            # 3. Evaluate it
            evaluate_run(page, "wiz")
            assert_images_load(page, "eval-vis", str(ws))
            shot(page, "3-evaluate")

            # 4. Export ONNX, build the linux-cpu-python zip, download and open it
            assert "onnx" in export_run(page, "wiz")
            saved = build_and_download_zip(page, tmp_path / "sdk.zip", "4-export-deploy")
            with zipfile.ZipFile(saved) as z:
                names = z.namelist()
            assert any(n.endswith("model.onnx") for n in names), names
            assert any(n.endswith("infer_cfg.yml") for n in names), names
            assert any(re.search(r"README", n) for n in names), names
            # open it: the SDK's own demo runs on its sample image
            run_zip_demo(saved, tmp_path)

            # 5. Predict on an uploaded image with the export
            first = predict_on_page(page, ws, "parts", "export · wiz")
            page.locator("#predict-run").click()  # again: the loaded model is reused
            second = wait_text(page, "predict-status", "model already loaded", timeout=60)
            assert first.split("·")[0] == second.split("·")[0]  # same objects found
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
            _start_training(page, ws, "demo", "long", max_steps=2000, epochs=250)
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
            first = _wait_step(page, 1, timeout=180)  # step 1 of a CPU job started late in a loaded suite took > 60 s once
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


def _plot(page, elem_id: str) -> dict:
    """What a rendered LinePlot shows (Vega's SVG): axis descriptions, tick labels, points per line, legend."""
    return page.evaluate("""(id) => {
        const svg = document.querySelector('#' + id + ' svg.marks');
        if (!svg) return null;
        const aria = [...svg.querySelectorAll('[aria-label]')].map(e => e.getAttribute('aria-label'));
        const axis = (name) => aria.find(a => a.startsWith(name + '-axis')) || '';
        const ticks = (n) => [...svg.querySelectorAll('g.role-axis')].filter(
            g => (g.getAttribute('aria-label') || '').startsWith(n + '-axis')).flatMap(
            g => [...g.querySelectorAll('g.role-axis-label text')].map(t => t.textContent));
        const lines = [...svg.querySelectorAll('g.mark-line.role-mark path')].filter(
            p => !(p.closest('g.mark-line').getAttribute('class') || '').includes('hover')).map(
            p => (p.getAttribute('d') || '').match(/[ML]/g)?.length || 0);
        return {x: axis('X'), y: axis('Y'), xticks: ticks('X'), yticks: ticks('Y'), lines,
                legend: aria.find(a => a.startsWith('Symbol legend')) || ''};
    }""", elem_id)


def _assert_curves(page, events_path, n_evals: int) -> None:
    """Loss, lr and mAP plots are numeric (linear axes, number tick labels increasing along x) and hold one
    point per logged step (per evaluation for mAP), one line per series, as the run's events say."""
    import json
    import time

    from toolbox.ui.jobs import JobView
    from toolbox.ui.curves import curves

    events = [json.loads(line) for line in events_path.read_text().splitlines() if line.strip()]
    loss, lr, mp = curves(JobView({"id": 0, "status": "ok"}, events))
    n_logs = sum(1 for e in events if e["type"] == "log")
    assert n_logs >= 2 and len(lr) == n_logs and mp["step"].nunique() == n_evals
    want = {"train-loss-plot": [n_logs] * loss["series"].nunique(), "train-lr-plot": [n_logs],
            "train-map-plot": [n_evals] * mp["series"].nunique()}
    deadline, seen = time.time() + 30, {}
    while time.time() < deadline:  # the plots settle within a tick or two of the run's end
        seen = {k: _plot(page, k) for k in want}
        if all(s and sorted(s["lines"]) == want[k] and s["legend" if k != "train-lr-plot" else "x"]
               for k, s in seen.items()):
            break
        page.wait_for_timeout(1000)
    for k, s in seen.items():
        assert s and sorted(s["lines"]) == want[k], (k, s, want[k])
        assert "linear scale" in s["x"] and "linear scale" in s["y"], (k, s)  # numbers, not categories
        xs = sorted({float(t.replace(",", "")) for t in s["xticks"]})
        assert len(xs) >= 2 and xs[0] >= 0 and xs[-1] <= max(loss["step"].max(), 1), (k, s)
        [float(t.replace(",", "")) for t in s["yticks"]]  # every y tick label is a number
    assert f"with {loss['series'].nunique()} values" in seen["train-loss-plot"]["legend"], seen
    assert "with 2 values: AP, AP50" in seen["train-map-plot"]["legend"], seen


def _assert_still(page, elem_ids: list[str], seconds: float) -> None:
    """Nothing under these elements changes while the page sits idle (no redraw of an unchanged run).

    First one idle poll interval passes, so a last real change (the job's final log line, its registry
    row) is shown before the watch starts."""
    from toolbox.ui.pace import IDLE_POLL_S

    page.wait_for_timeout(int((IDLE_POLL_S + 1) * 1000))
    page.evaluate("""(ids) => {
        window.__tbMutations = [];
        const obs = new MutationObserver(ms => ms.forEach(m => window.__tbMutations.push(
            (m.target.id || m.target.nodeName) + ':' + m.type)));
        ids.forEach(id => obs.observe(document.getElementById(id),
            {subtree: true, childList: true, attributes: true, characterData: true}));
    }""", elem_ids)
    page.wait_for_timeout(int(seconds * 1000))
    changes = page.evaluate("window.__tbMutations")
    assert changes == [], changes[:20]


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
