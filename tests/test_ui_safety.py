"""Who may reach the web toolbox and which paths it may read (toolbox/ui/safety.py, app.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from toolbox.errors import UsageError
from toolbox.ui.safety import PathGuard, allowed_dirs, is_loopback, parse_auth, resolve_auth


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                       ("127.0.0.5", True), ("0.0.0.0", False), ("192.168.1.4", False),
                                       ("myhost.example", False), ("::", False)])
def test_loopback(host, loop):
    assert is_loopback(host) is loop


def test_non_loopback_needs_auth(monkeypatch):
    monkeypatch.delenv("TOOLBOX_AUTH", raising=False)
    with pytest.raises(UsageError, match="--auth"):
        resolve_auth("0.0.0.0", None)
    assert resolve_auth("127.0.0.1", None) is None
    assert resolve_auth("0.0.0.0", "ann:s3:cret") == ("ann", "s3:cret")
    monkeypatch.setenv("TOOLBOX_AUTH", "bob:pw")
    assert resolve_auth("0.0.0.0", None) == ("bob", "pw")


@pytest.mark.parametrize("bad", ["nopassword", ":pw", "user:"])
def test_bad_auth(bad):
    with pytest.raises(UsageError, match="USER:PASS"):
        parse_auth(bad)


def test_paths_outside_allowed_dirs_are_refused(tmp_path):
    ws = tmp_path / "ws"
    data = tmp_path / "data"
    (ws / "datasets").mkdir(parents=True)
    (data / "set").mkdir(parents=True)
    outside = tmp_path / "private"
    outside.mkdir()
    guard = PathGuard(allowed_dirs(ws, [str(data)]))
    assert guard.check(str(data / "set")) == (data / "set").resolve()
    assert guard.check("datasets") == (ws / "datasets").resolve()  # relative: inside the workspace
    for bad in (str(outside), "/etc/passwd", str(data / ".." / "private"), "../private"):
        with pytest.raises(UsageError, match="outside the folders"):
            guard.check(bad)
    # a symlink inside an allowed folder that points outside is refused too
    (data / "link").symlink_to(outside)
    with pytest.raises(UsageError, match="outside"):
        guard.check(str(data / "link"))
    with pytest.raises(UsageError, match="not a folder"):
        allowed_dirs(ws, [str(tmp_path / "missing")])


def test_app_refuses_public_host_without_auth(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TOOLBOX_DEMO": "none"}
    proc = subprocess.run([sys.executable, "app.py", "--host", "0.0.0.0", "--workspace", str(tmp_path / "ws")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "--auth" in proc.stderr and "Traceback" not in proc.stderr


def test_analytics_off_by_default(monkeypatch):
    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)
    from toolbox.ui.safety import disable_analytics
    import os
    disable_analytics()
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "True")
    disable_analytics()  # the user's own choice wins
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "True"
