"""Who may reach the web toolbox and which paths it may read (toolbox/ui/safety.py, app.py)."""
from __future__ import annotations

import subprocess
import sys

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
    assert resolve_auth("0.0.0.0", "ann:s3:cret") == [("ann", "s3:cret")]
    monkeypatch.setenv("TOOLBOX_AUTH", "bob:pw")
    assert resolve_auth("0.0.0.0", None) == [("bob", "pw")]


def test_auth_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TOOLBOX_AUTH", raising=False)
    f = tmp_path / "users.txt"
    f.write_text("# who may log in\nann:s3:cret\n\nbob:pw\n")
    f.chmod(0o600)
    assert resolve_auth("0.0.0.0", None, f) == [("ann", "s3:cret"), ("bob", "pw")]
    for mode in (0o640, 0o604, 0o620):  # readable or writable by the group or by everyone
        f.chmod(mode)
        with pytest.raises(UsageError, match=f"mode {mode:03o}.*chmod 600"):
            resolve_auth("0.0.0.0", None, f)
    f.chmod(0o600)
    with pytest.raises(UsageError, match="not both"):
        resolve_auth("0.0.0.0", "ann:x", f)
    f.write_text("ann:ok\nbroken line\n")
    with pytest.raises(UsageError, match="line 2"):
        resolve_auth("0.0.0.0", None, f)
    f.write_text("# nobody\n")
    with pytest.raises(UsageError, match="no USER:PASSWORD"):
        resolve_auth("0.0.0.0", None, f)
    with pytest.raises(UsageError, match="cannot read"):
        resolve_auth("0.0.0.0", None, tmp_path / "missing.txt")


@pytest.mark.slow
def test_app_with_auth_file_asks_for_a_login(tmp_path):
    """A real app started with --auth-file: the login it names works, a wrong password does not, and a
    group-readable file stops the app with one line and exit 2."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    from tests.ui_support import App

    f = tmp_path / "users.txt"
    f.write_text("ann:s3:cret\n")
    f.chmod(0o644)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TOOLBOX_DEMO": "none"}
    proc = subprocess.run([sys.executable, "app.py", "--auth-file", str(f), "--workspace", str(tmp_path / "ws")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "chmod 600" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    f.chmod(0o600)
    app = App(tmp_path / "ws", extra=["--auth-file", str(f), "--demo", "none"]).wait_ready()
    try:
        def login(password: str) -> int:
            data = urllib.parse.urlencode({"username": "ann", "password": password}).encode()
            try:
                with urllib.request.urlopen(app.url + "login", data=data, timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
        assert login("wrong") == 400
        assert login("s3:cret") == 200
        with pytest.raises(urllib.error.HTTPError) as refused:  # no session cookie: no config
            urllib.request.urlopen(app.url + "config", timeout=10)
        assert refused.value.code == 401
        assert "s3:cret" not in " ".join(json.dumps(app.proc.args))  # not in the process list
    finally:
        app.stop()


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


# Every UI field naming a file or folder, as (field, call(guard, value)): each must refuse a path outside
# the allowed folders, accept one inside, and keep a plain workspace name as it is.
def _train(**field):
    from toolbox.ui.train import build_args

    kw = {"dataset": "demo", "model": "RT-DETR-R18", "pretrained": "default", "init_from": "", **field}
    return lambda guard: build_args(kw["dataset"], kw["model"], "r", "cpu", kw["pretrained"], kw["init_from"],
                                    "", {}, {}, guard=guard)[0]


def _eval(**field):
    from toolbox.ui.evaluate import eval_args

    kw = {"run": "r", "weights": "best", "dataset": None, **field}
    return lambda guard: eval_args(kw["run"], kw["weights"], kw["dataset"], "val", 0.5, 4, guard=guard)


def _export(**field):
    from toolbox.ui.export import export_args

    kw = {"run": "r", "weights": "best", **field}
    return lambda guard: export_args(kw["run"], kw["weights"], "e", ["onnx"], None, False, "fp16", 8, guard=guard)[0]


def _deploy(export):
    from toolbox.ui.export import deploy_args

    return lambda guard: deploy_args(export, ["linux-cpu-python"], guard=guard)


def _predict(kind):
    def call(guard, value):
        from toolbox.ui.predict import run_predict
        from toolbox.ui.widgets import AppContext
        from toolbox.workspace import Workspace

        ctx = AppContext(workspace=Workspace(guard.allowed[0]), jobs=None, guard=guard)  # type: ignore[arg-type]
        image = value if kind == "image" else str(guard.allowed[0] / "missing.jpg")
        source = f"run:{value}" if kind == "source" else "run:r"
        return run_predict(ctx, image, source)
    return call


PATH_FIELDS = {
    "train dataset": lambda g, v: _train(dataset=v)(g),
    "train config": lambda g, v: _train(model=v)(g),
    "train pretrained": lambda g, v: _train(pretrained=v)(g),
    "train init-from": lambda g, v: _train(init_from=v)(g),
    "eval run": lambda g, v: _eval(run=v)(g),
    "eval weights": lambda g, v: _eval(weights=v)(g),
    "eval dataset": lambda g, v: _eval(dataset=v)(g),
    "export run": lambda g, v: _export(run=v)(g),
    "export weights": lambda g, v: _export(weights=v)(g),
    "deploy export": lambda g, v: _deploy(v)(g),
    "predict image": _predict("image"),
    "predict model": _predict("source"),
}


@pytest.mark.parametrize("field", sorted(PATH_FIELDS))
def test_every_path_field_is_guarded(field, tmp_path):
    ws = tmp_path / "ws"
    outside = tmp_path / "private"
    for d in (ws / "inside", outside):
        d.mkdir(parents=True)
    suffix = ".yaml" if field == "train config" else ""
    (outside / f"w{suffix}").write_text("x")
    (ws / "inside" / f"w{suffix}").write_text("x")
    guard = PathGuard(allowed_dirs(ws, []))
    call = PATH_FIELDS[field]
    with pytest.raises(UsageError, match="outside the folders"):
        call(guard, str(outside / f"w{suffix}"))
    with pytest.raises(UsageError, match="outside the folders"):
        call(guard, f"../private/w{suffix}")  # relative to the workspace, climbing out
    if field.startswith("predict"):
        return  # inside: predict goes on to load a model, which the command-line fields do not
    args = call(guard, str(ws / "inside" / f"w{suffix}"))
    assert str((ws / "inside" / f"w{suffix}").resolve()) in args
