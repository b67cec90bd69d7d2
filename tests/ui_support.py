"""Helpers of the web UI tests: start `python app.py` on a free port with a temp workspace, stop it,
drive Debian's Chromium with Playwright, and save screenshots under test-artifacts/ui/."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
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


def text_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def wait_text(page, elem_id: str, needle: str, timeout: float = 300) -> str:
    """Wait until #elem_id's text contains `needle` (case-insensitive); returns the text."""
    deadline = time.time() + timeout
    text = ""
    while time.time() < deadline:
        try:
            text = text_of(page, elem_id)
        except Exception:  # noqa: BLE001 - re-rendered while we read
            text = ""
        if needle.lower() in text.lower():
            return text
        page.wait_for_timeout(1000)
    raise AssertionError(f"#{elem_id} never showed '{needle}' in {timeout:.0f} s; last text:\n{text[-1500:]}")
