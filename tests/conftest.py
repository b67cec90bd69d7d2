"""Shared test helpers. Expensive artefacts (a tiny dataset, one tiny training run, one export, the SDK
zips) are session fixtures in tests/fixtures/, one module per step, so every test reuses them."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Nothing downloads at test time: the model hubs' offline switches, set before rfdetr/transformers load,
# turn a hidden download (RF-DETR weights, the DINOv2 backbone) into a test failure.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TOOLBOX_SHARED", ROOT.parent / "shared"))
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytest_plugins = [
    "tests.fixtures.data",
    "tests.fixtures.engine",
    "tests.fixtures.export",
    "tests.fixtures.deploy",
    "tests.rfdetr_support",
]


def require(condition: bool, reason: str) -> None:
    """Skip when a tool is missing, but fail under CI=true, where everything must be installed."""
    if condition:
        return
    if CI:
        pytest.fail(f"CI=true and a required tool is missing: {reason}")
    pytest.skip(reason)


def require_tool(command: str, hint: str = "bash scripts/install_test_tools.sh") -> str:
    path = shutil.which(command)
    require(path is not None, f"'{command}' is not installed (install with: {hint})")
    return path  # type: ignore[return-value]


def shared_path(*parts: str) -> Path:
    """A path under ../shared; tests that need it skip when it is absent locally, but fail under CI=true
    (CI has the shared data, so a conformance test must not pass there by not running)."""
    p = SHARED.joinpath(*parts)
    require(p.exists(), f"{p} is absent (the shared reference data lives beside the repository)")
    return p


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh, empty workspace for one test, also set as TOOLBOX_WORKSPACE."""
    from toolbox.workspace import Workspace

    ws = Workspace(tmp_path / "workspace").ensure()
    monkeypatch.setenv("TOOLBOX_WORKSPACE", str(ws.root))
    return ws
