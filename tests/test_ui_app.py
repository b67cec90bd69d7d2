"""`python app.py` as a server: a smoke test (HTTP 200 with the demo dataset ready) and scripting it with
gradio_client through its named endpoints (check, train/job, predict), as the README shows."""
from __future__ import annotations

import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.ui_support import App, stop_jobs

pytestmark = pytest.mark.slow


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_app_starts_serves_and_stops(tmp_path):
    ws = tmp_path / "workspace"
    app = App(ws).wait_ready()
    try:
        with urllib.request.urlopen(app.url, timeout=10) as r:
            assert r.status == 200
            assert b"RT-DETR Toolbox" in r.read()
        # the demo dataset was prepared at start-up
        assert (ws / "datasets" / "demo" / "check_dataset_result.json").is_file()
        # the server hands out only what pages publish: never the registry, a log or a dataset's files
        (ws / "jobs").mkdir(exist_ok=True)
        (ws / "jobs" / "1.log").write_text("$ python -m toolbox train --auth-secret\n")
        (ws / "runs" / "r").mkdir(parents=True, exist_ok=True)
        (ws / "runs" / "r" / "train.log").write_text("step 1\n")
        private = [ws / "toolbox.db", ws / "jobs" / "1.log", ws / "runs" / "r" / "train.log",
                   ws / "datasets" / "demo" / "annotations" / "instance_train.json",
                   ws / "datasets" / "demo" / "check_dataset_result.json"]
        for path in private:
            assert path.is_file(), path
            assert _status(f"{app.url}gradio_api/file={path}") == 403, path
        # a file Gradio may serve (its own upload folder) answers 200, so 403 above is a refusal, not a bad URL
        upload = Path(tempfile.gettempdir()) / "gradio" / "tb-probe" / "probe.txt"
        upload.parent.mkdir(parents=True, exist_ok=True)
        upload.write_text("ok")
        assert _status(f"{app.url}gradio_api/file={upload}") == 200
    finally:
        app.stop()
    assert app.proc.returncode is not None


def test_gradio_client_check_train_predict(tmp_path):
    from gradio_client import Client, handle_file
    from toolbox.data.demo import generate

    ws = tmp_path / "workspace"
    src = generate(ws / "incoming" / "shapes", num_train=10, num_val=4, image_size=128, num_classes=2, seed=3)
    app = App(ws).wait_ready()
    try:
        client = Client(app.url, verbose=False)
        report = client.predict(str(src), "shapes", api_name="/check")
        assert report["check_pass"] is True and report["name"] == "shapes", report
        assert report["report"]["attributes"]["train_samples"] == 10
        # the import ran as a recorded job (a CLI child process), not inside the request
        from toolbox.workspace import Workspace
        row = Workspace(ws).registry().get(report["job"])
        assert row["kind"] == "check" and row["status"] == "ok" and row["args"][:2] == ["check", str(src)], row
        # paths outside the workspace and --data-dir folders are refused
        refused = client.predict("/etc", "etc", api_name="/check")
        assert refused["check_pass"] is False and "outside the folders" in refused["error"]

        started = client.predict("shapes", "tiny-test", "api-run", "cpu", "none",
                                 {"--max-steps": 2, "--epochs": 1, "--batch-size": 2, "--num-workers": 0},
                                 api_name="/train")
        job = started["job"]
        deadline = time.time() + 400
        state = client.predict(job, api_name="/job")
        while state["status"] in ("queued", "running") and time.time() < deadline:
            time.sleep(3)
            state = client.predict(job, api_name="/job")
        assert state["status"] == "ok", state
        # the CLI wrote the registry's job id into the run's start event: the UI follows it by id
        from toolbox.events import read_events
        starts = [e for e in read_events(ws / "runs" / "api-run" / "events.jsonl") if e["type"] == "start"]
        assert [e.get("job") for e in starts] == [job]
        assert "run:api-run" in client.predict(api_name="/models")

        image = next((ws / "datasets" / "shapes" / "images").rglob("*.jpg"))
        out = client.predict(handle_file(str(image)), "run:api-run", 0.0, api_name="/predict")
        assert out["source"] == "run:api-run"
        dets = out["detections"]
        assert dets and {"cls_id", "label", "score", "coordinate"} <= set(dets[0])
        assert dets[0]["label"] in report["report"]["attributes"]["class_names"]
    finally:
        app.stop()
        stop_jobs(ws)
