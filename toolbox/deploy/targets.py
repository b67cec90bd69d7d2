"""The SDK targets: which templates, runtime kit and Python packages each one uses.

One table, so `deploy`, `runtimes fetch` and the tests agree on what a target name means.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

ORT_VERSION = "1.31.1"  # the ONNX Runtime the demos were built and run with in the tests


@dataclass(frozen=True)
class Target:
    """A deploy target: `os` linux|windows|rk3588, `device` cpu|gpu|npu, `lang` python|cpp."""

    name: str
    os: str
    device: str
    lang: str
    kit: str | None  # runtime kit bundled in the zip (C++ targets), see runtimes.KITS

    @property
    def gpu(self) -> bool:
        return self.device == "gpu"

    @property
    def rk3588(self) -> bool:
        return self.os == "rk3588"

    @property
    def windows(self) -> bool:
        return self.os == "windows"


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("linux-cpu-python", "linux", "cpu", "python", None),
    Target("linux-gpu-python", "linux", "gpu", "python", None),
    Target("windows-cpu-python", "windows", "cpu", "python", None),
    Target("windows-gpu-python", "windows", "gpu", "python", None),
    Target("linux-cpu-cpp", "linux", "cpu", "cpp", "linux-x64"),
    Target("linux-gpu-cpp", "linux", "gpu", "cpp", "linux-x64-gpu"),
    Target("windows-cpu-cpp", "windows", "cpu", "cpp", "win-x64"),
    Target("windows-gpu-cpp", "windows", "gpu", "cpp", "win-x64-gpu"),
    Target("rk3588-python", "rk3588", "npu", "python", None),
    Target("rk3588-cpp", "rk3588", "npu", "cpp", "linux-aarch64"),
)}


def resolve_targets(spec: str | list[str] | tuple[str, ...]) -> list[Target]:
    """'all', one name, a comma list or a list of names → Target objects (UsageError on unknown)."""
    names = [spec] if isinstance(spec, str) else list(spec)
    names = [n.strip() for part in names for n in str(part).split(",") if n.strip()]
    if not names or "all" in names:
        return list(TARGETS.values())
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise UsageError(f"unknown deploy target(s) {', '.join(unknown)}; choose from: all, "
                         + ", ".join(TARGETS))
    return [TARGETS[n] for n in dict.fromkeys(names)]
