"""Helpers of the web UI tests: start `python app.py` on a free port with a temp workspace, stop it,
drive Debian's Chromium with Playwright, and save screenshots under test-artifacts/ui/."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import ROOT, require, require_tool

ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """A running `python app.py` (its own process group) on a workspace."""

    def __init__(self, workspace: Path, port: int | None = None, extra: list[str] | None = None):
        self.workspace = Path(workspace)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = self.workspace.parent / f"app-{self.port}-{int(time.time())}.log"
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TOOLBOX_DEMO": "small",
               "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "app.py", "--workspace", str(self.workspace),
                                      "--port", str(self.port), *(extra or [])],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 240) -> "App":
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"app.py exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(1)
        raise AssertionError(f"app.py not ready after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Stop the app (its own process group only: jobs it started live in their own sessions)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def stop_jobs(workspace: Path) -> None:
    """Kill jobs a test left running (they outlive the app by design)."""
    from toolbox.workspace import Workspace, pid_alive

    for row in Workspace(workspace).registry().list():
        if row["status"] in ("running", "queued") and row.get("pgid") and pid_alive(int(row["pid"] or 0)):
            try:
                os.killpg(int(row["pgid"]), signal.SIGKILL)
            except ProcessLookupError:
                pass


@contextmanager
def browser():
    require_tool("chromium", "apt-get install chromium (scripts/install_test_tools.sh)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover
        require(False, "the playwright Python package is not installed (requirements-test.txt)")
    exe = "/usr/bin/chromium"
    require(Path(exe).exists(), f"{exe} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_tab(page, label: str) -> None:
    page.get_by_role("tab", name=label).click()
    page.wait_for_timeout(500)


def pick(page, elem_id: str, value: str) -> None:
    """Choose `value` in the Gradio dropdown #elem_id (typed, then the matching option clicked)."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(value)
    option = page.locator("ul[role='listbox'] li", has_text=value).first
    try:
        option.wait_for(timeout=5000)
        option.click()
    except Exception:  # noqa: BLE001 - a custom value (allow_custom_value) has no option: commit it
        box.press("Enter")
    page.wait_for_timeout(300)


def fill_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input").first
    box.fill(str(value))
    box.press("Tab")


def fill_form(page, values: dict[str, object], settle_s: float = 1.5) -> None:
    """Fill the number boxes {elem_id: value}, then check after `settle_s` that they kept the values: a
    model change's refill still in Gradio's queue must not overwrite what was typed
    (toolbox.ui.train.refilled)."""
    for k, v in values.items():
        fill_number(page, k, v)
    page.wait_for_timeout(int(settle_s * 1000))
    assert_form(page, values)


def assert_form(page, values: dict[str, object]) -> None:
    want = {k: str(v) for k, v in values.items()}
    got = {k: page.locator(f"#{k} input").first.input_value() for k in want}
    assert got == want, f"the form did not keep what was typed: {got}, typed {want}"


def wait_value(page, elem_id: str, value: str, timeout: float = 30) -> None:
    """Wait until the box #elem_id shows `value` (a change event refilled it)."""
    box = page.locator(f"#{elem_id} input").first
    deadline = time.time() + timeout
    while box.input_value() != value:
        if time.time() > deadline:
            raise AssertionError(f"#{elem_id} shows {box.input_value()!r}, not {value!r}, after {timeout:.0f} s")
        page.wait_for_timeout(250)


def text_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def wait_text(page, elem_id: str, needle: str, timeout: float = 300, unless: str | None = None) -> str:
    """Wait until #elem_id's text contains `needle` (case-insensitive); returns the text. Fails at once
    when the text shows `unless` instead (a job that failed need not be waited for)."""
    deadline = time.time() + timeout
    text = ""
    while time.time() < deadline:
        try:
            text = text_of(page, elem_id)
        except Exception:  # noqa: BLE001 - re-rendered while we read
            text = ""
        if needle.lower() in text.lower():
            return text
        if unless and unless.lower() in text.lower():
            raise AssertionError(f"#{elem_id} shows '{unless}', waiting for '{needle}':\n{text[-1500:]}")
        page.wait_for_timeout(1000)
    raise AssertionError(f"#{elem_id} never showed '{needle}' in {timeout:.0f} s; last text:\n{text[-1500:]}")


# --- wizard steps a browser test walks (the RT-DETR and RF-DETR wizards share them) -----------------

def tiny_source(root: Path) -> Path:
    """A tiny COCO source folder (12 train / 6 val images of 128 px, 3 classes) under `root`/incoming."""
    from toolbox.data.demo import generate

    return generate(root / "incoming" / "parts", num_train=12, num_val=6, image_size=128, num_classes=3, seed=1)


def import_dataset(page, path: Path, name: str) -> str:
    """Data page: check the folder `path` as dataset `name` (an import job); returns the status text."""
    page.locator("#data-path textarea, #data-path input").first.fill(str(path))
    page.locator("#data-name textarea, #data-name input").first.fill(name)
    page.locator("#data-check").click()
    wait_text(page, "data-message", "as job #", timeout=60)  # an import is a job
    return wait_text(page, "data-status", name, timeout=180)


def evaluate_run(page, run: str) -> None:
    """Evaluate page: evaluate `run` and wait for its AP table."""
    open_tab(page, "3 · Evaluate")
    page.locator("#eval-refresh").click()
    pick(page, "eval-run", run)
    page.locator("#eval-start").click()
    wait_text(page, "eval-message", "Started evaluation job", timeout=60)
    wait_text(page, "eval-status", "ok", timeout=300)
    wait_text(page, "eval-head", "AP", timeout=60)
    assert "AP50" in text_of(page, "eval-coco")


def export_run(page, run: str) -> str:
    """Export page: export `run` with the formats the page ticks for it; returns the formats table's text."""
    open_tab(page, "4 · Export & deploy")
    page.locator("#export-refresh").click()
    pick(page, "export-run", run)
    page.wait_for_timeout(1000)  # the ticked formats follow the picked run
    page.locator("#export-start").click()
    wait_text(page, "export-message", "Started export job", timeout=60)
    wait_text(page, "export-status", "ok", timeout=600)
    wait_text(page, "export-head", "checks passed", timeout=60)
    return text_of(page, "export-formats-table")


def build_and_download_zip(page, dest: Path, screenshot: str, target: str = "linux-cpu-python") -> Path:
    """Export page, after an export: build the SDK zip of `target`, download it to `dest` (checked intact)."""
    page.locator("#deploy-start").click()
    wait_text(page, "export-message", "Started deploy job", timeout=60)
    wait_text(page, "export-status", "ok", timeout=400)
    button = page.locator(f"#dl-{target}")
    button.wait_for(state="visible", timeout=60000)
    shot(page, screenshot)
    with page.expect_download(timeout=60000) as dl:
        button.click()
    dl.value.save_as(dest)
    with zipfile.ZipFile(dest) as z:
        assert z.testzip() is None
    return dest


def run_zip_demo(zip_path: Path, root: Path, *args: str) -> tuple[Path, list[dict]]:
    """Unpack an SDK zip under `root` and run its demo.py on its sample image, as its README says; returns
    (the demo's folder, the demo's results.json)."""
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(root / "sdk")
    demo_dir = next((root / "sdk").rglob("demo.py")).parent
    out = root / "sdk-out"
    r = subprocess.run([sys.executable, "demo.py", "images/sample.png", "--out", str(out), *args],
                       cwd=demo_dir, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return demo_dir, json.loads((out / "results.json").read_text(encoding="utf-8"))


def predict_on_page(page, workspace: Path, dataset: str, source: str) -> str:
    """Predict page: upload the dataset's first image and predict with `source` (a picker label's start);
    waits for the drawn picture (loaded from a published copy); returns the status text."""
    open_tab(page, "5 · Predict")
    page.locator("#predict-refresh").click()
    page.wait_for_timeout(1000)
    image = sorted((workspace / "datasets" / dataset / "images").rglob("*.jpg"))[0]
    page.locator("#predict-image input[type=file]").set_input_files(str(image))
    page.wait_for_timeout(1500)
    pick(page, "predict-source", source)
    page.locator("#predict-run").click()
    status = wait_text(page, "predict-status", "model loaded in", timeout=120)
    page.locator("#predict-drawn img").wait_for(timeout=30000)
    assert_images_load(page, "predict-drawn", str(workspace))
    return status


def assert_images_load(page, elem_id: str, workspace: str) -> None:
    """The pictures of #elem_id really load (decoded, non-zero size), from a published copy, not the workspace."""
    page.locator(f"#{elem_id}").scroll_into_view_if_needed()  # galleries load their pictures lazily
    page.wait_for_function(f"""() => [...document.querySelectorAll('#{elem_id} img')].length > 0 &&
        [...document.querySelectorAll('#{elem_id} img')].every(i => i.complete && i.naturalWidth > 0)""",
                           timeout=30000)
    srcs = page.eval_on_selector_all(f"#{elem_id} img", "els => els.map(e => decodeURIComponent(e.src))")
    assert srcs and not any(workspace in s for s in srcs), srcs
